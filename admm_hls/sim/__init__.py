"""Simulation runners: g++ C simulation and cocotb RTL simulation."""
