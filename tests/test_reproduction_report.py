"""benchmarks/reproduction.py: the claim verdicts and the ranking score, on hand-written run records."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from reproduction import Final, Report, c1_verdict, mean_best  # noqa: E402

pytest.importorskip("scipy")


def _rec(seed, **metrics):
    """A stored run: ``metrics`` name -> per-epoch values (``/`` written as ``__``)."""
    return {"id": f"r{seed}", "cell": {}, "seed": seed,
            "metrics": {k.replace("__", "/"): [[e, e, v] for e, v in enumerate(vals)] for k, vals in metrics.items()}}


def _final(estimator, accs):
    return Final(estimator, "cell", [_rec(s, test__acc=[a]) for s, a in enumerate(accs)])


ROWS = [_final("Decoupled ST", [0.90, 0.91, 0.92]), _final("Identity ST", [0.80, 0.81, 0.82]),
        _final("Softmax ST", [0.70, 0.71, 0.72]), _final("ST Gumbel-Softmax", [0.60, 0.61, 0.62])]


def test_c2_confirmed_only_when_every_final_is_stored():
    ours, verdict = Report.c2(ROWS, "test/acc", "max").split(" | ")
    assert verdict.startswith("confirmed: significantly better than 3 of 3 baselines, worse than 0")
    assert "Decoupled ST 0.9100 ± 0.0100" in ours
    # the same numbers from a partly stored set of finals: pending, with the verdict so far
    _, verdict = Report.c2(ROWS, "test/acc", "max", complete=False).split(" | ")
    assert verdict.startswith("pending: not every final is stored (so far confirmed")


def test_c2_direction_follows_the_mode():
    # as losses (lower is better) the same numbers make Decoupled ST significantly worse than every baseline
    _, verdict = Report.c2(ROWS, "test/acc", "min").split(" | ")
    assert verdict.startswith("not confirmed: significantly better than 0 of 3 baselines, worse than 3")


def test_mean_best_ranks_a_diverged_run_last():
    ok = _rec(0, val__loss=[3.0, 2.0])
    diverged = _rec(1, val__loss=[float("nan")])
    assert mean_best([ok]) == 2.0
    assert mean_best([diverged]) == float("inf") and mean_best([diverged], mode="max") == float("-inf")
    assert mean_best([ok, diverged]) == float("inf")  # a cell with a diverged seed ranks behind every finite one
    assert mean_best([ok, _rec(2, val__loss=[4.0])]) == 3.0


def test_c1_needs_a_significant_difference_from_the_best_diagonal_cell():
    # best val/loss per seed (lower is better): clearly apart, p < 0.05
    assert c1_verdict([130.0, 130.5, 131.0], [135.0, 135.5, 136.0]).startswith("confirmed")
    # lower on average but within the seed spread: off the diagonal, not significantly better
    assert c1_verdict([131.6, 130.6], [134.8, 131.5]).startswith("partly")
    # the diagonal cell does as well: not confirmed, whatever the spread
    assert c1_verdict([135.0, 135.5], [130.0, 130.5]).startswith("not confirmed")
    assert c1_verdict([130.0], []).startswith("pending")
