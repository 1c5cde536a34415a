"""The imagefolder data set: layout and labels, the ImageNet transforms (Pillow path, and
torchvision's where it imports), seeded randomness, DataLoader workers and the one-line errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from admm_hls.datasets import DATA_ENV, Split, dataset_record, load_dataset
from admm_hls.errors import UserError
from admm_hls.image_folder import (GRAY_MEAN, GRAY_STD, IMAGENET_MEAN, IMAGENET_STD, ImageFolder,
                                   load_image_folder, random_resized_crop_box, torchvision_works)

CLASSES = ["cat", "dog", "emu"]
SIZE = 16


def _noise(seed: int, mode: str = "RGB", size=(20, 30)) -> Image.Image:
    """A width x height image of seeded random pixels."""
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), mode)


def _write_split(folder, classes, per_class):
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            _noise(10 * c + i).save(folder / name / f"img{i}.png")


@pytest.fixture
def root(tmp_path):
    """train/: 3 classes x 4 PNGs (20x30 RGB), plus in cat/ a grayscale PNG, an upper-case .JPG,
    one in a sub-folder and a non-image file; val/: the same classes, 2 PNGs each."""
    data = tmp_path / "data"
    _write_split(data / "train", CLASSES, 4)
    _noise(99, "L").save(data / "train" / "cat" / "gray.png")
    _noise(98).save(data / "train" / "cat" / "photo.JPG", format="JPEG")
    (data / "train" / "cat" / "more").mkdir()
    _noise(97).save(data / "train" / "cat" / "more" / "deep.png")
    (data / "train" / "cat" / "notes.txt").write_text("not an image")
    _write_split(data / "val", CLASSES, 2)
    return data


def _pillow(root, split, **options):
    return load_image_folder(root, split, input_size=options.pop("input_size", SIZE), backend="pillow", **options)


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message
    return message


# --- layout and labels -------------------------------------------------------------------------

def test_classes_are_sorted_folders_and_samples_sorted_paths(root):
    train = _pillow(root, "train")
    assert train.classes == CLASSES and train.class_to_idx == {"cat": 0, "dog": 1, "emu": 2}
    names = [p.split("/data/train/")[1] for p, _ in train.samples]
    assert names[:7] == ["cat/gray.png", "cat/img0.png", "cat/img1.png", "cat/img2.png", "cat/img3.png",
                         "cat/photo.JPG", "cat/more/deep.png"]
    assert "cat/notes.txt" not in names
    assert train.targets == [0] * 7 + [1] * 4 + [2] * 4 and len(train) == 15
    assert [label for _, label in (train[i] for i in range(len(train)))] == train.targets


def test_val_is_preferred_and_test_accepted(root):
    val = _pillow(root, "test")
    assert val.root == root / "val" and len(val) == 6 and not val.train
    (root / "val").rename(root / "test")
    assert _pillow(root, "val").root == root / "test"
    assert _pillow(root, "test", train=True).train  # the override


def test_shapes_dtype_and_channels(root):
    for channels in (3, 1):
        for split in ("train", "val"):
            data = _pillow(root, split, channels=channels)
            x, label = data[0]
            assert x.shape == (channels, SIZE, SIZE) and x.dtype == torch.float32 and isinstance(label, int)
            assert (data.mean, data.std) == ((IMAGENET_MEAN, IMAGENET_STD) if channels == 3
                                             else ((GRAY_MEAN,), (GRAY_STD,)))
    gray_as_rgb, _ = _pillow(root, "train", train=False)[0]  # cat/gray.png, converted to RGB: R = G
    assert np.allclose(gray_as_rgb[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0],
                       gray_as_rgb[1] * IMAGENET_STD[1] + IMAGENET_MEAN[1], atol=1e-6)


# --- the evaluation transform, exactly ---------------------------------------------------------

def _gradient_folder(tmp_path, width, height):
    """val/a/g.png whose pixel (x, y) is (10 x, 20 y, 77)."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([10 * x, 20 * y, np.full_like(x, 77)], axis=-1).astype(np.uint8)
    (tmp_path / "val" / "a").mkdir(parents=True)
    Image.fromarray(pixels, "RGB").save(tmp_path / "val" / "a" / "g.png")
    return pixels


