"""benchmarks/vae_report.py: the paper-difference column, on numbers worked out by hand."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from vae_report import PAPER_MEASURE, PAPER_TABLE1, TABLE1_ESTIMATORS, TASKS, paper_gap  # noqa: E402


def test_paper_gap_in_nats_and_seed_spreads():
    # mean 103, sd 2 (values 101, 103, 105): 103 - 101.5 = +1.5 nats = +0.75 sd
    assert paper_gap([101.0, 103.0, 105.0], 101.5) == "+1.5 (+0.8 sd)"
    # one seed: no spread to compare with
    assert paper_gap([100.0], 101.5) == "-1.5"
    # missing runs (None, NaN) are left out; nothing left or no paper value -> "-"
    assert paper_gap([None, float("nan")], 101.5) == "-"
    assert paper_gap([100.0, 102.0], None) == "-"
    # zero spread: the nats only
    assert paper_gap([100.0, 100.0], 101.5) == "-1.5"


def test_every_task_has_a_paper_row_and_a_measure():
    assert set(PAPER_TABLE1) == set(TASKS) == set(PAPER_MEASURE)
    for task, row in PAPER_TABLE1.items():
        assert set(row) <= set(TABLE1_ESTIMATORS)
        # Gumbel-Softmax is the best of the paper's rows on every task (its Table 1's point)
        assert min(row, key=row.get) == "gs"


def test_table1_row_compares_the_papers_measure(tmp_path):
    """VAE rows compare the paper with test/loss (-ELBO), SBN rows with test/nll."""
    from pathlib import Path

    from vae_report import Report

    runs = [{"metrics": {"test/loss": [[0, 0, 103.0]], "test/nll": [[0, 0, 99.0]]}},
            {"metrics": {"test/loss": [[0, 0, 105.0]], "test/nll": [[0, 0, 100.0]]}}]
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    stored = {"gs_vae_cat_gs_final", "gs_sbn_cat_gs_final"}
    report.final_cell = lambda group: ("lr=0.001", runs) if group in stored else ("-", [])
    report.table1()
    rows = {line.split(" | ")[0]: line for line in report.lines if "| Gumbel-Softmax |" in line}
    # VAE: test/loss mean 104, sd sqrt(2): 104 - 101.5 = +2.5 nats = +1.8 sd
    assert rows["| VAE, categorical (20 x 10)"].endswith("| 101.5 | +2.5 (+1.8 sd) |")
    # SBN: test/nll mean 99.5, sd sqrt(0.5): 99.5 - 59.0 = +40.5 nats = +57.3 sd
    assert rows["| SBN, categorical (392-(20x10)-(20x10)-392)"].endswith("| 59.0 | +40.5 (+57.3 sd) |")
    # a row without stored runs has the paper's value and no difference
    assert rows["| VAE, Bernoulli (200)"].endswith("| 105.0 | - |")


def test_annealing_effect_is_annealed_minus_st_beside_the_paper(tmp_path):
    from pathlib import Path

    from vae_report import Report

    def runs(loss, nll):
        return [{"metrics": {"test/loss": [[0, 0, loss + d]], "test/nll": [[0, 0, nll + d]]}} for d in (-1.0, 1.0)]

    stored = {"gs_vae_bern_annealed_st_final": runs(121.0, 104.0), "gs_vae_bern_st_final": runs(119.0, 103.0),
              "gs_sbn_cat_annealed_st_final": runs(74.0, 63.5), "gs_sbn_cat_st_final": runs(74.5, 61.0)}
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    report.final_cell = lambda group: ("lr=0.001", stored.get(group, []))
    report.annealing_effect()
    (line,) = [line for line in report.lines if line.startswith("Annealed ST minus ST")]
    # VAE: -ELBO 121 - 119 = +2.0 against the paper's 111.5 - 116.0 = -4.5; SBN: test/nll 63.5 - 61.0 = +2.5
    # against 61.1 - 61.8 = -0.7; tasks with a row missing are left out
    assert "VAE, Bernoulli (200): +2.0 (paper -4.5)" in line
    assert "SBN, categorical (392-(20x10)-(20x10)-392): +2.5 (paper -0.7)" in line
    assert "VAE, categorical" not in line and "SBN, Bernoulli" not in line


def test_relaxed_rows_report_their_training_objective_beside_the_paper(tmp_path):
    from pathlib import Path

    from vae_report import Report

    runs = [{"metrics": {"test/loss": [[0, 0, 114.0]], "test/objective": [[0, 0, 106.0]]}},
            {"metrics": {"test/loss": [[0, 0, 113.0]], "test/objective": [[0, 0, 108.0]]}}]
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    report.final_cell = lambda group: ("lr=0.001", runs if group == "gs_vae_bern_gs_final" else [])
    report.relaxed_objective()
    (line,) = [line for line in report.lines if line.startswith("The relaxed Gumbel-Softmax rows")]
    # mean 107, sd sqrt(2): 107 - 105.0 = +2.0 nats = +1.4 sd; two of three seeds stored
    assert "VAE, Bernoulli (200): 107.0 ± 1.4, n=2 (paper 105.0, +2.0 (+1.4 sd); its -ELBO above: 113.5 ± 0.7)" in line
    assert "VAE, categorical (20 x 10):" not in line and "SBN" not in line  # no runs / not this measure


def test_best_tuning_cell_at_the_grid_edge_is_flagged(tmp_path):
    import yaml
    from pathlib import Path

    from vae_report import Report

    grid = {"model.init_args.optimizer.init_args.lr": [0.0001, 0.0003, 0.001]}
    plan = {"results": str(tmp_path / "runs"), "groups": {
        "tune": {"configs": ["x.yaml"], "grid": grid, "seeds": [0]}}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    report = Report(path, tmp_path / "r.md")

    def store(losses):
        report.results = {}
        for lr, loss in losses.items():
            rid = f"tune__lr={lr:g}__seed=0"
            report.results[rid] = {"id": rid, "cell": {"model.init_args.optimizer.init_args.lr": lr}, "seed": 0,
                                   "metrics": {"val/loss": [[0, 0, loss + 5.0], [1, 1, loss]]}}

    store({0.0001: 90.0, 0.0003: 80.0, 0.001: 75.0})
    assert report.best_at_edge("tune") == "lr=0.001"       # the largest value wins
    store({0.0001: 70.0, 0.0003: 80.0, 0.001: 75.0})
    assert report.best_at_edge("tune") == "lr=0.0001"      # the smallest
    store({0.0001: 90.0, 0.0003: 70.0, 0.001: 75.0})
    assert report.best_at_edge("tune") is None             # inside the grid
    store({0.0001: 90.0, 0.001: 75.0})
    assert report.best_at_edge("tune") is None             # incomplete group: no verdict yet


def test_selected_cell_and_its_tuning_value_show_before_the_finals(tmp_path):
    import yaml
    from pathlib import Path

    from vae_report import Report

    lr = "model.init_args.optimizer.init_args.lr"
    plan = {"results": str(tmp_path / "runs"), "groups": {
        "tune": {"configs": ["x.yaml"], "grid": {"model.init_args.tau": [0.5, 1.0], lr: [0.001]}, "seeds": [0, 1]},
        "final": {"configs": ["x.yaml"], "seeds": [0, 1, 2], "select": [
            {"from": "tune", "metric": "val/loss", "mode": "min", "top": 1, "keys": ["model.init_args.tau", lr]}]}}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))  # grid order = run id order
    report = Report(path, tmp_path / "r.md")
    best = {(0.5, 0): 130.0, (0.5, 1): 134.0, (1.0, 0): 128.0, (1.0, 1): 140.0}  # means: 132 and 134
    for (tau, seed), loss in list(best.items())[:3]:
        rid = f"tune__tau={tau:g}__lr=0.001__seed={seed}"
        report.results[rid] = {"id": rid, "cell": {"model.init_args.tau": tau, lr: 0.001}, "seed": seed,
                               "metrics": {"val/loss": [[0, 0, loss + 9.0], [1, 1, loss]]}}
    # tuning incomplete (3 of 4 runs): no selection yet
    assert report.final_cell("final") == ("-", []) and report.tuned_value("final") == "-"
    rid = "tune__tau=1__lr=0.001__seed=1"
    report.results[rid] = {"id": rid, "cell": {"model.init_args.tau": 1.0, lr: 0.001}, "seed": 1,
                           "metrics": {"val/loss": [[0, 0, 140.0]]}}
    # complete: tau 0.5 wins on the mean over the tuning seeds (132 < 134), though tau 1 has the best single run
    assert report.final_cell("final") == ("tau=0.5, lr=0.001", [])
    assert report.tuned_value("final") == "132.00"  # mean over the selected cell's tuning seeds


def test_a_check_is_shown_beside_its_final_on_the_check_s_seeds(tmp_path):
    import yaml
    from pathlib import Path

    from vae_report import Report

    lr = "model.init_args.optimizer.init_args.lr"
    plan = {"results": str(tmp_path / "runs"), "groups": {
        "final": {"configs": ["x.yaml"], "cells": [{lr: 0.01}], "seeds": [0, 1, 2], "test": True},
        "final_check": {"configs": ["x.yaml"], "cells": [{lr: 0.003}], "seeds": [0], "test": True,
                        "compare": "final", "note": "Is it the learning rate?"}}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    report = Report(path, tmp_path / "r.md")

    def store(group, lr_value, seed, nll):
        rid = f"{group}__lr={lr_value:g}__seed={seed}"
        report.results[rid] = {"id": rid, "cell": {lr: lr_value}, "seed": seed, "metrics": {
            "val/loss": [[0, 0, nll + 14.0], [1, 1, nll + 12.0], [2, 2, nll + 13.0]],
            "test/nll": [[2, 3, nll]], "test/loss": [[2, 3, nll + 11.0]]}}

    store("final", 0.01, 0, 61.0)
    store("final", 0.01, 1, 63.0)   # not a seed of the check: left out of the paired rows
    store("final_check", 0.003, 0, 59.0)
    report.checks()
    rows = [line for line in report.lines if line.startswith("| `")]
    assert "Is it the learning rate?" in report.lines[2]
    # seed 0 only; best val/loss = min over epochs (nll + 12), last = the last epoch (nll + 13)
    assert rows == ["| `final` | lr=0.01 | 0 | 61.0 | 72.0 | 73.00 | 74.00 |",
                    "| `final_check` | lr=0.003 | 0 | 59.0 | 70.0 | 71.00 | 72.00 |"]


def test_a_final_that_selects_another_final_s_training_is_said_to(tmp_path):
    """Decoupled ST tuned to tau_f = 1 is ST: the report says its finals are ST's, and only then."""
    import yaml
    from pathlib import Path

    from vae_report import Report

    tf, tb = "model.init_args.tau_f", "model.init_args.tau_b"
    cfg = ["recipes/vae_mnist.yaml", "recipes/estimators/decoupled_st.yaml"]
    tuning = {"mv_8x4_st_final": "mv_8x4_st_tune", "mv_8x4_dst_final": "mv_8x4_dst_seq_f"}
    plan = {"results": str(tmp_path / "runs"), "scratch": str(tmp_path / "scratch"), "data_dir": "data", "groups": {
        "mv_8x4_st_tune": {"configs": cfg, "grid": {tf: [1.0], tb: [0.5, 1.0]}, "seeds": [0]},
        "mv_8x4_dst_seq_f": {"configs": cfg, "grid": {tf: [0.5, 1.0], tb: [1.0]}, "seeds": [0]},
        **{final: {"configs": cfg, "seeds": [0, 1], "select": [
            {"from": tune, "metric": "val/loss", "mode": "min", "top": 1, "keys": [tf, tb]}]}
           for final, tune in tuning.items()}}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    report = Report(path, tmp_path / "r.md")

    def store(group, f, b, loss):
        rid = f"{group}__tau_f={f:g}__tau_b={b:g}__seed=0"
        report.results[rid] = {"id": rid, "group": group, "cell": {tf: f, tb: b}, "seed": 0,
                               "metrics": {"val/loss": [[0, 0, loss]]}}

    store("mv_8x4_st_tune", 1.0, 0.5, 140.0)
    store("mv_8x4_st_tune", 1.0, 1.0, 130.0)         # ST selects (1, 1)
    assert not report.same_training("mv_8x4_dst_final", "mv_8x4_st_final")  # Decoupled ST not tuned yet
    store("mv_8x4_dst_seq_f", 0.5, 1.0, 120.0)
    store("mv_8x4_dst_seq_f", 1.0, 1.0, 130.0)        # Decoupled ST selects (0.5, 1): a different training
    assert not report.same_training("mv_8x4_dst_final", "mv_8x4_st_final")
    store("mv_8x4_dst_seq_f", 0.5, 1.0, 135.0)        # now (1, 1), ST's cell
    assert report.same_training("mv_8x4_dst_final", "mv_8x4_st_final")
    report.lines = []
    report.benchmark()
    assert sum("its finals are the ST runs" in line for line in report.lines) == 1
    assert any(line.startswith("8 x 4: Decoupled ST") for line in report.lines)


def test_curve_figure_plots_the_mean_and_the_min_max_band_over_seeds():
    import pytest

    pytest.importorskip("matplotlib")
    import numpy as np
    from reproduction import curve_figure

    def run(values):
        return {"metrics": {"val/loss": [[e, 10 * e, v] for e, v in enumerate(values)]}}

    # two seeds of 4 and 3 epochs (cut to 3), one of 20 epochs falling from 200 to 100; an empty cell
    a = [run([10.0, 8.0, 6.0, 5.0]), run([12.0, 6.0, 4.0])]
    b = [run(list(np.linspace(200.0, 100.0, 20)))]
    fig = curve_figure({"a": a, "b": b, "none": []}, "val/loss", "t", zoom=True)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["a, 2 seeds", "b, 1 seed"]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1, 2, 3])  # epochs counted from 1
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [11.0, 7.0, 5.0])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == 4.0 and band.max() == 12.0  # min..max over the seeds
    # zoom: from the lowest value (4) to the highest after the first tenth of each curve (b: its 3rd epoch)
    top = 200.0 - 2 * 100.0 / 19
    low, high = ax.get_ylim()
    pad = 0.03 * (top - 4.0)
    assert low == pytest.approx(4.0 - pad) and high == pytest.approx(top + pad)


