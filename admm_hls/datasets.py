"""The data sets by name: "mnist" (the standard IDX(.gz) files, with the published checksums
verified) and "imagefolder" (your own images in the ImageNet layout, see image_folder.py).

The folder comes from ``--data-dir`` or the ``ADMM_HLS_DATA`` environment variable; nothing is
downloaded (the tool must work on machines with no network).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

DATA_ENV = "ADMM_HLS_DATA"

# md5 of the uncompressed IDX files, as published with the data set.
MNIST_FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MNIST_SIZE = 28


@dataclass(frozen=True)
class Split:
    """Normalized images (N, 1, 28, 28) float32 and labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def head(self, n: int | None) -> "Split":
        return self if n is None else Split(self.images[:n], self.labels[:n])


FOLDER_CONTENTS = {
    "mnist": ("MNIST", ", ".join(f"{n}.gz" for n in MNIST_FILES)),
    "imagefolder": ("image", "train/<class>/ and val/<class>/ folders of images"),
}


def data_dir(option: str | os.PathLike | None, dataset: str = "mnist") -> Path:
    """The data folder from the option, else the environment variable, else a clear error."""
    chosen = option or os.environ.get(DATA_ENV)
    if not chosen:
        label, contents = FOLDER_CONTENTS[dataset]
        raise UserError(f"no {label} folder given: pass --data-dir DIR or set {DATA_ENV}=DIR, where DIR holds "
                        f"{contents}")
    return Path(chosen).expanduser()


def _read_idx(folder: Path, name: str) -> np.ndarray:
    """Read one IDX file (gzip or raw) and verify its md5 against the published value."""
    for path, opener in ((folder / f"{name}.gz", gzip.open), (folder / name, open)):
        if path.is_file():
            with opener(path, "rb") as fh:
                raw = fh.read()
            break
    else:
        raise UserError(
            f"MNIST file {name}.gz is missing in {folder}: put the four standard MNIST IDX files "
            f"({', '.join(f'{n}.gz' for n in MNIST_FILES)}) there, or point --data-dir/{DATA_ENV} "
            "at the folder that has them"
        )
    digest = hashlib.md5(raw).hexdigest()
    if digest != MNIST_FILES[name]:
        raise UserError(
            f"MNIST file {path} is corrupt (md5 {digest}, expected {MNIST_FILES[name]}): "
            "replace it with the original file"
        )
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def load_mnist(folder: str | os.PathLike | None, split: str) -> Split:
    """Load the "train" or "test" split, normalized with the usual MNIST mean/std."""
    root = data_dir(folder)
    if not root.is_dir():
        raise UserError(
            f"MNIST folder {root} does not exist: create it with the four MNIST IDX files, "
            f"or point --data-dir/{DATA_ENV} at the folder that has them"
        )
    prefix = {"train": "train", "test": "t10k"}[split]
    images = _read_idx(root, f"{prefix}-images-idx3-ubyte")
    labels = _read_idx(root, f"{prefix}-labels-idx1-ubyte")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - MNIST_MEAN) / MNIST_STD
    return Split(x.contiguous(), torch.from_numpy(labels.astype(np.int64)))


DATASETS = ("imagefolder", "mnist")


def load_dataset(name: str, folder: str | os.PathLike | None, split: str, *, input_size: int | None = None,
                 channels: int | None = None):
    """By name: "mnist" gives the in-memory Split ("train" or "test"; 28x28, one channel); "imagefolder" the
    torch Dataset of ROOT/train or ROOT/val (ROOT/test), with defaults input_size 224, channels 3."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset '{name}': choose one of {', '.join(DATASETS)}")
    if name == "mnist":
        if input_size not in (None, MNIST_SIZE):
            raise UserError(f"MNIST images are {MNIST_SIZE}x{MNIST_SIZE}, not {input_size}: drop the input size "
                            "or use the imagefolder dataset")
        if channels not in (None, 1):
            raise UserError(f"MNIST images have 1 channel, not {channels}: drop the channel count or use the "
                            "imagefolder dataset")
        return load_mnist(folder, split)
    from .image_folder import load_image_folder  # imports Pillow; MNIST does not need it

    options = {key: value for key, value in (("input_size", input_size), ("channels", channels))
               if value is not None}
    return load_image_folder(data_dir(folder, "imagefolder"), split, **options)


# The dataset entry of data a caller brings (the Python API, a Dataset of their own): no
# normalization admm-hls knows, so build makes random test vectors instead of reading a set.
CALLER_DATA = "custom"


def dataset_record(data) -> dict:
    """The checkpoint's ``dataset`` entry for what load_dataset returned: the normalization a
    deployment must repeat, plus for image folders the input geometry and the class count; for
    any other Dataset only its name, ``CALLER_DATA``."""
    if isinstance(data, Split):
        return {"name": "mnist", "mean": [MNIST_MEAN], "std": [MNIST_STD]}
    if not hasattr(data, "classes"):
        return {"name": CALLER_DATA}
    return {"name": "imagefolder", "mean": list(data.mean), "std": list(data.std), "input_size": data.input_size,
            "channels": data.channels, "classes": len(data.classes)}
