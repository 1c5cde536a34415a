"""The whole ADMM-NN recipe, stage by stage: dense training, ADMM pruning, hard pruning, masked
retraining, ADMM quantization, final projection with progressive-freezing retraining, activation
calibration, and the checkpoint. Each stage is a method so benchmarks can time and branch them.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch

from ..calibration import measure_ranges
from ..datasets import MNIST_MEAN, MNIST_STD, Split
from ..zoo import build_model, input_shape
from .admm import ADMM
from .checkpoint import make_checkpoint
from .masking import MaskSet
from .projection import max_level, nearest_levels, optimal_scale, project_levels, project_topk, topk_mask
from .recipe import Recipe
from .targets import allocate_keep, layer_geometry
from .training import StageHooks, evaluate, prunable_weights, train_stage

Log = Callable[[str], None]


def _fmt_layers(values: dict[str, float], fmt: str) -> str:
    return " ".join(f"{n}={format(v, fmt)}" for n, v in values.items())


class Compressor:
    def __init__(self, recipe: Recipe, train: Split, test: Split, seed: int = 0, log: Log = print):
        self.recipe, self.train, self.test, self.seed, self.log = recipe, train, test, seed, log
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.model = build_model(recipe.model, **recipe.model_kwargs)
        self.input_shape = input_shape(recipe.model)
        self.weights = prunable_weights(self.model)
        self.geometry = layer_geometry(self.model, self.input_shape)
        self.bits = {n: recipe.quantize.bits_layers.get(n, recipe.quantize.bits) for n in self.weights}
        self._check_layer_names()
        self.keep = self._keep_ratios()
        self.k = {n: max(1, round(self.keep[n] * w.numel())) for n, w in self.weights.items()}
        self.masks: dict[str, torch.Tensor] = {n: torch.ones_like(w, dtype=torch.bool) for n, w in self.weights.items()}
        self.levels: dict[str, torch.Tensor] = {}
        self.scales: dict[str, float] = {}
        self.accuracy: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []

    # -- set-up ---------------------------------------------------------------------------------
    def _check_layer_names(self) -> None:
        p, q = self.recipe.prune, self.recipe.quantize
        for table, where in ((p.keep, "prune.keep"), (p.rho_layers, "prune.rho_layers"),
                             (q.bits_layers, "quantize.bits_layers"), (q.rho_layers, "quantize.rho_layers")):
            unknown = sorted(set(table) - set(self.weights))
            if unknown:
                from ..errors import UserError
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
        train_stage(self.model, self.train, epochs, optimizer, self.recipe.batch_size, self.generator, hooks, desc)

    def _evaluate(self) -> float:
        return evaluate(self.model, self.test)

    # -- stages ---------------------------------------------------------------------------------
    def train_dense(self) -> float:
        d = self.recipe.dense
        self._stage(d.epochs, d.optimizer, "dense")
        self.accuracy["dense"] = acc = self._evaluate()
        self.log(f"dense: accuracy {acc:.2%} after {d.epochs} epochs")
        return acc

    def _run_admm(self, admm: ADMM, stage: str, iterations: int, epochs: int, optimizer, factor: float,
                  hooks: StageHooks) -> None:
        hooks.penalty = admm.penalty
        for it in range(1, iterations + 1):
            self._stage(epochs, optimizer, f"{stage} {it}/{iterations}", hooks)
            admm.update()
            acc = self._evaluate()
            residual = admm.residuals()
            rho = dict(admm.rho)
            self.history.append({"stage": stage, "iteration": it, "accuracy": acc, "rho": rho, "residual": residual})
            self.log(f"{stage} {it}/{iterations}: accuracy {acc:.2%}  rho {_fmt_layers(rho, '.3g')}  "
                     f"|W-Z|/|W| {_fmt_layers(residual, '.4f')}")
            admm.scale_rho(factor)

    def admm_prune(self) -> float:
        p = self.recipe.prune
        rho = {n: p.rho_layers.get(n, p.rho) for n in self.weights}
        admm = ADMM(self.weights, lambda n, v: project_topk(v, self.k[n]), rho)
        self._run_admm(admm, "admm-prune", p.admm_iterations, p.epochs_per_iteration, p.optimizer,
                       p.rho_factor, StageHooks())
        return self.hard_prune("admm")

    def hard_prune(self, label: str) -> float:
        """Project W itself onto exactly k nonzeros and fix the masks from here on."""
        self.masks = {n: topk_mask(w, self.k[n]) for n, w in self.weights.items()}
        MaskSet(self.weights, self.masks).apply()
        self.accuracy[label] = acc = self._evaluate()
        self.log(f"{label}: hard-pruned to {self.pruning_ratio():.1f}x, accuracy {acc:.2%}")
        return acc

    def retrain(self, epochs: int | None = None, label: str = "retrained") -> float:
        p = self.recipe.prune
        epochs = p.retrain_epochs if epochs is None else epochs
        masks = MaskSet(self.weights, self.masks)
        self._stage(epochs, p.retrain_optimizer, "masked-retrain", StageHooks(before_step=[masks.mask_gradients],
                                                                            after_step=[masks.apply]))
        self.accuracy[label] = acc = self._evaluate()
        self.log(f"{label}: masked retraining {epochs} epochs, accuracy {acc:.2%}")
        return acc

    def quantize(self) -> float:
        q = self.recipe.quantize
        masks = MaskSet(self.weights, self.masks)
        hooks = StageHooks(before_step=[masks.mask_gradients], after_step=[masks.apply])
        rho = {n: q.rho_layers.get(n, q.rho) for n in self.weights}
        admm = ADMM(self.weights, lambda n, v: project_levels(v, self.masks[n], self.bits[n])[0], rho)
        self._run_admm(admm, "admm-quantize", q.admm_iterations, q.epochs_per_iteration, q.optimizer,
                       q.rho_factor, hooks)
        # Final projection fixes each layer's scale; retraining then only moves weights that are
        # still free, and every frozen weight sits exactly on its level.
        with torch.no_grad():
            self.scales = {n: optimal_scale(w[self.masks[n]], max_level(self.bits[n])) for n, w in self.weights.items()}
        frozen = {n: torch.zeros_like(m) for n, m in self.masks.items()}
        for fraction in q.freeze_schedule:
            self._freeze(frozen, fraction)
            free = {n: self.masks[n] & ~frozen[n] for n in self.weights}
            free_set = MaskSet(self.weights, free)
            values = self._quantized_values()
            hooks = StageHooks(before_step=[free_set.mask_gradients], after_step=[lambda: free_set.restore(values)])
            self._stage(q.epochs_per_freeze, q.retrain_optimizer, f"quantize-retrain {fraction:.0%} frozen", hooks)
            self.log(f"quantize-retrain: {fraction:.0%} of nonzeros frozen on levels, accuracy {self._evaluate():.2%}")
        self._freeze(frozen, 1.0)
        self.levels = {n: torch.where(self.masks[n], nearest_levels(w, self.scales[n], max_level(self.bits[n])),
                                      torch.zeros((), dtype=torch.int64)) for n, w in self.weights.items()}
        self.accuracy["quantized"] = acc = self._evaluate()
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
        bs, n = self.recipe.batch_size, self.recipe.calibration_batches
        batches = [self.train.images[i * bs:(i + 1) * bs] for i in range(n) if i * bs < len(self.train.labels)]
        return measure_ranges(self.model, batches)

    def snapshot(self) -> dict[str, torch.Tensor]:
        return copy.deepcopy(self.model.state_dict())

    def checkpoint(self) -> dict[str, Any]:
        return make_checkpoint(
            self.recipe.model, self.recipe.model_kwargs, self.input_shape, self.model, self.geometry,
            masks=self.masks, keep=self.keep, bits=self.bits, levels=self.levels, scales=self.scales,
            accuracy=self.accuracy, recipe=self.recipe.to_dict(), history=self.history,
            calibration={"ranges": self.calibrate(), "batches": self.recipe.calibration_batches,
                         "batch_size": self.recipe.batch_size},
            dataset={"name": self.recipe.dataset, "mean": [MNIST_MEAN], "std": [MNIST_STD]}, seed=self.seed,
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
        """The full recipe, in order; returns the checkpoint dict."""
        self.log_targets()
        self.train_dense()
        self.admm_prune()
        self.retrain()
        if self.recipe.quantize.enabled:
            self.quantize()
        return self.checkpoint()
