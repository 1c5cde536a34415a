"""Which device training runs on, and what that device prefers."""

from __future__ import annotations

import torch

from ..errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """"auto": CUDA when a GPU is visible, else the CPU; "cpu"; "cuda" (or "cuda:N"), which needs a GPU."""
    if isinstance(name, torch.device):
        name = str(name)
    kind = name.split(":", 1)[0]
    if kind not in DEVICES or (kind == "auto" and name != "auto"):
        raise UserError(f"unknown device '{name}': use one of {', '.join(DEVICES)}")
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' asked for but torch sees no GPU: use --device cpu (or auto), "
                        "or install a CUDA build of torch on a machine with a GPU")
    return torch.device(name)


def as_device(device: str | torch.device | None) -> torch.device:
    """A device argument as given to the training functions (None: the CPU)."""
    return torch.device("cpu") if device is None else resolve_device(device)


def prefers_channels_last(device: torch.device) -> bool:
    """oneDNN's convolutions run about 1.6x faster in NHWC on the CPU; cuDNN picks its own
    layouts for float32, so the GPU keeps the default."""
    return device.type == "cpu"
