"""The Vitis HLS backend."""
