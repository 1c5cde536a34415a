"""compress for the user's own model: an imported class, a pretrained start (--init), the
generic recipe with command-line overrides, and the Python API."""

import contextlib
import dataclasses
import hashlib
import io
import textwrap

import pytest
import torch
from torch.utils.data import DataLoader

import admm_hls
from admm_hls.cli import main
from admm_hls.compress.pipeline import Compressor
from admm_hls.compress.recipe import load_recipe, recipe_from_dict, select_recipe, with_overrides
from admm_hls.datasets import Split
from admm_hls.errors import UserError
from test_pipeline import _as_dataset, _data

# A small CNN in the user's own file; no INPUT_SHAPE, so the command line passes --input-shape.
NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width: int = 6):
        super().__init__()
        self.conv = nn.Conv2d(1, width, kernel_size=5)
        self.pool = nn.MaxPool2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(width * 6 * 6, 10)

    def forward(self, x):
        return self.fc(self.relu(self.pool(self.conv(x))).flatten(1))


class Shaped(Net):
    INPUT_SHAPE = (1, 28, 28)
"""

FAST = ["--limit-train", "512", "--limit-test", "256", "--epoch-scale", "0.05", "--threads", "2"]


@pytest.fixture(scope="module")
def net_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "user_net.py"
    path.write_text(textwrap.dedent(NET))
    return path


def _net(net_file, cls="Net", **kwargs):
    from admm_hls.model_source import from_spec

    return from_spec(f"{net_file}:{cls}", kwargs).build()


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def pretrained_run(net_file, mnist_dir, tmp_path_factory):
    """The imported model (by module path: its folder is on sys.path) compressed from the command
    line on MNIST, from a pretrained start, with the generic recipe and the target and bits given
    on the command line."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(7)
    init = folder / "dense.pt"
    torch.save({"state_dict": _net(net_file, width=4).state_dict(), "epoch": 3}, init)
    out = folder / "net.pt"
    spec = "user_net:Net"
    argv = ["compress", "--model", spec, "--model-kwargs", '{"width": 4}', "--input-shape", "1,28,28",
            "--dataset", "mnist", "--data-dir", str(mnist_dir), "--init", str(init), "--out", str(out),
            "--target-ratio", "4", "--bits", "4", *FAST]
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(net_file.parent))
        with contextlib.redirect_stdout(stdout):
            assert main(argv) == 0
        yield spec, init, out, stdout.getvalue()


def test_imported_model_compresses_from_an_init_and_builds(pretrained_run, tmp_path):
    from admm_hls.compress.checkpoint import load_checkpoint

    spec, init, out, log = pretrained_run
    assert "dense training skipped" in log and "dense epoch" not in log
    ckpt = load_checkpoint(out, model=spec)
    assert ckpt["arch"]["name"] == "Net" and ckpt["arch"]["kwargs"] == {"width": 4}
    assert ckpt["arch"]["source"] == spec
    assert ckpt["input_shape"] == [1, 28, 28]
    start = ckpt["history"][0]
    assert start == {"stage": "dense", "init": "dense.pt", "sha256": hashlib.sha256(init.read_bytes()).hexdigest()}
    assert "dense" in ckpt["accuracy"]
    kept = sum(layer["nonzeros"] for layer in ckpt["layers"].values())
    total = sum(ckpt["layers"][n]["mask"].numel() for n in ckpt["layers"])
    assert total / kept == pytest.approx(4, rel=0.05)
    assert {layer["bits"] for layer in ckpt["layers"].values()} == {4}
    project = tmp_path / "hls"
    assert main(["build", str(out), "--model", spec, "--out", str(project), "--vectors", "2"]) == 0
    assert (project / "manifest.json").is_file()


