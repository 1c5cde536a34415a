"""The interface every layer kind implements, and the registry that finds it by op name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..ir.graph import LayerGraph, Node

_REGISTRY: dict[str, "LayerKind"] = {}


class LayerKind:
    op: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.op:
            _REGISTRY[cls.op] = cls()

    def infer_shape(self, node: "Node", in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        raise NotImplementedError

    def quantize(self, node: "Node", graph: "LayerGraph", ctx: Any) -> None:
        """Fill ``node.quant`` with integer parameters; default: no parameters."""

    def reference(self, node: "Node", inputs: list[np.ndarray]) -> np.ndarray:
        """Exact integer output for a batch (int64 arrays, batch first)."""
        raise NotImplementedError


def kind(op: str) -> LayerKind:
    try:
        return _REGISTRY[op]
    except KeyError:
        raise KeyError(f"no layer kind '{op}' (known: {', '.join(sorted(_REGISTRY))})") from None


def registered_ops() -> list[str]:
    return sorted(_REGISTRY)
