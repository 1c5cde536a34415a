"""Bit-flip fault injection in the memories the hardware reads, through an exact reference of
what the hardware then computes (``decode``), and the study that sweeps bit-error rates."""

from .decode import faulted_evaluator, hardware_weights
from .memories import TARGETS, WEIGHT_TARGETS, LayerMemories, faulted_plan, inject, memories_of

__all__ = ["TARGETS", "WEIGHT_TARGETS", "LayerMemories", "memories_of", "inject", "faulted_plan",
           "hardware_weights", "faulted_evaluator"]
