"""The model zoo: architectures defined in the shipped ``models/`` folder, built by name."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from torch import nn

from .errors import UserError
from .resources import resource_dir


def available_models() -> list[str]:
    return sorted(p.stem for p in resource_dir("models").glob("*.py") if not p.stem.startswith("_"))


def _module(name: str) -> ModuleType:
    if name not in available_models():
        raise UserError(f"unknown model '{name}': choose one of {', '.join(available_models())}")
    path = resource_dir("models") / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"admm_hls_zoo_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_model(name: str, **kwargs) -> nn.Module:
    """A fresh (randomly initialized, seeded by the caller) instance of zoo model ``name``."""
    try:
        return _module(name).build(**kwargs)
    except TypeError as exc:
        raise UserError(f"model '{name}' does not take arguments {kwargs}: {exc}") from None


def input_shape(name: str) -> tuple[int, ...]:
    """The (C, H, W) input the zoo model expects."""
    return tuple(_module(name).INPUT_SHAPE)