def test_eval_center_crop_picks_the_central_region_and_normalizes(tmp_path):
    # S = 8: the shorter side is resized to round(8 / 0.875) = 9, which a 12 x 9 image already
    # has, so the output is exactly the central 8 x 8: columns 2..9, rows round(0.5) = 0..7.
    pixels = _gradient_folder(tmp_path, 12, 9)
    x, _ = load_image_folder(tmp_path, "val", input_size=8, backend="pillow")[0]
    expected = torch.from_numpy(pixels[0:8, 2:10].transpose(2, 0, 1) / 255.0).float()
    expected = (expected - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(x, expected)
    assert float(x[0, 0, 0]) == pytest.approx((20 / 255 - 0.485) / 0.229, abs=1e-6)


def test_eval_resizes_the_shorter_side_then_crops(tmp_path):
    # 40 x 24 -> shorter side 9, longer int(9 * 40 / 24) = 15 -> central 8 x 8 from column 4.
    _gradient_folder(tmp_path, 40, 24)
    x, _ = load_image_folder(tmp_path, "val", input_size=8, backend="pillow")[0]
    resized = Image.open(tmp_path / "val" / "a" / "g.png").resize((15, 9), Image.Resampling.BILINEAR)
    expected = np.asarray(resized.crop((4, 0, 12, 8)), dtype=np.float32).transpose(2, 0, 1) / 255.0
    torch.testing.assert_close(x * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1),
                               torch.from_numpy(expected), atol=1e-6, rtol=0)


def test_gray_normalization_on_a_flat_image(tmp_path):
    (tmp_path / "val" / "a").mkdir(parents=True)
    Image.new("L", (10, 10), 200).save(tmp_path / "val" / "a" / "flat.png")
    x, _ = load_image_folder(tmp_path, "val", input_size=8, channels=1, backend="pillow")[0]
    torch.testing.assert_close(x, torch.full((1, 8, 8), (200 / 255 - GRAY_MEAN) / GRAY_STD))


# --- the training transform's randomness -------------------------------------------------------

def _train_tensors(data, seed):
    torch.manual_seed(seed)
    return torch.stack([data[i][0] for i in range(len(data))])


def test_train_transform_is_random_and_seeded(root):
    train = _pillow(root, "train")
    first, again, other = _train_tensors(train, 0), _train_tensors(train, 0), _train_tensors(train, 1)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_random_crop_boxes_stay_inside_and_follow_the_scale():
    torch.manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(30, 20)
        assert 0 <= top and top + h <= 20 and 0 <= left and left + w <= 30
        assert 0.08 * 600 * 0.8 <= h * w <= 600  # area fraction in [0.08, 1] up to rounding


def test_random_crop_falls_back_to_the_central_crop_with_the_ratio_clamped():
    impossible = (5.0, 6.0)  # every try asks for more area than the image has
    assert random_resized_crop_box(100, 10, scale=impossible) == (0, 43, 10, 13)  # wide: w = round(10 * 4/3)
    assert random_resized_crop_box(10, 100, scale=impossible) == (43, 0, 13, 10)  # tall: h = round(10 / (3/4))
    assert random_resized_crop_box(24, 20, scale=impossible) == (0, 0, 20, 24)  # 6:5 is in range: all of it


def test_dataloader_with_two_workers_is_reproducible(root):
    train = _pillow(root, "train")

    def epoch(seed):
        loader = torch.utils.data.DataLoader(train, batch_size=4, shuffle=True, num_workers=2,
                                             generator=torch.Generator().manual_seed(seed))
        return [(x, y) for x, y in loader]

    first = epoch(0)
    assert sum(len(y) for _, y in first) == len(train)
    assert first[0][0].shape == (4, 3, SIZE, SIZE)
    assert sorted(torch.cat([y for _, y in first]).tolist()) == sorted(train.targets)
    again = epoch(0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, epoch(1)))


# --- errors: one line each ---------------------------------------------------------------------

def test_missing_root(tmp_path):
    with pytest.raises(UserError, match="does not exist") as exc:
        _pillow(tmp_path / "nope", "train")
    assert DATA_ENV in _one_line(exc)


def test_missing_split_folder_says_which_exist(root, tmp_path):
    (root / "val").rename(root / "other")
    with pytest.raises(UserError, match=r"has no val/ or test/ folder \(it has only train/\)") as exc:
        _pillow(root, "val")
    _one_line(exc)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"has no train/ folder \(it has neither train/ nor val/\)") as exc:
        _pillow(tmp_path / "empty", "train")
    _one_line(exc)


def test_no_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError, match="has no class folders") as exc:
        _pillow(tmp_path, "train")
    _one_line(exc)


def test_class_folder_without_images(root):
    (root / "train" / "fox").mkdir()
    (root / "train" / "fox" / "readme.txt").write_text("x")
    with pytest.raises(UserError, match=r"class folder .*train/fox has no images") as exc:
        _pillow(root, "train")
    _one_line(exc)


