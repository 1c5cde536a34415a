"""The torch.fx front end and the first lowering passes (identity removal, BN folding, ReLU
fusion, shape inference) on the zoo models and small hand-made models."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from admm_hls import zoo
from admm_hls.calibration import measure_ranges
from admm_hls.errors import UserError
from admm_hls.ir.frontend import trace
from admm_hls.ir.graph import LayerGraph
from admm_hls.ir.passes import fold_batchnorm, fuse_relu, infer_shapes, remove_identity

PASSES = (remove_identity, fold_batchnorm, fuse_relu, infer_shapes)


def lower(model: nn.Module, input_shape: tuple[int, ...]) -> LayerGraph:
    graph = trace(model, input_shape)
    for p in PASSES:
        p.run(graph)
    return graph


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial eval statistics and affine parameters, so folding is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=gen) * 2 + 0.2)
                m.weight.copy_(torch.randn(c, generator=gen))
                m.bias.copy_(torch.randn(c, generator=gen) * 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def zoo_graphs() -> dict[str, tuple[nn.Module, LayerGraph]]:
    """Each zoo model, built once (random weights; ResNet-18 with random BN stats), lowered."""
    torch.manual_seed(0)
    out = {}
    for name in ("lenet5", "alexnet", "vgg16", "resnet18"):
        model = zoo.build_model(name)
        if name == "resnet18":
            randomize_bn(model)
        out[name] = (model, lower(model, zoo.input_shape(name)))
    return out


def counts(graph: LayerGraph) -> dict[str, int]:
    return dict(Counter(n.op for n in graph.topo()))


EXPECTED = {
    "lenet5": {"input": 1, "conv": 2, "maxpool": 2, "flatten": 1, "linear": 2, "output": 1},
    "alexnet": {"input": 1, "conv": 5, "maxpool": 3, "flatten": 1, "linear": 3, "output": 1},
    "vgg16": {"input": 1, "conv": 13, "maxpool": 5, "flatten": 1, "linear": 3, "output": 1},
    "resnet18": {"input": 1, "conv": 20, "maxpool": 1, "add": 8, "avgpool": 1, "flatten": 1,
                 "linear": 1, "output": 1},
}
FUSED_RELUS = {"lenet5": 1, "alexnet": 7, "vgg16": 15, "resnet18": 17}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_zoo_node_counts(zoo_graphs, name):
    model, graph = zoo_graphs[name]
    assert counts(graph) == EXPECTED[name]  # no dropout, identity, batchnorm or relu left
    assert sum(n.relu for n in graph.topo()) == FUSED_RELUS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_zoo_names_are_fx_names(zoo_graphs, name):
    model, graph = zoo_graphs[name]
    fx_nodes = list(torch.fx.symbolic_trace(model).graph.nodes)
    fx_names = [n.name for n in fx_nodes]
    kept = [n.name for n in sorted(graph.topo(), key=lambda n: n.order)]
    assert kept == [x for x in fx_names if x in set(kept)]  # fx names, in fx order
    assert all(fx_nodes[n.order].name == n.name for n in graph.topo())
    assert all(n.calib in fx_names for n in graph.topo())
    assert graph.input_node().shape == zoo.input_shape(name)


def chain(graph: LayerGraph) -> list[str]:
    """Node names of a graph that must be a simple chain, input to output."""
    names = [n.name for n in graph.topo()]
    assert all(graph.inputs(b) == [a] for a, b in zip(names, names[1:]))
    return names


def test_lenet5_structure(zoo_graphs):
    _, g = zoo_graphs["lenet5"]
    assert chain(g) == ["x", "conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "output"]
    shapes = {n.name: n.shape for n in g.topo()}
    assert shapes == {"x": (1, 28, 28), "conv1": (20, 24, 24), "pool1": (20, 12, 12),
                      "conv2": (50, 8, 8), "pool2": (50, 4, 4), "flatten": (800,), "fc1": (500,),
                      "fc2": (10,), "output": (10,)}
    assert g["fc1"].relu and g["fc1"].calib == "relu" and not g["conv1"].relu
    assert g["pool1"].params == {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0)}
    assert g["conv1"].params["weight"].dtype == np.float32
    assert g["conv1"].params["weight"].shape == (20, 1, 5, 5)
    assert g["fc1"].params["weight"].shape == (500, 800) and g["fc1"].module == "fc1"
    assert g["conv1"].target == "Conv2d" and g["flatten"].target == "flatten"


@pytest.mark.parametrize("name,last_pool,features", [("alexnet", "features_12", (256, 6, 6)),
                                                     ("vgg16", "features_30", (512, 7, 7))])
def test_adaptive_identity_pool_removed(zoo_graphs, name, last_pool, features):
    _, g = zoo_graphs[name]
    names = chain(g)
    assert "avgpool" not in names and g[last_pool].shape == features
    assert g.inputs("flatten") == [last_pool]
    assert all(n.relu for n in g.nodes_of("conv"))
    linears = g.nodes_of("linear")
    assert [n.relu for n in linears] == [True, True, False] and linears[-1].shape == (1000,)
    assert linears[0].params["weight"].shape == (4096, int(np.prod(features)))


def test_resnet18_structure(zoo_graphs):
    _, g = zoo_graphs["resnet18"]
    convs = g.nodes_of("conv")
    kernels = Counter(n.params["weight"].shape[2:] for n in convs)
    assert kernels == {(3, 3): 16, (7, 7): 1, (1, 1): 3}
    assert g["conv1"].shape == (64, 112, 112) and g["conv1"].relu and g["conv1"].calib == "relu"
    assert g["layer1_0_conv2"].calib == "layer1_0_bn2" and not g["layer1_0_conv2"].relu
    assert g["layer2_0_downsample_0"].calib == "layer2_0_downsample_1"
    assert g["layer2_0_downsample_0"].params["stride"] == (2, 2)
    # residual adds: (block output, shortcut) in argument order; ReLU fused into every add
    assert g.inputs("add") == ["layer1_0_conv2", "maxpool"]
    assert g.inputs("add_2") == ["layer2_0_conv2", "layer2_0_downsample_0"]
    assert g.inputs("add_3") == ["layer2_1_conv2", "add_2"]
    assert all(n.relu and n.calib.endswith("_relu_1") for n in g.nodes_of("add"))
    assert g["add"].calib == "layer1_0_relu_1" and g["add_7"].shape == (512, 7, 7)
    pool = g["avgpool"]
    assert pool.target == "AdaptiveAvgPool2d" and pool.shape == (512, 1, 1)
    assert pool.params == {"kernel": (7, 7), "stride": (7, 7), "padding": (0, 0), "divisor": 49}
    assert g.inputs("flatten") == ["avgpool"] and g["fc"].shape == (1000,)


def folded_conv(node, x: torch.Tensor) -> torch.Tensor:
    p = node.params
    return F.conv2d(x, torch.from_numpy(p["weight"]), torch.from_numpy(p["bias"]),
                    stride=p["stride"], padding=p["padding"])


def test_bn_fold_exact_small_model():
    torch.manual_seed(1)
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()))
    g = lower(model, (3, 10, 10))
    assert counts(g) == {"input": 1, "conv": 1, "output": 1}
    conv = g["_0"]
    assert conv.relu and conv.calib == "_2" and conv.params["weight"].dtype == np.float32
    x = torch.randn(4, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(folded_conv(conv, x), model[1](model[0](x)), atol=1e-5, rtol=0)
        torch.testing.assert_close(F.relu(folded_conv(conv, x)), model(x), atol=1e-5, rtol=0)


def test_bn_fold_exact_resnet18(zoo_graphs):
    model, g = zoo_graphs["resnet18"]
    torch.manual_seed(2)
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(folded_conv(g["conv1"], x), model.bn1(model.conv1(x)), atol=1e-5, rtol=0)
        down = model.layer3[0].downsample
        x = torch.randn(1, 128, 8, 8)
        torch.testing.assert_close(folded_conv(g["layer3_0_downsample_0"], x), down(x), atol=1e-5, rtol=0)


def test_calib_names_exist_in_measured_ranges(zoo_graphs):
    for name in ("lenet5", "resnet18"):
        model, g = zoo_graphs[name]
        x = torch.randn(1, *zoo.input_shape(name))
        ranges = measure_ranges(model, [x])
        assert {n.calib for n in g.topo()} <= set(ranges), name


class CatResidual(nn.Module):
    """Functional spellings, a channel concat whose argument order differs from program order,
    a residual add, a ReLU after a max-pool (not fusible), and view-based flattening."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 1)
        self.mix = nn.Conv2d(10, 10, 3, padding=1, bias=False)
        self.skip = nn.Identity()
        self.drop = nn.Dropout(0.3)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(40, 5)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        y = torch.cat([b, a], dim=1)
        z = self.skip(y) + torch.relu(self.mix(y))
        z = F.relu(F.max_pool2d(z, 2))
        z = self.pool(self.drop(z))
        return self.fc(z.view(z.size(0), -1))


