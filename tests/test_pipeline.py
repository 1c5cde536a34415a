"""The whole compression pipeline on a small synthetic set (the real-data run is a benchmark)."""

import pytest
import torch
from torch.utils.data import TensorDataset

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


def _as_dataset(split: Split) -> TensorDataset:
    """The same images as a map-style Dataset (the DataLoader path of the training engine)."""
    return TensorDataset(split.images, split.labels)


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
    for key, value in c.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
        assert model.state_dict()[key].is_contiguous()  # saved plain, whatever layout training used
    # Training runs convolutions channels-last: same values, float sums in another order.
    torch.testing.assert_close(model(x), c.model.eval()(x), rtol=1e-5, atol=1e-6)
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


def test_distillation_loss_by_hand():
    from admm_hls.compress.training import DistillSpec

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    teacher = torch.tensor([[3.0, 1.0, 0.0], [-1.0, 2.0, 2.5]])
    labels = torch.tensor([0, 2])
    t, alpha = 2.0, 0.75
    p_s = torch.softmax(logits / t, 1)
    p_t = torch.softmax(teacher / t, 1)
    kl = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * t * t
    ce = -torch.log_softmax(logits, 1)[torch.arange(2), labels].mean()
    got = DistillSpec(alpha=alpha, temperature=t).loss(logits, labels, teacher)
    assert float(got) == pytest.approx(float(alpha * kl + (1 - alpha) * ce), rel=1e-6)
    assert float(DistillSpec().loss(logits, labels, teacher)) == pytest.approx(float(ce))  # alpha 0: plain CE


PROGRESSIVE = dict(TINY, holdout=64, distill={"alpha": 0.5, "temperature": 3.0},
                   prune=dict(TINY["prune"], rounds=[0.5, 1.0], balance_pe=4))


@pytest.fixture(scope="module")
def progressive():
    stages = []

    class Watched(Compressor):
        def hard_prune(self, label, k=None):
            acc = super().hard_prune(label, k)
            stages.append({n: m.clone() for n, m in self.masks.items()})
            return acc

    c = Watched(recipe_from_dict(PROGRESSIVE), _data(384, 0), _data(128, 1), seed=3, log=lambda s: None)
    return c, c.run(), stages


def test_progressive_rounds_nest_and_masks_and_levels_survive_every_stage(progressive):
    c, ckpt, stages = progressive
    first, final = stages
    assert len(c.train.labels) == 320 and len(c.val.labels) == 64 and c.teacher.shape == (320, 10)
    for name, w in c.weights.items():
        assert int(first[name].sum()) > int(final[name].sum()) == c.k[name]
        assert not (final[name] & ~first[name]).any()  # round 2 prunes inside round 1's mask
        assert torch.equal(c.masks[name], final[name])  # retraining and quantization kept it
        assert torch.equal(ckpt["layers"][name]["levels"] != 0, final[name])
        assert int((w != 0).sum()) == c.k[name]
    rounds = [h for h in ckpt["history"] if h["stage"].startswith("admm-prune round")]
    assert len(rounds) == 4 and {h["split"] for h in rounds} == {"holdout"}
    assert {"admm round 1", "admm", "retrained", "quantized"} <= set(ckpt["accuracy"])


def test_balanced_pruning_gives_equal_lockstep_slots_and_build_uses_its_pe(progressive):
    from admm_hls.hw.plan import make_plan
    from admm_hls.ir.lower import lower

    c, ckpt, _ = progressive
    assert ckpt["balance_pe"] == 4
    for name, mask in c.masks.items():
        rows = mask.reshape(mask.shape[0], -1).sum(1)
        for slot in torch.sort(rows, descending=True).values.split(min(4, len(rows))):
            assert len(set(slot.tolist())) == 1, name
    graph = lower(ckpt)
    plan = make_plan(graph)
    assert plan.pe == 4 and make_plan(graph, pe=2).pe == 2
    for layer in plan.layers.values():
        if layer.schedule is not None and layer.stream.format == "relative":
            assert int(layer.stream.entries.sum()) == int(layer.stream.nonzeros.sum())  # no fillers
            # Lockstep lanes are never padded: only empty rows still issue their one bubble, and
            # the lanes a short last slot (rows % G) leaves without a row idle through it.
            sched = layer.schedule
            idle = (sched.groups - layer.stream.rows % sched.groups) * int(sched.slot_count[-1]) \
                if layer.stream.rows % sched.groups else 0
            empty = int((layer.stream.nonzeros == 0).sum())
            assert sched.entries * sched.groups - int(layer.stream.entries.sum()) <= empty + idle


@pytest.mark.parametrize("method", ["magnitude", "gradual"])
def test_magnitude_controls_reach_the_same_counts(method):
    recipe = recipe_from_dict(dict(PROGRESSIVE, prune=dict(PROGRESSIVE["prune"], method=method, gradual_epochs=1)))
    c = Compressor(recipe, _data(256, 0), _data(64, 1), seed=1, log=lambda s: None)
    c.train_dense()
    c.prune()
    c.retrain(1)
    for name, w in c.weights.items():
        assert int((w != 0).sum()) == int(c.masks[name].sum()) == c.k[name]
    assert method in c.accuracy and "admm" not in c.accuracy


@pytest.mark.parametrize("change, message", [
    ({"prune": {"method": "lottery"}}, "prune.method 'lottery' is unknown"),
    ({"prune": {"rounds": [1.0, 0.5]}}, "must rise from above 0 to exactly 1.0"),
    ({"prune": {"rounds": [0.5]}}, "must rise from above 0 to exactly 1.0"),
    ({"prune": {"balance_pe": -1}}, "balance_pe -1 must be >= 0"),
    ({"holdout": 8}, "holdout 8 must be >= 0 and leave training images"),
    ({"distill": {"alpha": 2.0}}, "0 <= alpha <= 1"),
])
def test_new_recipe_keys_are_checked(change, message):
    with pytest.raises(UserError, match=message.replace("(", "\\(").replace("[", "\\[")):
        Compressor(recipe_from_dict(dict(TINY, **change)), _data(8, 0), _data(8, 1))
