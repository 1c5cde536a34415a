"""Layer kinds. Each kind is defined once, in its own file, and carries side by side its shape
rule, its quantization, its exact integer semantics (the reference) and, as backends grow, its
templates and estimator. ``kind(op)`` finds the kind of a LayerGraph node."""

from .base import LayerKind, kind, registered_ops
from . import add, concat, conv, flatten, io, linear, pool, relu  # noqa: F401  (registration)

__all__ = ["LayerKind", "kind", "registered_ops"]