def test_custom_cat_and_residual():
    g = lower(CatResidual(), (3, 8, 8))
    assert counts(g) == {"input": 1, "conv": 3, "concat": 1, "add": 1, "maxpool": 1, "relu": 1,
                         "avgpool": 1, "flatten": 1, "linear": 1, "output": 1}
    assert g.inputs("cat") == ["b", "a"] and g["cat"].shape == (10, 8, 8)
    assert ("b", "cat", 0) in g.edges() and ("a", "cat", 1) in g.edges()
    assert g.inputs("add") == ["cat", "mix"]  # identity bypassed, relu fused into mix
    assert g["mix"].relu and g["mix"].calib == "relu" and not g["add"].relu
    assert g.inputs("relu_1") == ["max_pool2d"] and g["max_pool2d"].shape == (10, 4, 4)
    assert g["pool"].params["kernel"] == (2, 2) and g["pool"].shape == (10, 2, 2)
    assert g.inputs("view") == ["pool"] and "size" not in g and g["view"].shape == (40,)
    assert g.inputs("output") == ["fc"]


class Flattens(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how, self.conv, self.flat = how, nn.Conv2d(1, 2, 3), nn.Flatten()

    def forward(self, x):
        x = self.conv(x)
        if self.how == "torch.flatten":
            return torch.flatten(x, 1)
        if self.how == "method":
            return x.flatten(1)
        if self.how == "module":
            return self.flat(x)
        if self.how == "view":
            return x.view(x.size(0), -1)
        return x.reshape(x.size(0), -1)


@pytest.mark.parametrize("how", ["torch.flatten", "method", "module", "view", "reshape"])
def test_flatten_spellings(how):
    g = lower(Flattens(how), (1, 5, 5))
    assert counts(g) == {"input": 1, "conv": 1, "flatten": 1, "output": 1}
    assert g.output_node().shape == (18,)


def test_trace_keeps_training_mode():
    model = Flattens("view").train()
    trace(model, (1, 5, 5))
    assert model.training


class Head(nn.Module):
    def __init__(self, act: nn.Module):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(2, 2, 1))
        self.head.add_module("act", act)

    def forward(self, x):
        return self.head(x)


