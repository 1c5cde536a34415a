"""Checkpoint validation at load: each damaged field is one UserError that names the field, the
layer and the fix; a layer whose weights left its stored codebook is refused unless the user
asks for re-quantization; BatchNorm folding after load is not mistaken for damage."""

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch

import admm_hls
from admm_hls.compress.checkpoint import load_checkpoint, save_checkpoint
from admm_hls.compress.oneshot import project_checkpoint
from admm_hls.compress.validate import validate_checkpoint
from admm_hls.errors import UserError
from admm_hls.resources import resource_dir

KEEP = {"conv1": 0.5, "conv2": 0.1, "fc1": 0.02, "fc2": 0.2}
BITS = {"conv1": 4, "conv2": 3, "fc1": 2, "fc2": 3}


@pytest.fixture(scope="module")
def ckpt():
    images = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return project_checkpoint("lenet5", KEEP, BITS, images)


def _first_nonzero(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.nonzero()[0].tolist())


def _first_zero(t: torch.Tensor) -> tuple[int, ...]:
    return tuple((t == 0).nonzero()[0].tolist())


def _set(path, value):
    """A mutation that sets ckpt[path[0]][path[1]]... to ``value``."""
    def mutate(c):
        for key in path[:-1]:
            c = c[key]
        c[path[-1]] = value
    return mutate


def _nan_weight(c):
    c["state_dict"]["fc1.weight"][_first_nonzero(c["layers"]["fc1"]["levels"])] = float("nan")


def _inf_bias(c):
    c["state_dict"]["conv2.bias"][3] = float("inf")


def _level_beyond_bits(c):
    layer = c["layers"]["fc2"]
    at = _first_nonzero(layer["levels"])
    layer["levels"][at] = 4  # 3 bits hold +-3
    c["state_dict"]["fc2.weight"][at] = float(4 * layer["scale"])


def _fractional_levels(c):
    layer = c["layers"]["conv1"]
    layer["levels"] = layer["levels"].float()
    layer["levels"][_first_nonzero(layer["levels"])] = 0.5


def _weight_off_level(c):
    c["state_dict"]["conv2.weight"][_first_nonzero(c["layers"]["conv2"]["levels"])] *= 1.001


def _weight_where_pruned(c):
    at = _first_zero(c["layers"]["fc1"]["mask"].to(torch.int8))
    c["state_dict"]["fc1.weight"][at] = 0.5


def _drop(path):
    def mutate(c):
        for key in path[:-1]:
            c = c[key]
        del c[path[-1]]
    return mutate


