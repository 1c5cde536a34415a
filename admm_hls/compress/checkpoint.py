"""The checkpoint every later stage reads: a dict of tensors and plain types only.

It loads with ``torch.load(weights_only=True)``: a file that would need arbitrary unpickling is
refused before any of its code can run. On disk (format version 2) pruned layers are stored
compactly (``compact.py``); in memory, and in version-1 files, which still load, every weight,
mask and codebook is a dense tensor.
"""

from __future__ import annotations

import io
import os
import platform
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..model_source import ModelSource

FORMAT = "admm-hls-checkpoint"
VERSION = 2  # the version written
READABLE = (1, 2)  # 1: every tensor dense; 2: pruned layers compact (compact.py)


def save_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike, *, version: int = VERSION) -> None:
    """Write atomically (a temporary file in the same folder, then a rename) and
    deterministically: serializing to memory gives the archive a fixed inner name, where saving
    to a path would name it after the (random) temporary file. ``version`` 1 writes the dense
    form earlier admm-hls wrote (to compare with, or for an older reader)."""
    from .compact import compact

    if version == VERSION:
        ckpt = compact(ckpt)
    elif version == 1:
        ckpt = dict(ckpt, version=1)
    else:
        raise ValueError(f"checkpoint version must be one of {READABLE}, got {version!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buffer.getbuffer())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_torch_file(path: Path, fix: str) -> Any:
    """``torch.load`` with the safe unpickler (tensors and plain types only); a file that needs
    more, or is no torch file, becomes one UserError ending in ``fix``."""
    try:
        # mmap: tensors stay in the page cache until touched, so a large checkpoint does not
        # have to be resident twice while it is lowered.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        # torch names the offending global ("Unsupported global: GLOBAL os.system"); anything
        # else the restricted unpickler rejects is simply not a checkpoint.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found:
            raise UserError(
                f"refusing {path}: loading it would need unpickling arbitrary code ({found.group(1)}); "
                "only checkpoints of tensors and plain types are accepted, re-save it as a state_dict"
            ) from None
        raise UserError(f"{path} is not a readable torch checkpoint (rejected by the safe loader): {fix}") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable torch checkpoint ({str(exc).splitlines()[0][:160]}): "
                        f"{fix}") from None


def load_checkpoint(path: str | os.PathLike, *, requantize: bool = False, stored_ranges: bool = True,
                    model: str | None = None, trust_model_code: bool = False) -> dict[str, Any]:
    """Load safely, expand compact layers (``compact.expand``) and validate every field lowering
    reads (``validate.validate_checkpoint``, where ``requantize``, ``stored_ranges``, ``model``
    and ``trust_model_code`` are described); any problem becomes one clear UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist: give the .pt file written by 'admm-hls compress'")
    ckpt = read_torch_file(path, "give the .pt file written by 'admm-hls compress'")
    from .compact import expand
    from .validate import validate_checkpoint

    ckpt = expand(ckpt, where=str(path))
    validate_checkpoint(ckpt, where=str(path), requantize=requantize, stored_ranges=stored_ranges, model=model,
                        trust_model_code=trust_model_code)
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], *, model: str | None = None, trust_model_code: bool = False,
                          architecture: ModelSource | None = None) -> torch.nn.Module:
    """Rebuild the architecture and load the compressed weights. A checkpoint of a non-zoo class
    imports it only with consent: ``model`` (the user's --model spec) or ``trust_model_code``
    (see ``model_source.from_record``); ``architecture``: that decision already taken."""
    from ..model_source import from_record

    if architecture is None:
        architecture = from_record(ckpt["arch"], model=model, trust=trust_model_code)
    # Built on the meta device and given the checkpoint's own tensors: no random initialization
    # and no second copy of the weights.
    with torch.device("meta"):
        built = architecture.build()
    built.load_state_dict(ckpt["state_dict"], assign=True)
    built.eval()
    return built


def make_checkpoint(
    arch: str | ModelSource,
    arch_kwargs: dict[str, Any],
    input_shape: tuple[int, ...],
    model: torch.nn.Module,
    geometry: dict[str, Any],
    *,
    masks: dict[str, torch.Tensor],
    keep: dict[str, float],
    bits: dict[str, int],
    levels: dict[str, torch.Tensor],
    scales: dict[str, float],
    accuracy: dict[str, float],
    recipe: dict[str, Any],
    history: list[dict[str, Any]],
    calibration: dict[str, Any],
    dataset: dict[str, Any] | None,
    seed: int,
    balance_pe: int = 0,
    source: str | None = None,
) -> dict[str, Any]:
    """The checkpoint dict: tensors and plain types only (see the module docstring). ``arch``: a
    zoo name (or a class's name, with its import ``source``), or a ``ModelSource``, whose own
    name, source and kwargs are recorded."""
    from .. import __version__
    from .targets import break_even

    if isinstance(arch, ModelSource):
        record = arch.record()
    else:
        record = ModelSource(arch, dict(arch_kwargs), source).record()
    layers = {}
    for n, g in geometry.items():
        layers[n] = {
            "kind": g.kind,
            "shape": list(g.shape),
            "out_positions": g.out_positions,
            "nonzeros": int(masks[n].sum()),
            "mask": masks[n].to("cpu", copy=True),
            "keep_target": keep[n],
            "bits": bits[n] if n in levels else None,
            "scale": scales.get(n),
            "levels": levels[n].to("cpu", torch.int8, copy=True) if n in levels else None,
            "break_even": break_even(bits[n], g.rows, g.numel),
        }
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": record,
        "input_shape": list(input_shape),
        "dataset": dataset,
        # Contiguous CPU copies: training may leave conv weights channels-last, or on a GPU.
        "state_dict": {k: v.to("cpu", memory_format=torch.contiguous_format, copy=True)
                       for k, v in model.state_dict().items()},
        "layers": layers,
        "accuracy": dict(accuracy),
        "recipe": recipe,
        "history": history,
        "calibration": calibration,
        "seed": seed,
        # The PE count whose lockstep slots the pruning balanced (0: none); build's default --pe.
        "balance_pe": int(balance_pe),
        "versions": {"admm_hls": __version__, "torch": torch.__version__.split("+")[0],
                     "python": platform.python_version()},
    }
