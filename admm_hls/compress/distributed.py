"""Several processes training one model (torch.distributed, launched by torchrun).

Every rank runs the whole recipe on its share of each global batch; DistributedDataParallel
averages the gradients, so the weights stay identical on every rank, and so does everything
computed from them (ADMM's Z and U, masks, levels). Output (logs, progress bars, the checkpoint)
comes from rank 0 only; ``check_agree`` verifies that the ranks really hold the same state.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError
from .device import resolve_device


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Started by torchrun (or another launcher that sets WORLD_SIZE) with more than one process."""
    if not dist.is_available():
        return False
    return dist.is_torchelastic_launched() or int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str | torch.device = "auto") -> Context:
    """Join the process group when launched with several processes (gloo on the CPU, nccl on
    CUDA with one GPU per rank, LOCAL_RANK), else a single-process context."""
    chosen = resolve_device(device)
    if not launched():
        return Context(0, 1, chosen)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        if chosen.type == "cuda":
            dist.init_process_group("nccl", device_id=chosen)
        else:
            dist.init_process_group("gloo")
    return Context(dist.get_rank(), dist.get_world_size(), chosen)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def session(device: str | torch.device = "auto") -> Iterator[Context]:
    """``setup`` for the duration of a ``with`` block, ``teardown`` after it, even on errors."""
    try:
        yield setup(device)
    finally:
        teardown()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def main_only(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` on rank 0, nothing elsewhere (every rank computes the same lines)."""
    def on_main(line: str) -> None:
        if is_main():
            log(line)
    return on_main


def parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """The model wrapped in DistributedDataParallel when several processes train it, else the
    model itself. The wrapper holds the model's own parameters, so optimizers, ADMM and masks
    built on them keep working."""
    if world_size() == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def sum_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over the ranks (a no-op for one process); returns the tensor."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def max_across_ranks(value: int, device: torch.device) -> int:
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def digest(tensor: torch.Tensor) -> str:
    """sha256 of dtype, shape and values (not the memory layout: a channels-last copy digests
    like its contiguous twin)."""
    t = tensor.detach().to("cpu").contiguous().reshape(-1)
    h = hashlib.sha256(f"{t.dtype} {tuple(tensor.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_agree(tensors: dict[str, torch.Tensor], what: str) -> str:
    """Every rank compares the digests of ``tensors`` with rank 0's; any difference is a
    UserError on every rank (so none waits forever for the others). Returns the digest of the
    whole set."""
    mine = {name: digest(t) for name, t in sorted(tensors.items())}
    whole = hashlib.sha256(" ".join(f"{n}={d}" for n, d in mine.items()).encode()).hexdigest()
    world = world_size()
    if world == 1:
        return whole
    everyone: list[Any] = [None] * world
    dist.all_gather_object(everyone, mine)
    reference = everyone[0]
    ranks = [r for r, theirs in enumerate(everyone) if theirs != reference]
    if ranks:
        names = sorted({n for r in ranks for n in set(reference) | set(everyone[r])
                        if everyone[r].get(n) != reference.get(n)})
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise UserError(f"the {world} processes disagree on {what}: {shown} differ(s) between rank 0 and "
                        f"rank(s) {', '.join(map(str, ranks))}; run every rank with the same torch, --threads and "
                        "device type, or train in one process")
    return whole


def save_agreed(ckpt: dict[str, Any], path, log: Callable[[str], None]) -> None:
    """End of a (possibly distributed) compress run: the ranks check that they agree on the
    final weights, masks and levels, rank 0 alone writes the checkpoint, and every rank waits
    for it to be written."""
    from .checkpoint import save_checkpoint

    tensors = {f"state_dict.{k}": v for k, v in ckpt["state_dict"].items()}
    for name, layer in ckpt["layers"].items():
        tensors[f"{name}.mask"] = layer["mask"]
        if layer["levels"] is not None:
            tensors[f"{name}.levels"] = layer["levels"]
    whole = check_agree(tensors, "the final weights, masks and levels")
    if world_size() > 1:
        log(f"{world_size()} processes agree on the final weights, masks and levels (sha256 {whole[:16]})")
    if is_main():
        save_checkpoint(ckpt, path)
    barrier()
