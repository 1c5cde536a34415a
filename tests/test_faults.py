"""Bit-flip fault injection: the fault model's reference equals the exact reference without
faults, flips land only where a target says, a flipped index moves exactly the entries the
relative-index format says, the entry code corrects every single flip, and the study is seeded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from admm_hls import reference
from admm_hls.cli import main
from admm_hls.faults import faulted_evaluator, hardware_weights, inject, memories_of
from admm_hls.faults.flips import flip_bits, flip_signed
from admm_hls.hw.plan import make_plan
from test_hls_csim import pe_net


@pytest.fixture(scope="module")
def net():
    return pe_net()


@pytest.mark.parametrize("pe", [1, 3])
@pytest.mark.parametrize("ecc", [False, True])
def test_no_faults_is_the_exact_reference(net, pe, ecc):
    graph, x = net
    plan = make_plan(graph, pe=pe, ecc=ecc)
    got = reference.run(graph, x, evaluate=faulted_evaluator(memories_of(plan), act_bits=plan.act_bits,
                                                             act_ber=0.0))
    np.testing.assert_array_equal(got, reference.run(graph, x))


def test_flips_stay_in_their_bits_at_their_rate():
    rng = np.random.default_rng(0)
    out = flip_bits(np.zeros(100_000, np.int64), 3, 6, 0.01, rng)
    assert not np.any(out & ~np.int64(0b111000))
    n = int(sum(bin(v).count("1") for v in out[out != 0]))
    assert abs(n - 3000) < 5 * np.sqrt(3000)  # binomial(300k, 0.01): 3000 +- 55
    np.testing.assert_array_equal(flip_bits(out, 0, 8, 0.0, rng), out)
    assert np.all(flip_bits(np.zeros(10, np.int64), 0, 4, 1.0, rng) == 15)
    # signed values flip in two's complement and read back signed
    np.testing.assert_array_equal(flip_signed(np.array([-1, 0, 5]), 4, 1.0, rng), [0, -1, -6])


def _lane_of(layer, row):
    slot, group = np.argwhere(layer.schedule.slot_rows == row)[0]
    return int(group), int(layer.schedule.slot_start[slot]), int(layer.schedule.slot_count[slot])


def test_one_flipped_index_bit_moves_the_rest_of_its_row(net):
    """Flip gap bit b of one entry: that entry and every later one of its row move 2^b columns
    (those that leave the row are dropped), nothing else changes."""
    graph, _ = net
    plan = make_plan(graph, pe=1)
    mems = memories_of(plan)
    name = "sparse_fc"
    mem = mems[name]
    st = mem.layer.stream
    assert st.format == "relative" and st.index_bits >= 2
    clean = hardware_weights(mem)
    row = int(np.argmax(st.nonzeros))  # the fullest row
    g, start, count = _lane_of(mem.layer, row)
    own = st.fields[st.ptr[row]:st.ptr[row + 1]]
    k = 1  # the row's second entry
    for b in range(st.index_bits):
        fields = mem.fields.copy()
        fields[g, start + k] ^= 1 << (st.value_bits + b)
        got = hardware_weights(type(mem)(**{**mem.__dict__, "fields": fields}))
        # the format's own rule: entry i sits at column sum_{j<=i}(gap_j + 1) - 1
        entries = own.copy()
        entries[k] ^= 1 << (st.value_bits + b)
        codes, gaps = entries & ((1 << st.value_bits) - 1), entries >> st.value_bits
        cols = np.cumsum(gaps + 1) - 1
        want_row = np.zeros(st.cols, np.int64)
        for c, col in zip(codes, cols):
            if c and col < st.cols:
                want_row[col] += st.levels[c - 1]
        want = clean.copy()
        want[row] = want_row
        np.testing.assert_array_equal(got, want)
        assert not np.array_equal(got[row], clean[row])  # the flip did move weights


def test_the_entry_code_corrects_every_single_flip(net):
    graph, _ = net
    for pe in (1, 3):
        coded = memories_of(make_plan(graph, pe=pe, ecc=True))
        plain = memories_of(make_plan(graph, pe=pe))
        for name, mem in coded.items():
            clean = hardware_weights(mem)
            np.testing.assert_array_equal(clean, hardware_weights(plain[name]))
            for b in range(mem.layer.stream.width):  # one flipped bit in every entry at once
                fields = mem.fields ^ (np.int64(1) << b)
                got = hardware_weights(type(mem)(**{**mem.__dict__, "fields": fields}))
                np.testing.assert_array_equal(got, clean, err_msg=f"{name} bit {b}")
            # without the code the same flips do change the weights
            raw = plain[name]
            moved = hardware_weights(type(raw)(**{**raw.__dict__, "fields": raw.fields ^ 1}))
            assert not np.array_equal(moved, clean)


def test_injection_is_seeded(net):
    graph, _ = net
    mems = memories_of(make_plan(graph, pe=2))
    for target in ("values", "indices", "row-pointers", "codebook"):
        a = [inject(m, target, 0.05, np.random.default_rng(7)) for m in mems.values()]
        b = [inject(m, target, 0.05, np.random.default_rng(7)) for m in mems.values()]
        for x, y in zip(a, b):
            for f in ("fields", "counts", "levels"):
                np.testing.assert_array_equal(getattr(x, f), getattr(y, f))


def _study(tmp_path, mnist_dir, name, *extra):
    out = tmp_path / f"{name}.json"
    assert main(["faults", "--data-dir", str(mnist_dir), "--limit", "200", "--trials", "2", "--json", str(out),
                 *extra]) == 0
    return out


def test_study_at_ber_zero_is_the_reference(tmp_path, mnist_dir, capsys):
    from admm_hls.datasets import load_dataset
    from admm_hls.ir.lower import lower
    from admm_hls.resources import resource_dir

    out = _study(tmp_path, mnist_dir, "zero", "--ber", "0", "--ecc", "--plot", str(tmp_path / "zero.png"))
    study = json.loads(out.read_text())
    graph = lower(resource_dir("models") / "lenet5_mnist.pt")
    test = load_dataset("mnist", mnist_dir, "test").head(200)
    ref = reference.run(graph, reference.quantize_images(graph, test.images.numpy()))
    want = float(np.mean(ref.argmax(axis=1) == test.labels.numpy()))
    assert study["baseline_accuracy"] == want and study["images"] == 200
    assert {r["target"] for r in study["results"]} == {"values", "indices", "row-pointers", "codebook", "activations"}
    for r in study["results"]:
        assert set(r) == {"target", "ber", "trials", "accuracy_mean", "accuracy_min", "accuracy_max", "ecc"}
        assert r["ber"] == 0 and r["accuracy_min"] == r["accuracy_max"] == r["accuracy_mean"] == want
    assert study["ecc"]["check_bits"] > 0 and study["ecc"]["weight_word_bits_ecc"] > study["ecc"]["weight_word_bits"]
    assert (tmp_path / "zero.png").stat().st_size > 0


def test_study_is_reproducible_and_seeded(tmp_path, mnist_dir):
    args = ("--ber", "1e-3", "--target", "indices", "activations")
    a = _study(tmp_path, mnist_dir, "a", *args).read_bytes()
    b = _study(tmp_path, mnist_dir, "b", *args).read_bytes()
    c = _study(tmp_path, mnist_dir, "c", *args, "--seed", "1").read_bytes()
    assert a == b and a != c
    rows = json.loads(a)["results"]
    assert rows[0]["accuracy_min"] < json.loads(a)["baseline_accuracy"]  # 1e-3 of the index bits hurts


@pytest.mark.parametrize("argv, words", [
    (["--ber", "2"], "--ber 2 is not a bit-error rate"),
    (["--trials", "0"], "--trials must be >= 1"),
    (["--limit", "0"], "--limit must be >= 1"),
    (["--json", "/nonexistent/dir/x.json"], "its folder does not exist"),
])
def test_bad_options_one_line(argv, words, capsys):
    assert main(["faults", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err


def test_inspect_and_the_manifest_count_the_code(tmp_path, capsys, net):
    from admm_hls.build.project import build
    from admm_hls.ir.lower import lower
    from admm_hls.resources import resource_dir
    from admm_hls.sparse.ecc import check_bits

    assert main(["inspect", "--ecc", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    layers = report["ecc"]["layers"]
    shipped = lower(resource_dir("models") / "lenet5_mnist.pt")
    assert set(layers) == {n.name for n in shipped.nodes_of("conv", "linear")}
    for node in shipped.nodes_of("conv", "linear"):
        lay, e = node.packed.layer, layers[node.name]
        relative = node.packed.format == "relative"
        entries = int(lay.row_ptr[-1]) if relative else lay.rows * lay.cols
        k = lay.value_bits + (lay.index_bits if relative else 0)
        assert e["entry_bits"] == k and e["check_bits"] == entries * check_bits(k) > 0
        assert e["stream_bits_ecc"] > e["stream_bits"] or (32 // k) == 32 // (k + check_bits(k))
    graph, x = net
    manifest = build(graph, tmp_path / "p", pe=3, ecc=True, vectors=x, progress=False).manifest
    plan = make_plan(graph, pe=3, ecc=True)
    want = sum(l.stream.ecc_bits * l.schedule.groups * l.schedule.entries for l in plan.weighted())
    assert manifest["ecc"] is True and manifest["totals"]["ecc_check_bits"] == want > 0