def test_generic_recipe_with_overrides_is_recorded(pretrained_run):
    spec, _, out, _ = pretrained_run
    recipe = torch.load(out, weights_only=True)["recipe"]
    generic = load_recipe("generic")
    assert recipe["model"] == spec
    assert recipe["model_kwargs"] == {"width": 4} and recipe["input_shape"] == (1, 28, 28)
    assert recipe["prune"]["target_ratio"] == 4.0 and recipe["prune"]["keep"] == {}
    assert recipe["quantize"]["bits"] == 4
    # everything else is the generic recipe's (epochs scaled by --epoch-scale)
    assert recipe["prune"]["rho_factor"] == generic.prune.rho_factor
    assert recipe["prune"]["rounds"] == generic.prune.rounds
    assert recipe["distill"] == dataclasses.asdict(generic.distill)


def test_overrides_on_a_shipped_recipe():
    shipped = select_recipe(None, "lenet5", "mnist", zoo_model=True)
    assert shipped.prune.keep  # lenet5_mnist.toml has per-layer keep ratios
    bits_only = with_overrides(dataclasses.replace(shipped, quantize=dataclasses.replace(
        shipped.quantize, bits_layers={"fc1": 2})), bits=5)
    assert bits_only.quantize.bits == 5 and bits_only.quantize.bits_layers == {"fc1": 2}
    assert bits_only.prune == shipped.prune
    target = with_overrides(shipped, target_ratio=20, target_mode="computation")
    assert target.prune.keep == {} and target.prune.target_ratio == 20
    assert target.prune.target_mode == "computation" and target.prune.balance_pe == shipped.prune.balance_pe
    # no shipped recipe for this pair, or an imported model: the generic one, naming the run
    generic = select_recipe(None, "alexnet", "imagefolder", zoo_model=True)
    assert generic.prune.target_ratio == load_recipe("generic").prune.target_ratio
    assert (generic.model, generic.dataset) == ("alexnet", "imagefolder")
    with pytest.raises(UserError, match="recipe is for lenet5/mnist, not alexnet/mnist"):
        select_recipe("lenet5_mnist", "alexnet", "mnist", zoo_model=True)


@pytest.mark.parametrize("change, expected", [
    (lambda sd: sd.pop("fc.bias"), "missing fc.bias"),
    (lambda sd: sd.update({"head.weight": torch.zeros(2)}), "unexpected head.weight"),
    (lambda sd: sd.update({"fc.weight": torch.zeros(10, 99)}),
     "shape of fc.weight is (10, 99), the model has (10, 216)"),
])
def test_init_that_does_not_fit_is_one_line(net_file, mnist_dir, tmp_path, capsys, change, expected):
    state = _net(net_file).state_dict()
    change(state)
    init = tmp_path / "w.pt"
    torch.save(state, init)
    out = tmp_path / "x.pt"
    err = _one_line_error(capsys, ["compress", "--model", f"{net_file}:Shaped", "--dataset", "mnist",
                                   "--data-dir", str(mnist_dir), "--init", str(init), "--out", str(out), *FAST])
    assert f"--init {init} does not fit Shaped: {expected}" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


def test_init_refuses_pickled_code_and_checkpoints(net_file, tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("never",))

    model = _net(net_file)
    torch.save({"fc.weight": Payload()}, tmp_path / "code.pt")
    from admm_hls.compress.init_weights import load_init_weights

    with pytest.raises(UserError, match="refusing .*unpickling arbitrary code"):
        load_init_weights(tmp_path / "code.pt", model, "Net")
    torch.save({"format": "admm-hls-checkpoint", "state_dict": model.state_dict()}, tmp_path / "ckpt.pt")
    with pytest.raises(UserError, match="is an admm-hls checkpoint"):
        load_init_weights(tmp_path / "ckpt.pt", model, "Net")