def test_summary_cells_are_ours_in_the_paper_s_measure_then_the_paper_s(tmp_path):
    from pathlib import Path

    from vae_report import Report

    def run(loss, nll):
        return {"metrics": {"test/loss": [[0, 0, loss]], "test/nll": [[0, 0, nll]]}}

    stored = {"gs_vae_bern_st_final": [run(118.0, 100.0), run(120.0, 102.0), run(122.0, 104.0)],  # 3 of 3
              "gs_sbn_cat_gs_final": [run(75.0, 63.0)]}                                          # 1 of 3
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    report.runs = lambda group: stored.get(group, [])
    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in report.table1_summary()[2:]}
    assert list(rows) == ["| ST", "| Annealed ST", "| Gumbel-Softmax", "| ST Gumbel-Softmax",
                          "| REINFORCE (LOO baseline)"]
    # columns in TASKS order: SBN Bernoulli, SBN categorical, VAE Bernoulli, VAE categorical
    # VAE: test/loss, mean 120, sd 2, all three seeds (no n=); paper 116.0
    assert rows["| ST"][2] == "120.0 ± 2.0 / 116.0"
    # SBN: test/nll (63, not the loss 75), one seed of three; paper 59.0
    assert rows["| Gumbel-Softmax"][1] == "63.0 (n=1) / 59.0"
    assert rows["| ST"][0] == "pending / 58.9"
    assert rows["| REINFORCE (LOO baseline)"][3] == "pending / 110.6 |"



