"""ADMM compression (ADMM-NN): joint weight pruning and weight quantization."""