def test_eval_classes_must_match_train(root):
    (root / "val" / "emu").rename(root / "val" / "yak")
    with pytest.raises(UserError, match="missing: emu; extra: yak") as exc:
        _pillow(root, "val")
    _one_line(exc)


def test_corrupt_and_truncated_images_fail_when_read_and_name_the_file(root):
    (root / "train" / "dog" / "img1.png").write_bytes(b"not a png at all")
    jpeg = root / "train" / "emu" / "img2.jpg"
    _noise(5, size=(64, 64)).save(jpeg, format="JPEG")
    jpeg.write_bytes(jpeg.read_bytes()[:300])
    train = _pillow(root, "train")  # listing does not open the files
    for name in ("dog/img1.png", "emu/img2.jpg"):
        index = next(i for i, (p, _) in enumerate(train.samples) if p.endswith(name))
        with pytest.raises(UserError, match=f"cannot read image .*{name}") as exc:
            train[index]
        _one_line(exc)


@pytest.mark.parametrize("input_size", [4, 7, 100_000, 22.5, True, "224"])
def test_bad_input_size(root, input_size):
    with pytest.raises(UserError, match="input size") as exc:
        _pillow(root, "train", input_size=input_size)
    _one_line(exc)


@pytest.mark.parametrize("channels", [0, 2, 4, True])
def test_bad_channels(root, channels):
    with pytest.raises(UserError, match="channels") as exc:
        _pillow(root, "train", channels=channels)
    _one_line(exc)


def test_unknown_backend_and_split(root):
    with pytest.raises(UserError, match="unknown image backend"):
        load_image_folder(root, "train", backend="opencv")
    with pytest.raises(UserError, match="unknown split"):
        load_image_folder(root, "validation", backend="pillow")


# --- the registry and the checkpoint record ----------------------------------------------------

def test_load_dataset_imagefolder_from_the_env_folder(root, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(root))
    data = load_dataset("imagefolder", None, "test", input_size=SIZE, channels=1)
    assert isinstance(data, ImageFolder) and data.root == root / "val" and data[0][0].shape == (1, SIZE, SIZE)
    assert load_dataset("imagefolder", root, "train").input_size == 224  # the default
    monkeypatch.delenv(DATA_ENV)
    with pytest.raises(UserError, match="no image folder given: pass --data-dir") as exc:
        load_dataset("imagefolder", None, "train")
    assert "train/<class>/" in _one_line(exc)


def test_load_dataset_mnist_refuses_other_geometry(tmp_path):
    with pytest.raises(UserError, match="MNIST images are 28x28, not 32"):
        load_dataset("mnist", tmp_path, "test", input_size=32)
    with pytest.raises(UserError, match="MNIST images have 1 channel, not 3"):
        load_dataset("mnist", tmp_path, "test", channels=3)
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz is missing"):  # 28 is fine
        load_dataset("mnist", tmp_path, "train", input_size=28, channels=1)
    with pytest.raises(UserError, match="choose one of imagefolder, mnist"):
        load_dataset("cifar", tmp_path, "train")


def test_dataset_record(root):
    mnist = Split(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.int64))
    assert dataset_record(mnist) == {"name": "mnist", "mean": [0.1307], "std": [0.3081]}
    assert dataset_record(_pillow(root, "val", channels=1)) == {
        "name": "imagefolder", "mean": [GRAY_MEAN], "std": [GRAY_STD], "input_size": SIZE, "channels": 1,
        "classes": 3}
    assert dataset_record(_pillow(root, "train"))["mean"] == [0.485, 0.456, 0.406]


# --- torchvision, where it imports -------------------------------------------------------------

def test_torchvision_backend_matches_the_pillow_one(root):
    if not torchvision_works():
        with pytest.raises(UserError, match="torchvision does not import here"):
            load_image_folder(root, "train", backend="torchvision")
        pytest.skip("torchvision does not import with this torch build (its wheels are tied to one torch "
                    "build), so only the Pillow path is tested")
    pillow, vision = _pillow(root, "val"), load_image_folder(root, "val", input_size=SIZE, backend="torchvision")
    assert vision.backend == "torchvision" and (vision.classes, vision.samples) == (pillow.classes, pillow.samples)
    for i in range(len(pillow)):
        torch.testing.assert_close(vision[i][0], pillow[i][0], atol=1e-5, rtol=0)
        assert vision[i][1] == pillow[i][1]
    train = load_image_folder(root, "train", input_size=SIZE, backend="torchvision")
    assert train[0][0].shape == (3, SIZE, SIZE)
