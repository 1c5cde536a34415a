"""Checkpoint format version 2: pruned layers stored as kept positions and bit-packed levels.
Saving and loading gives back exactly the in-memory checkpoint (every tensor's values bit for bit,
dtype and shape); a layer that would not come back exactly is stored dense; version-1 files still
load; damaged compact fields are one clear error at load."""

import contextlib
import copy
import io
import re
import tracemalloc
from pathlib import Path

import pytest
import torch

from admm_hls import cli
from admm_hls.compress.checkpoint import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
from admm_hls.compress.compact import compact, expand
from admm_hls.compress.oneshot import project_checkpoint
from admm_hls.compress.targets import layer_geometry
from admm_hls.compress.training import prunable_weights
from admm_hls.errors import UserError
from admm_hls.resources import resource_dir
from admm_hls.zoo import build_model, input_shape

KEEP = {"conv1": 1.0, "conv2": 0.3, "fc1": 0.01, "fc2": 0.2}  # a dense layer, a bitmask, gaps
BITS = {"conv1": 4, "conv2": 3, "fc1": 2, "fc2": 5}


@pytest.fixture(scope="module")
def lenet():
    images = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return project_checkpoint("lenet5", KEEP, BITS, images)


def assert_same(a, b, where="ckpt"):
    """Equal down to every tensor's dtype, shape and bit pattern (a -0.0 is not a 0.0)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        bits = {torch.float32: torch.int32, torch.float64: torch.int64}.get(a.dtype)
        assert torch.equal(a.view(bits), b.view(bits)) if bits else torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), (where, a, b)


def round_trip(ckpt, path: Path):
    save_checkpoint(ckpt, path)
    return load_checkpoint(path)


def synthetic_checkpoint(arch: str, keep: float, seed: int = 0) -> dict:
    """A zoo model with random codebook weights at ``keep`` (project_checkpoint takes 40 s to
    two minutes on AlexNet, VGG-16 and ResNet-18; the round trip does not need trained values).
    Level 0 at some kept positions, as a projection can leave."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(arch, num_classes=10)
    weights = prunable_weights(model)
    masks, levels, scales, bits = {}, {}, {}, {}
    with torch.no_grad():
        for i, (name, w) in enumerate(weights.items()):
            bits[name] = 3 + i % 4
            top = 2 ** (bits[name] - 1) - 1
            masks[name] = torch.rand(w.shape, generator=g) < keep
            levels[name] = torch.randint(-top, top + 1, w.shape, generator=g, dtype=torch.int8) * masks[name]
            scales[name] = 0.0123 / (i + 1)
            w.copy_((levels[name].double() * scales[name]).float())
    geometry = layer_geometry(model, input_shape(arch))
    return make_checkpoint(arch, {"num_classes": 10}, input_shape(arch), model, geometry,
                           masks=masks, keep={n: keep for n in weights}, bits=bits, levels=levels, scales=scales,
                           accuracy={}, recipe={}, history=[], calibration={}, dataset=None, seed=seed)


def test_lenet5_round_trip_is_exact_and_restores_the_model(lenet, tmp_path):
    back = round_trip(lenet, tmp_path / "m.pt")
    assert_same(lenet, back)
    model = model_from_checkpoint(back)
    assert_same(dict(model.state_dict()), lenet["state_dict"])
    stored = torch.load(tmp_path / "m.pt", weights_only=True)
    assert {n: layer["encoding"] for n, layer in stored["layers"].items()} == {
        "conv1": "bitmask", "conv2": "bitmask", "fc1": "gaps", "fc2": "bitmask"}
    assert sorted(stored["state_dict"]) == ["conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias"]
    assert (tmp_path / "m.pt").stat().st_size < 32 * 1024  # 13,500 kept weights; 2.5 MB dense


@pytest.mark.parametrize("arch, keep", [("resnet18", 0.05), ("alexnet", 0.03), ("vgg16", 0.01)])
def test_zoo_round_trip_is_exact(arch, keep, tmp_path):
    ckpt = synthetic_checkpoint(arch, keep)
    path = tmp_path / f"{arch}.pt"
    back = round_trip(ckpt, path)
    assert_same(ckpt, back)
    stored = torch.load(path, weights_only=True, mmap=True)
    assert all("encoding" in layer and "mask" not in layer for layer in stored["layers"].values())
    if arch == "resnet18":  # BatchNorm stays dense
        assert stored["state_dict"]["bn1.running_var"].shape == (64,)
    dense_bytes = sum(layer["mask"].numel() for layer in back["layers"].values()) * 6  # weight, mask, level
    assert path.stat().st_size < dense_bytes * keep
    if arch == "alexnet":
        # Decoding allocates the dense weights, masks and levels once, plus one layer's
        # temporaries at a time: well under two dense copies.
        del back
        tracemalloc.start()
        try:
            dense = expand(stored)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        decoded = sum(dense["state_dict"][f"{n}.weight"].nbytes + layer["mask"].nbytes + layer["levels"].nbytes
                      for n, layer in dense["layers"].items())
        assert 300e6 < decoded <= peak < 1.3 * decoded


