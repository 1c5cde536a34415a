"""C simulation with plain g++: compile a rendered HLS project's firmware and testbench against
Xilinx's ap_types headers (shipped by hls4ml), run it on the test vectors, parse its verdict."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

AP_TYPES_ENV = "ADMM_HLS_AP_TYPES"
AP_TYPES_HINT = ("Xilinx ap_types headers not found: pip install --no-deps hls4ml==1.3.0 "
                 f"(or set {AP_TYPES_ENV} to a folder with ap_int.h)")
GXX_HINT = "g++ not found: install a C++ compiler (apt-get install g++) or put g++ on PATH"
CXXFLAGS = ("-std=c++14", "-O2", "-Wall", "-Wextra")
DEFINES = ("-DADMM_HLS_TRACE",)  # the testbench locates the first failing layer
BUILD_DIR = "csim_build"

__all__ = ["CsimResult", "run_csim", "find_ap_types", "find_compiler", "AP_TYPES_ENV"]


@dataclass
class CsimResult:
    passed: bool
    n: int  # vectors run
    mismatches: int  # vectors whose output (or, for vector 0, any layer's output) differs
    first_failure: str | None  # e.g. "vector 0: first failing layer conv2, element 17: expected 5, got 6"
    outputs: np.ndarray  # (n, outputs) int64: what the C++ computed
    seconds: float  # wall time: build (0 when reused) + run
    build_seconds: float = 0.0
    rebuilt: bool = False
    build_log: str = ""  # compiler output (warnings) of the latest build
    stdout: str = ""
    returncode: int = 0
    failures: list[str] = field(default_factory=list)


def find_ap_types() -> Path:
    """The folder with ap_int.h: $ADMM_HLS_AP_TYPES, else hls4ml's templates/vivado/ap_types
    (located without importing hls4ml)."""
    env = os.environ.get(AP_TYPES_ENV)
    if env:
        path = Path(env).expanduser()
        if (path / "ap_int.h").is_file():
            return path.resolve()
        raise UserError(f"{AP_TYPES_ENV}={env} has no ap_int.h: " + AP_TYPES_HINT)
    try:
        spec = importlib.util.find_spec("hls4ml")
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "templates" / "vivado" / "ap_types"
        if (path / "ap_int.h").is_file() and (path / "hls_stream.h").is_file():
            return path.resolve()
    raise UserError(AP_TYPES_HINT)


def find_compiler() -> str:
    gxx = shutil.which(os.environ.get("CXX") or "g++") or shutil.which("g++")
    if not gxx:
        raise UserError(GXX_HINT)
    return gxx


def _sources(project: Path) -> tuple[list[Path], Path]:
    firmware = sorted((project / "firmware").glob("*.cpp"))
    tbs = sorted((project / "tb").glob("tb_*.cpp"))
    if not firmware or len(tbs) != 1:
        raise UserError(f"{project} is not an admm-hls HLS project: it needs firmware/*.cpp and one tb/tb_<top>.cpp")
    return firmware, tbs[0]


def _fingerprint(project: Path, gxx: str, ap_types: Path, flags: list[str]) -> str:
    h = hashlib.sha256()
    h.update("\0".join([gxx, str(ap_types), *flags]).encode())
    try:
        h.update(subprocess.run([gxx, "--version"], capture_output=True, text=True, check=False).stdout.encode())
    except OSError:
        pass
    for folder in ("firmware", "tb"):
        for path in sorted((project / folder).rglob("*")):
            if path.is_file() and path.suffix in (".h", ".hpp", ".cpp", ".cc"):
                h.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _build(project: Path, build: Path, gxx: str, flags: list[str], jobs: int) -> str:
    firmware, tb = _sources(project)
    objects, procs, log = [], [], []
    pending = [(src, build / f"{src.parent.name}_{src.stem}.o") for src in [*firmware, tb]]

    def finish(proc, src):
        out, _ = proc.communicate()
        log.append(out)
        if proc.returncode != 0:
            for p, _s in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            (build / "build.log").write_text("".join(log))
            first = next((ln for ln in out.splitlines() if "error" in ln), out.strip().splitlines()[-1:] or [""])
            raise UserError(f"C simulation build failed on {src.relative_to(project)}: {str(first).strip()} "
                            f"(full log: {build / 'build.log'})")

    for src, obj in pending:
        while len(procs) >= max(1, jobs):
            proc, s = procs.pop(0)
            finish(proc, s)
        cmd = [gxx, *flags, "-c", str(src.relative_to(project)), "-o", str(obj)]
        procs.append((subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True), src))
        objects.append(obj)
    while procs:
        proc, s = procs.pop(0)
        finish(proc, s)
    exe = build / "csim"
    link = subprocess.run([gxx, *[str(o) for o in objects], "-o", str(exe)], cwd=project, capture_output=True,
                          text=True)
    log.append(link.stdout + link.stderr)
    text = "".join(log)
    (build / "build.log").write_text(text)
    if link.returncode != 0:
        raise UserError(f"C simulation link failed (full log: {build / 'build.log'})")
    return text


def run_csim(project_dir: Path, n: int | None = None, *, jobs: int = 2, timeout: float | None = None) -> CsimResult:
    """Compile ``firmware/*.cpp`` + ``tb/tb_<top>.cpp`` into ``project_dir/csim_build/`` (reused
    when nothing changed) and run the first ``n`` test vectors (all when None)."""
    start = time.monotonic()
    project = Path(project_dir).resolve()
    ap_types = find_ap_types()
    gxx = find_compiler()
    _sources(project)
    build = project / BUILD_DIR
    build.mkdir(exist_ok=True)
    flags = [*CXXFLAGS, *DEFINES, "-I", str(ap_types), "-I", "firmware", "-I", "tb/compat"]
    stamp = build / "stamp"
    exe = build / "csim"
    fingerprint = _fingerprint(project, gxx, ap_types, flags)
    rebuilt = False
    build_seconds = 0.0
    if exe.is_file() and stamp.is_file() and stamp.read_text() == fingerprint:
        log_path = build / "build.log"
        build_log = log_path.read_text() if log_path.is_file() else ""
    else:
        stamp.unlink(missing_ok=True)
        t0 = time.monotonic()
        build_log = _build(project, build, gxx, flags, jobs)
        build_seconds = time.monotonic() - t0
        stamp.write_text(fingerprint)
        rebuilt = True

    outputs_path = build / "outputs.bin"
    outputs_path.unlink(missing_ok=True)
    args = [str(exe), str(-1 if n is None else int(n)), str(project / "tb" / "data"), str(outputs_path)]
    try:
        proc = subprocess.run(args, cwd=project, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return CsimResult(False, 0, 0, f"the testbench ran past {timeout} s", np.zeros((0, 0), np.int64),
                          time.monotonic() - start, build_seconds, rebuilt, build_log, "", -1,
                          [f"timeout after {timeout} s"])
    out = proc.stdout + proc.stderr
    errors = re.findall(r"^ADMM_CSIM_ERROR (.*)$", out, re.M)
    if errors:
        raise UserError(f"C simulation could not start: {errors[0]}")
    failures = re.findall(r"^ADMM_CSIM_MISMATCH (.*)$", out, re.M)
    summary = re.search(r"^ADMM_CSIM_SUMMARY vectors (\d+) mismatches (\d+)$", out, re.M)
    ran, mismatches = (int(summary.group(1)), int(summary.group(2))) if summary else (0, 0)
    raw = outputs_path.read_bytes() if outputs_path.is_file() else b""
    values = np.frombuffer(raw, dtype="<i4").astype(np.int64)
    outputs = values.reshape(ran, -1) if ran and values.size % ran == 0 else np.zeros((0, 0), np.int64)
    first = failures[0] if failures else None
    if summary is None:
        first = first or f"the testbench crashed (exit status {proc.returncode}): {out.strip()[-300:]}"
    passed = proc.returncode == 0 and summary is not None and mismatches == 0
    if not passed and first is None:
        first = f"the testbench exited with status {proc.returncode}"
    return CsimResult(passed, ran, mismatches, first, outputs, time.monotonic() - start, build_seconds, rebuilt,
                      build_log, out, proc.returncode, failures)
