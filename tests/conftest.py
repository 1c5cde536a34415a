import os
from pathlib import Path

import pytest

from admm_hls.datasets import DATA_ENV
from ci import missing

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST folder from ADMM_HLS_DATA: skipped on a user's machine without it, a
    failure in CI (where .ci/run always provides it)."""
    folder = os.environ.get(DATA_ENV)
    if not folder or not Path(folder).is_dir():
        missing(f"MNIST not available: set {DATA_ENV} to the folder with the MNIST IDX files")
    return Path(folder)
