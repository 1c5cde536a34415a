"""The project writer is atomic under concurrency and kills: builds racing into one --out with
--force leave one whole project (byte for byte a reference build) and no temporary folders; a
build killed with SIGKILL at any moment leaves the final name absent or a whole project."""

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from admm_hls.build import project
from admm_hls.errors import UserError

BUILD = [sys.executable, "-m", "admm_hls.cli", "build", "--vectors", "1"]  # the shipped LeNet-5


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference") / "p"
    subprocess.run(BUILD + ["--out", str(out)], check=True, capture_output=True, timeout=600)
    return tree(out)


def test_racing_force_builds_leave_one_whole_project(reference, tmp_path):
    """Whole `admm-hls build --force` processes, two at a time. Their renames seldom meet in the
    same instant; the threaded test below makes them meet every round."""
    out = tmp_path / "p"
    out.mkdir()
    (out / "old.txt").write_text("a previous project")  # replaced by the first round
    for _ in range(3):
        procs = [subprocess.Popen(BUILD + ["--out", str(out), "--force"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
        assert tree(out) == reference
        assert [p.name for p in tmp_path.iterdir()] == ["p"]  # no .p.tmp-* or .p.old-* left behind


def test_concurrent_swaps_leave_one_whole_folder(tmp_path):
    """The final step of many builds at once (threads: os.rename releases the GIL), round after
    round: every swap succeeds, the folder is exactly one writer's, nothing is left beside it."""
    out, writers, files = tmp_path / "p", 6, 20
    for round_ in range(30):
        tmps = []
        for w in range(writers):
            tmp = tmp_path / f".p.tmp-{round_}-{w}"
            tmp.mkdir()
            for f in range(files):
                (tmp / f"f{f}").write_text(f"{round_}-{w}")
            tmps.append(tmp)
        barrier, errors = threading.Barrier(writers), []

        def swap(tmp):
            barrier.wait()
            try:
                project._swap_into_place(tmp, out, force=True)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=swap, args=(tmp,)) for tmp in tmps]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        contents = {p.read_text() for p in out.iterdir()}
        assert len(list(out.iterdir())) == files and len(contents) == 1 and contents.pop().startswith(f"{round_}-")
        assert [p.name for p in tmp_path.iterdir()] == ["p"]


def test_a_build_that_lands_first_is_replaced_whole(tmp_path, monkeypatch):
    """The interleaving a race can produce, made certain: another build renames its project into
    place just after this one moved the old folder aside. With force this build moves that one
    aside too and lands; without force it is one clear error and the other project stays."""
    out, mine, theirs = tmp_path / "p", tmp_path / ".p.tmp-mine", tmp_path / ".p.tmp-theirs"
    for folder, text in ((out, "old"), (mine, "mine"), (theirs, "theirs")):
        folder.mkdir()
        (folder / "file").write_text(text)
    real_rename = os.rename

    def rename(src, dst):
        real_rename(src, dst)
        if Path(src) == out and theirs.exists():  # this build just moved `out` aside
            real_rename(theirs, out)

    monkeypatch.setattr(project.os, "rename", rename)
    project._swap_into_place(mine, out, force=True)
    assert (out / "file").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]

    # Without force: --out was absent when this build checked it, another build landed since.
    mine.mkdir()
    (mine / "file").write_text("mine 2")
    with pytest.raises(UserError, match="exists and is not empty: pass --force"):
        project._swap_into_place(mine, out, force=False)
    assert (out / "file").read_text() == "mine"


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _never(parent: Path) -> bool:
    return False


def _started(parent: Path) -> bool:
    """Whether a build has made its temporary folder under ``parent``."""
    return any(parent.glob(".p.tmp-*"))


def _writing(parent: Path) -> bool:
    """Whether a build's temporary folder under ``parent`` holds a file yet."""
    return any(files for tmp in parent.glob(".p.tmp-*") for _, _, files in os.walk(tmp))


# (moment, longest wait for it, delay after it)
KILLS = [(_never, 1.0, 0.0),  # while lowering
         (_started, 120, 0.0),  # as the temporary folder appears
         (_writing, 120, 0.0),  # in the middle of writing the files
         (_started, 120, random.Random(0).uniform(0.1, 0.6))]  # a moment later


@pytest.mark.parametrize("force", [False, True], ids=["fresh", "force"])
def test_sigkill_never_leaves_a_partial_project(reference, tmp_path, force):
    """Killed at each moment of KILLS: the final name is absent, the previous project, or the
    new one, each whole."""
    previous = None
    if force:  # a different project to replace
        subprocess.run(BUILD + ["--out", str(tmp_path / "previous"), "--pe", "2"], check=True, capture_output=True,
                       timeout=600)
        previous = tree(tmp_path / "previous")
    for i, (moment, wait, delay) in enumerate(KILLS):
        parent = tmp_path / f"kill{i}"
        out = parent / "p"
        if force:
            shutil.copytree(tmp_path / "previous", out)
        proc = subprocess.Popen(BUILD + ["--out", str(out)] + (["--force"] if force else []),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: moment(parent) or proc.poll() is not None, wait)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        if out.exists():
            assert tree(out) in (reference, previous), f"kill {i}: a partial project under the final name"
