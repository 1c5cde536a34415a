"""The command line, end to end, as a user runs it."""

import json
import subprocess
import sys


TINY_RECIPE = """
model = "lenet5"
dataset = "mnist"
batch_size = 64
calibration_batches = 2
[dense]
epochs = 1
[prune]
keep = { conv1 = 0.5, conv2 = 0.1, fc1 = 0.01, fc2 = 0.2 }
admm_iterations = 2
epochs_per_iteration = 1
rho = 0.01
retrain_epochs = 1
[quantize]
bits = 3
admm_iterations = 1
freeze_schedule = [0.5]
"""


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "admm_hls.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_compress_and_inspect_end_to_end(mnist_dir, tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    out = tmp_path / "lenet5.pt"
    proc = run_cli("compress", "--model", "lenet5", "--dataset", "mnist", "--recipe", str(recipe), "--out", str(out),
                   "--data-dir", str(mnist_dir), "--limit-train", "384", "--limit-test", "200", "--seed", "1",
                   "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    assert "admm-prune 2/2: test accuracy" in proc.stdout and "|W-Z|/|W|" in proc.stdout
    assert out.is_file()
    report = run_cli("inspect", str(out))
    assert report.returncode == 0, report.stderr
    assert "fc1" in report.stdout and "break-even" in report.stdout and "MAC reduction" in report.stdout
    summary = json.loads(run_cli("inspect", str(out), "--json").stdout)
    fc1 = next(r for r in summary["layers"] if r["layer"] == "fc1")
    assert fc1["nonzeros"] == 4000 and fc1["bits"] == 3 and fc1["macs_sparse"] == 4000
    assert summary["totals"]["weights"] == 430_500


def test_missing_data_folder_gives_one_clear_line(tmp_path):
    proc = run_cli("compress", "--model", "lenet5", "--dataset", "mnist", "--out", str(tmp_path / "x.pt"),
                   "--data-dir", str(tmp_path / "no-mnist-here"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "no-mnist-here does not exist" in lines[0] and "--data-dir" in lines[0]
    assert not (tmp_path / "x.pt").exists()


def test_unsafe_checkpoint_is_refused_by_inspect(tmp_path):
    evil = tmp_path / "evil.pt"
    marker = tmp_path / "ran"
    code = (f"import torch, pathlib\nclass P:\n    def __reduce__(self):\n        return (pathlib.Path.touch, "
            f"(pathlib.Path({str(marker)!r}),))\ntorch.save({{'format': 'admm-hls-checkpoint', 'x': P()}}, {str(evil)!r})")
    subprocess.run([sys.executable, "-c", code], check=True)
    proc = run_cli("inspect", str(evil))
    assert proc.returncode == 2 and "arbitrary code" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_shipped_checkpoint_inspects():
    proc = run_cli("inspect")
    assert proc.returncode == 0, proc.stderr
    assert "lenet5" in proc.stdout and "total" in proc.stdout


def test_format_and_filler_cap_options():
    """--format dense stores every layer dense; --max-fillers widens index fields until the
    fillers fit; a cap outside [0, 100) is one line, exit 2."""
    import json

    def layers(*options):
        proc = run_cli("inspect", "--json", *options)
        assert proc.returncode == 0, proc.stderr
        return {row["layer"]: row for row in json.loads(proc.stdout)["layers"]}

    # The shipped LeNet-5 is pruned for balanced PEs, so by default its streams hold no fillers;
    # a cap of 99.9% lets the packer choose the fewest bits again.
    default, free = layers(), layers("--max-fillers", "99.9")
    capped, dense = layers("--max-fillers", "10"), layers("--format", "dense")
    assert all(row["bits_fillers"] == 0 for row in default.values() if row["format"] == "relative")
    assert any(row["bits_fillers"] > 0 for row in free.values() if row["format"] == "relative")
    assert {row["format"] for row in dense.values()} == {"dense"}
    assert all(row["reason"].startswith("dense (forced)") for row in dense.values())
    assert any(capped[k]["index_bits"] > free[k]["index_bits"] for k in free)
    for row in capped.values():
        if row["format"] == "relative":
            assert row["bits_fillers"] <= 0.10 * (row["bits_entries"] + row["bits_fillers"])
    proc = run_cli("inspect", "--max-fillers", "120")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "--max-fillers 120 is not a percentage" in proc.stderr
