"""Compression recipes: TOML files next to the models that make a result reproducible.

A recipe fixes everything the result depends on: per-layer keep ratios (or a global target with
a storage/computation focus), bits, rho and its schedule, iterations, epochs and optimizers.
A model without a shipped recipe gets ``generic.toml``; command-line overrides of the target and
the bits apply to any recipe.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..resources import resource_dir
from .training import DistillSpec, OptimizerSpec
from .validate import BITS_RANGE

GENERIC = "generic"
TARGET_MODES = ("storage", "computation")


@dataclass(frozen=True)
class DenseStage:
    epochs: int = 8
    optimizer: OptimizerSpec = OptimizerSpec()


@dataclass(frozen=True)
class PruneStage:
    keep: dict[str, float] = field(default_factory=dict)  # per layer; empty: use `target`
    target_ratio: float = 0.0  # global pruning ratio for the hardware-aware allocator
    target_mode: str = "storage"  # or "computation" (favour conv MAC reduction)
    admm_iterations: int = 8
    epochs_per_iteration: int = 2
    rho: float = 1e-3
    rho_layers: dict[str, float] = field(default_factory=dict)
    rho_factor: float = 1.3
    optimizer: OptimizerSpec = OptimizerSpec()
    retrain_epochs: int = 8
    retrain_optimizer: OptimizerSpec = OptimizerSpec()
    # "admm" (ADMM-NN), or a control: "magnitude" (one-shot magnitude pruning of the dense model)
    # or "gradual" (magnitude pruning on a cubic schedule over gradual_epochs, Zhu & Gupta 2017).
    method: str = "admm"
    # Progressive ADMM (Ye et al.): one ADMM round per entry, round r keeping keep**rounds[r] of
    # each layer (so the last entry, 1.0, is the final target), hard-pruned after each round.
    rounds: tuple[float, ...] = (1.0,)
    gradual_epochs: int = 6
    # Prune for lockstep lanes: every row of a slot of min(balance_pe, rows) rows holds the same
    # count, so `build --pe balance_pe` pads no lane (0: unconstrained top-k).
    balance_pe: int = 0


@dataclass(frozen=True)
class QuantizeStage:
    bits: int = 3  # default for every layer
    bits_layers: dict[str, int] = field(default_factory=dict)
    admm_iterations: int = 4
    epochs_per_iteration: int = 1
    rho: float = 1e-2
    rho_layers: dict[str, float] = field(default_factory=dict)
    rho_factor: float = 1.3
    optimizer: OptimizerSpec = OptimizerSpec()
    # Progressive freezing: after each fraction's retraining, that share of the kept weights
    # (those closest to their level) is fixed on its level; the last step freezes everything.
    freeze_schedule: tuple[float, ...] = (0.5, 0.75, 0.9)
    epochs_per_freeze: int = 1
    retrain_optimizer: OptimizerSpec = OptimizerSpec()
    enabled: bool = True


@dataclass(frozen=True)
class Recipe:
    model: str = "lenet5"  # zoo name, or an import spec "pkg.module:Class" / "file.py:Class"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] = ()  # (C, H, W) the model takes; empty: the model's own default
    dataset: str = "mnist"
    batch_size: int = 128
    calibration_batches: int = 8
    # The last `holdout` training images are kept out of training: per-iteration accuracies (and
    # so every tuning decision) are measured on them, never on the test set.
    holdout: int = 0
    # Distillation from the trained dense model in every stage after it (alpha 0: off).
    distill: DistillSpec = DistillSpec()
    dense: DenseStage = DenseStage()
    prune: PruneStage = PruneStage()
    quantize: QuantizeStage = QuantizeStage()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def scaled(self, epoch_fraction: float) -> "Recipe":
        """A copy with every epoch count reduced (for smoke runs); at least one epoch each."""
        def ep(n: int) -> int:
            return max(1, round(n * epoch_fraction)) if n else 0
        return dataclasses.replace(
            self,
            dense=dataclasses.replace(self.dense, epochs=ep(self.dense.epochs)),
            prune=dataclasses.replace(self.prune, epochs_per_iteration=ep(self.prune.epochs_per_iteration),
                                      retrain_epochs=ep(self.prune.retrain_epochs),
                                      gradual_epochs=ep(self.prune.gradual_epochs)),
            quantize=dataclasses.replace(self.quantize, epochs_per_iteration=ep(self.quantize.epochs_per_iteration),
                                         epochs_per_freeze=ep(self.quantize.epochs_per_freeze)),
        )


def _build(cls, data: dict[str, Any], where: str):
    """Instantiate a recipe dataclass from a dict, refusing unknown keys by name."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UserError(f"recipe {where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs = {}
    for key, value in data.items():
        default = known[key].default if known[key].default is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise UserError(f"recipe {where}.{key} must be a table")
            kwargs[key] = _build(type(default), value, f"{where}.{key}")
        elif isinstance(default, tuple):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"recipe {where}: {exc}") from None


