"""Lowering an admm-hls checkpoint: ADMM codebooks reach the packed graph, the report adds up."""

import numpy as np
import pytest
import torch

import admm_hls
from admm_hls import reference
from admm_hls.compress.checkpoint import save_checkpoint
from admm_hls.compress.oneshot import project_checkpoint
from admm_hls.errors import UserError
from admm_hls.report import graph_report
from admm_hls.sparse import decode_dense, decode_relative

KEEP = {"conv1": 0.5, "conv2": 0.1, "fc1": 0.01, "fc2": 0.2}
BITS = {"conv1": 4, "conv2": 3, "fc1": 2, "fc2": 3}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    ckpt = project_checkpoint("lenet5", KEEP, BITS, torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    path = tmp_path_factory.mktemp("ckpt") / "lenet5.pt"
    save_checkpoint(ckpt, path)
    return path, ckpt


def test_checkpoint_codebooks_are_used(checkpoint):
    path, ckpt = checkpoint
    graph = admm_hls.lower(path)
    for module, layer in ckpt["layers"].items():
        (node,) = [n for n in graph.nodes_of("conv", "linear") if n.module == module]
        assert node.quant["weight_bits"] == BITS[module]
        assert node.quant["w_scale"] == layer["scale"]
        assert node.packed.codebook.value_bits == BITS[module]
        decoded = node.packed.codebook.decode(
            decode_relative(node.packed.layer) if node.packed.format == "relative"
            else decode_dense(node.packed.layer))
        assert np.array_equal(decoded, layer["levels"].numpy().reshape(decoded.shape))


def test_report_adds_up(checkpoint):
    path, ckpt = checkpoint
    report = graph_report(admm_hls.lower(path))
    t = report["totals"]
    assert t["weights"] == 430_500
    assert t["nonzeros"] == sum(layer["nonzeros"] for layer in ckpt["layers"].values())
    for row in report["layers"]:
        parts = sum(row[f"bits_{k}"] for k in ("entries", "fillers", "padding", "row_ptr", "codebook", "bias"))
        assert parts == row["bits_overall"]
        assert row["macs_sparse"] <= row["macs_dense"]
    assert t["bits_overall"] == sum(r["bits_overall"] for r in report["layers"])
    assert t["mac_reduction_total"] == pytest.approx(t["macs_dense_total"] / t["macs_sparse_total"])
    fc1 = next(r for r in report["layers"] if r["layer"] == "fc1")
    assert fc1["format"] == "relative" and fc1["levels_used"] == [-1, 1]


def test_reference_runs_from_float_or_int_inputs(checkpoint):
    path, _ = checkpoint
    graph = admm_hls.lower(path)
    x = torch.randn(5, 1, 28, 28).numpy()
    q = reference.quantize_images(graph, x)
    assert q.dtype == np.int64 and q.min() >= -128 and q.max() <= 127
    assert np.array_equal(reference.run(graph, x), reference.run(graph, q))
    outs = reference.run(graph, q, all_outputs=True)
    assert set(outs) == {n.name for n in graph.topo()}


def test_missing_calibration_is_a_clear_error(checkpoint, tmp_path):
    _, ckpt = checkpoint
    bare = dict(ckpt, calibration={})
    with pytest.raises(UserError, match="no activation ranges"):
        admm_hls.lower(bare)
    # --calibrate data makes it lowerable again.
    graph = admm_hls.lower(bare, calibrate=torch.randn(8, 1, 28, 28))
    assert graph.input_node().quant["scale"] > 0


def test_resnet18_lowers_end_to_end_and_tracks_float():
    """BN folding, residual adds with fused ReLU, global average pool, post-training 8-bit
    weights: the whole zoo ResNet-18 lowers, packs and runs in the reference."""
    from admm_hls.calibration import measure_ranges
    from admm_hls.ir.lower import lower_model
    from admm_hls.zoo import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.running_mean.normal_(0, 0.1)
    x = torch.randn(2, 3, 224, 224)
    graph = lower_model(model, (3, 224, 224), measure_ranges(model, [x]), name="resnet18")
    assert len(graph.nodes_of("add")) == 8 and not graph.nodes_of("batchnorm")
    assert all(n.quant["acc_bits"] <= 32 for n in graph.nodes_of("conv", "linear"))
    got = reference.run(graph, x[:1].numpy()) * graph.output_node().quant["scale"]
    want = model(x[:1]).detach().numpy()
    cosine = float((got * want).sum() / (np.linalg.norm(got) * np.linalg.norm(want)))
    assert got.shape == (1, 10) and cosine > 0.95, cosine
