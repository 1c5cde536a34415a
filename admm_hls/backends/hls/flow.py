"""The Vitis HLS tool flows of a project: ``run_hls.tcl`` (vitis_hls), ``hls_config.cfg``
(v++ --mode hls) and a ``Makefile`` whose csim compiles as ``sim.csim`` does."""

from __future__ import annotations

from typing import Any

from ...resources import template_env

FLOW_TARGET = "vivado"  # a Vivado IP, exported to the IP catalog (the tcl and cfg agree)
CFLAGS = "-std=c++14"

__all__ = ["FLOW_TARGET", "CFLAGS", "flow_context", "flow_files", "blob_file"]


def blob_file(files: dict[str, bytes]) -> str | None:
    """The weight blob among the files (the renderer puts it where its test bench reads it)."""
    found = sorted(p for p in files if p.rsplit("/", 1)[-1] == "weights.bin")
    return found[0] if found else None


def _num(x: float) -> str:
    """5.0 -> '5', 3.3 -> '3.3': the clock as a tool reads it."""
    return f"{float(x):g}"


def flow_context(model: str, version: str, top: str, part: str, clock_ns: float,
                 files: dict[str, bytes]) -> dict[str, Any]:
    from ...sim import csim

    syn = sorted(p for p in files if p.startswith("firmware/") and p.endswith(".cpp"))
    tb_sources = sorted(p for p in files if p.startswith("tb/") and p.endswith(".cpp"))
    tb_files = sorted(p for p in files if p.startswith("tb/data/"))
    return {
        "model": model, "version": version, "top": top, "part": part, "clock_ns": _num(clock_ns),
        "flow_target": FLOW_TARGET, "cflags": CFLAGS,
        # make csim compiles as admm_hls.sim.csim.run_csim does
        "cxxflags": " ".join(csim.CXXFLAGS), "defines": " ".join(csim.DEFINES), "build_dir": csim.BUILD_DIR,
        "syn_files": syn, "tb_sources": tb_sources, "tb_files": tb_files,
        # Tcl adds the data folder whole (add_files -tb takes folders); the cfg lists every file
        # (UG1399: "one statement per file")
        "tcl_tb_files": ["tb/data"] + [f for f in tb_files if not f.startswith("tb/data/")],
        # the test bench's main(n, data folder, outputs file): an absolute data folder in the
        # vendor flows, whatever folder they run it from
        "argv_option": ' -argv "-1 ${root}/tb/data"',
    }


def flow_files(ctx: dict[str, Any]) -> dict[str, bytes]:
    env = template_env("hls/project")
    return {name: env.get_template(f"{name}.j2").render(**ctx).encode()
            for name in ("run_hls.tcl", "hls_config.cfg", "Makefile")}
