"""Locate the files shipped next to the package: the model zoo and the templates.

An installed wheel carries them under ``admm_hls/_data`` (see pyproject's force-include); a
source checkout (editable install, tests) has them at the repository root.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Folder ``name`` ("models" or "templates") from the wheel, else from the checkout."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"admm-hls is installed without its '{name}' folder; reinstall it")


def _bytecode_cache():
    """Jinja2's cache of compiled templates (compiling the kernel templates takes half a second
    per build), in the user's cache folder; None when that folder cannot be written."""
    import os

    import jinja2

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "admm-hls" / "jinja"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(root)) if os.access(root, os.W_OK) else None


@lru_cache(maxsize=None)
def template_env(subdir: str):
    """The Jinja2 environment of one template folder (``hls``, ``hls/project``, ``rtl``): strict
    (an undefined name is an error, never an empty string), no autoescaping (C++, tcl, Verilog)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates") / subdir)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=_bytecode_cache(),
    )
