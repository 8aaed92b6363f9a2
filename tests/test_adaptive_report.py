"""benchmarks/adaptive_report.py: the adaptive-vs-grid report, from synthetic stored runs.

Two small plans with the real plans' group names and hand-written run records (the schema
``benchmarks/runplan.py`` stores); every expected number below is computed by hand.
"""
import json
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(ROOT, "benchmarks", "adaptive_report.py")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from runplan import run_id  # noqa: E402

TF, TB, TAU, LR = "model.init_args.tau_f", "model.init_args.tau_b", "model.init_args.tau", "model.init_args.optimizer.init_args.lr"
SEEDS = [0, 1, 2]


def _sel(src, keys, top=1, **extra):
    return {"from": src, "metric": "val/loss", "mode": "min", "top": top, "keys": keys, **extra}


REPRODUCTION = {
    # binary: a 2 x 3 grid; the search keeps the 3 best cells, the best diagonal and the paper's cell
    "binary_grid": {"grid": {TF: [0.1, 0.5], TB: [0.3, 0.5, 0.7]}, "seeds": [0]},
    "binary_final": {"test": True, "select": [_sel("binary_grid", [TF, TB], top=3),
                                              _sel("binary_grid", [TF, TB], equal=[TF, TB])],
                     "cells": [{TF: 0.1, TB: 0.7}], "seeds": SEEDS},
    # autoencoder: tau_f at tau_b = 1, then tau_b; Softmax ST on its own line
    "ae_dst_tau_f": {"grid": {TF: [1.0, 2.0], TB: [1.0], LR: [0.001]}, "seeds": [0]},
    "ae_dst_tau_b": {"select": [_sel("ae_dst_tau_f", [TF, LR])], "grid": {TB: [0.5, 1.5]}, "seeds": [0]},
    "ae_softmax_tune": {"grid": {TAU: [1.0, 2.0], LR: [0.001]}, "seeds": [0]},
    "ae_final_dst": {"test": True, "select": [_sel("ae_dst_tau_b", [TF, TB, LR])],
                     "cells": [{TF: 2.0, TB: 0.5, LR: 0.001}], "seeds": SEEDS},
    "ae_final_softmax": {"test": True, "select": [_sel("ae_softmax_tune", [TAU, LR])], "seeds": SEEDS},
}
ADAPTIVE = {
    "adaptive_binary": {"test": True, "seeds": SEEDS},
    "adaptive_autoencoder": {"test": True, "seeds": SEEDS},
    "fixed_autoencoder_paper_cell": {"test": True, "grid": {TF: [2.0], TB: [0.5], LR: [0.0003]}, "seeds": SEEDS},
}


def _plan(path, results, groups):
    for g in groups.values():
        g.setdefault("configs", ["recipes/quickstart.yaml"])
    path.write_text(yaml.safe_dump({"results": str(results), "groups": groups}, sort_keys=False))
    results.mkdir(parents=True, exist_ok=True)
    return path


def _store(results, group, cell, seed, **metrics):
    """One stored run; ``metrics`` name -> list of per-epoch values (``/`` written as ``__``)."""
    rid = run_id(group, cell, seed)
    rec = {"id": rid, "group": group, "cell": cell, "seed": seed, "command": f"fit --seed_everything={seed}",
           "threads": 1, "wall_s": 60.0, "started": "2026-01-01T00:00:00+00:00",
           "finished": "2026-01-01T00:01:00+00:00", "versions": {"torch": "2", "lightning": "2"},
           "host": {"machine": "x86_64", "cpus": 2},
           "metrics": {k.replace("__", "/"): [[e, 10.0 * (e + 1), v] for e, v in enumerate(vals)]
                       for k, vals in metrics.items()}}
    (results / f"{rid}.json").write_text(json.dumps(rec))


