"""The fault study: accuracy of the exact hardware reference on a labelled test set while the
hardware's memories hold bit flips, per target and bit-error rate, over seeded trials, optionally
next to the same flips with the entry code (``--ecc``) on.

Every (target, rate, trial) draws its flips from its own generator, seeded from the study's seed
and the point's name, so a run is reproducible point by point and the same flips hit the design
with and without the code where they land on the same bits (the check bits come on top).
``model_runs`` counts the trials that ran the model: the others changed no decoded weight.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from ..hw.plan import make_plan
from ..ir.graph import LayerGraph
from ..reference import run
from .decode import faulted_evaluator, hardware_weights
from .memories import TARGETS, WEIGHT_TARGETS, inject, memories_of

__all__ = ["DEFAULT_BERS", "fault_study", "accuracy", "stored_bits", "plot_study"]

DEFAULT_BERS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of integer outputs (ties: the lowest class, as ``argmax``)."""
    pred = np.asarray(outputs).reshape(len(labels), -1).argmax(axis=1)
    return float(np.mean(pred == np.asarray(labels))) if len(labels) else 0.0


def _rng(seed: int, target: str, ber: float, trial: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(f"{target}|{ber!r}|{trial}".encode())])


def stored_bits(plan) -> dict[str, int]:
    """Bits of every weight-memory target of ``plan`` (the lanes' streams, row tables, codebooks)."""
    mems = memories_of(plan)
    return {t: sum(m.bits(t) for m in mems.values()) for t in WEIGHT_TARGETS}


def _point(graph: LayerGraph, plan, clean: dict[str, np.ndarray], baseline: float, x: np.ndarray,
           labels: np.ndarray, target: str, ber: float, trial: int, seed: int) -> tuple[float, bool]:
    """One trial's accuracy, and whether the model ran. Weight faults that leave every decoded weight as it was (none drawn
    at a low rate, or all corrected) give the baseline without a run: the outputs are a function
    of the decoded weights alone."""
    rng = _rng(seed, target, ber, trial)
    mems = memories_of(plan)
    if target in WEIGHT_TARGETS:
        mems = {name: inject(m, target, ber, rng) for name, m in mems.items()}
        weights = {name: hardware_weights(m) for name, m in mems.items()}
        if all(np.array_equal(weights[n], clean[n]) for n in clean):
            return baseline, False
        evaluate = faulted_evaluator(mems, weights=weights)
    else:
        evaluate = faulted_evaluator(mems, weights=clean, act_bits=plan.act_bits, act_ber=ber, rng=rng)
    return accuracy(run(graph, x, evaluate=evaluate), labels), True


def fault_study(graph: LayerGraph, x: np.ndarray, labels: np.ndarray, *, bers=DEFAULT_BERS,
                targets=TARGETS, trials: int = 5, seed: int = 0, pe: int | None = None, ecc: bool = False,
                bar=None) -> dict[str, Any]:
    """The study's JSON (see the ``faults`` command). ``x``: quantized integer inputs; ``ecc``:
    every point also runs with the entry code, as rows with ``"ecc": true``."""
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ValueError(f"unknown fault targets {unknown} (known: {', '.join(TARGETS)})")
    plans = {False: make_plan(graph, pe=pe, check_memory=False)}
    if ecc:
        plans[True] = make_plan(graph, pe=pe, check_memory=False, ecc=True)
    baseline = accuracy(run(graph, x), labels)
    clean = {coded: {name: hardware_weights(m) for name, m in memories_of(plan).items()}
             for coded, plan in plans.items()}
    results = []
    runs = 0
    for target in targets:
        for ber in bers:
            for coded, plan in plans.items():
                accs = []
                for trial in range(trials):
                    acc, ran = _point(graph, plan, clean[coded], baseline, x, labels, target, float(ber), trial,
                                      seed)
                    accs.append(acc)
                    runs += ran
                    if bar is not None:
                        bar.update(1)
                row = {"target": target, "ber": float(ber), "trials": int(trials),
                       "accuracy_mean": float(np.mean(accs)), "accuracy_min": float(np.min(accs)),
                       "accuracy_max": float(np.max(accs))}
                if ecc:
                    row["ecc"] = coded
                results.append(row)
    out: dict[str, Any] = {"baseline_accuracy": baseline, "images": int(len(labels)), "seed": int(seed),
                           "pe": plans[False].pe, "stored_bits": stored_bits(plans[False]), "model_runs": runs}
    if ecc:
        out["ecc"] = _ecc_cost(plans[False], plans[True])
    out["results"] = results
    return out


def _ecc_cost(plain, coded) -> dict[str, Any]:
    """What the code costs: its check bits, and the stored weight words with and without it
    (fewer entries fit a word, so the words grow by more than the check bits where a field
    stops fitting)."""
    check = sum(int(l.stream.ecc_bits) * l.words.shape[0] * int(l.schedule.entries) for l in coded.weighted())
    words = [sum(l.words.size for l in p.weighted()) * 32 for p in (plain, coded)]
    return {"check_bits": check, "weight_word_bits": words[0], "weight_word_bits_ecc": words[1],
            "overhead": words[1] / words[0] - 1 if words[0] else 0.0,
            "per_layer": {l.name: {"entry_bits": l.stream.width - l.stream.ecc_bits, "check_bits": l.stream.ecc_bits}
                          for l in coded.weighted()}}


def plot_study(study: dict[str, Any], path) -> None:
    """Accuracy vs bit-error rate, one line per target (dashed: with the entry code), min..max
    shaded, the fault-free baseline dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r for r in study["results"] if r["ber"] > 0]
    colors = {}
    for coded in (False, True):
        for target in dict.fromkeys(r["target"] for r in rows):
            pts = sorted((r for r in rows if r["target"] == target and r.get("ecc", False) == coded),
                         key=lambda r: r["ber"])
            if not pts:
                continue
            b = [r["ber"] for r in pts]
            line, = ax.plot(b, [100 * r["accuracy_mean"] for r in pts], "--" if coded else "-", marker="o",
                            color=colors.get(target), label=target + (" + ECC" if coded else ""))
            colors[target] = line.get_color()
            ax.fill_between(b, [100 * r["accuracy_min"] for r in pts], [100 * r["accuracy_max"] for r in pts],
                            color=line.get_color(), alpha=0.12)
    ax.axhline(100 * study["baseline_accuracy"], color="gray", linestyle=":", label="no faults")
    ax.set_xscale("log")
    ax.set_xlabel("bit-error rate")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"bit flips in the hardware's memories ({study['images']} images, {study['pe']} PEs)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
