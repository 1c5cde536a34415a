import pytest
import torch

from admm_hls.compress.training import prunable_weights
from admm_hls.errors import UserError
from admm_hls.zoo import available_models, build_model, input_shape


def test_zoo_lists_the_four_models():
    assert {"lenet5", "alexnet", "vgg16", "resnet18"} <= set(available_models())


@pytest.mark.parametrize("name,weights", [("lenet5", 430_500), ("alexnet", 61_090_496), ("resnet18", 11_678_912)])
def test_weight_counts(name, weights):
    model = build_model(name)
    assert sum(w.numel() for w in prunable_weights(model).values()) == weights


def test_lenet5_caffe_layout_and_forward():
    model = build_model("lenet5")
    assert [tuple(w.shape) for w in prunable_weights(model).values()] == [(20, 1, 5, 5), (50, 20, 5, 5), (500, 800), (10, 500)]
    assert model(torch.zeros(2, *input_shape("lenet5"))).shape == (2, 10)


def test_kwargs_and_unknown_names():
    assert build_model("alexnet", num_classes=10).classifier[-1].out_features == 10
    with pytest.raises(UserError, match="unknown model 'lenet6'"):
        build_model("lenet6")
    with pytest.raises(UserError, match="does not take arguments"):
        build_model("lenet5", depth=3)