class SubBlock(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x)


def assert_one_line_error(model, shape, *parts):
    with pytest.raises(UserError) as info:
        lower(model, shape)
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


@pytest.mark.parametrize("model,parts", [
    (Head(nn.Sigmoid()), ["unsupported op Sigmoid", "module head.act", "node head_act",
                          "Conv2d, Linear, ReLU"]),
    (Head(SubBlock()), ["sigmoid", "module head.act", "node sigmoid"]),
    (Head(nn.Conv2d(2, 2, 3, groups=2)), ["Conv2d", "groups=2", "module head.act", "node head_act"]),
    (Head(nn.Conv2d(2, 2, 3, dilation=2)), ["dilation", "module head.act"]),
    (Head(nn.AdaptiveAvgPool2d(3)), ["AdaptiveAvgPool2d", "must divide", "node head_act"]),
    (Head(nn.MaxPool2d(2, ceil_mode=True)), ["MaxPool2d", "ceil_mode=True"]),
])
def test_unsupported_ops_are_one_line_user_errors(model, parts):
    assert_one_line_error(model, (2, 8, 8), *parts)


class DataDependent(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


class SelfAdd(nn.Module):
    def forward(self, x):
        return x + x


class Fn(nn.Module):
    """forward(x) = fn(x): small functional programs for the error cases."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("fn,parts", [
    (lambda x: torch.add(x, x.relu(), alpha=2), ["node add", "alpha"]),
    (lambda x: x + 1, ["node add", "two tensors"]),
    (lambda x: torch.cat([x, x.relu()], 2), ["node cat", "dim 2"]),
    (lambda x: x.view(x.size(0), 2, -1), ["node view", "flattens"]),
    (lambda x: F.avg_pool2d(x, 2, 1, 1, count_include_pad=False), ["avg_pool2d", "count_include_pad"]),
    (lambda x: (x.relu(), x), ["Fn.forward must return one tensor"]),
])
def test_unsupported_functional_forms(fn, parts):
    assert_one_line_error(Fn(fn), (2, 4, 4), *parts)


def test_functional_forms():
    g = lower(Fn(lambda x: torch.cat([F.max_pool2d(x, 3, stride=2, padding=1).relu(),
                                      F.avg_pool2d(x, 2, 2)], -3)), (2, 4, 4))
    assert g.inputs("cat") == ["relu", "avg_pool2d"] and g["cat"].shape == (4, 2, 2)
    assert g["max_pool2d"].params == {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)}
    assert g["avg_pool2d"].params["divisor"] == 4


def test_tracing_failures_and_unrepresentable_graphs():
    assert_one_line_error(DataDependent(), (2, 4, 4), "DataDependent", "torch.fx")
    assert_one_line_error(SelfAdd(), (2, 4, 4), "add", "node add")
    assert_one_line_error(Head(nn.Identity()), (3, 4, 4), "Head", "input shape (3, 4, 4)")

    class TwoInputs(nn.Module):
        def forward(self, x, y):
            return x + y

    assert_one_line_error(TwoInputs(), (2, 4, 4), "TwoInputs", "exactly one input")


def test_batchnorm_that_cannot_fold():
    after_pool = nn.Sequential(nn.Conv2d(2, 2, 1), nn.MaxPool2d(2), nn.BatchNorm2d(2))
    assert_one_line_error(after_pool, (2, 4, 4), "BatchNorm2d at module 2 (node _2)", "cannot fold")

    class Shared(nn.Module):  # the conv's un-normalized output is also read by the add
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    assert_one_line_error(Shared(), (2, 4, 4), "module bn (node bn)", "cannot fold")


def test_infer_shapes_rejects_disagreement():
    graph = trace(Flattens("module"), (1, 5, 5))
    graph["conv"].shape = (2, 4, 4)  # pretend torch traced something else
    with pytest.raises(ValueError, match="conv"):
        infer_shapes.run(graph)
