"""Image classification data in the ImageNet layout: ``ROOT/train/<class>/*.jpg`` and
``ROOT/val/<class>/*`` (``ROOT/test/`` is accepted when there is no ``val/``).

Images are decoded with Pillow and put through the standard ImageNet transforms. torchvision's
``ImageFolder`` and transforms are used when ``import torchvision`` works; otherwise (it often
does not: its wheels are built against one exact torch build) the same algorithms, implemented
here with Pillow + torch, give the same crops for the same random draws.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .datasets import DATA_ENV
from .errors import UserError

# torchvision's list (torchvision.datasets.folder.IMG_EXTENSIONS), matched case-insensitively,
# so that both backends see the same files and give the same labels.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Pillow's "L" conversion (ITU-R 601-2 luma): L = 0.299 R + 0.587 G + 0.114 B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
# One channel: the ImageNet statistics pushed through the same luma weights (the std assumes the
# three channels move together, which natural photos nearly do), rather than a neutral 0.5/0.5.
# A grey copy of an RGB data set then gets inputs on the same scale as the colour one, so models
# and calibration behave alike with either --channels.
GRAY_MEAN = round(sum(w * m for w, m in zip(LUMA_WEIGHTS, IMAGENET_MEAN)), 3)
GRAY_STD = round(sum(w * s for w, s in zip(LUMA_WEIGHTS, IMAGENET_STD)), 3)

# The ImageNet evaluation convention: resize the shorter side to S / 0.875 (256 for 224), then
# take the central S x S.
EVAL_CROP_FRACTION = 0.875
TRAIN_SCALE = (0.08, 1.0)
TRAIN_RATIO = (3.0 / 4.0, 4.0 / 3.0)
RANDOM_CROP_TRIES = 10

MIN_INPUT_SIZE = 8
# 3 x 2048 x 2048 float32 is 48 MiB per image; anything larger is a typo, not a model input.
MAX_INPUT_SIZE = 2048

EVAL_FOLDERS = ("val", "test")  # in order of preference
BACKENDS = ("auto", "pillow", "torchvision")


@functools.cache
def torchvision_works() -> bool:
    """Whether torchvision imports; a wheel built for another torch fails with a RuntimeError
    ("operator torchvision::nms does not exist"), not only an ImportError."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure to import means: use the Pillow path
        return False
    return True


def resolve_backend(backend: str) -> str:
    """The backend to use: "auto" picks torchvision when it imports, else pillow."""
    if backend not in BACKENDS:
        raise UserError(f"unknown image backend '{backend}': choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "torchvision" if torchvision_works() else "pillow"
    if backend == "torchvision" and not torchvision_works():
        raise UserError("torchvision does not import here: install the torchvision build that matches "
                        "your torch, or use the pillow backend")
    return backend


def check_input_size(input_size: object) -> int:
    if isinstance(input_size, bool) or not isinstance(input_size, int) \
            or not MIN_INPUT_SIZE <= input_size <= MAX_INPUT_SIZE:
        raise UserError(f"input size {input_size!r} is not usable: give a whole number of pixels from "
                        f"{MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} (224 for the ImageNet models)")
    return input_size


def check_channels(channels: object) -> int:
    if isinstance(channels, bool) or channels not in (1, 3):
        raise UserError(f"channels {channels!r} is not supported: use 3 (RGB) or 1 (grayscale)")
    return int(channels)


def normalization(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) for images scaled to [0, 1]."""
    return (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((GRAY_MEAN,), (GRAY_STD,))


def eval_resize(input_size: int) -> int:
    """The shorter side before the evaluation center crop."""
    return round(input_size / EVAL_CROP_FRACTION)


# ---------------------------------------------------------------------------------------------
# Reading the folder

def _class_folders(split_dir: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())


def _images_in(class_dir: Path) -> list[Path]:
    """The class's image files, walked and ordered as torchvision's make_dataset does (sub-folders
    included, links followed), so both backends number the samples alike."""
    return [Path(folder, name)
            for folder, _, names in sorted(os.walk(class_dir, followlinks=True))
            for name in sorted(names) if name.lower().endswith(IMAGE_EXTENSIONS)]


def split_folder(root: Path, split: str) -> Path:
    """ROOT/train for "train"; ROOT/val (else ROOT/test) for "val" or "test"."""
    if split not in ("train", "val", "test"):
        raise UserError(f"unknown split '{split}': use train, val or test")
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist: point --data-dir (or {DATA_ENV}) at a "
                        "folder with train/<class>/ and val/<class>/ image folders")
    wanted = ("train",) if split == "train" else EVAL_FOLDERS
    for name in wanted:
        if (root / name).is_dir():
            return root / name
    present = [name for name in ("train", *EVAL_FOLDERS) if (root / name).is_dir()]
    has = f"it has only {', '.join(n + '/' for n in present)}" if present else "it has neither train/ nor val/"
    raise UserError(f"image folder {root} has no {' or '.join(n + '/' for n in wanted)} folder ({has}): "
                    f"put the {'training' if split == 'train' else 'evaluation'} images in "
                    f"{root / wanted[0]}/<class>/")


def scan(split_dir: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """(sorted class names, sorted (path, label) samples), refusing empty folders."""
    classes = _class_folders(split_dir)
    if not classes:
        raise UserError(f"{split_dir} has no class folders: put each class's images in "
                        f"{split_dir}/<class name>/")
    samples = []
    for label, name in enumerate(classes):
        images = _images_in(split_dir / name)
        if not images:
            raise UserError(f"class folder {split_dir / name} has no images ({', '.join(IMAGE_EXTENSIONS)}): "
                            "add its images or remove the folder")
        samples += [(str(path), label) for path in images]
    return classes, samples


def _check_same_classes(split_dir: Path, classes: list[str]) -> None:
    """Labels are positions in the sorted class list, so an evaluation folder with other classes
    than train/ would silently give wrong labels."""
    train_dir = split_dir.parent / "train"
    if split_dir.name == "train" or not train_dir.is_dir():
        return
    train_classes = _class_folders(train_dir)
    if train_classes != classes:
        missing = sorted(set(train_classes) - set(classes))
        extra = sorted(set(classes) - set(train_classes))
        raise UserError(f"{split_dir} and {train_dir} have different class folders (missing: "
                        f"{', '.join(missing) or 'none'}; extra: {', '.join(extra) or 'none'}): "
                        "give both the same classes so that the labels match")


def load_image(path: str, mode: str) -> Image.Image:
    """The decoded image in mode "RGB" or "L"; a broken file is a one-line error naming it."""
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(f"cannot read image {path} ({reason}): replace or remove the file") from None


# ---------------------------------------------------------------------------------------------
# The transforms (torchvision's algorithms on PIL images; random draws from torch's RNG in the
# same order, so a seeded DataLoader is reproducible)

def random_resized_crop_box(width: int, height: int, scale=TRAIN_SCALE, ratio=TRAIN_RATIO) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a crop with a random area fraction in ``scale`` and a
    log-uniform aspect ratio in ``ratio``; after RANDOM_CROP_TRIES misses, the largest central crop
    with the ratio clamped into range."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(RANDOM_CROP_TRIES):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,)).item())
            left = int(torch.randint(0, width - w + 1, size=(1,)).item())
            return top, left, h, w
    image_ratio = width / height
    if image_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif image_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)
    new = (size, new_long) if width <= height else (new_long, size)
    return image if new == image.size else image.resize(new, Image.Resampling.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central size x size; the image is at least that large (eval_resize >= size)."""
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


class PillowTransform:
    """PIL image -> normalized float32 tensor C x S x S, with the training or evaluation crops."""

    def __init__(self, input_size: int, channels: int, train: bool):
        self.input_size, self.train = input_size, train
        mean, std = normalization(channels)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def crop(self, image: Image.Image) -> Image.Image:
        size = self.input_size
        if not self.train:
            return center_crop(resize_shorter_side(image, eval_resize(size)), size)
        top, left, h, w = random_resized_crop_box(*image.size)
        image = image.crop((left, top, left + w, top + h)).resize((size, size), Image.Resampling.BILINEAR)
        if torch.rand(1) < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = np.asarray(self.crop(image), dtype=np.uint8)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        x = torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / 255.0)
        return (x - self.mean) / self.std


