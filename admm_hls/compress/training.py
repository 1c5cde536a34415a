"""Plain mini-batch training and evaluation, with hooks for ADMM penalties and fixed masks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..datasets import Split


@dataclass(frozen=True)
class OptimizerSpec:
    """Optimizer of one training stage; the learning rate follows a cosine decay inside a stage
    and is reset at the start of the next one (each ADMM iteration is a stage)."""

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"

    def build(self, params) -> torch.optim.Optimizer:
        if self.name == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        raise ValueError(f"unknown optimizer '{self.name}': use 'adam' or 'sgd'")


@dataclass
class StageHooks:
    """Optional pieces of a training stage.

    penalty: extra loss term (the ADMM augmented-Lagrangian term).
    before_step: called after backward, before the optimizer step (gradient masking).
    after_step: called after the optimizer step (re-apply masks, restore frozen weights).
    """

    penalty: Callable[[], torch.Tensor] | None = None
    before_step: list[Callable[[], None]] = field(default_factory=list)
    after_step: list[Callable[[], None]] = field(default_factory=list)


def train_stage(
    model: nn.Module,
    data: Split,
    epochs: int,
    optimizer: OptimizerSpec,
    batch_size: int,
    generator: torch.Generator,
    hooks: StageHooks | None = None,
    desc: str = "train",
) -> float:
    """Train for ``epochs`` with a fresh optimizer; returns the mean task loss of the last epoch."""
    hooks = hooks or StageHooks()
    opt = optimizer.build(model.parameters())
    steps_per_epoch = math.ceil(len(data.labels) / batch_size)
    total = max(1, epochs * steps_per_epoch)
    if optimizer.schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model.train()
    last = 0.0
    for epoch in range(epochs):
        order = torch.randperm(len(data.labels), generator=generator)
        running, count = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False, unit="batch", disable=None)
        for step in bar:
            idx = order[step * batch_size : (step + 1) * batch_size]
            loss = F.cross_entropy(model(data.images[idx]), data.labels[idx])
            full = loss + hooks.penalty() if hooks.penalty is not None else loss
            opt.zero_grad(set_to_none=True)
            full.backward()
            for fn in hooks.before_step:
                fn()
            opt.step()
            sched.step()
            for fn in hooks.after_step:
                fn()
            running += float(loss.detach()) * len(idx)
            count += len(idx)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{running / count:.4f}")
        last = running / max(1, count)
    return last


@torch.no_grad()
def evaluate(model: nn.Module, data: Split, batch_size: int = 1000) -> float:
    """Top-1 accuracy in [0, 1]."""
    model.eval()
    correct = 0
    for start in range(0, len(data.labels), batch_size):
        logits = model(data.images[start : start + batch_size])
        correct += int((logits.argmax(1) == data.labels[start : start + batch_size]).sum())
    return correct / max(1, len(data.labels))


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of Conv2d and Linear layers, keyed by module path: the tensors ADMM compresses."""
    return {
        name: module.weight
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    }
