"""Locate the files shipped next to the package: the model zoo and the templates.

An installed wheel carries them under ``admm_hls/_data`` (see pyproject's force-include); a
source checkout (editable install, tests) has them at the repository root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Folder ``name`` ("models" or "templates") from the wheel, else from the checkout."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"admm-hls is installed without its '{name}' folder; reinstall it")
