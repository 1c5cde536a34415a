"""Fuzzing the checkpoint path end to end: a valid small checkpoint, damaged at random (values set
to NaN / Inf / huge / zero, shapes and dtypes changed, keys removed and added, a string or list
where a tensor was), goes through ``admm-hls build``. Either it is refused (exit 2, one line on
stderr, no traceback, nothing written under --out) or it builds with every layer's weight bit
width as in the undamaged build: never a silent change of width. The damage is done either to the
in-memory checkpoint, which ``save_checkpoint`` then compacts (it must never crash on it), or to
the compact form as stored (``compact.compact``), which is written as it is."""

import contextlib
import copy
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from admm_hls import cli
from admm_hls.compress.checkpoint import save_checkpoint
from admm_hls.compress.compact import compact
from admm_hls.compress.oneshot import project_checkpoint

KEEP = {"conv1": 0.5, "conv2": 0.1, "fc1": 0.02, "fc2": 0.2}
BITS = {"conv1": 4, "conv2": 3, "fc1": 2, "fc2": 3}
OPAQUE = ("history", "recipe", "versions")  # not read by lowering: mutated only as a whole

SPECIAL_FLOATS = (float("nan"), float("inf"), float("-inf"), 1e30, -3e38, 0.0, -1.0)
SPECIAL_INTS = (2**40, -(2**40), 127, -128, 0, -1)
DTYPES = (torch.float64, torch.float16, torch.float32, torch.int64, torch.int32, torch.int8, torch.bool)
# No small int: a valid width put in place of another (bits 4 -> 7) is what the checkpoint says,
# not damage anyone could detect.
JUNK = ("junk", [1, 2], None, {}, 12345, 2.5, torch.zeros(3))


