"""``admm_hls.compress(model, train_loader, test_loader)``: the compress command for a model and
data a Python program already has."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..datasets import CALLER_DATA, Split
from ..errors import UserError
from .checkpoint import save_checkpoint
from .pipeline import Compressor
from .recipe import GENERIC, Recipe, load_recipe, recipe_from_dict

def compress(model: nn.Module | str, train_loader: DataLoader | Split, test_loader: DataLoader | Split, *,
             recipe: Recipe | str | os.PathLike | dict | None = None, out: str | os.PathLike | None = None,
             model_kwargs: dict[str, Any] | None = None, input_shape: tuple[int, ...] | None = None,
             pretrained: bool = True, init: str | os.PathLike | None = None, device: str = "auto", seed: int = 0,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Compress ``model`` with ADMM pruning + quantization; returns the checkpoint dict (and
    writes it atomically to ``out`` when given), ready for ``admm_hls.lower`` and ``build``.

    model: an ``nn.Module`` instance (left untouched: a copy is compressed; with ``pretrained``
        its current weights are the dense start and dense training is skipped) or a spec string
        (a zoo name, "pkg.module:Class" or "file.py:Class", built fresh and trained dense unless
        ``init`` names a state dict file to start from).
    train_loader, test_loader: DataLoaders (their datasets and the training loader's batch size
        are used; the order comes from ``seed``, not from their samplers) or ``Split``s.
    recipe: a Recipe, a TOML path or shipped recipe name, a dict of recipe fields, or None for
        the generic recipe (models/recipes/generic.toml).
    input_shape: (C, H, W) without the batch; default the model's ``INPUT_SHAPE`` attribute.
    device: "auto" (a GPU when torch sees one), "cpu", "cuda" or "cuda:N".
    """
    chosen = _recipe(recipe)
    train, batch_size = _data(train_loader, "train_loader")
    test, _ = _data(test_loader, "test_loader")
    changes: dict[str, Any] = {"dataset": CALLER_DATA}
    if batch_size:
        changes["batch_size"] = batch_size
    if model_kwargs is not None:
        changes["model_kwargs"] = dict(model_kwargs)
    if input_shape is not None:
        changes["input_shape"] = tuple(input_shape)
    if isinstance(model, str):
        changes["model"] = model
    elif not isinstance(model, nn.Module):
        raise UserError(f"model is a {type(model).__name__}: pass an nn.Module instance or a model spec string")
    chosen = dataclasses.replace(chosen, **changes)
    instance = model if isinstance(model, nn.Module) else None
    compressor = Compressor(chosen, train, test, seed=seed, log=log, model=instance, init=init,
                            pretrained=pretrained and instance is not None, device=device)
    ckpt = compressor.run()
    if out is not None:
        save_checkpoint(ckpt, out)
        log(f"wrote {out}")
    return ckpt


def _recipe(recipe: Recipe | str | os.PathLike | dict | None) -> Recipe:
    if recipe is None:
        return load_recipe(GENERIC)
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return recipe_from_dict(recipe)
    if isinstance(recipe, (str, Path, os.PathLike)):
        return load_recipe(recipe)
    raise UserError(f"recipe is a {type(recipe).__name__}: pass a Recipe, a TOML path, a dict or None")


def _data(loader: DataLoader | Split | Dataset, what: str) -> tuple[Split | Dataset, int | None]:
    """(the data, the loader's batch size). Two tensors in a TensorDataset are images and labels
    already in memory: they stay a Split, the fast path (no DataLoader per batch)."""
    batch_size = None
    if isinstance(loader, DataLoader):
        loader, batch_size = loader.dataset, loader.batch_size
    if isinstance(loader, TensorDataset) and len(loader.tensors) == 2:
        images, labels = loader.tensors
        return Split(images, labels.long()), batch_size
    if isinstance(loader, (Split, Dataset)):
        return loader, batch_size
    raise UserError(f"{what} is a {type(loader).__name__}: pass a torch DataLoader (or an admm_hls Split)")