def recipe_from_dict(data: dict[str, Any], where: str = "") -> Recipe:
    return _build(Recipe, data, where or "recipe")


def load_recipe(path_or_name: str | Path) -> Recipe:
    """A recipe from a TOML path, or by name from the zoo's recipes folder (``lenet5_mnist``)."""
    path = Path(path_or_name)
    if not path.is_file():
        shipped = resource_dir("models") / "recipes" / f"{path_or_name}.toml"
        if not shipped.is_file():
            names = sorted(p.stem for p in (resource_dir("models") / "recipes").glob("*.toml"))
            raise UserError(f"recipe '{path_or_name}' not found: give a TOML file or one of {', '.join(names)}")
        path = shipped
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"recipe {path} is not valid TOML ({exc}): fix the file") from None
    return recipe_from_dict(data, str(path))


def shipped_recipe_exists(name: str) -> bool:
    return (resource_dir("models") / "recipes" / f"{name}.toml").is_file()


def select_recipe(explicit: str | Path | None, model: str, dataset: str, *, zoo_model: bool) -> Recipe:
    """The recipe a run uses: ``explicit`` (a path or shipped name), else the shipped
    ``{model}_{dataset}`` of a zoo model, else the generic one. It comes back naming the model
    spec and dataset it is run with. A zoo model's own recipe must be for that model and data
    (a recipe's per-layer tables name its layers); the generic recipe and recipes given for
    imported models name no one model."""
    own = f"{model}_{dataset}"
    if explicit is None:
        explicit = own if zoo_model and shipped_recipe_exists(own) else GENERIC
    recipe = load_recipe(explicit)
    if zoo_model and explicit != GENERIC and (recipe.model != model or recipe.dataset != dataset):
        raise UserError(f"recipe is for {recipe.model}/{recipe.dataset}, not {model}/{dataset}: "
                        "pass a matching --recipe")
    return dataclasses.replace(recipe, model=model, dataset=dataset)


def with_overrides(recipe: Recipe, *, target_ratio: float | None = None, target_mode: str | None = None,
                   bits: int | None = None) -> Recipe:
    """``recipe`` with the command line's target and bits. A target ratio replaces the recipe's
    per-layer ``prune.keep`` (else the allocator, which reads the ratio, would not run); bits
    set ``quantize.bits`` only, per-layer ``bits_layers`` stay."""
    prune, quantize = recipe.prune, recipe.quantize
    if target_ratio is not None:
        if not target_ratio >= 1:  # also refuses NaN
            raise UserError(f"--target-ratio {target_ratio:g} must be >= 1 (dense weights per kept weight, "
                            "e.g. 8 keeps one in eight)")
        prune = dataclasses.replace(prune, target_ratio=float(target_ratio), keep={})
    if target_mode is not None:
        if target_mode not in TARGET_MODES:
            raise UserError(f"--target-mode {target_mode!r} is unknown: use one of {', '.join(TARGET_MODES)}")
        prune = dataclasses.replace(prune, target_mode=target_mode)
    if bits is not None:
        if not BITS_RANGE[0] <= bits <= BITS_RANGE[1]:
            raise UserError(f"--bits {bits} is out of range: weights take {BITS_RANGE[0]}..{BITS_RANGE[1]} bits "
                            "(2 bits: levels -1, 0, +1)")
        quantize = dataclasses.replace(quantize, bits=int(bits))
    return dataclasses.replace(recipe, prune=prune, quantize=quantize)
