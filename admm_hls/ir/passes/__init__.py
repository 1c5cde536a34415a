"""Lowering passes, run in this declared order by ``admm_hls.ir.lower``:

1. remove_identity   dropout, identity and 1x1/stride-1 average pools disappear
2. fold_batchnorm    BatchNorm2d folded into the preceding conv
3. fuse_relu         ReLU fused into its producer's output
4. infer_shapes      every node's shape from its layer kind, checked against the trace
5. quantize          integer parameters, accumulator bound proof
6. choose_format     dense or relative index per layer, by stored bits
7. pack              the chosen encoding becomes the layer's weights
"""

PASS_ORDER = ("remove_identity", "fold_batchnorm", "fuse_relu", "infer_shapes", "quantize", "choose_format", "pack")