def _set_positions(ckpt: dict, name: str, flat: list[int]) -> None:
    """Keep exactly the flat positions ``flat`` of a layer, on level 1."""
    layer, weight = ckpt["layers"][name], ckpt["state_dict"][f"{name}.weight"]
    mask = torch.zeros(weight.numel(), dtype=torch.bool)
    mask[flat] = True
    mask = mask.reshape(weight.shape)
    layer.update(mask=mask, levels=mask.to(torch.int8), nonzeros=len(flat))
    ckpt["state_dict"][f"{name}.weight"] = (layer["levels"].double() * layer["scale"]).float()


def test_gaps_past_255_first_and_last_positions(lenet, tmp_path):
    ckpt = copy.deepcopy(lenet)
    last = 500 * 800 - 1
    _set_positions(ckpt, "fc1", [0, 1, 256, 512, 767, 100_000, last])
    stored = compact(ckpt)["layers"]["fc1"]
    assert stored["encoding"] == "gaps"
    assert stored["positions"][:6].tolist() == [1, 1, 255, 0, 1, 255]  # 0: advance 255, no entry
    # one token per entry, and a 0 per 255 beyond the first in each gap (256, 99,233 and 299,999)
    assert stored["positions"].numel() == 7 + 1 + 99_232 // 255 + 299_998 // 255
    assert_same(ckpt, round_trip(ckpt, tmp_path / "g.pt"))


def test_layer_without_codebook_stores_its_values(lenet, tmp_path):
    ckpt = copy.deepcopy(lenet)
    ckpt["layers"]["fc2"].update(levels=None, bits=None, scale=None)
    weight = ckpt["state_dict"]["fc2.weight"]
    weight[ckpt["layers"]["fc2"]["mask"]] *= 1.37  # any float value, not on a codebook
    stored = compact(ckpt)["layers"]["fc2"]
    assert stored["values"].dtype == torch.float32 and stored["levels"] is None and "packed_levels" not in stored
    assert_same(ckpt, round_trip(ckpt, tmp_path / "v.pt"))


def _off_level(c):
    weight = c["state_dict"]["conv2.weight"].view(-1)
    weight[weight.nonzero()[0]] *= 1.001


def _negative_zero(c):
    c["state_dict"]["fc1.weight"].view(-1)[(~c["layers"]["fc1"]["mask"]).view(-1).nonzero()[0]] = -0.0


def _miscounted(c):
    c["layers"]["fc1"]["nonzeros"] += 1


def _float_levels(c):
    c["layers"]["fc1"]["levels"] = c["layers"]["fc1"]["levels"].to(torch.float64)


def _level_beyond_bits(c):
    layer = c["layers"]["fc1"]  # 2 bits hold +-1
    at = layer["mask"].view(-1).nonzero()[0]
    layer["levels"].view(-1)[at] = 2
    c["state_dict"]["fc1.weight"].view(-1)[at] = float(2 * layer["scale"])


@pytest.mark.parametrize("damage, layer, error", [
    (_off_level, "conv2", "layers['conv2'] weights differ from scale * levels at 1 of"),
    (_negative_zero, "fc1", None),  # valid: -0.0 == 0; stored dense, it comes back as -0.0
    (_miscounted, "fc1", None),  # nonzeros is not read by lowering
    (_float_levels, "fc1", None),
    (_level_beyond_bits, "fc1", "layers['fc1'].levels holds 1 level(s) beyond +-1"),
])
def test_inconsistent_layer_is_stored_verbatim(lenet, tmp_path, damage, layer, error):
    ckpt = copy.deepcopy(lenet)
    damage(ckpt)
    stored = compact(ckpt)
    assert "mask" in stored["layers"][layer] and f"{layer}.weight" in stored["state_dict"]
    assert all("encoding" in v for n, v in stored["layers"].items() if n != layer)
    if error is None:
        assert_same(ckpt, round_trip(ckpt, tmp_path / "x.pt"))
    else:
        with pytest.raises(UserError, match="^" + re.escape(f"{tmp_path / 'x.pt'}: {error}")):
            round_trip(ckpt, tmp_path / "x.pt")


def test_version_1_files_load_and_build_the_same_project(tmp_path):
    shipped = load_checkpoint(resource_dir("models") / "lenet5_mnist.pt")
    assert shipped["version"] == 2 and (resource_dir("models") / "lenet5_mnist.pt").stat().st_size < 512 * 1024
    save_checkpoint(shipped, tmp_path / "v1.pt", version=1)
    raw = torch.load(tmp_path / "v1.pt", weights_only=True)
    assert raw["version"] == 1 and raw["layers"]["fc1"]["mask"].shape == (500, 800)
    back = load_checkpoint(tmp_path / "v1.pt")
    assert back["version"] == 1
    assert_same({**shipped, "version": 1}, back)
    for version in (1, 2):
        save_checkpoint(shipped, tmp_path / f"v{version}.pt", version=version)
        code, err = build(tmp_path / f"v{version}.pt", tmp_path / f"out{version}")
        assert code == 0, err
    files = sorted(p.relative_to(tmp_path / "out1") for p in (tmp_path / "out1").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(tmp_path / "out2") for p in (tmp_path / "out2").rglob("*")
                                     if p.is_file())
    for f in files:
        assert (tmp_path / "out1" / f).read_bytes() == (tmp_path / "out2" / f).read_bytes(), f


