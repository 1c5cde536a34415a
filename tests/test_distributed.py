"""Training on any data, the device choice, and several processes (torch.distributed)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from admm_hls.compress.checkpoint import load_checkpoint
from admm_hls.compress.device import resolve_device
from admm_hls.compress.pipeline import Compressor
from admm_hls.compress.recipe import load_recipe, recipe_from_dict
from admm_hls.compress.training import DistillSpec, OptimizerSpec, evaluate, predict, train_stage
from admm_hls.datasets import DATA_ENV, Split
from admm_hls.errors import UserError
from test_pipeline import TINY, _as_dataset, _data

REPO = Path(__file__).resolve().parent.parent


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="device 'cuda' asked for but torch sees no GPU"):
            resolve_device("cuda")


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 5, stride=3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def test_dataset_evaluation_equals_the_split_path():
    model, test = _small_cnn(), _data(300, 1)
    # Same samples, same batches, same order: the loader path gives the very same logits.
    assert torch.equal(predict(model, _as_dataset(test), 128, device="cpu"), predict(model, test, 128))
    assert evaluate(model, _as_dataset(test), 128) == evaluate(model, test, 128)
    assert evaluate(model, _as_dataset(Split(test.images[:0], test.labels[:0]))) == 0.0


class _Roll(nn.Module):
    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.roll(1, dims=1)  # class c's logit becomes class c + 1's


def test_dataset_training_learns_deterministically_and_distills_from_a_frozen_model():
    train, test = _data(512, 0), _data(256, 1)
    adam = OptimizerSpec("adam", lr=5e-3)

    def run(seed, **kwargs):
        model = _small_cnn()
        loss = train_stage(model, _as_dataset(train), 2, adam, 64, torch.Generator().manual_seed(seed), device="cpu",
                           **kwargs)
        return model, loss

    model, loss = run(0)
    assert evaluate(model, _as_dataset(test)) > 0.8 and loss < 2.0  # chance: 10%, ln 10 = 2.3
    again, _ = run(0)
    other, _ = run(1)
    params = lambda m: torch.cat([p.detach().reshape(-1) for p in m.parameters()])  # noqa: E731
    assert torch.equal(params(model), params(again))  # the seeded generator fixes the shuffle
    assert not torch.equal(params(model), params(other))

    # A teacher that answers label + 1: a student taught by it alone learns its answers, so it
    # can only have seen the teacher's logits, run on each of its batches.
    teacher = nn.Sequential(model, _Roll()).eval().requires_grad_(False)
    student, _ = run(0, distill=DistillSpec(alpha=1.0, temperature=2.0), teacher=teacher)
    answers = predict(student, test).argmax(1)
    assert (answers == predict(teacher, test).argmax(1)).float().mean() > 0.8
    assert (answers == test.labels).float().mean() < 0.2
    with pytest.raises(ValueError, match="pass the frozen teacher model"):
        run(0, distill=DistillSpec(alpha=0.5), teacher=torch.zeros(512, 10))


def test_compressor_on_datasets_reaches_the_exact_counts():
    recipe = recipe_from_dict(dict(TINY, holdout=0, distill={"alpha": 0.5, "temperature": 3.0},
                                   prune=dict(TINY["prune"], admm_iterations=1),
                                   quantize=dict(TINY["quantize"], admm_iterations=1, freeze_schedule=[0.5])))
    c = Compressor(recipe, _as_dataset(_data(192, 0)), _as_dataset(_data(64, 1)), seed=3, log=lambda s: None,
                   device="cpu")
    ckpt = c.run()
    # holdout needs a Split (pipeline refuses it for a Dataset): per-iteration accuracies on the test data
    assert isinstance(c.teacher, nn.Module) and len(c.train) == 192 and len(c.val) == 64
    for name in c.weights:
        assert ckpt["layers"][name]["nonzeros"] == c.k[name]
    assert {"x", "conv1", "fc2"} <= set(ckpt["calibration"]["ranges"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agree_worker(rank: int, port: int, results) -> None:
    """Two checks on two gloo ranks: the same tensors, then one value changed on rank 1."""
    import torch.distributed as dist

    from admm_hls.compress import distributed

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        tensors = {"mask": torch.ones(3, 4, dtype=torch.bool), "w": torch.arange(6.0).reshape(2, 3)}
        for case in ("same", "differ"):
            if case == "differ" and rank == 1:
                tensors["w"][1, 2] += 1e-6
            try:
                results.put((case, rank, "ok", distributed.check_agree(tensors, "the test tensors")))
            except UserError as exc:
                results.put((case, rank, "error", str(exc)))
    finally:
        dist.destroy_process_group()


def test_check_agree_catches_one_differing_tensor():
    results = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_agree_worker, args=(_free_port(), results), nprocs=2, start_method="spawn")
    got = {}
    while not results.empty():
        case, rank, status, text = results.get()
        got[case, rank] = (status, text)
    assert got["same", 0] == got["same", 1] and got["same", 0][0] == "ok"
    for rank in (0, 1):  # every rank stops with the error, none is left waiting
        status, text = got["differ", rank]
        assert status == "error"
        assert "2 processes disagree on the test tensors: w differ(s) between rank 0 and rank(s) 1" in text


TWO_PROCESS_RECIPE = """
model = "lenet5"
dataset = "mnist"
batch_size = 128
calibration_batches = 1
holdout = 128
distill = { alpha = 0.5, temperature = 4.0 }
[dense]
epochs = 1
[prune]
keep = { conv1 = 0.6, conv2 = 0.1, fc1 = 0.01, fc2 = 0.1 }
admm_iterations = 1
epochs_per_iteration = 1
rho = 0.1
retrain_epochs = 1
balance_pe = 4
[quantize]
bits = 3
admm_iterations = 1
epochs_per_iteration = 1
freeze_schedule = [0.5]
epochs_per_freeze = 1
"""


def test_two_processes_compress_one_agreed_checkpoint(mnist_dir, tmp_path):
    from admm_hls.ir.lower import lower

    recipe_path = tmp_path / "tiny.toml"
    recipe_path.write_text(TWO_PROCESS_RECIPE)
    out = tmp_path / "out"
    env = dict(os.environ, **{DATA_ENV: str(mnist_dir)})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "admm_hls.cli", "compress", "--model", "lenet5", "--dataset", "mnist", "--recipe", str(recipe_path),
           "--out", str(out / "c.pt"), "--limit-train", "1024", "--limit-test", "256", "--threads", "1"]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [p.name for p in out.iterdir()] == ["c.pt"]  # rank 0 alone wrote, no leftovers
    # Rank 0 alone logs: every line once, the agreement of the ranks among them.
    assert run.stdout.count("2 processes agree on the final weights, masks and levels (sha256 ") == 1
    assert run.stdout.count("dense: accuracy") == 1 and run.stdout.count("wrote ") == 1
    ckpt = load_checkpoint(out / "c.pt")
    lower(ckpt)
    targets = Compressor(load_recipe(recipe_path), _data(1024, 0), _data(8, 1), log=lambda s: None).k
    assert {n: layer["nonzeros"] for n, layer in ckpt["layers"].items()} == targets
    assert ckpt["accuracy"]["quantized"] > 0.3
