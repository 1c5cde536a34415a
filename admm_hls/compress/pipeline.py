"""The whole ADMM-NN recipe, stage by stage: dense training, ADMM pruning (in one or more
progressive rounds), hard pruning, masked retraining, ADMM quantization, final projection with
progressive-freezing retraining, activation calibration, and the checkpoint. Every stage after the
dense one can distill from the dense model. Each stage is a method so benchmarks can time and
branch them; the magnitude-pruning controls are methods of the same class.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Subset

from ..calibration import measure_ranges
from ..datasets import DATASETS, Split, dataset_record
from ..errors import UserError
from ..model_source import ModelSource, from_module, from_spec
from .admm import ADMM
from .batches import Data, first_images, size, steps_per_epoch, subset
from .checkpoint import make_checkpoint
from .device import as_device
from .init_weights import load_init_weights
from .masking import MaskSet
from .projection import (balanced_topk_mask, feasible_balanced_k, max_level, nearest_levels, optimal_scale,
                         project_levels, topk_mask)
from .recipe import TARGET_MODES, Recipe
from .targets import allocate_keep, layer_geometry
from .training import StageHooks, evaluate, predict, prunable_weights, train_stage
from .validate import BITS_RANGE

METHODS = ("admm", "magnitude", "gradual")

Log = Callable[[str], None]


def _fmt_layers(values: dict[str, float], fmt: str) -> str:
    return " ".join(f"{n}={format(v, fmt)}" for n, v in values.items())


def _dataset_record(name: str, data: Data) -> dict[str, Any]:
    """The checkpoint's ``dataset`` entry: for the data sets admm-hls reads, the normalization the
    hardware's inputs must repeat (and an image folder's geometry); for a caller's own data only
    its name."""
    if name not in DATASETS:
        return {"name": name}
    while isinstance(data, Subset):  # --limit-train cuts a dataset to its first items
        data = data.dataset
    return dataset_record(data)


class Compressor:
    """One compression run. The model is built from ``recipe.model`` (a zoo name or an import
    spec) unless ``model`` gives an instance. The dense start is trained from scratch, or is
    ``init`` (a state dict file), or, with ``pretrained``, the given instance's own weights."""

    def __init__(self, recipe: Recipe, train: Data, test: Data, seed: int = 0, log: Log = print, *,
                 model: nn.Module | None = None, init: str | os.PathLike | None = None, pretrained: bool = False,
                 device: torch.device | str | None = None, workers: int = 0):
        self.recipe, self.test, self.seed, self.log = recipe, test, seed, log
        self.device, self.workers = as_device(device), workers
        self._check_recipe(size(train))
        self.train, self.val = self._split_holdout(train, test)
        self.teacher: torch.Tensor | nn.Module | None = None
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.source, self.model = self._model(model)
        # The recipe records the model it ran with: an instance is recorded by its class.
        self.recipe = dataclasses.replace(self.recipe, model=self.source.source or self.source.name,
                                          model_kwargs=dict(self.source.kwargs))
        self.input_shape = self._input_shape()
        self.weights = prunable_weights(self.model)
        if not self.weights:
            raise UserError(f"{self.source.name} has no Conv2d or Linear layer: there are no weights to compress")
        self._check_input(train)
        self.geometry = self._geometry()  # a forward pass on the CPU
        # Where the dense weights come from when they are not trained here (history records it).
        self.start: dict[str, Any] | None = None
        if pretrained and model is not None:
            self.start = {"init": "the given model's weights"}
        if init is not None:
            self.start = load_init_weights(init, self.model, self.source.name)
        self.model.to(self.device)  # in place: the parameters keep their identity
        q = self.recipe.quantize
        self.bits = {n: q.bits_layers.get(n, q.bits) for n in self.weights}
        self._check_layer_names()
        self.keep = self._keep_ratios()
        self.k = {n: self._count(n, self.keep[n]) for n in self.weights}
        self.masks: dict[str, torch.Tensor] = {n: torch.ones_like(w, dtype=torch.bool) for n, w in self.weights.items()}
        self.levels: dict[str, torch.Tensor] = {}
        self.scales: dict[str, float] = {}
        self.accuracy: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []

    # -- model and data -------------------------------------------------------------------------
    def _model(self, model: nn.Module | None) -> tuple[ModelSource, nn.Module]:
        if model is not None:
            # A copy: compression rewrites the weights, the caller's model stays as it was.
            return from_module(model, self.recipe.model_kwargs), copy.deepcopy(model)
        source = from_spec(self.recipe.model, self.recipe.model_kwargs)
        return source, source.build()

    def _input_shape(self) -> tuple[int, ...]:
        shape = tuple(self.recipe.input_shape) or self.source.default_input_shape()
        if not shape:
            raise UserError(f"{self.source.name} declares no input shape (no INPUT_SHAPE attribute): "
                            "pass --input-shape C,H,W (input_shape= in Python), e.g. 3,32,32")
        if not (1 <= len(shape) <= 4 and all(isinstance(d, int) and d >= 1 for d in shape)):
            raise UserError(f"input shape {list(shape)} must be 1 to 4 positive integers, e.g. 3,32,32")
        return tuple(shape)

    def _check_input(self, train: Data) -> None:
        got = tuple(first_images(train, 1)[0].shape)
        if got != self.input_shape:
            raise UserError(f"the training images are {got}, {self.source.name} takes {self.input_shape}: "
                            "pass the --input-shape of the data (or --input-size for an image folder)")

    def _geometry(self):
        try:
            return layer_geometry(self.model, self.input_shape)
        except (RuntimeError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{self.source.name} does not run on a {self.input_shape} input ({first}): "
                            "pass the --input-shape it takes") from None

    def _split_holdout(self, train: Data, test: Data) -> tuple[Data, Data]:
        """(training data, per-iteration data). Per-iteration accuracies go on the held-out
        slice when there is one (tuning never sees the test set); stage accuracies are always
        on the test set."""
        holdout = self.recipe.holdout
        if not holdout:
            return train, test
        if not isinstance(train, Split):
            raise UserError(f"recipe holdout {holdout} needs in-memory training data (a Split): set holdout = 0 "
                            "in the recipe and hold images out of the training folder instead")
        cut = size(train) - holdout
        return subset(train, 0, cut), subset(train, cut, size(train))

    # -- set-up ---------------------------------------------------------------------------------
    def _check_recipe(self, train_images: int) -> None:
        r, p = self.recipe, self.recipe.prune
        if p.method not in METHODS:
            raise UserError(f"recipe prune.method '{p.method}' is unknown: use one of {', '.join(METHODS)}")
        rounds = tuple(p.rounds)
        if not rounds or rounds[-1] != 1.0 or any(a >= b for a, b in zip((0.0,) + rounds, rounds)):
            raise UserError(f"recipe prune.rounds {list(p.rounds)} must rise from above 0 to exactly 1.0 "
                            "(e.g. [0.5, 1.0])")
        if p.balance_pe < 0:
            raise UserError(f"recipe prune.balance_pe {p.balance_pe} must be >= 0 (0: no balancing)")
        if not 0 <= r.holdout < train_images:
            raise UserError(f"recipe holdout {r.holdout} must be >= 0 and leave training images "
                            f"({train_images} available): lower it in the recipe or train on more images")
        if not 0 <= r.distill.alpha <= 1 or r.distill.temperature <= 0:
            raise UserError("recipe distill needs 0 <= alpha <= 1 and temperature > 0")
        if p.target_mode not in TARGET_MODES or not p.target_ratio >= 0:
            raise UserError(f"recipe prune.target_mode '{p.target_mode}' / target_ratio {p.target_ratio} must be "
                            f"one of {', '.join(TARGET_MODES)} / >= 0 (0: per-layer keep)")
        bits = (r.quantize.bits, *r.quantize.bits_layers.values())
        if r.quantize.enabled and not all(isinstance(b, int) and BITS_RANGE[0] <= b <= BITS_RANGE[1] for b in bits):
            raise UserError(f"recipe quantize bits {list(bits)} must be {BITS_RANGE[0]}..{BITS_RANGE[1]}")

    def _groups(self, name: str) -> int:
        return min(self.recipe.prune.balance_pe, self.weights[name].shape[0])

    def _count(self, name: str, keep: float) -> int:
        """Nonzeros that keep ``keep`` of a layer (a count the balance constraint can hold)."""
        w = self.weights[name]
        k = max(1, round(keep * w.numel()))
        if self.recipe.prune.balance_pe and keep < 1.0:
            k = feasible_balanced_k(w.shape[0], w[0].numel(), k, self._groups(name))
        return k

    def _mask(self, name: str, w: torch.Tensor, k: int) -> torch.Tensor:
        """Support of the exact projection onto the layer's prune set: top-k, or top-k balanced
        over the lockstep slots when the recipe balances for a PE count. Chosen on the CPU
        (once per ADMM iteration, cheap), so every device picks exactly as the CPU does."""
        cpu = w.detach().cpu()
        if self.recipe.prune.balance_pe and k < w.numel():
            return balanced_topk_mask(cpu, k, self._groups(name)).to(w.device)
        return topk_mask(cpu, k).to(w.device)

    def _project(self, name: str, w: torch.Tensor, k: int) -> torch.Tensor:
        return torch.where(self._mask(name, w, k), w.detach(), torch.zeros((), dtype=w.dtype))

    def _project_levels(self, name: str, w: torch.Tensor) -> torch.Tensor:
        """The quantization Z-step, on the CPU like ``_mask``."""
        return project_levels(w.cpu(), self.masks[name].cpu(), self.bits[name])[0].to(w.device)

    def _check_layer_names(self) -> None:
        p, q = self.recipe.prune, self.recipe.quantize
        for table, where in ((p.keep, "prune.keep"), (p.rho_layers, "prune.rho_layers"),
                             (q.bits_layers, "quantize.bits_layers"), (q.rho_layers, "quantize.rho_layers")):
            unknown = sorted(set(table) - set(self.weights))
            if unknown:
                raise UserError(f"recipe {where} names unknown layer(s) {', '.join(unknown)}; "
                                f"{self.recipe.model} has {', '.join(self.weights)}")

    def _keep_ratios(self) -> dict[str, float]:
        p = self.recipe.prune
        if p.keep:
            return {n: float(p.keep.get(n, 1.0)) for n in self.weights}
        if p.target_ratio > 0:
            return allocate_keep(self.geometry, p.target_ratio, p.target_mode, self.bits)
        return {n: 1.0 for n in self.weights}

    def _stage(self, epochs: int, optimizer, desc: str, hooks: StageHooks | None = None) -> None:
        train_stage(self.model, self.train, epochs, optimizer, self.recipe.batch_size, self.generator, hooks, desc,
                    distill=self.recipe.distill, teacher=self.teacher, device=self.device, workers=self.workers)

    def _accuracy(self, data: Data) -> float:
        return evaluate(self.model, data, device=self.device, workers=self.workers)

    def _evaluate(self, label: str) -> float:
        """Test accuracy of a finished stage, kept as ``accuracy[label]`` (reported, never used to
        tune); the holdout accuracy, which tuning reads, goes to the history."""
        if self.recipe.holdout:
            self.history.append({"stage": label, "holdout_accuracy": self._accuracy(self.val)})
        self.accuracy[label] = acc = self._accuracy(self.test)
        return acc

    def _split_name(self) -> str:
        return "holdout" if self.recipe.holdout else "test"

    # -- stages ---------------------------------------------------------------------------------
    def train_dense(self) -> float:
        d = self.recipe.dense
        self._stage(d.epochs, d.optimizer, "dense")
        acc = self._evaluate("dense")
        self.log(f"dense: accuracy {acc:.2%} after {d.epochs} epochs")
        self.take_teacher()
        return acc

    def use_pretrained(self) -> float:
        """The dense stage of a pretrained start: its weights are only evaluated, and the history
        says where they came from."""
        acc = self._evaluate("dense")
        self.history.append({"stage": "dense", **self.start})
        self.log(f"dense: accuracy {acc:.2%} of the pretrained weights ({self.start['init']}), dense training skipped")
        self.take_teacher()
        return acc

    def dense_start(self) -> float:
        return self.use_pretrained() if self.start is not None else self.train_dense()

    def take_teacher(self) -> None:
        """Soft targets of the current (dense) model: for a Split, its logits for every training
        image, computed once; for a Dataset (whose shuffled loader gives no sample positions), a
        frozen copy of the model run on each batch."""
        if self.recipe.distill.alpha <= 0:
            return
        if isinstance(self.train, Split):
            self.teacher = predict(self.model, self.train, device=self.device, workers=self.workers)
        else:
            self.teacher = copy.deepcopy(self.model).eval().requires_grad_(False)

    def _run_admm(self, admm: ADMM, stage: str, iterations: int, epochs: int, optimizer, factor: float,
                  hooks: StageHooks) -> None:
        hooks.penalty = admm.penalty
        for it in range(1, iterations + 1):
            self._stage(epochs, optimizer, f"{stage} {it}/{iterations}", hooks)
            admm.update()
            acc = self._accuracy(self.val)
            residual = admm.residuals()
            rho = dict(admm.rho)
            self.history.append({"stage": stage, "iteration": it, "accuracy": acc, "rho": rho, "residual": residual,
                                 "split": self._split_name()})
            self.log(f"{stage} {it}/{iterations}: {self._split_name()} accuracy {acc:.2%}  rho {_fmt_layers(rho, '.3g')}  "
                     f"|W-Z|/|W| {_fmt_layers(residual, '.4f')}")
            admm.scale_rho(factor)

    def prune(self) -> float:
        """The recipe's pruning method, up to the hard prune (retraining follows)."""
        method = self.recipe.prune.method
        if method == "admm":
            return self.admm_prune()
        if method == "gradual":
            return self.gradual_prune()
        return self.hard_prune("magnitude")

    def admm_prune(self) -> float:
        """ADMM rounds onto rising pruning ratios; after each, W is hard-pruned to its round's
        counts and the masks hold through the later rounds."""
        p = self.recipe.prune
        rho = {n: p.rho_layers.get(n, p.rho) for n in self.weights}
        for r, exponent in enumerate(p.rounds, 1):
            k = {n: self._count(n, self.keep[n] ** exponent) for n in self.weights}
            masks = MaskSet(self.weights, self.masks)
            hooks = StageHooks(before_step=[masks.mask_gradients], after_step=[masks.apply])
            admm = ADMM(self.weights, lambda n, v, k=k: self._project(n, v, k[n]), rho)
            stage = "admm-prune" if len(p.rounds) == 1 else f"admm-prune round {r}/{len(p.rounds)}"
            self._run_admm(admm, stage, p.admm_iterations, p.epochs_per_iteration, p.optimizer, p.rho_factor, hooks)
            label = "admm" if r == len(p.rounds) else f"admm round {r}"
            acc = self.hard_prune(label, k)
        return acc

    def gradual_prune(self) -> float:
        """The gradual-magnitude control: the kept count falls from dense to k on a cubic schedule
        (Zhu & Gupta 2017), the masks re-chosen by magnitude every 1/8 epoch."""
        p = self.recipe.prune
        steps = p.gradual_epochs * steps_per_epoch(self.train, self.recipe.batch_size)
        every = max(1, steps_per_epoch(self.train, self.recipe.batch_size) // 8)
        state = {"step": 0, "masks": MaskSet(self.weights, self.masks)}

        def update() -> None:
            state["step"] += 1
            if state["step"] % every == 0 or state["step"] == steps:
                t = min(1.0, state["step"] / steps)
                with torch.no_grad():
                    for n, w in self.weights.items():
                        kept = w.numel() - (w.numel() - self.k[n]) * (1 - (1 - t) ** 3)
                        k = self.k[n] if t == 1.0 else self._count(n, kept / w.numel())
                        self.masks[n] = self._mask(n, w, k)
                state["masks"] = MaskSet(self.weights, self.masks)
            state["masks"].apply()

        hooks = StageHooks(before_step=[lambda: state["masks"].mask_gradients()], after_step=[update])
        self._stage(p.gradual_epochs, p.optimizer, "gradual-prune", hooks)
        return self.hard_prune("gradual")

    def hard_prune(self, label: str, k: dict[str, int] | None = None) -> float:
        """Project W itself onto its prune set (exactly k nonzeros) and fix the masks from here on."""
        k = k or self.k
        self.masks = {n: self._mask(n, w, k[n]) for n, w in self.weights.items()}
        MaskSet(self.weights, self.masks).apply()
        acc = self._evaluate(label)
        self.log(f"{label}: hard-pruned to {self.pruning_ratio():.1f}x, accuracy {acc:.2%}")
        return acc

    def retrain(self, epochs: int | None = None, label: str = "retrained") -> float:
        p = self.recipe.prune
        epochs = p.retrain_epochs if epochs is None else epochs
        masks = MaskSet(self.weights, self.masks)
        self._stage(epochs, p.retrain_optimizer, "masked-retrain", StageHooks(before_step=[masks.mask_gradients],
                                                                            after_step=[masks.apply]))
        acc = self._evaluate(label)
        self.log(f"{label}: masked retraining {epochs} epochs, accuracy {acc:.2%}")
        return acc

    def quantize(self) -> float:
        q = self.recipe.quantize
        masks = MaskSet(self.weights, self.masks)
        hooks = StageHooks(before_step=[masks.mask_gradients], after_step=[masks.apply])
        rho = {n: q.rho_layers.get(n, q.rho) for n in self.weights}
        admm = ADMM(self.weights, self._project_levels, rho)
        self._run_admm(admm, "admm-quantize", q.admm_iterations, q.epochs_per_iteration, q.optimizer,
                       q.rho_factor, hooks)
        # Final projection fixes each layer's scale; retraining then only moves weights that are
        # still free, and every frozen weight sits exactly on its level.
        with torch.no_grad():
            self.scales = {n: optimal_scale(w[self.masks[n]].cpu(), max_level(self.bits[n]))
                           for n, w in self.weights.items()}
        frozen = {n: torch.zeros_like(m) for n, m in self.masks.items()}
        for fraction in q.freeze_schedule:
            self._freeze(frozen, fraction)
            free = {n: self.masks[n] & ~frozen[n] for n in self.weights}
            free_set = MaskSet(self.weights, free)
            values = self._quantized_values()
            hooks = StageHooks(before_step=[free_set.mask_gradients], after_step=[lambda: free_set.restore(values)])
            self._stage(q.epochs_per_freeze, q.retrain_optimizer, f"quantize-retrain {fraction:.0%} frozen", hooks)
            self.log(f"quantize-retrain: {fraction:.0%} of nonzeros frozen on levels, {self._split_name()} accuracy "
                     f"{self._accuracy(self.val):.2%}")
        self._freeze(frozen, 1.0)
        self.levels = {n: torch.where(self.masks[n], nearest_levels(w, self.scales[n], max_level(self.bits[n])),
                                      torch.zeros((), dtype=torch.int64)) for n, w in self.weights.items()}
        acc = self._evaluate("quantized")
        self.log(f"quantized: {self.average_bits():.2f} bits per nonzero, accuracy {acc:.2%}")
        return acc

    @torch.no_grad()
    def _quantized_values(self) -> dict[str, torch.Tensor]:
        """Every kept weight on its nearest level at the fixed scale; pruned weights zero."""
        out = {}
        for n, w in self.weights.items():
            lv = nearest_levels(w, self.scales[n], max_level(self.bits[n]))
            out[n] = torch.where(self.masks[n], (lv.double() * self.scales[n]).to(w.dtype), torch.zeros((), dtype=w.dtype))
        return out

    @torch.no_grad()
    def _freeze(self, frozen: dict[str, torch.Tensor], fraction: float) -> None:
        """Grow each layer's frozen set to ``fraction`` of its nonzeros, closest-to-level first,
        and write the frozen weights onto their levels."""
        values = self._quantized_values()
        for n, w in self.weights.items():
            target = math.ceil(fraction * int(self.masks[n].sum()))
            need = target - int(frozen[n].sum())
            if need > 0:
                distance = (w - values[n]).abs().reshape(-1)
                candidates = (self.masks[n] & ~frozen[n]).reshape(-1)
                distance = torch.where(candidates, distance, torch.full_like(distance, math.inf))
                order = torch.sort(distance, stable=True).indices[:need]
                frozen[n].view(-1)[order] = True
            w.copy_(torch.where(frozen[n], values[n], w))

    # -- results --------------------------------------------------------------------------------
    def pruning_ratio(self) -> float:
        total = sum(w.numel() for w in self.weights.values())
        kept = sum(int(m.sum()) for m in self.masks.values())
        return total / max(1, kept)

    def average_bits(self) -> float:
        kept = {n: int(m.sum()) for n, m in self.masks.items()}
        return sum(self.bits[n] * kept[n] for n in kept) / max(1, sum(kept.values()))

    def calibrate(self) -> dict[str, list[float]]:
        """Activation ranges on the first ``calibration_batches`` training batches, in order."""
        bs, n = self.recipe.batch_size, self.recipe.calibration_batches
        images = first_images(self.train, n * bs).to(self.device)
        return measure_ranges(self.model, list(images.split(bs)))

    def snapshot(self) -> dict[str, torch.Tensor]:
        return copy.deepcopy(self.model.state_dict())

    def checkpoint(self) -> dict[str, Any]:
        return make_checkpoint(
            self.source, self.source.kwargs, self.input_shape, self.model, self.geometry,
            masks=self.masks, keep=self.keep, bits=self.bits, levels=self.levels, scales=self.scales,
            accuracy=self.accuracy, recipe=self.recipe.to_dict(), history=self.history,
            calibration={"ranges": self.calibrate(), "batches": self.recipe.calibration_batches,
                         "batch_size": self.recipe.batch_size},
            dataset=_dataset_record(self.recipe.dataset, self.train), seed=self.seed,
            balance_pe=self.recipe.prune.balance_pe,
        )

    def log_targets(self) -> None:
        """Per-layer targets beside the break-even ratio of their storage format."""
        from .targets import break_even

        parts = []
        for n, g in self.geometry.items():
            parts.append(f"{n} keep {self.k[n]:,}/{g.numel:,} ({g.numel / self.k[n]:.1f}x, "
                         f"break-even {break_even(self.bits[n], g.rows, g.numel):.2f}x)")
        self.log("targets: " + "; ".join(parts))

    def run(self) -> dict[str, Any]:
        """The full recipe, in order (the dense stage only evaluated for a pretrained start);
        returns the checkpoint dict."""
        self.log_targets()
        self.dense_start()
        self.prune()
        self.retrain()
        if self.recipe.quantize.enabled:
            self.quantize()
        return self.checkpoint()