@pytest.mark.parametrize("option, expected", [
    (["--target-ratio", "0"], "--target-ratio 0 must be >= 1"),
    (["--bits", "1"], "--bits 1 is out of range: weights take 2..8 bits"),
    (["--input-shape", "x"], "--input-shape 'x' is not 1-4 positive integers"),
    (["--model-kwargs", "[1]"], "not an object"),
])
def test_bad_option_values_are_one_line(capsys, tmp_path, option, expected):
    out = tmp_path / "x.pt"
    err = _one_line_error(capsys, ["compress", "--model", "lenet5", "--dataset", "mnist", "--data-dir",
                                   str(tmp_path / "none"), "--out", str(out), *option])
    assert expected in err and not out.exists()


TINY = {"batch_size": 64, "calibration_batches": 2, "dense": {"epochs": 1},
        "prune": {"target_ratio": 3, "admm_iterations": 1, "retrain_epochs": 1},
        "quantize": {"bits": 3, "admm_iterations": 1, "freeze_schedule": [0.5]}}


def test_python_api_with_dataloaders(net_file, tmp_path):
    model = _net(net_file, cls="Shaped")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lines = []
    out = tmp_path / "api.pt"
    ckpt = admm_hls.compress(model, DataLoader(_as_dataset(_data(256, 0)), batch_size=32, shuffle=True),
                             DataLoader(_as_dataset(_data(128, 1)), batch_size=100), recipe=TINY, out=out,
                             model_kwargs={"width": 6}, log=lines.append)
    assert any("dense training skipped" in line for line in lines)
    assert ckpt["history"][0] == {"stage": "dense", "init": "the given model's weights"}
    assert ckpt["recipe"]["batch_size"] == 32 and ckpt["dataset"] == {"name": "custom"}
    assert ckpt["arch"]["source"] == f"{net_file}:Shaped"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model untouched
    graph = admm_hls.lower(out, model=ckpt["arch"]["source"])
    assert graph.meta["arch"]["name"] == "Shaped"


def test_spec_without_input_shape_asks_for_it(net_file):
    data = _as_dataset(_data(8, 0))
    with pytest.raises(UserError, match="pass --input-shape C,H,W"):
        admm_hls.compress(f"{net_file}:Net", data, data, recipe=TINY)
    with pytest.raises(UserError, match=r"the training images are \(1, 28, 28\), Net takes \(1, 32, 32\)"):
        admm_hls.compress(f"{net_file}:Net", data, data, recipe=TINY, input_shape=(1, 32, 32))


def test_compressor_on_a_dataset(net_file):
    """Dataset-backed data: calibration reads its first batches in order, like a Split's; a
    holdout needs a Split."""
    data = _as_dataset(_data(200, 0))
    recipe = dataclasses.replace(recipe_from_dict(TINY), model=f"{net_file}:Shaped")
    from_dataset = Compressor(recipe, data, data, log=lambda s: None)
    from_split = Compressor(recipe, Split(*data.tensors), data, log=lambda s: None)
    assert from_dataset.calibrate() == from_split.calibrate()
    with pytest.raises(UserError, match="holdout 50 needs in-memory training data"):
        Compressor(dataclasses.replace(recipe, holdout=50), data, data)


def test_image_folder_at_the_model_input_shape(net_file, tmp_path, capsys):
    """An image folder is read at the model's input shape (channels and size from INPUT_SHAPE),
    trained through a DataLoader, and recorded with its normalization and geometry."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(4):
                pixels = (torch.rand(30, 40, 3, generator=g) * 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(tmp_path / "imgs" / split / cls / f"{i}.png")
    out = tmp_path / "folder.pt"
    assert main(["compress", "--model", f"{net_file}:Shaped", "--dataset", "imagefolder", "--data-dir",
                 str(tmp_path / "imgs"), "--out", str(out), "--recipe", "generic", "--epoch-scale", "0.05",
                 "--limit-train", "6", "--threads", "2"]) == 0
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["dataset"]["name"] == "imagefolder" and ckpt["dataset"]["input_size"] == 28
    assert ckpt["dataset"]["channels"] == 1 and ckpt["dataset"]["classes"] == 2
    assert ckpt["input_shape"] == [1, 28, 28]