def test_benchmark_summary_puts_each_size_s_finals_beside_its_tuning_preview(tmp_path):
    from pathlib import Path

    from vae_report import Report

    def run(loss):
        return {"metrics": {"test/loss": [[0, 0, loss]], "test/nll": [[0, 0, loss - 10.0]]}}

    stored = {"mv_10x30_reinmax_final": [run(100.0), run(102.0)]}  # 2 of 5 seeds
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    report.runs = lambda group: stored.get(group, [])
    report.tuned_value = lambda group: f"tuned {group}"
    lines = report.benchmark_summary()
    assert lines[0].startswith("| estimator | 8 x 4: test -ELBO | 8 x 4: 20-epoch preview | 10 x 30: test -ELBO")
    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in lines[2:]}
    # test/loss (not test/nll), mean 101, sd sqrt(2), two of five seeds
    assert rows["| ReinMax"] == ["pending", "tuned mv_8x4_reinmax_final", "101.0 ± 1.4 (n=2)",
                                 "tuned mv_10x30_reinmax_final |"]
    assert rows["| Decoupled ST"][2] == "pending"


def test_ranking_orders_by_mean_test_elbo_and_separates_neighbours_only_where_welch_p_is_below_5_percent(tmp_path):
    from pathlib import Path

    from vae_report import Report

    def runs(*losses):
        return [{"metrics": {"test/loss": [[0, 0, v]]}} for v in losses]

    stored = {"mv_8x4_st_final": runs(137.0, 136.5, 137.5),
              "mv_8x4_gumbel_rao_final": runs(130.0, 130.2, 129.8),  # mean 130.0, sd 0.2
              "mv_8x4_reinmax_final": runs(129.9, 130.3, 130.1),  # mean 130.1: t = -0.61, p ~ 0.57 against GR
              "mv_8x4_dst_final": runs(129.0),  # one seed: named, not ranked
              "mv_10x30_st_final": runs(116.0, 116.4), "mv_10x30_st_gs_final": runs(102.0, 102.2)}
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    report.runs = lambda group: stored.get(group, [])
    report.same_training = lambda a, b: "10x30" in a  # 10 x 30: Decoupled ST's finals are ST's runs
    assert report.ranking("8x4") == (
        "8 x 4 (10 of 25 distinct finals stored): Gumbel-Rao 130.0 (n=3) ~ ReinMax 130.1 (n=3) < ST 137.0 (n=3); "
        "not ranked (fewer than 2 seeds): ST Gumbel-Softmax (n=0), Decoupled ST (n=1)")
    # 14 nats apart with sd 0.28 and 0.14 over 2 seeds each: t = 70, p ~ 0.01
    assert report.ranking("10x30") == (
        "10 x 30 (4 of 20 distinct finals stored): ST Gumbel-Softmax 102.1 (n=2) < ST = Decoupled ST 116.2 (n=2); "
        "not ranked (fewer than 2 seeds): Gumbel-Rao (n=0), ReinMax (n=0)")
    stored.clear()
    assert report.ranking("8x4").startswith("8 x 4 (0 of 25 distinct finals stored): nothing ranked yet; not ranked (fewer than 2 seeds): ST (n=0)")


