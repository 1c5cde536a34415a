"""User-defined model classes in checkpoints: named by import spec, and imported only when the
user names the class (--model) or trusts the checkpoint (--trust-model-code)."""

import copy
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from admm_hls import lower
from admm_hls.cli import build_parser
from admm_hls.compress.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from admm_hls.compress.oneshot import project_checkpoint
from admm_hls.compress.validate import validate_checkpoint
from admm_hls.errors import UserError
from admm_hls.model_source import (
    ModelSource, from_module, from_record, from_spec, parse_input_shape, parse_kwargs,
)
from admm_hls.resources import resource_dir

REPO = Path(__file__).resolve().parent.parent

# The module body leaves a marker: the test's proof that the module was (or was not) imported.
NETS = '''
import os
from pathlib import Path

from torch import nn

Path(os.environ["MARKER"]).write_text("imported")


class Net(nn.Module):
    INPUT_SHAPE = (1, 8, 8)

    def __init__(self, channels=4, classes=3):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(channels * 3 * 3, classes)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


class Bare(Net):
    INPUT_SHAPE = None  # declares no input: the checkpoint's input_shape stands alone


class Other(Net):
    pass


class Helper:
    pass
'''
KWARGS = {"channels": 2, "classes": 5}
KEEP = {"conv": 0.5, "fc": 0.25}
BITS = {"conv": 4, "fc": 3}


def _one_line_error(excinfo) -> str:
    text = str(excinfo.value)
    assert text and "\n" not in text, text
    return text


