"""How the tests read CI, and that CI runs the README's test command."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci import in_ci, missing

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("value,ci", [(None, False), ("", False), ("0", False), ("false", False), ("FALSE", False),
                                      ("No", False), ("true", True), ("1", True), ("yes", True), ("github", True)])
def test_in_ci(monkeypatch, value, ci):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_missing_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"^no tool \(CI must have it\)$"):
        missing("no tool")
    monkeypatch.setenv("CI", "0")
    with pytest.raises(pytest.skip.Exception, match=r"^no tool$"):
        missing("no tool")


def test_ci_runs_the_readme_test_command():
    """.ci/run's last line is the README's second command, character for character (the tools it
    installs are the ones the tests fail without under CI)."""
    command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = (REPO / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[1].split("   #", 1)[0].rstrip() == command
    assert command.startswith("apt-get update && apt-get install -y iverilog g++ make tcl && ")