def test_benchmark_warns_that_decoupled_st_s_train_loss_is_not_an_elbo_when_it_samples_at_tau_f(tmp_path):
    from pathlib import Path

    from vae_report import Report

    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    cells = {"mv_8x4_dst_final": {"model.init_args.tau_f": 2.0, "model.init_args.tau_b": 2.0},
             "mv_10x30_dst_final": {"model.init_args.tau_f": 1.0, "model.init_args.tau_b": 2.0}}
    report.selected_cell = lambda group: cells.get(group)
    report.runs = lambda group: []
    report.same_training = lambda a, b: False
    report.benchmark()
    said = [line for line in report.lines if "so its `train/loss` is not q's negative ELBO" in line]
    assert said and all(line.startswith("8 x 4: Decoupled ST samples from softmax(l / 2)") for line in said)
    assert len(said) == 1  # 10 x 30 samples at tau_f = 1: its training loss is an ELBO


def test_finals_plot_draws_a_dot_per_seed_and_nothing_without_finals(tmp_path):
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from vae_report import Report

    stored = {"mv_8x4_st_final": [{"metrics": {"test/loss": [[0, 0, v]]}} for v in (136.6, 137.1)]}
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    report.runs = lambda group: stored.get(group, [])
    report.same_training = lambda a, b: False
    drawn = []
    savefig = plt.Figure.savefig
    plt.Figure.savefig = lambda fig, *a, **k: (drawn.append(fig), savefig(fig, *a, **k))[1]
    try:
        assert report.finals_plot() == ["![MNIST-VAE finals](r/mnist_vae_finals.png)"]
    finally:
        plt.Figure.savefig = savefig
    assert (tmp_path / "r" / "mnist_vae_finals.png").stat().st_size > 0
    ax = drawn[0].axes[0]
    dots = [line for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata())]
    assert [list(d.get_xdata()) for d in dots] == [[136.6, 137.1]]  # ST's two seeds, on ST's row (0)
    assert list(dots[0].get_ydata()) == [0, 0]
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["ST (n=2)", "ST Gumbel-Softmax (n=0)"]
    stored.clear()
    assert report.finals_plot() == []