@pytest.fixture()
def marker(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "marker"
    monkeypatch.setenv("MARKER", str(path))
    return path


@pytest.fixture()
def nets_file(tmp_path, marker) -> Path:
    path = tmp_path / "src" / "nets.py"
    path.parent.mkdir()
    path.write_text(NETS)
    return path


@pytest.fixture()
def ext_pkg(tmp_path, marker, monkeypatch):
    """Package ``extpkg`` (module ``extpkg.nets``) on sys.path, unloaded again afterwards."""
    package = tmp_path / "pkgroot" / "extpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(package.parent))
    yield package
    for name in [n for n in sys.modules if n == "extpkg" or n.startswith("extpkg.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """(checkpoint path, model file) of a projected checkpoint of the file's Net with KWARGS."""
    folder = tmp_path_factory.mktemp("external")
    nets = folder / "net.py"
    nets.write_text(NETS)
    saved = os.environ.get("MARKER")
    os.environ["MARKER"] = str(folder / "made")  # making the checkpoint imports the file
    try:
        images = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        ckpt = project_checkpoint(f"{nets}:Net", KEEP, BITS, images, arch_kwargs=KWARGS)
    finally:
        if saved is None:
            del os.environ["MARKER"]
        else:
            os.environ["MARKER"] = saved
    path = folder / "ext.pt"
    save_checkpoint(ckpt, path)
    return path, nets


# -- specs ------------------------------------------------------------------------------------------
def test_module_spec_with_kwargs(ext_pkg, marker):
    source = from_spec("extpkg.nets:Net", KWARGS)
    assert marker.read_text() == "imported"
    assert source == ModelSource("Net", KWARGS, "extpkg.nets:Net")
    assert source.record() == {"name": "Net", "kwargs": KWARGS, "source": "extpkg.nets:Net"}
    model = source.build()
    assert (model.conv.out_channels, model.fc.out_features) == (2, 5)
    assert source.default_input_shape() == (1, 8, 8)


def test_file_spec_with_kwargs_loads_the_file_once(nets_file, marker):
    source = from_spec(f"{nets_file}:Net", KWARGS)
    assert source.source == f"{nets_file.resolve()}:Net" and source.name == "Net"
    assert source.build().conv.out_channels == 2
    marker.unlink()
    again = from_spec(f"{nets_file.parent}/../src/nets.py:Net")  # the same file by another path
    assert not marker.exists(), "the second load ran the module body again"
    assert type(again.build()) is type(source.build())
    assert again.kwargs == {} and again.build().conv.out_channels == 4


def test_zoo_names_take_precedence():
    source = from_spec("lenet5", {"num_classes": 7})
    assert source == ModelSource("lenet5", {"num_classes": 7}) and source.record()["source"] is None
    assert source.default_input_shape() == (1, 28, 28)
    assert source.build().fc2.out_features == 7


@pytest.mark.parametrize("spec, kwargs, message", [
    ("{dir}/missing.py:Net", None, "model file .*missing.py not found"),
    ("no_such_pkg_x.nets:Net", None, "module no_such_pkg_x.nets not found"),
    ("{dir}/nets.py:Nope", None, r"has no class Nope \(its nn.Module classes: Bare, Net, Other\)"),
    ("{dir}/nets.py:Helper", None, "is not a torch.nn.Module subclass"),
    ("{dir}/nets.py:Net", {"width": 3}, "does not take kwargs {'width': 3}: .*unexpected keyword argument 'width'"),
    ("{dir}/nets.py:Net", {"channels": nn.ReLU()}, "is not a plain value"),
    ("{dir}/nets.py:", None, "is not pkg.module:Class or path/to/file.py:Class"),
    ("lenet6", None, "unknown model 'lenet6': choose one of .*lenet5"),
    ("lenet5", {"channels": 3}, "model 'lenet5' does not take kwargs"),
])
def test_bad_specs_are_one_line(nets_file, spec, kwargs, message):
    with pytest.raises(UserError) as excinfo:
        from_spec(spec.format(dir=nets_file.parent), kwargs)
    assert re.search(message, _one_line_error(excinfo)), str(excinfo.value)


def test_constructor_failure_at_build_is_one_line(nets_file):
    source = ModelSource("Net", {"channels": -1}, f"{nets_file}:Net")
    with pytest.raises(UserError, match="does not build with kwargs") as excinfo:
        source.build()
    _one_line_error(excinfo)


@pytest.mark.parametrize("text", ["3,x,32", "0,2", "1,2,3,4,5", "", "3;32;32"])
def test_bad_input_shape_text(text):
    with pytest.raises(UserError, match="--input-shape .* not 1-4 positive integers") as excinfo:
        parse_input_shape(text)
    _one_line_error(excinfo)


def test_input_shape_and_kwargs_text():
    assert parse_input_shape("3,32,32") == (3, 32, 32) and parse_input_shape(" (1, 28, 28) ") == (1, 28, 28)
    assert parse_input_shape("10") == (10,)
    assert parse_kwargs('{"num_classes": 10, "widths": [1, 2]}') == {"num_classes": 10, "widths": [1, 2]}
    for text, message in (("{bad", "not valid JSON"), ("[1, 2]", "a JSON list, not an object")):
        with pytest.raises(UserError, match=message) as excinfo:
            parse_kwargs(text)
        _one_line_error(excinfo)


class TinyNet(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.fc = nn.Linear(4, width)


def test_from_module_records_import_path_or_file(nets_file):
    source = from_module(TinyNet(5), {"width": 5})
    module, _, cls = source.source.rpartition(":")
    assert cls == "TinyNet" and module == TinyNet.__module__ and source.name == "TinyNet"
    assert from_spec(source.source, source.kwargs).build().fc.out_features == 5
    # A class loaded from a file has no importable module name: its file is recorded.
    loaded = from_spec(f"{nets_file}:Net").build()
    assert from_module(loaded).source == f"{nets_file.resolve()}:Net"
    with pytest.raises(UserError, match="does not take kwargs"):
        from_module(TinyNet(), {"depth": 2})


def test_from_module_for_a_script_records_its_file(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("from torch import nn\nfrom admm_hls.model_source import from_module\n"
                      "class Script(nn.Module):\n    pass\nSOURCE = from_module(Script()).source\n")
    assert runpy.run_path(str(script), run_name="__main__")["SOURCE"] == f"{script.resolve()}:Script"


# -- the consent rule ---------------------------------------------------------------------------------
def test_record_with_a_source_imports_nothing_without_consent(ext_pkg, marker):
    record = {"name": "Net", "kwargs": {}, "source": "extpkg.nets:Net"}
    with pytest.raises(UserError) as excinfo:
        from_record(record)
    assert _one_line_error(excinfo) == (
        "checkpoint needs model class extpkg.nets:Net, which admm-hls imports only when you name it: "
        "pass --model extpkg.nets:Net (or --trust-model-code to import what the checkpoint names)")
    for other in ("extpkg.other:Net", "extpkg.nets:Other", "lenet5", "nets.py:Net"):
        with pytest.raises(UserError, match=f"--model {other} does not match the checkpoint, which needs model "
                                            "class extpkg.nets:Net") as excinfo:
            from_record(record, model=other)
        _one_line_error(excinfo)
    assert "extpkg" not in sys.modules and not marker.exists()
    assert from_record(record, model="extpkg.nets:Net").build().conv.out_channels == 4
    assert marker.exists()


def test_moved_file_matches_by_name_and_trust_imports_the_record(nets_file, tmp_path, marker):
    record = from_spec(f"{nets_file}:Net", KWARGS).record()
    marker.unlink()
    moved = tmp_path / "elsewhere" / "nets.py"
    moved.parent.mkdir()
    shutil.copy(nets_file, moved)
    source = from_record(record, model=f"{moved}:Net")
    assert source.source == f"{moved.resolve()}:Net" and source.kwargs == KWARGS and marker.exists()
    renamed = tmp_path / "elsewhere" / "model.py"
    shutil.copy(nets_file, renamed)
    with pytest.raises(UserError, match="does not match the checkpoint"):
        from_record(record, model=f"{renamed}:Net")
    assert from_record(record, trust=True) == ModelSource("Net", KWARGS, f"{nets_file.resolve()}:Net")


def test_zoo_records_need_no_consent():
    assert from_record({"name": "lenet5", "kwargs": {}}) == ModelSource("lenet5", {})
    assert from_record({"name": "lenet5", "kwargs": {}, "source": None}, model="lenet5").source is None
    with pytest.raises(UserError, match="--model vgg16 does not match the checkpoint, which is zoo model lenet5"):
        from_record({"name": "lenet5", "kwargs": {}}, model="vgg16")


def test_shipped_version_1_checkpoint_loads_without_options():
    path = resource_dir("models") / "lenet5_mnist.pt"
    assert "source" not in torch.load(path, weights_only=True)["arch"]
    ckpt = load_checkpoint(path)
    assert model_from_checkpoint(ckpt).fc2.out_features == 10


# -- checkpoints of an external class -----------------------------------------------------------------
def test_checkpoint_records_the_source(external):
    path, nets = external
    raw = torch.load(path, weights_only=True)
    assert raw["arch"] == {"name": "Net", "kwargs": KWARGS, "source": f"{nets.resolve()}:Net"}
    assert raw["input_shape"] == [1, 8, 8]


def test_api_lowers_and_rebuilds_with_consent(external):
    path, nets = external
    spec = f"{nets}:Net"
    with pytest.raises(UserError, match="checkpoint needs model class"):
        lower(path)
    graph = lower(path, model=spec)
    assert graph.name == "Net" and graph.meta["arch"]["source"] == f"{nets.resolve()}:Net"
    assert [n.name for n in graph.nodes_of("conv", "linear")] == ["conv", "fc"]
    assert lower(path, trust_model_code=True).meta["arch"] == graph.meta["arch"]
    ckpt = load_checkpoint(path, model=spec)
    with pytest.raises(UserError, match="checkpoint needs model class"):
        model_from_checkpoint(ckpt)
    model = model_from_checkpoint(ckpt, model=spec)
    assert model.conv.out_channels == 2
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in model.state_dict().items())


def test_input_shape_of_a_class_without_one(external):
    path, nets = external
    ckpt = load_checkpoint(path, trust_model_code=True)
    bare = copy.deepcopy(ckpt)
    bare["arch"].update(name="Bare", source=f"{nets}:Bare")
    validate_checkpoint(bare, trust_model_code=True)  # any 1-4 positive ints
    for shape in ([1, 8, 8, 1, 1], [0, 8, 8], "1,8,8"):
        bare["input_shape"] = shape
        with pytest.raises(UserError, match="input_shape is .*not 1-4 positive integers"):
            validate_checkpoint(bare, trust_model_code=True)
    ckpt["input_shape"] = [1, 9, 9]
    with pytest.raises(UserError, match=r"input_shape is \[1, 9, 9\], Net takes \[1, 8, 8\]"):
        validate_checkpoint(ckpt, trust_model_code=True)


def _run_cli(*args, marker: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MARKER": str(marker)}
    return subprocess.run([sys.executable, "-m", "admm_hls.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


def _refused(proc, message: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("admm-hls: error: ") and message in lines[0], lines[0]


def test_cli_imports_the_class_only_with_consent(external, tmp_path):
    """THE MARKER TEST: a checkpoint alone never runs its model's module."""
    path, nets = external
    marker = tmp_path / "marker"
    needs = (f"checkpoint needs model class {nets.resolve()}:Net, which admm-hls imports only when you name it: "
             f"pass --model {nets.resolve()}:Net (or --trust-model-code")
    _refused(_run_cli("inspect", str(path), marker=marker), needs)
    _refused(_run_cli("build", str(path), "--out", str(tmp_path / "refused"), marker=marker), needs)
    _refused(_run_cli("inspect", str(path), "--model", f"{nets}:Other", marker=marker),
             f"--model {nets}:Other does not match the checkpoint, which needs model class {nets.resolve()}:Net")
    assert not marker.exists() and not (tmp_path / "refused").exists()

    proc = _run_cli("inspect", str(path), "--model", f"{nets}:Net", marker=marker)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("model: Net ")
    assert f"model class: {nets.resolve()}:Net, kwargs {KWARGS}" in proc.stdout
    assert marker.read_text() == "imported"
    marker.unlink()

    proc = _run_cli("build", str(path), "--trust-model-code", "--out", str(tmp_path / "p"), "--vectors", "1",
                    marker=marker)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p" / "manifest.json").is_file() and marker.exists()


def test_cli_options_on_the_lowering_commands_only():
    parser = build_parser()
    for command in (["inspect"], ["build", "--out", "x"], ["faults"]):
        args = parser.parse_args([*command, "--model", "pkg.nets:Net", "--trust-model-code"])
        assert (args.model, args.trust_model_code) == ("pkg.nets:Net", True)
    with pytest.raises(SystemExit):
        parser.parse_args(["compress", "--model", "lenet5", "--dataset", "mnist", "--out", "x.pt",
                           "--trust-model-code"])
