"""Mini-batches of the training data, whatever holds it, on the training device, and shared out
among the ranks of a distributed run.

Two kinds of data: a ``Split`` (tensors in memory: batches are index operations, the fast path)
or any map-style ``torch.utils.data.Dataset`` yielding (image, label), read through a
``DataLoader``. Training batches are shuffled from the caller's generator; with several
processes every rank takes its share of each global batch, so a global batch holds
``batch_size`` samples whatever the number of ranks. Evaluation batches keep the data's order,
each rank reading one contiguous shard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Union

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ..datasets import Split
from . import distributed
from .device import prefers_channels_last

Data = Union[Split, Dataset]


def size(data: Data) -> int:
    return len(data.labels) if isinstance(data, Split) else len(data)


def subset(data: Data, start: int, stop: int) -> Data:
    """Samples start..stop-1, of the same kind as ``data``."""
    if isinstance(data, Split):
        return Split(data.images[start:stop], data.labels[start:stop])
    return Subset(data, range(start, stop))


def first_images(data: Data, n: int) -> torch.Tensor:
    """The first ``n`` images (fewer when the data is shorter), stacked, on the CPU."""
    n = min(n, size(data))
    if isinstance(data, Split):
        return data.images[:n]
    return torch.stack([data[i][0] for i in range(n)]) if n else torch.empty(0)


def steps_per_epoch(data: Data, batch_size: int) -> int:
    """Optimizer steps in one epoch (the same on every rank)."""
    if isinstance(data, Split):
        return math.ceil(size(data) / batch_size)
    world = distributed.world_size()
    return math.ceil(math.ceil(size(data) / world) / _rank_batch(batch_size, world))


def _rank_batch(batch_size: int, world: int) -> int:
    return math.ceil(batch_size / world)


@dataclass
class Batch:
    """This rank's part of one global batch.

    index: the samples' positions in the data where they are known (a Split, or evaluation), so
    per-sample values such as precomputed teacher logits can be looked up; else None.
    share: this rank's fraction of the global batch times the number of ranks. DDP averages the
    ranks' gradients, so a per-rank mean loss scaled by ``share`` averages to the global mean
    even when the last batch does not split evenly (1.0 for one process).
    """

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor | None
    share: float = 1.0


def _on(device: torch.device, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Pinned loader memory makes these copies asynchronous on CUDA; on the CPU they are no-ops.
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    if images.dim() == 4 and prefers_channels_last(device):
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


def _loader(data: Dataset, batch_size: int, device: torch.device, workers: int, **kwargs) -> DataLoader:
    return DataLoader(data, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=False, **kwargs)


class TrainBatches:
    """Shuffled training batches, one epoch per ``epoch(n)`` call, ``len()`` steps each.

    Split: every rank draws the same permutation from ``generator`` (seeded alike on every rank)
    and takes its slice of each global batch, so the global batches and their order are those of
    a single-process run. Dataset: a DistributedSampler (a single replica for one process)
    seeded once from ``generator``, re-shuffled per epoch with ``set_epoch``; each rank loads
    ceil(batch_size / ranks) samples a step.
    """

    def __init__(self, data: Data, batch_size: int, generator: torch.Generator, device: torch.device,
                 workers: int = 0):
        self.data, self.batch_size, self.generator, self.device = data, batch_size, generator, device
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.steps = steps_per_epoch(data, batch_size)
        if not isinstance(data, Split):
            seed = int(torch.randint(0, 2**62, (), generator=generator))
            self.sampler = DistributedSampler(data, num_replicas=self.world, rank=self.rank, shuffle=True, seed=seed)
            self.loader = _loader(data, _rank_batch(batch_size, self.world), device, workers, sampler=self.sampler,
                                  generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return self.steps

    def epoch(self, number: int) -> Iterator[Batch]:
        if isinstance(self.data, Split):
            yield from self._split_epoch()
        else:
            self.sampler.set_epoch(number)
            for images, labels in self.loader:
                yield Batch(*_on(self.device, images, labels), index=None)

    def _split_epoch(self) -> Iterator[Batch]:
        order = torch.randperm(size(self.data), generator=self.generator)
        for step in range(self.steps):
            idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            mine = idx.tensor_split(self.world)[self.rank] if self.world > 1 else idx
            share = len(mine) * self.world / len(idx) if self.world > 1 else 1.0
            yield Batch(*_on(self.device, self.data.images[mine], self.data.labels[mine]), index=mine, share=share)


def eval_batches(data: Data, batch_size: int, device: torch.device, workers: int = 0) -> Iterator[Batch]:
    """This rank's contiguous shard of ``data``, in order, with each sample's position."""
    n, world, rank = size(data), distributed.world_size(), distributed.rank()
    start, stop = n * rank // world, n * (rank + 1) // world
    if isinstance(data, Split):
        for s in range(start, stop, batch_size):
            e = min(s + batch_size, stop)
            yield Batch(*_on(device, data.images[s:e], data.labels[s:e]), index=torch.arange(s, e))
        return
    position = start
    for images, labels in _loader(Subset(data, range(start, stop)), batch_size, device, workers, shuffle=False):
        yield Batch(*_on(device, images, labels), index=torch.arange(position, position + len(labels)))
        position += len(labels)
