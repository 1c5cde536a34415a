"""The whole compression pipeline on a small synthetic set (the real-data run is a benchmark)."""

import pytest
import torch

from admm_hls.compress.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from admm_hls.compress.pipeline import Compressor
from admm_hls.compress.projection import max_level
from admm_hls.compress.recipe import recipe_from_dict
from admm_hls.datasets import Split
from admm_hls.errors import UserError

TINY = {
    "model": "lenet5",
    "batch_size": 64,
    "calibration_batches": 2,
    "dense": {"epochs": 1},
    "prune": {"keep": {"conv1": 0.5, "conv2": 0.1, "fc1": 0.01, "fc2": 0.2}, "admm_iterations": 2,
              "epochs_per_iteration": 1, "rho": 0.01, "retrain_epochs": 1},
    "quantize": {"bits": 3, "bits_layers": {"fc1": 2}, "admm_iterations": 2, "epochs_per_iteration": 1,
                 "freeze_schedule": [0.5, 0.8], "epochs_per_freeze": 1},
}


def _data(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randn(n, 1, 28, 28, generator=g) * 0.3
    images[torch.arange(n), 0, labels * 2 + 3, 5:23] += 2.0  # a learnable class signal
    return Split(images, labels)


@pytest.fixture(scope="module")
def compressed():
    c = Compressor(recipe_from_dict(TINY), _data(384, 0), _data(128, 1), seed=3, log=lambda s: None)
    return c, c.run()


def test_exact_sparsity_and_levels(compressed):
    c, ckpt = compressed
    for name, w in c.weights.items():
        layer = ckpt["layers"][name]
        assert int((w != 0).sum()) == layer["nonzeros"] == c.k[name]
        levels = layer["levels"].to(torch.int64)
        top = max_level(layer["bits"])
        assert torch.equal(levels != 0, layer["mask"])
        assert int(levels.abs().max()) <= top
        # Every weight sits exactly on its level: the float weight is scale * level.
        assert torch.equal(ckpt["state_dict"][f"{name}.weight"], (levels.double() * layer["scale"]).float())
    assert ckpt["layers"]["fc1"]["bits"] == 2 and set(ckpt["layers"]["fc1"]["levels"].unique().tolist()) <= {-1, 0, 1}


def test_history_logs_rho_and_residuals(compressed):
    c, ckpt = compressed
    prune = [h for h in ckpt["history"] if h["stage"] == "admm-prune"]
    assert [h["iteration"] for h in prune] == [1, 2]
    assert prune[1]["rho"]["fc1"] == pytest.approx(prune[0]["rho"]["fc1"] * 1.3)
    assert set(prune[0]["residual"]) == set(c.weights)
    assert set(ckpt["accuracy"]) == {"dense", "admm", "retrained", "quantized"}


def test_checkpoint_round_trip_and_calibration(compressed, tmp_path):
    c, ckpt = compressed
    save_checkpoint(ckpt, tmp_path / "c.pt")
    back = load_checkpoint(tmp_path / "c.pt")
    model = model_from_checkpoint(back)
    x = _data(16, 5).images
    assert torch.equal(model(x), c.model.eval()(x))
    ranges = back["calibration"]["ranges"]
    assert {"x", "conv1", "fc1", "relu", "fc2"} <= set(ranges)
    assert ranges["relu"][0] == 0.0 and ranges["x"][0] < 0 < ranges["x"][1]


def test_same_seed_same_bytes(compressed, tmp_path):
    _, ckpt = compressed
    again = Compressor(recipe_from_dict(TINY), _data(384, 0), _data(128, 1), seed=3, log=lambda s: None).run()
    save_checkpoint(ckpt, tmp_path / "a.pt")
    save_checkpoint(again, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_recipe_errors_are_clear():
    with pytest.raises(UserError, match="unknown key\\(s\\) epochz"):
        recipe_from_dict({"dense": {"epochz": 3}})
    bad = dict(TINY, prune={"keep": {"conv9": 0.5}})
    with pytest.raises(UserError, match="unknown layer\\(s\\) conv9"):
        Compressor(recipe_from_dict(bad), _data(8, 0), _data(8, 1))


def test_hardware_aware_targets_from_a_recipe():
    def keep(mode):
        recipe = recipe_from_dict(dict(TINY, prune={"target_ratio": 40, "target_mode": mode}))
        return Compressor(recipe, _data(8, 0), _data(8, 1), log=lambda s: None).keep

    storage, compute = keep("storage"), keep("computation")
    assert compute["conv2"] < storage["conv2"]
    assert compute["fc1"] > storage["fc1"]
    lines = []
    Compressor(recipe_from_dict(TINY), _data(8, 0), _data(8, 1), log=lines.append).log_targets()
    assert "fc1 keep 4,000/400,000 (100.0x, break-even" in lines[0]
