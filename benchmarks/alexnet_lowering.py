"""AlexNet-size lowering: lower+pack time and peak RSS against a plain torch.load of the same file.

    python benchmarks/alexnet_lowering.py [--keep-file PATH]

The checkpoint is the zoo's AlexNet with random weights, pruned by projection to the per-layer
keep ratios of the ADMM AlexNet result (.81/.20/.19/.20/.20/.028/.059/.093 of conv1..fc8 kept)
with 5-bit conv and 3-bit fc levels. Each measurement runs in its own process after the imports,
so its peak RSS is its own; "added" is the peak minus the RSS right before the measured call.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEEP = [0.81, 0.20, 0.19, 0.20, 0.20, 0.028, 0.059, 0.093]
LAYERS = ["features.0", "features.3", "features.6", "features.8", "features.10",
          "classifier.1", "classifier.4", "classifier.6"]

MEASURE = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(2)
import admm_hls.cli, admm_hls.ir.lower, admm_hls.build.project  # imports are not the measured work
import torch.fx.passes.shape_prop
def rss():
    # VmHWM: this process's own peak (ru_maxrss can carry the parent's peak over the exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
path, what, out = sys.argv[1], sys.argv[2], sys.argv[3]
before = rss()
t = time.perf_counter()
if what == "torch.load":
    obj = torch.load(path, map_location="cpu", weights_only=True)
elif what == "lower":
    obj = admm_hls.ir.lower.lower(path)
else:
    code = admm_hls.cli.main(["build", path, "--out", out, "--force", "--vectors", "1"])
    assert code == 0, code
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "peak_mb": rss(), "added_mb": rss() - before}))
"""


def make_checkpoint(path: Path, version: int = 1) -> None:
    """Version 1 (every tensor dense) by default: the time and memory goals here and in
    hls_build.py compare lowering with a torch.load of the full-size dense file."""
    import torch

    from admm_hls.compress.checkpoint import save_checkpoint
    from admm_hls.compress.oneshot import project_checkpoint

    keep = dict(zip(LAYERS, KEEP))
    bits = {n: 5 if n.startswith("features") else 3 for n in LAYERS}
    g = torch.Generator().manual_seed(0)
    save_checkpoint(project_checkpoint("alexnet", keep, bits, torch.randn(8, 3, 224, 224, generator=g)), path,
                    version=version)


def measure(path: Path, what: str, out: Path | None = None) -> dict:
    """Run one of torch.load / lower / build in a fresh process; its time and peak RSS."""
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(path), what, str(out or "")], check=True,
                          capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep-file", help="write/reuse the checkpoint here instead of a temporary file")
    ap.add_argument("--repeat", type=int, default=3, help="measure each side this many times, report the best")
    ap.add_argument("--json", default="benchmarks/results/alexnet_lowering.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep_file or Path(tmp) / "alexnet_admm.pt")
        if not path.exists():
            t = time.perf_counter()
            make_checkpoint(path)
            print(f"made {path} in {time.perf_counter() - t:.1f}s")
        size_mb = path.stat().st_size / 2**20
        measure(path, "torch.load")  # warm the page cache for both sides alike
        load = min((measure(path, "torch.load") for _ in range(args.repeat)), key=lambda r: r["seconds"])
        low = min((measure(path, "lower") for _ in range(args.repeat)), key=lambda r: r["seconds"])
    result = {"file_mb": size_mb, "torch_load": load, "lower_pack": low,
              "time_ratio": low["seconds"] / load["seconds"], "peak_rss_over_file": low["peak_mb"] / size_mb,
              "added_rss_over_file": low["added_mb"] / size_mb}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"AlexNet checkpoint: {size_mb:.0f} MiB (61.1M weights, 2.9M kept)")
    print(f"{'':12s} {'seconds':>8s} {'peak RSS MiB':>13s} {'added MiB':>10s}")
    for label, r in (("torch.load", load), ("lower+pack", low)):
        print(f"{label:12s} {r['seconds']:8.2f} {r['peak_mb']:13.0f} {r['added_mb']:10.0f}")
    print(f"lower+pack / torch.load time: {result['time_ratio']:.1f}x (goal <= 3x); peak RSS / file size: "
          f"{result['peak_rss_over_file']:.2f}x, added RSS / file size: {result['added_rss_over_file']:.2f}x (goal <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