def test_elbo_terms_split_each_vae_final_s_test_loss_into_reconstruction_and_kl(tmp_path):
    from pathlib import Path

    from vae_report import Report

    def run(recon, kl, nll=None):
        metrics = {"test/recon": [[0, 0, recon]], "test/kl": [[0, 0, kl]], "test/loss": [[0, 0, recon + kl]]}
        if nll is not None:
            metrics["test/nll"] = [[0, 0, nll]]
        return {"metrics": metrics}

    stored = {"gs_vae_cat_st_final": [run(99.0, 19.0, 101.0), run(100.0, 18.6, 102.0)],
              "mv_8x4_reinmax_final": [run(122.4, 6.8)],  # tested without the m = 1000 bound
              "gs_sbn_cat_st_final": [run(70.0, 0.0, 61.0)]}  # not a VAE: not a row
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    report.runs = lambda group: stored.get(group, [])
    report.elbo_terms()
    rows = [line for line in report.lines if line.startswith("| ") and not line.startswith("| task")]
    # recon mean 99.5, KL 18.8, -ELBO (118 + 118.6) / 2 = 118.3, bound 101.5: looser by 16.8
    assert rows == ["| VAE, categorical (20 x 10) | ST | 2 | 99.5 | 18.8 | 118.3 | 16.8 |",
                    "| MNIST-VAE 8 x 4 | ReinMax | 1 | 122.4 | 6.8 | 129.2 | - |"]
    stored.clear()
    report.lines = []
    report.elbo_terms()
    assert report.lines == []