def build(ckpt_path: Path, out: Path) -> tuple[int, str]:
    """``admm-hls build`` in this process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["build", str(ckpt_path), "--out", str(out), "--vectors", "1"])
    return code, err.getvalue()


def widths(out: Path) -> dict[str, int]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {layer["name"]: layer["weight_bits"] for layer in manifest["layers"] if "weight_bits" in layer}


class Base(tuple):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return "<the undamaged LeNet-5 checkpoint>"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """(checkpoint, its mutation sites, the undamaged build's widths, the stored form, its sites)."""
    images = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ckpt = project_checkpoint("lenet5", KEEP, BITS, images)
    folder = tmp_path_factory.mktemp("fuzz-base")
    save_checkpoint(ckpt, folder / "base.pt")
    code, err = build(folder / "base.pt", folder / "out")
    assert code == 0, err
    assert widths(folder / "out") == BITS
    stored = compact(ckpt)
    assert all("encoding" in layer for layer in stored["layers"].values())
    return Base((ckpt, sites(ckpt), BITS, stored, sites(stored)))


def sites(obj, path=()) -> list[tuple]:
    """Key paths of every value in the checkpoint (dict keys and list positions)."""
    found = [path] if path else []
    if isinstance(obj, dict) and not (path and path[0] in OPAQUE):
        for key, value in obj.items():
            found += sites(value, path + (key,))
    elif isinstance(obj, list) and not (path and path[0] in OPAQUE):
        for i, value in enumerate(obj):
            found += sites(value, path + (i,))
    return found


def special(value, data):
    """A damaging value of the same kind: an element of a tensor, or a number, replaced."""
    if isinstance(value, torch.Tensor):
        t = value.clone()
        if t.numel() == 0:
            return t
        flat = t.view(-1)
        i = data.draw(st.integers(0, flat.numel() - 1), label="element")
        if t.dtype == torch.bool:
            flat[i] = not bool(flat[i])
        elif t.is_floating_point():
            flat[i] = data.draw(st.sampled_from(SPECIAL_FLOATS), label="float")
        else:
            info = torch.iinfo(t.dtype)
            flat[i] = data.draw(st.sampled_from((info.max, info.min, 0, -1 if info.min < 0 else 1)), label="int")
        return t
    if isinstance(value, bool):
        return not value
    if isinstance(value, float):
        return data.draw(st.sampled_from(SPECIAL_FLOATS), label="float")
    if isinstance(value, int):
        return data.draw(st.sampled_from(SPECIAL_INTS), label="int")
    return data.draw(st.sampled_from(JUNK), label="junk")


def reshaped(value, data):
    if isinstance(value, torch.Tensor):
        how = data.draw(st.sampled_from(("shorter", "longer", "flat", "extra dim")), label="shape")
        if how == "shorter" and value.dim() and value.shape[0]:
            return value[:-1].clone()
        if how == "longer" and value.dim():
            return torch.cat([value, value[:1]])
        if how == "flat":
            return value.reshape(-1).clone()
        return value.unsqueeze(0).clone()
    if isinstance(value, list):
        return value[:-1] if value and data.draw(st.booleans(), label="drop") else value + [value[-1] if value else 1]
    return data.draw(st.sampled_from(JUNK), label="junk")


def retyped(value, data):
    if isinstance(value, torch.Tensor):
        return value.to(data.draw(st.sampled_from(DTYPES), label="dtype"))
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return data.draw(st.sampled_from((float(value), int(value) if abs(value) < 2**62 else 0, str(value), True)),
                         label="retype")
    return data.draw(st.sampled_from(JUNK), label="junk")


def mutate(ckpt: dict, site: tuple, op: str, data) -> dict:
    bad = copy.deepcopy(ckpt)
    parent = bad
    for key in site[:-1]:
        parent = parent[key]
    key = site[-1]
    value = parent[key]
    if op == "value":
        parent[key] = special(value, data)
    elif op == "shape":
        parent[key] = reshaped(value, data)
    elif op == "dtype":
        parent[key] = retyped(value, data)
    elif op == "type":
        parent[key] = data.draw(st.sampled_from(JUNK), label="junk")
    elif op == "remove":
        del parent[key]
    elif op == "add":  # a new key next to this one (or a new element of this list)
        extra = data.draw(st.sampled_from(JUNK + (torch.ones(2, 2),)), label="extra")
        if isinstance(parent, list):
            parent.append(extra)
        else:
            parent[f"extra_{key}"] = extra
    return bad


def check_outcome(code: int, err: str, out: Path, base_widths: dict[str, int]) -> None:
    event("built" if code == 0 else "refused")  # --hypothesis-show-statistics: how often each
    if code == 0:
        assert widths(out) == base_widths, "a damaged checkpoint built with other bit widths"
        return
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("admm-hls: error: "), err
    assert "Traceback" not in err
    assert not out.exists() and [p.name for p in out.parent.iterdir()] == ["bad.pt"], "something written"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_checkpoint_is_refused_cleanly_or_builds_the_same_widths(base, data):
    ckpt, memory_sites, base_widths, stored, stored_sites = base
    on_disk = data.draw(st.booleans(), label="damage the stored form")
    site = data.draw(st.sampled_from(stored_sites if on_disk else memory_sites), label="site")
    op = data.draw(st.sampled_from(("value", "value", "shape", "dtype", "type", "remove", "add")), label="op")
    bad = mutate(stored if on_disk else ckpt, site, op, data)
    with tempfile.TemporaryDirectory(prefix="admm-hls-fuzz-") as tmp:
        tmp = Path(tmp)
        if on_disk:
            torch.save(bad, tmp / "bad.pt")
        else:
            save_checkpoint(bad, tmp / "bad.pt")
        out = tmp / "out"
        code, err = build(tmp / "bad.pt", out)
        check_outcome(code, err, out, base_widths)


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_harmless_damage_builds_a_project_that_passes_csim(base, tmp_path):
    """Damage the rules accept (levels stored as whole floats, balance_pe dropped, an unknown
    top-level key) builds with the same widths and a C++ that equals its reference."""
    ckpt, _, base_widths, _, _ = base
    bad = copy.deepcopy(ckpt)
    bad["layers"]["fc1"]["levels"] = bad["layers"]["fc1"]["levels"].to(torch.float64)
    del bad["balance_pe"]
    bad["notes"] = "added by hand"
    torch.save(bad, tmp_path / "bad.pt")
    code, err = build(tmp_path / "bad.pt", tmp_path / "out")
    assert code == 0, err
    assert widths(tmp_path / "out") == base_widths
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["csim", str(tmp_path / "out")]) == 0, out.getvalue()
    assert "csim PASS" in out.getvalue()