CASES = [
    (_nan_weight, "state_dict['fc1.weight'] (layer fc1) holds 1 NaN value(s): the checkpoint is damaged"),
    (_inf_bias, "state_dict['conv2.bias'] (layer conv2) holds 1 infinite value(s)"),
    (_set(("state_dict", "fc2.weight"), torch.zeros(10, 499)),
     "state_dict['fc2.weight'] (layer fc2) has shape (10, 499), expected (10, 500)"),
    (_set(("state_dict", "fc2.weight"), "fc2"), "state_dict['fc2.weight'] (layer fc2) is 'fc2', not a tensor"),
    (lambda c: c["state_dict"].update({"fc1.weight": c["state_dict"]["fc1.weight"].double()}),
     "state_dict['fc1.weight'] (layer fc1) has dtype torch.float64, expected torch.float32"),
    (_drop(("state_dict", "fc2.bias")), "state_dict['fc2.bias'] is missing (lenet5 has it, layer fc2)"),
    (_set(("state_dict", "fc3.weight"), torch.zeros(2)), "state_dict['fc3.weight'] is not a tensor of lenet5"),
    (_set(("arch", "name"), "lenet7"), "arch.name 'lenet7' is not a model this admm-hls knows"),
    (_set(("arch", "kwargs"), {"num_classes": 11}),
     "state_dict['fc2.weight'] (layer fc2) has shape (10, 500), expected (11, 500)"),
    (_set(("arch", "kwargs"), {"depth": 3}), "arch.kwargs {'depth': 3} do not build lenet5 (model 'lenet5' does "
                                             "not take arguments"),
    (_set(("input_shape",), [1, 32, 32]), "input_shape is [1, 32, 32], lenet5 takes [1, 28, 28]"),
    (_set(("input_shape",), [torch.ones(3), 28, 28]), "input_shape is [tensor([1., 1., 1.]), 28, 28]"),
    (_set(("version",), 3), "version is 3, this admm-hls reads checkpoint versions 1 and 2: recompress the model with "
                            "this admm-hls"),
    (_set(("version",), True), "version is True, this admm-hls reads"),
    (_set(("format",), "other"), "format is not 'admm-hls-checkpoint' (a torch file, but not an admm-hls checkpoint)"),
    (_drop(("layers", "fc1")), "layers has no entry for layer fc1"),
    (_set(("layers", "fc9"), {}), "layers['fc9'] is not a conv/linear layer of lenet5"),
    (_set(("layers", "fc1", "levels"), None), "layers['fc1'] has bits, scale but no levels"),
    (_drop(("layers", "fc1", "levels")), "layers['fc1'] lacks levels (None where the layer has no codebook)"),
    (_set(("layers", "conv1"), {}), "layers['conv1'] lacks levels, bits, scale"),
    (_set(("layers", "fc1", "bits"), 9), "layers['fc1'].bits is 9, not a width of 2..8 bits"),
    (_set(("layers", "fc1", "bits"), 2.0), "layers['fc1'].bits is 2.0, not a width"),
    (_set(("layers", "fc1", "scale"), 0.0), "layers['fc1'].scale is 0.0, not a finite number > 0"),
    (_set(("layers", "fc1", "scale"), float("nan")), "layers['fc1'].scale is nan, not a finite number > 0"),
    (_set(("layers", "fc1", "scale"), -0.1), "layers['fc1'].scale is -0.1"),
    (_level_beyond_bits, "layers['fc2'].levels holds 1 level(s) beyond +-3, more than 3 bits hold (e.g. 4)"),
    (_fractional_levels, "layers['conv1'].levels holds values that are not whole numbers"),
    (_set(("layers", "fc1", "levels"), [1, 2]), "layers['fc1'].levels is [1, 2], not a tensor"),
    (_set(("layers", "fc1", "mask"), torch.ones(500, 799, dtype=torch.bool)),
     "layers['fc1'].mask has shape (500, 799), expected (500, 800)"),
    (_weight_where_pruned, "layers['fc1'].mask prunes 1 weight(s) that are nonzero in state_dict['fc1.weight']"),
    (_weight_off_level, "layers['conv2'] weights differ from scale * levels at 1 of"),
    (_set(("calibration", "ranges", "conv1"), [float("nan"), 1.0]),
     "calibration.ranges['conv1'] is [nan, 1.0], not a finite [min, max]: recompress the model with 'admm-hls "
     "compress', or re-measure the ranges with --calibrate DATASET"),
    (_set(("calibration", "ranges", "fc1"), [2.0, 1.0]), "calibration.ranges['fc1'] is [2.0, 1.0]"),
    (_set(("calibration", "ranges"), [1, 2]), "calibration.ranges is [1, 2], not a table"),
    (_set(("balance_pe",), "4"), "balance_pe is '4', not a PE count >= 0"),
    (_set(("accuracy",), {"dense": float("inf")}), "accuracy['dense'] is inf, not a finite number"),
    (_set(("dataset",), "mnist"), "dataset is 'mnist', not None or a table"),
]


@pytest.mark.parametrize("mutate, message", CASES, ids=[m for _, m in CASES])
def test_each_damaged_field_is_one_clear_error(ckpt, mutate, message):
    bad = copy.deepcopy(ckpt)
    mutate(bad)
    with pytest.raises(UserError) as info:
        validate_checkpoint(bad)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert text.count(": ") >= 2  # the field, the problem, then the fix


def test_valid_checkpoints_pass(ckpt):
    validate_checkpoint(ckpt)
    load_checkpoint(resource_dir("models") / "lenet5_mnist.pt")
    magnitude_only = copy.deepcopy(ckpt)  # no codebooks: every layer quantized post-training
    for layer in magnitude_only["layers"].values():
        layer.update(levels=None, bits=None, scale=None)
    validate_checkpoint(magnitude_only)
    wide = copy.deepcopy(ckpt)  # levels in a wider integer dtype, or whole-valued floats
    wide["layers"]["fc1"]["levels"] = wide["layers"]["fc1"]["levels"].to(torch.int32)
    wide["layers"]["fc2"]["levels"] = wide["layers"]["fc2"]["levels"].to(torch.float32)
    validate_checkpoint(wide)
    assert {n.name: n.quant["weight_bits"] for n in admm_hls.lower(wide).nodes_of("conv", "linear")} == BITS