def test_temperature_cells_count_distinct_temperatures_and_join_decoupled_st_s_two_steps(tmp_path):
    from pathlib import Path

    from vae_report import Report

    lr, tau = "model.init_args.optimizer.init_args.lr", "model.init_args.tau"
    f, b = "model.init_args.tau_f", "model.init_args.tau_b"

    def runs(cells):
        return [{"cell": {**c, lr: rate}} for c in cells for rate in (0.0003, 0.001)]  # two rates per cell

    stored = {
        "mv_8x4_st_tune": runs([{f: 1.0, b: t} for t in (0.5, 1.0, 2.0)]),
        "mv_8x4_reinmax_tune": runs([{tau: t} for t in (0.5, 1.0, 2.0, 4.0)]),
        # tau_f at tau_b = 1, then tau_b at tau_f = 2: (2, 1) is in both steps, counted once
        "mv_8x4_dst_seq_f": runs([{f: t, b: 1.0} for t in (0.5, 1.0, 2.0)]),
        "mv_8x4_dst_seq_b": runs([{f: 2.0, b: t} for t in (0.5, 1.0, 2.0, 4.0)]),
    }
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    report.runs = lambda group: stored.get(group, [])
    assert report.temperature_cells("8x4") == ("8 x 4: ST 3, ST Gumbel-Softmax 0, Gumbel-Rao 0, ReinMax 4, "
                                               "Decoupled ST 6")


