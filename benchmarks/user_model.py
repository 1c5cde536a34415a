"""A model defined outside the package, end to end from the command line, and one recipe on one
process against two (torchrun, gloo).

    ADMM_HLS_DATA=/path/to/mnist python benchmarks/user_model.py [--epoch-scale F] [--limit-train N]

1. ``compress --model FILE.py:SmallNet`` on MNIST with the generic recipe (scaled by
   --epoch-scale), ``build --model FILE.py:SmallNet``, ``csim`` and ``rtlsim`` on Verilator.
2. ``compress --model lenet5`` with the generic recipe, the same options, on 1 process and under
   ``torchrun --nproc_per_node 2``: wall time and accuracies of each.
Results: benchmarks/results/user_model.json. Run it alone: two runs sharing the cores would time
each other.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

MODEL = '''
from torch import nn


class SmallNet(nn.Module):
    """Defined outside admm-hls: conv, pool, conv, pool, two linear layers."""

    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x):
        return self.head(self.body(x))
'''


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def line_starting(text: str, word: str) -> str:
    """The first output line that starts with ``word`` (a status or total line)."""
    return next(line.strip() for line in text.splitlines() if line.startswith(word))


def accuracies(path: Path) -> dict:
    from admm_hls.compress.checkpoint import load_checkpoint

    return load_checkpoint(path, trust_model_code=True)["accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epoch-scale", type=float, default=0.25)
    ap.add_argument("--limit-train", type=int, default=20000)
    ap.add_argument("--out", default=str(HERE / "results" / "user_model.json"))
    args = ap.parse_args()
    cli = [sys.executable, "-m", "admm_hls.cli"]
    common = ["--dataset", "mnist", "--target-ratio", "8", "--bits", "4", "--epoch-scale", str(args.epoch_scale),
              "--limit-train", str(args.limit_train), "--seed", "0"]
    result = {"epoch_scale": args.epoch_scale, "limit_train": args.limit_train}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "smallnet.py").write_text(MODEL)
        spec = f"{tmp / 'smallnet.py'}:SmallNet"
        user = {}
        user["compress_seconds"], _ = run(cli + ["compress", "--model", spec, "--input-shape", "1,28,28", "--out", "small.pt",
                                                 "--threads", "2"] + common, tmp)
        user["accuracy"] = accuracies(tmp / "small.pt")
        user["checkpoint_bytes"] = (tmp / "small.pt").stat().st_size
        user["build_seconds"], _ = run(cli + ["build", "small.pt", "--model", spec, "--out", "hls", "--vectors", "4"],
                                       tmp)
        user["csim_seconds"], out = run(cli + ["csim", "hls"], tmp)
        user["csim"] = line_starting(out, "csim")
        user["rtlsim_seconds"], out = run(cli + ["rtlsim", "hls", "--simulator", "verilator"], tmp)
        user["rtlsim"] = line_starting(out, "rtlsim")
        user["rtl_cycles_total_ideal_utilization"] = line_starting(out, "total")
        result["user_model"] = user

        procs = {}
        for n in (1, 2):
            launch = cli if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                         "--nproc_per_node", str(n), "-m", "admm_hls.cli"]
            threads = ["--threads", str(2 // n)]  # the 2 cores shared out among the ranks
            seconds, _ = run(launch + ["compress", "--model", "lenet5", "--recipe", "generic",
                                       "--out", f"lenet5_{n}.pt"] + threads + common, tmp)
            procs[str(n)] = {"seconds": seconds, "accuracy": accuracies(tmp / f"lenet5_{n}.pt")}
        result["processes"] = procs
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