def torchvision_transform(input_size: int, channels: int, train: bool):
    from torchvision import transforms

    mean, std = normalization(channels)
    crop = [transforms.RandomResizedCrop(input_size, scale=TRAIN_SCALE, ratio=TRAIN_RATIO),
            transforms.RandomHorizontalFlip()] if train else \
           [transforms.Resize(eval_resize(input_size)), transforms.CenterCrop(input_size)]
    return transforms.Compose([*crop, transforms.ToTensor(), transforms.Normalize(mean, std)])


# ---------------------------------------------------------------------------------------------

class ImageFolder(torch.utils.data.Dataset):
    """One split of an ImageNet-layout folder: item i is (float32 tensor C x S x S, int label),
    labels numbering the sorted class folders."""

    def __init__(self, split_dir: str | os.PathLike, *, input_size: int = 224, channels: int = 3,
                 train: bool = False, backend: str = "auto"):
        self.root = Path(split_dir)
        self.input_size = check_input_size(input_size)
        self.channels = check_channels(channels)
        self.train = bool(train)
        self.backend = resolve_backend(backend)
        self.mean, self.std = normalization(self.channels)
        # Checked here for both backends: torchvision's own errors are multi-line tracebacks.
        self.classes, self.samples = scan(self.root)
        loader = functools.partial(load_image, mode="RGB" if self.channels == 3 else "L")
        if self.backend == "torchvision":
            from torchvision import datasets

            folder = datasets.ImageFolder(str(self.root), loader=loader,
                                          transform=torchvision_transform(self.input_size, self.channels, self.train))
            self.classes, self.samples = folder.classes, folder.samples
            self._load = folder.loader
            self.transform = folder.transform
        else:
            self._load = loader
            self.transform = PillowTransform(self.input_size, self.channels, self.train)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return self.transform(self._load(path)), label


def load_image_folder(root: str | os.PathLike, split: str, *, input_size: int = 224, channels: int = 3,
                      train: bool | None = None, backend: str = "auto") -> ImageFolder:
    """The "train", "val" or "test" split of ROOT (val/ preferred over test/ for the latter two),
    with the training transforms for "train" and the evaluation ones otherwise unless ``train``
    says which."""
    split_dir = split_folder(Path(root).expanduser(), split)
    dataset = ImageFolder(split_dir, input_size=input_size, channels=channels,
                          train=split == "train" if train is None else train, backend=backend)
    _check_same_classes(split_dir, dataset.classes)
    return dataset
