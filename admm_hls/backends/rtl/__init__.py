"""RTL backend: Verilog + memory images + cocotb testbench for a packed LayerGraph."""
