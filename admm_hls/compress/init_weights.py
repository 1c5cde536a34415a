"""A pretrained dense start (``compress --init FILE``): a state dict checked against the model
before any of it is loaded, so a file for another architecture fails in one line, not deep in
``load_state_dict`` or, worse, after hours of training."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .checkpoint import FORMAT, read_torch_file

SAVE_HINT = "save the dense weights with torch.save(model.state_dict(), PATH)"
SHOWN = 3  # names per kind of problem in the message; the rest are counted


def load_init_weights(path: str | os.PathLike, model: nn.Module, model_name: str) -> dict[str, Any]:
    """Load the state dict in ``path`` into ``model`` (in place); returns the history record of
    the start: the file's name and sha256."""
    path = Path(path)
    label = f"--init {path}"
    if not path.is_file():
        raise UserError(f"{label} does not exist: {SAVE_HINT}")
    state = _state_dict(read_torch_file(path, SAVE_HINT), label)
    problem = describe_mismatch(state, model.state_dict())
    if problem:
        raise UserError(f"{label} does not fit {model_name}: {problem}")
    with torch.no_grad():
        model.load_state_dict(state)
    with path.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"init": path.name, "sha256": digest}


def _state_dict(obj: Any, label: str) -> dict[str, torch.Tensor]:
    """The plain state dict in a loaded file: the file itself, or its "state_dict" entry (the
    layout most training scripts save, with optimizer state beside it)."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        raise UserError(f"{label} is an admm-hls checkpoint (already compressed), not dense weights: {SAVE_HINT}")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not (isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in obj.items())):
        raise UserError(f"{label} holds no state dict (a dict of parameter names to tensors): {SAVE_HINT}")
    return obj


def describe_mismatch(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """The first few missing, unexpected and mis-shaped keys, as one clause each ("" if none)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"shape of {k} is {tuple(state[k].shape)}, the model has {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    parts = []
    if missing:
        parts.append("missing " + _first(missing))
    if unexpected:
        parts.append("unexpected " + _first(unexpected))
    if shapes:
        parts.append(_first(shapes))
    return "; ".join(parts)


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