def _report(tmp_path):
    out = tmp_path / "docs" / "adaptive.md"
    proc = subprocess.run([sys.executable, REPORT, "--plan", tmp_path / "adaptive.yaml", "--reproduction-plan",
                           tmp_path / "reproduction.yaml", "--out", out], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out.read_text()


def _row(text, section, label):
    body = text.split(f"## {section}")[1].split("\n## ")[0]
    return next(line for line in body.splitlines() if line.startswith(f"| {label} "))


def _verdict(text, section):
    body = text.split(f"## {section}")[1].split("\n## ")[0]
    return next(line for line in body.splitlines() if line.startswith("**Verdict"))


@pytest.fixture
def plans(tmp_path):
    _plan(tmp_path / "reproduction.yaml", tmp_path / "repro_runs", json.loads(json.dumps(REPRODUCTION)))
    _plan(tmp_path / "adaptive.yaml", tmp_path / "adaptive_runs", json.loads(json.dumps(ADAPTIVE)))
    return tmp_path / "repro_runs", tmp_path / "adaptive_runs"


def test_nothing_stored_reads_pending(tmp_path, plans):
    text = _report(tmp_path)
    for section in ("Stochastic binary network", "Categorical autoencoder"):
        assert _verdict(text, section).startswith("**Verdict: pending**")
        assert "pending" in _row(text, section, "adaptive")
        assert "pending: the search is not complete" in _row(text, section, "best grid cell (Decoupled ST)")
    assert "Pending: no adaptive run stored yet" in text
    assert not (tmp_path / "docs" / "adaptive" / "temperatures.png").exists()


def test_numbers_verdicts_and_run_counts(tmp_path, plans):
    repro, adaptive = plans
    # --- binary network. Grid (best val/loss): the search keeps (0.1, 0.3), (0.1, 0.5), (0.5, 0.5);
    # (0.5, 0.5) is the best diagonal; (0.1, 0.7) is only the paper's cell
    grid = {(0.1, 0.3): 0.30, (0.1, 0.5): 0.305, (0.5, 0.5): 0.31, (0.1, 0.7): 0.33, (0.5, 0.3): 0.34, (0.5, 0.7): 0.36}
    for (tf, tb), v in grid.items():
        _store(repro, "binary_grid", {TF: tf, TB: tb}, 0, val__loss=[v + 0.1, v])
    # finals: (0.1, 0.5) beats (0.1, 0.3) on mean best val/loss; the paper's cell has the lowest
    # val/loss of all but was not selected by the search, so it is not the best grid cell
    finals = {(0.1, 0.3): (0.29, [0.870, 0.872, 0.874]), (0.1, 0.5): (0.28, [0.880, 0.884, 0.888]),
              (0.5, 0.5): (0.30, [0.860, 0.865, 0.870]), (0.1, 0.7): (0.27, [0.875, 0.876, 0.877])}
    for (tf, tb), (val, accs) in finals.items():
        for seed, acc in zip(SEEDS, accs):
            _store(repro, "binary_final", {TF: tf, TB: tb}, seed, val__loss=[val + 0.05, val], test__acc=[acc])
    tau_f = [0.2, 0.3, 0.4]
    for seed, acc, tf in zip(SEEDS, [0.881, 0.883, 0.885], tau_f):
        _store(adaptive, "adaptive_binary", {}, seed, test__acc=[acc], val__loss=[0.30, 0.35],  # best: epoch 1
               **{"temperature__hidden.1__tau_f": [0.1, tf], "temperature__hidden.1__tau_b": [0.7, 0.5]})
    # the binary group's recipe bounds tau_b to [0.1, 0.5]: the final tau_b sits at the upper bound
    recipe = tmp_path / "adaptive_recipe.yaml"
    recipe.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "ModelCheckpoint"},
        {"class_path": "AdaptiveTemperature", "init_args": {"tau_b_bounds": [0.1, 0.5]}}]}}))
    plan = yaml.safe_load((tmp_path / "adaptive.yaml").read_text())
    plan["groups"]["adaptive_binary"]["configs"] = ["recipes/quickstart.yaml", str(recipe)]
    (tmp_path / "adaptive.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    # --- autoencoder. tau_f stage keeps tau_f = 2 (130 < 140), tau_b stage keeps tau_b = 1.5
    _store(repro, "ae_dst_tau_f", {TF: 1.0, TB: 1.0, LR: 0.001}, 0, val__loss=[140.0])
    _store(repro, "ae_dst_tau_f", {TF: 2.0, TB: 1.0, LR: 0.001}, 0, val__loss=[130.0])
    _store(repro, "ae_dst_tau_b", {TF: 2.0, LR: 0.001, TB: 0.5}, 0, val__loss=[128.0])
    _store(repro, "ae_dst_tau_b", {TF: 2.0, LR: 0.001, TB: 1.5}, 0, val__loss=[125.0])
    _store(repro, "ae_softmax_tune", {TAU: 1.0, LR: 0.001}, 0, val__loss=[150.0])
    _store(repro, "ae_softmax_tune", {TAU: 2.0, LR: 0.001}, 0, val__loss=[145.0])
    for seed, loss in zip(SEEDS, [100.0, 102.0, 104.0]):
        _store(repro, "ae_final_dst", {TF: 2.0, TB: 1.5, LR: 0.001}, seed, val__loss=[120.0], test__loss=[loss],
               **{"val__perplexity__bottleneck": [7.0]})
    for seed, loss in zip(SEEDS, [108.0, 109.0, 110.0]):
        _store(repro, "ae_final_softmax", {TAU: 2.0, LR: 0.001}, seed, val__loss=[130.0], test__loss=[loss])
    # adaptive: seeds 0 and 1 converge (perplexity >= 4, best val/loss <= 160), seed 2 does not
    for seed, loss, perp in zip(SEEDS, [110.0, 111.0, 112.0], [6.0, 5.0, 2.0]):
        _store(adaptive, "adaptive_autoencoder", {}, seed, val__loss=[170.0, 150.0], test__loss=[loss],
               **{"val__perplexity__bottleneck": [3.0, perp], "temperature__bottleneck__tau_f": [2.0, 3.0 + seed],
                  "temperature__bottleneck__tau_b": [0.5, 1.0]})

    text = _report(tmp_path)
    b = "Stochastic binary network"
    best = _row(text, b, "best grid cell (Decoupled ST)")
    assert "tau_f=0.1, tau_b=0.5" in best and "0.8840 ± 0.0040" in best and "3 / 3" in best
    assert "6 tuning + 1 per seed (9 in all)" in best  # the 6 grid runs, then 3 finals
    diag = _row(text, b, "best diagonal (Softmax ST)")
    assert "tau_f=0.5, tau_b=0.5" in diag and "0.8650 ± 0.0050" in diag
    assert "1 tuning + 1 per seed (4 in all)" in diag  # the grid's one diagonal cell
    paper = _row(text, b, "paper's cell (reproduction final)")
    assert "tau_f=0.1, tau_b=0.7" in paper and "0.8760 ± 0.0010" in paper and "chosen by the paper's own grid" in paper
    ada = _row(text, b, "adaptive")
    # Welch: diff -0.001, se = sqrt(0.002^2 / 3 + 0.004^2 / 3) = 0.002582, t = -0.387
    assert "0.8830 ± 0.0020" in ada and "1 per seed (3)" in ada and "-0.39" in ada
    verdict = _verdict(text, b)
    assert "**Verdict: within one standard deviation of the best grid cell.**" in verdict
    assert "difference -0.0010 (worse)" in verdict and "0.25 standard deviations" in verdict
    assert "converged" not in verdict  # the binary network has no convergence rule

    a = "Categorical autoencoder"
    best = _row(text, a, "best grid cell (Decoupled ST)")
    assert "tau_f=2, tau_b=1.5, lr=0.001" in best and "102.00 ± 2.00" in best
    assert "4 tuning + 1 per seed (7 in all)" in best and "| 3 / 3 |" in best
    assert "2 tuning + 1 per seed (5 in all)" in _row(text, a, "best diagonal (Softmax ST)")
    ada = _row(text, a, "adaptive")
    assert "111.00 ± 1.00" in ada and "| 2 / 3 |" in ada
    verdict = _verdict(text, a)
    # diff +9 nats (worse: lower is better), 9 / 2 = 4.5 standard deviations
    assert "**Verdict: not within one standard deviation of the best grid cell.**" in verdict
    assert "difference +9.00 (worse)" in verdict and "4.50 standard deviations" in verdict
    assert "converged seeds: adaptive 2 of 3, grid 3 of 3" in verdict
    assert "pending" in _row(text, a, "paper's cell, lr 3e-4 (as the adaptive runs)")

    # temperatures at the best epoch (binary: epoch 1 of 2; autoencoder: epoch 2) and final: tau_f of
    # hidden.1 over the 3 seeds 0.3 ± 0.1; tau_b 0.5 is the binary recipe's upper bound, and the
    # autoencoder's recipe (quickstart) has no AdaptiveTemperature, so nothing is marked there
    assert ("| Stochastic binary network | hidden.1 | 1.0 ± 0.0 | 0.100 ± 0.000 | 0.700 ± 0.000 | 0.300 ± 0.100 | "
            "0.500 ± 0.000 (bound) | tau_f=0.1, tau_b=0.5 |") in text
    assert ("| Categorical autoencoder | bottleneck | 2.0 ± 0.0 | 4.000 ± 1.000 | 1.000 ± 0.000 | 4.000 ± 1.000 | "
            "1.000 ± 0.000 | tau_f=2, tau_b=1.5, lr=0.001 |") in text
    assert (tmp_path / "docs" / "adaptive" / "temperatures.png").stat().st_size > 0


def test_best_diagonal_is_one_cell_when_the_selection_keeps_several(tmp_path):
    # a 2 x 2 grid whose top 3 holds both diagonal cells: the diagonal row is the better of the two
    # finals (by mean best val/loss), with its own seeds only
    groups = json.loads(json.dumps(REPRODUCTION))
    groups["binary_grid"]["grid"] = {TF: [0.3, 0.5], TB: [0.3, 0.5]}
    _plan(tmp_path / "reproduction.yaml", tmp_path / "repro_runs", groups)
    _plan(tmp_path / "adaptive.yaml", tmp_path / "adaptive_runs", json.loads(json.dumps(ADAPTIVE)))
    repro = tmp_path / "repro_runs"
    for (tf, tb), v in {(0.3, 0.3): 0.30, (0.5, 0.5): 0.31, (0.3, 0.5): 0.32, (0.5, 0.3): 0.40}.items():
        _store(repro, "binary_grid", {TF: tf, TB: tb}, 0, val__loss=[v])
    for (tf, tb), (val, accs) in {(0.3, 0.3): (0.29, [0.85, 0.86, 0.87]), (0.5, 0.5): (0.27, [0.80, 0.81, 0.82]),
                                  (0.3, 0.5): (0.28, [0.88, 0.88, 0.88])}.items():
        for seed, acc in zip(SEEDS, accs):
            _store(repro, "binary_final", {TF: tf, TB: tb}, seed, val__loss=[val], test__acc=[acc])
    diag = _row(_report(tmp_path), "Stochastic binary network", "best diagonal (Softmax ST)")
    assert "tau_f=0.5, tau_b=0.5" in diag and "| 3 / 3 |" in diag and "0.8100 ± 0.0100" in diag
