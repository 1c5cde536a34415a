"""JSON files of a project: stable, readable output (sorted keys, lists of scalars on one line),
numpy values made plain, atomic replacement, and one clear error for an unreadable file."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

__all__ = ["plain", "dump_json", "read_json", "replace_file"]


def plain(obj: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python, tuples to lists, non-finite floats to text."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [plain(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "nan")
    return obj


def dump_json(obj: Any) -> bytes:
    """Sorted keys, two-space indent, lists of scalars on one line: stable and readable."""

    def fmt(v: Any, depth: int) -> str:
        pad, inner = "  " * depth, "  " * (depth + 1)
        if isinstance(v, dict):
            if not v:
                return "{}"
            items = [f"{inner}{json.dumps(k)}: {fmt(v[k], depth + 1)}" for k in sorted(v)]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(v, list):
            if all(not isinstance(i, (dict, list)) for i in v):
                return "[" + ", ".join(json.dumps(i, allow_nan=False) for i in v) + "]"
            return "[\n" + ",\n".join(inner + fmt(i, depth + 1) for i in v) + "\n" + pad + "]"
        return json.dumps(v, allow_nan=False)

    return (fmt(plain(obj), 0) + "\n").encode()


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """A JSON file of a project; unreadable or invalid: a UserError that ends with ``fix``."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is unreadable ({exc}): {fix}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_file(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary sibling renamed over it)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