def test_optimiser_effect_pairs_st_with_slope_annealing_per_optimiser_on_the_check_seeds(tmp_path):
    from pathlib import Path

    from vae_report import Report

    def run(seed, loss):
        return {"seed": seed, "metrics": {"test/loss": [[0, 0, loss]]}}

    stored = {"gs_vae_bern_st_sgd_check": [run(0, 121.0)], "gs_vae_bern_slope_st_sgd_check": [run(0, 122.5)],
              "gs_vae_bern_st_final": [run(0, 119.9), run(1, 119.0)],   # seed 1 is not a check seed
              "gs_vae_bern_annealed_st_check": [run(0, 119.6)]}
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    report.final_cell = lambda group: ("lr=0.003" if "sgd" in group else "lr=0.001", stored.get(group, []))
    report.optimiser_effect()
    text = " ".join(report.lines)
    assert "SGD with momentum 0.9 (ST at lr=0.003, slope-annealed at lr=0.003): ST 121.0, " \
           "slope-annealed ST 122.5 (+1.5)" in text
    assert "Adam (ST at lr=0.001, slope-annealed at lr=0.001): ST 119.9, slope-annealed ST 119.6 (-0.3)" in text
    assert "The paper: ST 116.0, annealed ST 111.5 (-4.5)." in text
    # nothing is said while one of the four is missing
    del stored["gs_vae_bern_slope_st_sgd_check"]
    report.lines = []
    report.optimiser_effect()
    assert report.lines == []

def test_replace_block_swaps_only_what_lies_between_the_markers():
    import pytest
    from vae_report import replace_block

    text = "intro\n<!-- t -->\nold 1\nold 2\n<!-- /t -->\noutro\n"
    assert replace_block(text, "t", ["new"]) == "intro\n<!-- t -->\nnew\n<!-- /t -->\noutro\n"
    assert replace_block(replace_block(text, "t", []), "t", ["a", "b"]) == \
        "intro\n<!-- t -->\na\nb\n<!-- /t -->\noutro\n"
    for bad in ("no markers", "<!-- /t --> <!-- t -->", "<!-- t --><!-- t --><!-- /t -->"):
        with pytest.raises(ValueError, match="expected one"):
            replace_block(bad, "t", ["x"])


def test_readme_table_is_the_report_s_summary_of_the_stored_runs(tmp_path):
    """The README's tables are what `python benchmarks/vae_report.py` writes from the runs
    committed under docs/benchmarks_vae/runs: rerun it after storing runs."""
    from pathlib import Path

    from vae_report import Report, replace_block

    readme = (Path(ROOT) / "README.md").read_text()
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    for name, lines in report.readme_tables().items():
        assert replace_block(readme, name, lines) == readme, name


def test_compute_summary_says_which_resumed_runs_have_untimed_attempts():
    from reproduction import compute_summary

    host = {"machine": "x86_64", "cpus": 2, "accelerator": "cpu"}

    def rec(wall, **extra):
        return {"wall_s": wall, "threads": 1, "host": host, "finished": "2026-12-05T06:00:00", **extra}

    recs = [rec(1800.0, resumed_after_epochs=[3, 9]),  # stored before attempts were timed: 2 untimed
            rec(1800.0, resumed_after_epochs=[5], attempts_s=[600.0, 1200.0]),  # timed: none
            rec(1800.0, resumed_after_epochs=[2, 4], attempts_s=[300.0, 1500.0]),  # one of two timed
            rec(1800.0, resumed_after_epochs=[3, 9], same_as="x")]  # a copy: counted with its original
    text = "\n".join(compute_summary(recs))
    assert "**1.50 h**" in text  # 3 x 1800 s; the copy not again
    assert "resumed before the runner timed every attempt: 2; their 3 earlier attempts" in text
    assert "timed every attempt" not in "\n".join(compute_summary(recs[1:2]))


