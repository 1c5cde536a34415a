"""Small models and inputs shared by the reference and C-simulation tests."""

import numpy as np
import torch
from torch import nn

ACT_LO, ACT_HI = -128, 127


def randn(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def seeded(model_fn, seed=0):
    torch.manual_seed(seed)
    return model_fn().eval()


def extremes(shape, seed):
    """int8 inputs at the two limits only: every accumulator as large as it can be."""
    gen = np.random.default_rng(seed)
    return np.where(gen.random(shape) < 0.5, ACT_LO, ACT_HI).astype(np.int64)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        return self.head(torch.relu(x + self.conv(x)))


class Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.b.weight.mul_(10)  # a very different output scale
        self.mix = nn.Conv2d(6, 3, 3)

    def forward(self, x):
        return self.mix(torch.cat([self.a(x), self.b(x)], dim=1))