def test_off_codebook_layer_needs_requantize(ckpt):
    """Refused by default; with requantize=True only that layer is re-quantized, at weight_bits."""
    bad = copy.deepcopy(ckpt)
    _weight_off_level(bad)
    with pytest.raises(UserError, match="pass --requantize"):
        admm_hls.lower(bad)
    graph = admm_hls.lower(bad, requantize=True, weight_bits=6)
    assert {n.name: n.quant["weight_bits"] for n in graph.nodes_of("conv", "linear")} == dict(BITS, conv2=6)


def test_calibrate_replaces_damaged_stored_ranges(ckpt):
    bad = copy.deepcopy(ckpt)
    bad["calibration"]["ranges"]["conv1"] = [float("nan"), 1.0]
    with pytest.raises(UserError, match="--calibrate"):
        admm_hls.lower(bad)
    graph = admm_hls.lower(bad, calibrate=torch.randn(8, 1, 28, 28))
    assert np.isfinite(graph.input_node().quant["scale"])


def test_scales_out_of_proportion_are_a_user_error(ckpt):
    """Finite but absurd values that pass the field rules still fail cleanly in lowering: a
    range no multiplier can bridge, a bias larger than any accumulator."""
    wide = copy.deepcopy(ckpt)
    wide["calibration"]["ranges"]["x"] = [-1e30, 1e30]
    with pytest.raises(UserError, match=r"node conv1 .*out of proportion, requantization multiplier"):
        admm_hls.lower(wide)
    huge = copy.deepcopy(ckpt)
    huge["state_dict"]["fc2.bias"][0] = 1e30
    with pytest.raises(UserError, match="layer fc2: a bias is .* accumulator units, more than the 32-bit"):
        admm_hls.lower(huge)


def _resnet18_checkpoint() -> dict:
    """ResNet-18 with a codebook on conv1, which a BatchNorm follows (no pruning, no ranges)."""
    from admm_hls.compress.checkpoint import FORMAT, VERSION
    from admm_hls.compress.training import prunable_weights
    from admm_hls.zoo import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    layers = {n: {"levels": None, "bits": None, "scale": None} for n in prunable_weights(model)}
    levels = torch.randint(-7, 8, state["conv1.weight"].shape, dtype=torch.int8)
    state["conv1.weight"] = (levels.double() * 0.01).float()
    layers["conv1"] = {"levels": levels, "bits": 4, "scale": 0.01, "mask": levels != 0}
    return {"format": FORMAT, "version": VERSION, "arch": {"name": "resnet18", "kwargs": {"num_classes": 10}},
            "input_shape": [3, 224, 224], "state_dict": state, "layers": layers}


def test_batchnorm_statistics_are_checked_and_folding_is_not_damage():
    ckpt = _resnet18_checkpoint()
    validate_checkpoint(ckpt)  # stored weights on their levels: valid, though folding moves them off
    bad = copy.deepcopy(ckpt)
    bad["state_dict"]["layer2.0.bn1.running_var"][5] = -1.0
    with pytest.raises(UserError, match=r"state_dict\['layer2.0.bn1.running_var'\] \(layer layer2.0.bn1\) holds "
                                        r"1 negative variance"):
        validate_checkpoint(bad)
    bad = copy.deepcopy(ckpt)
    bad["state_dict"]["bn1.running_mean"][0] = float("nan")
    with pytest.raises(UserError, match=r"state_dict\['bn1.running_mean'\] \(layer bn1\) holds 1 NaN"):
        validate_checkpoint(bad)


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "admm_hls.cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_refuses_in_one_line_and_requantize_builds(ckpt, tmp_path):
    """As a user sees it: exit 2, one line on stderr, no traceback, nothing under --out; the
    off-codebook checkpoint builds with --requantize and its manifest says which width."""
    nan, off = copy.deepcopy(ckpt), copy.deepcopy(ckpt)
    _nan_weight(nan)
    _weight_off_level(off)
    save_checkpoint(nan, tmp_path / "nan.pt")
    save_checkpoint(off, tmp_path / "off.pt")
    for name, command, message in (("nan", ("build", "--out", str(tmp_path / "out")), "holds 1 NaN value(s)"),
                                   ("off", ("inspect",), "pass --requantize")):
        proc = _run_cli(*command, str(tmp_path / f"{name}.pt"))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith("admm-hls: error: ") and message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.pt", "off.pt"]
    proc = _run_cli("build", str(tmp_path / "off.pt"), "--out", str(tmp_path / "p"), "--requantize", "--bits", "5",
                    "--vectors", "1")
    assert proc.returncode == 0, proc.stderr
    import json

    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    widths = {layer["name"]: layer["weight_bits"] for layer in manifest["layers"] if "weight_bits" in layer}
    assert widths == dict(BITS, conv2=5)