def test_seeds_further_apart_than_the_spread_are_listed_with_their_validation_curves(tmp_path):
    from pathlib import Path

    from vae_report import Report

    def rec(seed, test, curve, metric="test/loss"):
        return {"seed": seed, "metrics": {metric: [[0, 0, test]],
                                          "val/loss": [[e, 0, v] for e, v in enumerate(curve)]}}

    stored = {
        # 145.8 - 129.1 = 16.7 nats apart: listed; seed 1's best (146.7) is at epoch 2 of 3 (counted from 1)
        "mv_8x4_dst_final": [rec(1, 145.8, [150.0, 146.7, 152.7]), rec(0, 129.1, [140.0, 131.0, 129.9])],
        # 3.0 apart: not more than the spread, not listed
        "mv_8x4_st_final": [rec(0, 136.0, [138.0]), rec(1, 139.0, [140.0])],
        # Table 1 SBN rows compare test/nll: 60.0 vs 64.5 listed although test/loss agrees
        "gs_sbn_bern_st_final": [rec(0, 60.0, [73.0], "test/nll"), rec(1, 64.5, [73.1], "test/nll")],
        # one seed: nothing to disagree with
        "mv_10x30_reinmax_final": [rec(0, 100.0, [101.0])],
    }
    for r in stored["gs_sbn_bern_st_final"]:
        r["metrics"]["test/loss"] = [[0, 0, 70.0]]
    # the utilisation monitor's dead codes: none on seed 0, 47% at the end on seed 1, first at epoch 2
    stored["mv_8x4_dst_final"][0]["metrics"]["train/dead_codes/bottleneck"] = [[0, 0, 0.0], [1, 0, 0.25], [2, 0, 0.47]]
    stored["mv_8x4_dst_final"][1]["metrics"]["train/dead_codes/bottleneck"] = [[0, 0, 0.0], [1, 0, 0.0], [2, 0, 0.0]]
    report = Report(Path(ROOT) / "docs" / "benchmarks_vae" / "plan.yaml", tmp_path / "r.md")
    report.runs = lambda group: stored.get(group, [])
    report.same_training = lambda a, b: False
    report.seed_disagreements(spread=3.0)
    items = [line for line in report.lines if line.startswith("* ")]
    assert items == [
        "* SBN, Bernoulli (392-200-200-392), ST (`test/nll`, 4.5 nats apart): seed 0 60.0 (validation best 73.0 "
        "at epoch 1, 73.0 at epoch 1); seed 1 64.5 (validation best 73.1 at epoch 1, 73.1 at epoch 1)",
        "* MNIST-VAE 8 x 4, Decoupled ST (`test/loss`, 16.7 nats apart): seed 0 129.1 (validation best 129.9 at "
        "epoch 3, 129.9 at epoch 3), dead codes 0%; seed 1 145.8 (validation best 146.7 at epoch 2, 152.7 at epoch 3), "
        "dead codes 47% (from epoch 2)"]
    # several bottlenecks (the SBN's two layers): each named
    for r, (a, b) in zip(stored["gs_sbn_bern_st_final"], [(0.0, 0.5), (0.25, 0.0)]):
        r["metrics"]["train/dead_codes/units.0"] = [[0, 0, a]]
        r["metrics"]["train/dead_codes/units.1"] = [[0, 0, b]]
    report.lines = []
    report.seed_disagreements(spread=3.0)
    assert report.lines[4].endswith("seed 0 60.0 (validation best 73.0 at epoch 1, 73.0 at epoch 1), dead codes of units.0 "
                                    "0%, dead codes of units.1 50% (from epoch 1); seed 1 64.5 (validation best 73.1 at "
                                    "epoch 1, 73.1 at epoch 1), dead codes of units.0 25% (from epoch 1), dead codes of "
                                    "units.1 0%")
    # when Decoupled ST's finals are ST's runs, they are listed once (under ST)
    stored["mv_8x4_st_final"] = stored["mv_8x4_dst_final"]
    report.same_training = lambda a, b: True
    report.lines = []
    report.seed_disagreements(spread=3.0)
    assert sum(line.startswith("* MNIST-VAE 8 x 4") for line in report.lines) == 1
    # nothing apart: no section
    report.runs = lambda group: []
    report.lines = []
    report.seed_disagreements()
    assert report.lines == []
