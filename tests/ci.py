"""The one reading of the ``CI`` environment variable, for tests/ and hw_tests/ (pyproject puts
this folder on the test path). CI (.ci/run) installs every tool and data set the tests need, so
there a missing one is a failure; on a user's machine it skips the test with the reason."""

from __future__ import annotations

import os

import pytest

NOT_CI = ("", "0", "false", "no")


def in_ci() -> bool:
    """CI is set to anything but "", "0", "false" or "no" (in any case)."""
    return os.environ.get("CI", "").lower() not in NOT_CI


def missing(reason: str) -> None:
    """Skip on a user's machine, fail in CI (CI must have it)."""
    if in_ci():
        pytest.fail(f"{reason} (CI must have it)")
    pytest.skip(reason)
