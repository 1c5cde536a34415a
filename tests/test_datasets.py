import gzip

import pytest
import torch

from admm_hls.datasets import DATA_ENV, MNIST_FILES, data_dir, load_mnist
from admm_hls.errors import UserError


def test_no_folder_given_says_how_to_fix(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(UserError, match="--data-dir") as exc:
        data_dir(None)
    assert DATA_ENV in str(exc.value) and "\n" not in str(exc.value)


def test_missing_files_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz is missing") as exc:
        load_mnist(tmp_path, "train")
    assert "put the four standard MNIST IDX files" in str(exc.value)
    with pytest.raises(UserError, match="does not exist"):
        load_mnist(tmp_path / "nope", "train")


def test_corrupt_file_fails_the_checksum(tmp_path):
    for name in MNIST_FILES:
        with gzip.open(tmp_path / f"{name}.gz", "wb") as fh:
            fh.write(b"\x00\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(UserError, match="corrupt"):
        load_mnist(tmp_path, "test")


def test_env_variable_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_dir(None) == tmp_path
    assert data_dir(tmp_path / "x") == tmp_path / "x"


def test_real_mnist_loads_with_published_counts(mnist_dir):
    test = load_mnist(mnist_dir, "test")
    assert test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(float(test.images.mean())) < 0.05