def test_save_is_deterministic(lenet, tmp_path):
    save_checkpoint(lenet, tmp_path / "a.pt")
    save_checkpoint(copy.deepcopy(lenet), tmp_path / "b.pt")
    save_checkpoint(load_checkpoint(tmp_path / "a.pt"), tmp_path / "c.pt")  # re-saving a loaded file
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes() == (tmp_path / "c.pt").read_bytes()


# -- damaged compact fields ---------------------------------------------------------------------------
def build(ckpt_path: Path, out: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["build", str(ckpt_path), "--out", str(out), "--vectors", "1"])
    return code, err.getvalue()


def _gaps_past_the_end(s):
    s["layers"]["fc1"]["positions"] = torch.full((1569,), 255, dtype=torch.uint8)  # 1,569 * 255 > 400,000


def _conv1_padding(s):
    s["layers"]["conv1"]["positions"][-1] |= 0x80  # 500 entries: the last byte's high 4 bits are padding


def _set(layer, key, value):
    def mutate(s):
        s["layers"][layer][key] = value(s["layers"][layer][key]) if callable(value) else value
    return mutate


def _dense_too(s):
    s["state_dict"]["fc1.weight"] = torch.zeros(500, 800)


def _mask_too(s):
    s["layers"]["fc1"]["mask"] = torch.ones(500, 800, dtype=torch.bool)


DAMAGED = [
    (_gaps_past_the_end, "layers['fc1'].positions runs past the weight's 400,000 entries"),
    (_conv1_padding, "layers['conv1'].positions runs past the weight's 500 entries"),
    (_set("conv2", "positions", lambda t: t[:-1].clone()),
     "layers['conv2'].positions holds 3,124 bytes, a bitmask of the weight's 25,000 entries takes 3,125"),
    (_set("fc1", "positions", lambda t: t.to(torch.int64)),
     "layers['fc1'].positions is a torch.int64 tensor of shape ("),
    (_set("fc1", "positions", lambda t: t.reshape(1, -1).clone()), "layers['fc1'].positions is a torch.uint8 tensor of "
                                                                   "shape (1, "),
    (_set("fc1", "packed_levels", lambda t: t[:-8].clone()),
     "layers['fc1'].packed_levels holds 992 bytes, 4,000 levels of 2 bits take 1,000"),
    (_set("fc1", "packed_levels", None), "layers['fc1'].packed_levels is None, not a 1-D torch.uint8 tensor"),
    (_set("fc1", "encoding", "rle"), "layers['fc1'].encoding is 'rle', not one of bitmask, gaps"),
    (_set("fc1", "nonzeros", lambda n: n + 1), "layers['fc1'].positions lists 4,000 kept weights, nonzeros says 4,001"),
    (_set("fc1", "nonzeros", "4000"), "layers['fc1'].nonzeros is '4000', not a count of kept weights"),
    (_set("fc1", "shape", [500, 2**40]), "layers['fc1'].shape is [500, 1099511627776], not the shape of the"),
    (_set("fc1", "bits", 9), "layers['fc1'].bits is 9, not a width of 2..8 bits"),
    (_set("fc1", "scale", float("nan")), "layers['fc1'].scale is nan, not a finite number > 0"),
    (_set("fc1", "values", torch.zeros(4000)), "layers['fc1'] needs exactly one of packed_levels (a codebook) and"),
    (_dense_too, "state_dict['fc1.weight'] is stored twice, dense and in layers['fc1'].positions"),
    (_mask_too, "layers['fc1'] has both a mask and positions"),
]


@pytest.mark.parametrize("damage, message", DAMAGED, ids=[m for _, m in DAMAGED])
def test_damaged_compact_field_is_one_line_from_build(lenet, tmp_path, damage, message):
    stored = compact(copy.deepcopy(lenet))
    assert stored["layers"]["fc1"]["nonzeros"] == 4000
    damage(stored)
    torch.save(stored, tmp_path / "bad.pt")
    code, err = build(tmp_path / "bad.pt", tmp_path / "out")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"admm-hls: error: {tmp_path / 'bad.pt'}: {message}"), lines[0]
    assert lines[0].endswith("the checkpoint is damaged; recompress the model with 'admm-hls compress'")
    assert [p.name for p in tmp_path.iterdir()] == ["bad.pt"]


def test_values_of_the_wrong_length_are_refused(lenet, tmp_path):
    ckpt = copy.deepcopy(lenet)
    ckpt["layers"]["fc2"].update(levels=None, bits=None, scale=None)
    stored = compact(ckpt)
    stored["layers"]["fc2"]["values"] = stored["layers"]["fc2"]["values"][:-1].clone()
    torch.save(stored, tmp_path / "bad.pt")
    with pytest.raises(UserError, match=r"layers\['fc2'\].values holds 999 weights, nonzeros says 1,000"):
        load_checkpoint(tmp_path / "bad.pt")
