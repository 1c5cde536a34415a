import pickle
from pathlib import Path

import pytest
import torch

from admm_hls.compress.checkpoint import FORMAT, VERSION, load_checkpoint, model_from_checkpoint, save_checkpoint
from admm_hls.errors import UserError
from admm_hls.zoo import build_model


def _minimal(tmp_path: Path) -> dict:
    """A small valid checkpoint: fc1 carries a codebook (its weights exactly 0.25 * levels), the
    other layers none."""
    model = build_model("lenet5")
    levels = torch.randint(-3, 4, (500, 800), generator=torch.Generator().manual_seed(0), dtype=torch.int8)
    state = model.state_dict()
    state["fc1.weight"] = (levels.double() * 0.25).float()
    layers = {n: {"levels": None, "scale": None, "bits": None} for n in ("conv1", "conv2", "fc2")}
    layers["fc1"] = {"mask": levels != 0, "levels": levels, "scale": 0.25, "bits": 3,
                     "nonzeros": int((levels != 0).sum())}
    return {
        "format": FORMAT, "version": VERSION,
        "arch": {"name": "lenet5", "kwargs": {}},
        "input_shape": [1, 28, 28],
        "state_dict": state,
        "layers": layers,
        "accuracy": {"dense": 0.99}, "recipe": {"batch_size": 128, "schedule": (0.5, 0.75)},
        "calibration": {"ranges": {"x": [-0.4, 2.8]}},
    }


def test_round_trip_with_weights_only(tmp_path):
    ckpt = _minimal(tmp_path)
    path = tmp_path / "m.pt"
    save_checkpoint(ckpt, path)
    # A plain weights_only load works: nothing in the file needs arbitrary unpickling.
    raw = torch.load(path, weights_only=True)
    assert raw["layers"]["fc1"]["scale"] == 0.25
    back = load_checkpoint(path)
    assert back["calibration"] == ckpt["calibration"]
    model = model_from_checkpoint(back)
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(model.state_dict()[k], v)


def test_save_is_deterministic(tmp_path):
    ckpt = _minimal(tmp_path)
    save_checkpoint(ckpt, tmp_path / "a.pt")
    save_checkpoint(ckpt, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


class _Payload:
    """Unpickling this object would create a marker file: the code a malicious file runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_that_runs_code_is_refused_and_code_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = _minimal(tmp_path)
    ckpt["extra"] = _Payload(marker)
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path)
    # Sanity: a plain unpickling load would run the payload.
    with pytest.raises(UserError, match="arbitrary code"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_raw_pickle_and_foreign_files_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UserError):
        load_checkpoint(raw)
    assert not marker.exists()
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(UserError, match="not an admm-hls checkpoint"):
        load_checkpoint(plain)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a readable torch checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError):
        save_checkpoint({"format": FORMAT}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []
