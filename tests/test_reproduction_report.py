"""benchmarks/reproduction.py: the claim verdicts and the ranking score, on hand-written run records."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from reproduction import (Final, Report, c1_from_finals, c1_verdict, inactive_verdict, mean_best,  # noqa: E402
                          turning_point)

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


def test_c2_convergence_speed_compares_the_value_at_a_quarter_of_the_budget():
    # Decoupled ST is ahead at epoch 2 of 8 but ends level with Softmax ST: faster, not better
    def curves(estimator, early, end):
        return Final(estimator, "cell", [_rec(s, val__acc=[0.1, 0.2, e, 0.5, 0.6, 0.7, 0.8, 0.85, end], test__acc=[end])
                                         for s, (e, end) in enumerate(zip(early, end))])
    rows = [curves("Decoupled ST", [0.80, 0.81, 0.82], [0.90, 0.91, 0.92]),
            curves("Softmax ST", [0.60, 0.61, 0.62], [0.90, 0.91, 0.92])]
    assert rows[0].early("val/acc") == [0.80, 0.81, 0.82]  # epoch 2 of 8
    speed = Report.c2(rows, "val/acc at 1/4", "max", values=lambda row: row.early("val/acc"))
    ours, verdict = speed.split(" | ")
    assert ours.startswith("val/acc at 1/4: Decoupled ST 0.8100 ± 0.0100; Softmax ST 0.6100 ± 0.0100")
    assert "better than 1 of 1 baselines" in verdict
    _, final_verdict = Report.c2(rows, "test/acc", "max").split(" | ")
    assert "better than 0 of 1 baselines, worse than 0" in final_verdict


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


def _cell_runs(tau_f, tau_b, losses):
    runs = [_rec(seed, val__loss=[v + 0.1, v]) for seed, v in enumerate(losses)]
    for r in runs:
        r["cell"] = {"model.init_args.tau_f": tau_f, "model.init_args.tau_b": tau_b}
    return runs


def test_c1_from_the_finals_compares_the_best_off_and_on_diagonal_cells():
    finals = {"a": _cell_runs(0.1, 0.3, [0.300, 0.301, 0.302]),   # best off-diagonal
              "b": _cell_runs(0.1, 0.7, [0.310, 0.311, 0.312]),
              "c": _cell_runs(0.3, 0.3, [0.320, 0.321, 0.322]),   # best diagonal
              "d": _cell_runs(0.5, 0.5, [0.330, 0.331, 0.332])}
    ours, verdict = c1_from_finals(finals)
    assert "best off-diagonal a 0.3010 ± 0.0010" in ours and "best diagonal c 0.3210 ± 0.0010" in ours
    assert verdict.startswith("confirmed at the full budget") and "the finals test it" not in verdict
    # the diagonal cell wins: not confirmed; no diagonal cell among the finals: no verdict
    finals["c"] = _cell_runs(0.3, 0.3, [0.290, 0.291, 0.292])
    assert c1_from_finals(finals)[1].startswith("not confirmed")
    assert c1_from_finals({"a": finals["a"], "b": finals["b"]}) is None


def test_inactive_neurons_verdict_needs_both_baselines_significantly_higher():
    dst = [10.0, 11.0, 12.0]
    both = {"Decoupled ST": dst, "Softmax ST": [46.0, 47.0, 48.0], "ST Gumbel-Softmax": [59.0, 60.0, 61.0]}
    assert inactive_verdict(both).startswith("confirmed: Decoupled ST has fewer inactive neurons than 2 of 2")
    # Softmax ST as low as Decoupled ST (the difference within the seed spread): partly
    close = {**both, "Softmax ST": [9.0, 12.0, 13.0]}
    verdict = inactive_verdict(close)
    assert verdict.startswith("partly") and "vs Softmax ST: -0.3 points" in verdict
    # Decoupled ST has the most: not confirmed; without a baseline: pending
    assert inactive_verdict({**both, "Decoupled ST": [70.0, 71.0, 72.0]}).startswith("not confirmed: ")
    assert inactive_verdict({"Decoupled ST": dst}).startswith("pending")


def test_c2_compares_the_cells_the_validation_set_selects():
    # two Decoupled ST cells: the second has the lower best val/loss, so it is compared, although the
    # first is listed first and has the better test accuracy
    first = Final("Decoupled ST", "first", [_rec(s, val__loss=[0.40], test__acc=[a]) for s, a in enumerate([0.99, 0.99, 0.99])])
    second = Final("Decoupled ST", "second", [_rec(s, val__loss=[0.30], test__acc=[a]) for s, a in enumerate([0.90, 0.91, 0.92])])
    ours, _ = Report.c2([first, second] + ROWS[1:], "test/acc", "max").split(" | ")
    assert ours.startswith("test/acc: Decoupled ST 0.9100 ± 0.0100")


def test_turning_point_names_the_interior_extreme_and_each_sides_correlation():
    # a tent: rises to tau 0.7, falls after (two seeds per temperature, slightly apart)
    tent = {0.1: 1.0, 0.3: 2.0, 0.5: 3.0, 0.7: 4.0, 0.9: 3.5, 1.1: 3.0, 1.3: 2.5}
    pts = [(t, v + d) for t, v in tent.items() for d in (0.0, 0.01)]
    text = turning_point("tau_b", "active units %", pts)
    assert text.startswith("active units % is highest at tau_b = 0.7 (4)")
    assert "up to 0.7: rho +0.9" in text and "from 0.7: rho -0.9" in text
    # monotone (or too few temperatures): nothing to say
    assert turning_point("tau_b", "x", [(t, t) for t in (0.1, 0.3, 0.5, 0.7)]) is None
    assert turning_point("tau_b", "x", [(0.1, 1.0), (0.3, 2.0), (0.5, 1.0)]) is None


def test_saturated_streak_follows_the_monitor_rule():
    from reproduction import saturated_streak

    # rows are [epoch, step, value]; stored out of order on purpose: the streak follows the steps
    rec = {"metrics": {
        "saturation/enc": [[0, 50, 0.95], [0, 0, 0.95], [0, 100, 0.5], [1, 150, 0.91], [1, 200, 0.99], [1, 250, 0.92]],
        "saturation/dec": [[0, 0, 0.95], [0, 50, 0.2]],
        "val/loss": [[0, 0, 0.95], [1, 1, 0.95], [2, 2, 0.95], [3, 3, 0.95]],  # not a saturation curve
    }}
    assert saturated_streak(rec) == 3
    assert saturated_streak(rec, above=0.93) == 2  # 0.91 and 0.92 no longer count
    assert saturated_streak({"metrics": {"saturation/enc": [[0, 0, 0.9]]}}) == 0  # strictly above
    assert saturated_streak({"metrics": {}}) == 0


def test_converged_only_leaves_out_collapsed_seeds():
    def run(seed, test, perplexity):  # a collapsed seed: one code (perplexity 1), loss near the mean image
        return _rec(seed, test__loss=[test], val__loss=[test + 1], val__perplexity__z0=[perplexity])
    rows = [Final("Decoupled ST", "a", [run(0, 120.0, 7.8), run(1, 121.0, 7.7), run(2, 205.0, 1.0)]),
            Final("ST Gumbel-Softmax", "b", [run(0, 119.0, 7.6), run(1, 119.5, 7.7), run(2, 119.2, 7.7)]),
            Final("Identity ST", "c", [run(0, 180.0, 1.9), run(1, 181.0, 1.8)])]
    report = Report.__new__(Report)  # only the table writer, no plan
    report.lines = []
    report.converged_only(rows)
    table = [line for line in report.lines if line.startswith("| ") and "converged seeds" not in line]
    assert table[0].startswith("| Decoupled ST (a) | 2 / 3 | 120.50 ± 0.71 | - |")
    assert table[1].startswith("| ST Gumbel-Softmax (b) | 3 / 3 | 119.23 ± 0.25 |")
    assert len(table) == 2  # Identity ST has no converged seed: no row
