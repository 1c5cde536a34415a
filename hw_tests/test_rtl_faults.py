"""Bit flips in the weight memories, in hardware: a project rendered with faulted weight streams
and codebooks (``build(memories=...)``) must compute exactly what the fault model says, in g++
C simulation and on both RTL simulators, with and without the entry code (``--ecc``); with the
code and no flips, exactly what the reference says. The flips
include gaps that push entries past the row and codes past the codebook, so the hardware's rules
for those (drop the entry; read level 0) are what the test pins down."""

from __future__ import annotations

import numpy as np
import pytest

import torch
from torch import nn

from ci import missing
from rtl_designs import check, lower, prune, random_inputs, repack, run_rtlsim

from admm_hls import reference
from admm_hls.build.project import build
from admm_hls.faults import faulted_evaluator, hardware_weights, inject, memories_of
from admm_hls.hw.plan import make_plan
from admm_hls.errors import UserError
from admm_hls.sim.csim import find_ap_types


class Net(nn.Module):
    """A sparse conv, a dense strided conv, a sparse and a dense linear layer."""

    def __init__(self):
        super().__init__()
        self.sparse_conv = nn.Conv2d(3, 7, 3, padding=1)
        self.dense_conv = nn.Conv2d(7, 5, 1, stride=2)
        self.sparse_fc = nn.Linear(5 * 3 * 4, 11)
        self.dense_fc = nn.Linear(11, 4)

    def forward(self, x):
        x = self.dense_conv(torch.relu(self.sparse_conv(x)))
        return self.dense_fc(torch.relu(self.sparse_fc(x.flatten(1))))


def net():
    torch.manual_seed(9)
    model = prune(Net(), keep=0.3, seed=9)
    graph = lower(model, torch.randn(16, 3, 5, 7))
    for node in graph.nodes_of("conv", "linear"):
        repack(node, "relative" if node.name.startswith("sparse") else "dense", index_bits=3)
    return graph, random_inputs((3, 5, 7), 6, seed=12)


def _faulted(graph, pe: int, ecc: bool, seed: int):
    """The plan's memories with flips in every entry field's code and gap bits and in the
    codebooks, at rates that corrupt several entries per layer."""
    mems = memories_of(make_plan(graph, pe=pe, ecc=ecc))
    rng = np.random.default_rng(seed)
    for target, ber in (("values", 0.03), ("indices", 0.03), ("codebook", 0.05)):
        mems = {name: inject(m, target, ber, rng) for name, m in mems.items()}
    return mems


@pytest.fixture(scope="module", params=[(1, False, True), (3, True, True), (2, True, False)],
                ids=["pe1-faults", "pe3-ecc-faults", "pe2-ecc"])
def faulted_project(request, tmp_path_factory):
    pe, ecc, faults = request.param
    graph, x = net()
    clean = memories_of(make_plan(graph, pe=pe, ecc=ecc))
    if not faults:  # the code alone: the outputs are the exact reference's
        out = tmp_path_factory.mktemp(f"ecc_pe{pe}") / "project"
        return build(graph, out, pe=pe, ecc=ecc, vectors=x, progress=False), reference.run(graph, x)
    mems = _faulted(graph, pe, ecc, seed=11)
    changed = [n for n in mems if not np.array_equal(hardware_weights(mems[n]), hardware_weights(clean[n]))]
    want = reference.run(graph, x, evaluate=faulted_evaluator(mems))
    if ecc:  # single flips per entry are corrected: what is left comes from the codebooks and double flips
        assert any(not np.array_equal(a.fields, b.fields) for a, b in zip(mems.values(), clean.values()))
    else:
        assert len(changed) == len(mems)  # every layer decodes other weights
        assert not np.array_equal(want, reference.run(graph, x))  # and the outputs change
    out = tmp_path_factory.mktemp(f"faults_pe{pe}_ecc{int(ecc)}") / "project"
    project = build(graph, out, pe=pe, ecc=ecc, vectors=x, memories=mems, progress=False, check_memory=False)
    return project, want


def test_faulted_csim(faulted_project):
    try:
        find_ap_types()
    except UserError as exc:  # the headers come with the test install
        missing(f"ap_types headers: {exc}")
    project, want = faulted_project
    result = project.csim()
    assert result.passed, result.first_failure
    np.testing.assert_array_equal(result.outputs, want.reshape(len(want), -1))


def test_faulted_rtl(faulted_project, sim):
    project, want = faulted_project
    check(run_rtlsim(project.path, sim), want)
