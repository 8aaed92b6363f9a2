"""Write docs/benchmarks_vae.md from the stored runs of docs/benchmarks_vae/plan.yaml.

    python benchmarks/vae_report.py                      # docs/benchmarks_vae.md and the README's tables
    python benchmarks/vae_report.py --plan P --out F     # another plan / report file (README untouched)

Everything in the report comes from the JSON files ``benchmarks/runplan.py`` stored
(``docs/benchmarks_vae/runs/``): nothing is re-run, and rows whose runs are not stored yet
say "pending". Two tables: the Gumbel-Softmax paper's Table 1 (structured output prediction
and VAE, Bernoulli and categorical) next to the paper's numbers, and the MNIST-VAE estimator
benchmark of the later estimator papers (8 x 4 and 10 x 30, categories x latents).
"""

from __future__ import annotations

import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduction import (cell_label, compute_summary, curve_figure, final, finite, fmt, mean_best,  # noqa: E402
                          report_main, welch)
from runplan import (ROOT, best_value, fmt_value, group_runs, load_plan, run_signature, select_cells,  # noqa: E402
                     short, stored)

TASKS = {
    "sbn_bern": "SBN, Bernoulli (392-200-200-392)",
    "sbn_cat": "SBN, categorical (392-(20x10)-(20x10)-392)",
    "vae_bern": "VAE, Bernoulli (200)",
    "vae_cat": "VAE, categorical (20 x 10)",
}
TABLE1_ESTIMATORS = {
    "st": "ST",
    "annealed_st": "Annealed ST",
    "gs": "Gumbel-Softmax",
    "st_gs": "ST Gumbel-Softmax",
    "reinforce": "REINFORCE (LOO baseline)",
}
# Table 1 of the Gumbel-Softmax paper (Jang, Gu and Poole, ICLR 2017), in nats, lower is better.
# SBN rows: test negative log-likelihood of the lower half given the upper half (compare with our
# `test/nll`); VAE rows: test negative variational lower bound (compare with our `test/loss`).
# The paper's score-function column ("SF") is the closest to our REINFORCE with a leave-one-out
# baseline. Its DARN and MuProp columns have no counterpart here.
PAPER_TABLE1: Dict[str, Dict[str, float]] = {
    "sbn_bern": {"reinforce": 72.0, "st": 58.9, "annealed_st": 58.7, "gs": 58.5, "st_gs": 59.3},
    "sbn_cat": {"reinforce": 73.1, "st": 61.8, "annealed_st": 61.1, "gs": 59.0, "st_gs": 59.7},
    "vae_bern": {"reinforce": 112.2, "st": 116.0, "annealed_st": 111.5, "gs": 105.0, "st_gs": 111.5},
    "vae_cat": {"reinforce": 110.6, "st": 110.9, "annealed_st": 107.8, "gs": 101.5, "st_gs": 107.8},
}
# Which of our columns the paper's number measures, per task.
PAPER_MEASURE = {"sbn_bern": "test/nll", "sbn_cat": "test/nll", "vae_bern": "test/loss", "vae_cat": "test/loss"}
SIZES = {"8x4": "8 x 4", "10x30": "10 x 30"}
BENCH_ESTIMATORS = {
    "st": "ST (exact sample, softmax backward at tau_b)",
    "st_gs": "ST Gumbel-Softmax",
    "gumbel_rao": "Gumbel-Rao",
    "reinmax": "ReinMax",
    "dst": "Decoupled ST",
}


def bench_name(est: str) -> str:
    """An MNIST-VAE estimator's name without the table's gloss: ``ST``, not ``ST (exact sample, ...)``."""
    return BENCH_ESTIMATORS[est].split(" (")[0]


def paper_gap(values: Sequence[Optional[float]], paper: Optional[float]) -> str:
    """Ours minus the paper's number, in nats, and in units of our seed spread when there are >= 2 seeds.

    Positive means our loss is higher (worse). ``-`` when either side is missing.
    """
    v = finite(values)
    if paper is None or not v:
        return "-"
    diff = statistics.fmean(v) - paper
    if len(v) < 2:
        return f"{diff:+.1f}"
    sd = statistics.stdev(v)
    return f"{diff:+.1f} ({diff / sd:+.1f} sd)" if sd > 0 else f"{diff:+.1f}"


class Report:
    """The report of one plan: ``write()`` renders it to ``out``.

    Args:
        plan_path: the plan (YAML) whose stored runs are read.
        out: the Markdown file to write.
    """

    def __init__(self, plan_path: Path, out: Path) -> None:
        self.plan = load_plan(plan_path)
        self.plan_path = plan_path
        self.results = stored(self.plan)
        self.out = out
        self.fig_dir = out.parent / out.stem  # docs/benchmarks_vae/ next to docs/benchmarks_vae.md
        self.lines: List[str] = []

    def w(self, *lines: str) -> None:
        self.lines.extend(lines)

    def runs(self, group: str) -> List[dict]:
        if group not in self.plan["groups"]:
            return []
        ids = [rid for rid, _, _ in group_runs(self.plan, group, self.results)[0]]
        return [self.results[i] for i in ids if i in self.results]

    def selected_cell(self, group: str) -> Optional[Dict[str, object]]:
        """The cell a final group runs, known as soon as the tuning group it selects from is
        complete (before any final is stored); None before that or for an unknown group."""
        planned = group_runs(self.plan, group, self.results)[0] if group in self.plan["groups"] else []
        return planned[0][1] if planned else None

    def final_cell(self, group: str) -> Tuple[str, List[dict]]:
        """``(cell label, stored runs)`` of a final group (one selected cell)."""
        cell = self.selected_cell(group)
        return (cell_label(cell) if cell is not None else "-"), self.runs(group)

    def tuned_value(self, group: str) -> str:
        """The best ``val/loss`` of a final group's selected cell in its tuning group (mean over the
        tuning seeds), or ``-`` while the tuning is incomplete."""
        cell = self.selected_cell(group)
        sel = (self.plan["groups"].get(group, {}).get("select") or [None])[0]
        if cell is None or sel is None:
            return "-"
        recs = [r for r in self.runs(sel["from"]) if all(r["cell"].get(k) == cell[k] for k in sel["keys"])]
        return fmt([mean_best(recs)], 2) if recs else "-"

    def tuning_rows(self, group: str) -> List[str]:
        by_cell: Dict[str, List[Optional[float]]] = {}
        for rec in self.runs(group):
            by_cell.setdefault(cell_label(rec["cell"]), []).append(best_value(rec, "val/loss", "min"))
        return [f"{label}: {fmt(v, 2)}" for label, v in sorted(by_cell.items())]

    def same_training(self, a: str, b: str) -> bool:
        """Whether final groups ``a`` and ``b`` train the same runs: their selected cells give the
        same command (configs, arguments, cell; output folders aside) on their first seed."""
        cells = [self.selected_cell(g) for g in (a, b)]
        if any(c is None for c in cells):
            return False
        sigs = {run_signature(self.plan, g, c, self.plan["groups"][g]["seeds"][0], g) for g, c in zip((a, b), cells)}
        return len(sigs) == 1

    def values(self, recs: List[dict], metric: str) -> List[Optional[float]]:
        return [final(r, metric) for r in recs]

    def planned_seeds(self, group: str) -> List[int]:
        """The seeds the plan gives ``group`` (none for a group the plan does not have)."""
        return self.plan["groups"].get(group, {}).get("seeds", [])

    def final_value(self, group: str, metric: str) -> str:
        """``metric`` over the stored runs of ``group``: :meth:`cell` against its planned seeds."""
        return self.cell(self.runs(group), metric, len(self.planned_seeds(group)))

    def cell(self, recs: List[dict], metric: str, seeds: int) -> str:
        vals = [v for v in self.values(recs, metric) if v is not None]
        if not vals:
            return "pending"
        n = f" (n={len(vals)})" if len(vals) < seeds else ""
        return fmt(vals, 1) + n

    def final_row(self, group: str, labels: List[str], metrics: List[str],
                  extra: Callable[[List[dict]], Sequence[str]] = lambda recs: ()) -> None:
        """One table row: ``labels``, the selected cell of ``group``, each metric over its seeds, then
        ``extra(stored runs)``."""
        seeds = len(self.planned_seeds(group))
        cell, recs = self.final_cell(group)
        values = [self.cell(recs, m, seeds) for m in metrics]
        self.w("| " + " | ".join([*labels, cell, *values, *extra(recs)]) + " |")

    def table1_summary(self) -> List[str]:
        """Table 1 at a glance (the README's copy): an estimator per row, a task per column, each cell
        ``ours / paper``: our value in the paper's measure (mean ± sd over the finals' seeds, n= when
        fewer are stored), then the paper's."""
        lines = ["| estimator | " + " | ".join(TASKS.values()) + " |", "|---" * (len(TASKS) + 1) + "|"]
        for est, label in TABLE1_ESTIMATORS.items():
            cells = []
            for task in TASKS:
                group = f"gs_{task}_{est}_final"
                ours = self.final_value(group, PAPER_MEASURE[task])
                paper = PAPER_TABLE1[task].get(est)
                cells.append(ours if paper is None else f"{ours} / {paper:.1f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return lines

    def benchmark_summary(self) -> List[str]:
        """The MNIST-VAE benchmark at a glance (the README's copy): an estimator per row; per size the
        test -ELBO of the finals (mean ± sd, n= when fewer are stored) and the selected cell's
        best validation -ELBO in its 20-epoch tuning run (seed 0), a preview until the finals land."""
        head = "| estimator | " + " | ".join(f"{s}: test -ELBO | {s}: 20-epoch preview" for s in SIZES.values()) + " |"
        lines = [head, "|---" * (2 * len(SIZES) + 1) + "|"]
        for est, label in BENCH_ESTIMATORS.items():
            cells = []
            for size in SIZES:
                group = f"mv_{size}_{est}_final"
                cells += [self.final_value(group, "test/loss"), self.tuned_value(group)]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return lines

    def bench_finals(self, size: str) -> Tuple[List[Tuple[str, List[float]]], int]:
        """The MNIST-VAE finals at ``size``: ``([(estimator label, test -ELBO per stored seed)], planned
        distinct finals)`` in the order of ``BENCH_ESTIMATORS``. Decoupled ST is merged into ST's entry
        (label ``ST = Decoupled ST``, counted once) when its finals are ST's runs (``same_training``)."""
        entries: Dict[str, Tuple[str, List[float]]] = {}
        planned = 0
        for est in BENCH_ESTIMATORS:
            label = bench_name(est)
            group = f"mv_{size}_{est}_final"
            if est == "dst" and self.same_training(group, f"mv_{size}_st_final"):
                entries["st"] = (f"{entries['st'][0]} = {label}", entries["st"][1])
                continue
            entries[est] = (label, finite(self.values(self.runs(group), "test/loss")))
            planned += len(self.planned_seeds(group))
        return list(entries.values()), planned

    def ranking(self, size: str) -> str:
        """The estimators of the MNIST-VAE benchmark at ``size`` in order of mean test -ELBO (best first).

        Neighbours are joined by ``<`` where Welch's t-test over their seeds gives p < 0.05 and by
        ``~`` where it does not; estimators with fewer than 2 stored seeds are named as not ranked.
        Entries as :meth:`bench_finals` gives them.
        """
        entries, planned = self.bench_finals(size)
        stored = sum(len(vals) for _, vals in entries)
        ranked = sorted((e for e in entries if len(e[1]) >= 2), key=lambda e: statistics.fmean(e[1]))
        text = ""
        for i, (label, vals) in enumerate(ranked):
            if i:
                sep = "<" if welch(ranked[i - 1][1], vals)[1] < 0.05 else "~"
                text += f" {sep} "
            text += f"{label} {statistics.fmean(vals):.1f} (n={len(vals)})"
        missing = [f"{label} (n={len(vals)})" for label, vals in entries if len(vals) < 2]
        return (f"{SIZES[size]} ({stored} of {planned} distinct finals stored): " + (text or "nothing ranked yet")
                + (f"; not ranked (fewer than 2 seeds): {', '.join(missing)}" if missing else ""))

    def finals_plot(self) -> List[str]:
        """Each MNIST-VAE final's test -ELBO as a dot (one per seed) with the estimator's mean as a bar,
        a panel per size, saved as ``mnist_vae_finals.png``; the Markdown image line, or nothing while
        no final is stored."""
        panels = {size: self.bench_finals(size)[0] for size in SIZES}
        if not any(vals for entries in panels.values() for _, vals in entries):
            return []
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.2))
        for ax, (size, entries) in zip(axes, panels.items()):
            for row, (label, vals) in enumerate(entries):
                ax.plot(vals, [row] * len(vals), "o", color="C0", alpha=0.7)
                if vals:
                    ax.plot([statistics.fmean(vals)] * 2, [row - 0.3, row + 0.3], color="k", lw=2)
            ax.set_yticks(range(len(entries)), [f"{label} (n={len(vals)})" for label, vals in entries])
            ax.invert_yaxis()
            ax.set_title(f"MNIST-VAE {SIZES[size]}")
            ax.set_xlabel("test -ELBO (nats, lower is better)")
            ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.fig_dir / "mnist_vae_finals.png", dpi=110)
        plt.close(fig)
        return [f"![MNIST-VAE finals]({self.fig_dir.name}/mnist_vae_finals.png)"]

    def ranking_lines(self) -> List[str]:
        """The ranking paragraph under the benchmark tables (report and README)."""
        return ["Ranking by mean test -ELBO, best first (`<`: Welch's t-test over seeds, p < 0.05; `~`: not "
                "separated at that level): " + "; ".join(self.ranking(size) for size in SIZES) + "."]

    def readme_tables(self) -> Dict[str, List[str]]:
        """The README's tables, each written between ``<!-- name -->`` and ``<!-- /name -->``."""
        return {"vae-table1": self.table1_summary(), "vae-benchmark": [*self.benchmark_summary(), "",
                                                                       *self.ranking_lines()]}

    # ------------------------------------------------------------------------- sections
    def table1(self) -> None:
        self.w("## Gumbel-Softmax paper, Table 1", "",
               "Test loss in nats per image, mean ± sd over seeds (the finals' seeds; fewer are marked n=). "
               "`test/nll` is the importance-weighted bound with m = 1000 samples per test image (for the SBN the "
               "paper's measure); `test/loss` is the negative ELBO with one sample (VAE) or the m = 1 objective "
               "(SBN). Paper column: the paper's Table 1 (its SF column beside our REINFORCE); for the SBN rows it is "
               "a negative log-likelihood (compare with `test/nll`), for the VAE rows a negative ELBO (compare with "
               "`test/loss`). Learning rate chosen on the validation set.", "",
               "| task | estimator | lr | test/nll (m=1000) | test/loss | paper | ours - paper |",
               "|---|---|---|---|---|---|---|")
        for task, task_label in TASKS.items():
            for est, est_label in TABLE1_ESTIMATORS.items():
                paper = PAPER_TABLE1[task].get(est)
                self.final_row(f"gs_{task}_{est}_final", [task_label, est_label], ["test/nll", "test/loss"],
                               lambda recs: [
                                   "-" if paper is None else f"{paper:.1f}",
                                   paper_gap(self.values(recs, PAPER_MEASURE[task]), paper)])
        self.w("")
        self.annealing_effect()
        self.optimiser_effect()
        self.relaxed_objective()
        figures = []
        for task, task_label in TASKS.items():
            cells = {label: self.final_cell(f"gs_{task}_{est}_final")[1] for est, label in TABLE1_ESTIMATORS.items()}
            cells.update({f"check {group}": self.runs(group) for group in self.checks_of(f"gs_{task}_")})
            figures += self.curve_plot(f"table1_{task}", cells, f"Table 1, {task_label}")
        if figures:
            self.w("Validation loss per epoch of the finals (VAE: one-sample -ELBO; SBN: the m = 1 objective), "
                   "with the checks of each task:", "", *figures, "")

    def relaxed_objective(self) -> None:
        """The relaxed Gumbel-Softmax rows measured by their own training objective on the test set
        (``test/objective``: relaxed samples, categorical KL; not a bound) beside the paper's value."""
        parts = []
        for task, label in TASKS.items():
            if PAPER_MEASURE[task] != "test/loss":
                continue
            recs = self.final_cell(f"gs_{task}_gs_final")[1]
            relaxed = finite(self.values(recs, "test/objective"))
            if relaxed:
                seeds = len(self.planned_seeds(f"gs_{task}_gs_final"))
                n = f", n={len(relaxed)}" if len(relaxed) < seeds else ""
                parts.append(f"{label}: {fmt(relaxed, 1)}{n} (paper {PAPER_TABLE1[task]['gs']:.1f}, "
                             f"{paper_gap(relaxed, PAPER_TABLE1[task]['gs'])}; its -ELBO above: "
                             f"{fmt(finite(self.values(recs, 'test/loss')), 1)})")
        if parts:
            self.w("The relaxed Gumbel-Softmax rows measured by their training objective on the test set "
                   "(`test/objective`: the decoder fed relaxed samples at the final temperature, with the "
                   "categorical KL; not a bound on the likelihood): " + "; ".join(parts) + ". Runs tested "
                   "before this metric existed got it from their checkpoints with `python benchmarks/runplan.py "
                   "retest docs/benchmarks_vae/plan.yaml --groups gs_vae_bern_gs_final gs_vae_cat_gs_final "
                   "--test-arg=--model.init_args.test_num_samples=0`.", "")

    def elbo_terms(self) -> None:
        """Where each VAE final's test -ELBO goes: reconstruction and KL (means over the stored seeds),
        and the one-sample bound's looseness (-ELBO minus the m = 1000 bound), for the Table 1 VAE rows
        and the MNIST-VAE benchmark; nothing while no VAE final is stored."""
        rows = [(TASKS[task], label, f"gs_{task}_{est}_final")
                for task in ("vae_bern", "vae_cat") for est, label in TABLE1_ESTIMATORS.items()]
        rows += [(f"MNIST-VAE {size_label}", bench_name(est), f"mv_{size}_{est}_final")
                 for size, size_label in SIZES.items() for est in BENCH_ESTIMATORS]
        lines = []
        for task, label, group in rows:
            recs = self.runs(group)
            terms = {m: finite(self.values(recs, m)) for m in ("test/recon", "test/kl", "test/loss", "test/nll")}
            if not terms["test/loss"]:
                continue
            mean = {m: statistics.fmean(v) if v else None for m, v in terms.items()}
            gap = "-" if mean["test/nll"] is None else f"{mean['test/loss'] - mean['test/nll']:.1f}"
            lines.append(f"| {task} | {label} | {len(terms['test/loss'])} | "
                         + " | ".join("-" if mean[m] is None else f"{mean[m]:.1f}"
                                      for m in ("test/recon", "test/kl", "test/loss")) + f" | {gap} |")
        if lines:
            self.w("## Where the VAE finals' -ELBO goes", "",
                   "Means over the stored seeds: the reconstruction term "
                   "(`test/recon`, -log p(x|z) with one sample), the KL to the prior (`test/kl`, analytic), their "
                   "sum (`test/loss`), and how loose that one-sample bound is against the m = 1000 bound "
                   "(`test/loss` - `test/nll`):", "",
                   "| task | estimator | seeds | test/recon | test/kl | test/loss | -ELBO - bound (m=1000) |",
                   "|---|---|---:|---:|---:|---:|---:|", *lines, "")

    def seed_disagreements(self, spread: float = 3.0) -> None:
        """Final groups whose seeds lie more than ``spread`` nats apart in the headline measure (the
        paper's for Table 1, test -ELBO for the MNIST-VAE benchmark), each seed with its best
        validation loss, the epoch of it, the last epoch's, and the share of dead codes (where the
        runs logged ``train/dead_codes/*``): a seed that stalled, drifted or lost codes shows there.
        Groups another group's training stands for are listed once; nothing without such a group."""
        rows = [(f"{TASKS[task]}, {label}", f"gs_{task}_{est}_final", PAPER_MEASURE[task])
                for task in TASKS for est, label in TABLE1_ESTIMATORS.items()]
        rows += [(f"MNIST-VAE {size_label}, {bench_name(est)}", f"mv_{size}_{est}_final", "test/loss")
                 for size, size_label in SIZES.items() for est in BENCH_ESTIMATORS
                 if not (est == "dst" and self.same_training(f"mv_{size}_dst_final", f"mv_{size}_st_final"))]
        lines = []
        for label, group, metric in rows:
            recs = [r for r in self.runs(group) if final(r, metric) is not None]
            vals = [final(r, metric) for r in recs]
            if len(vals) < 2 or max(vals) - min(vals) <= spread:
                continue
            seeds = []
            for rec in sorted(recs, key=lambda r: r["seed"]):
                curve = rec["metrics"].get("val/loss") or []
                text = f"seed {rec['seed']} {final(rec, metric):.1f}"
                if curve:
                    best = min(curve, key=lambda e: e[2])
                    text += (f" (validation best {best[2]:.1f} at epoch {int(best[0]) + 1}, "
                             f"{curve[-1][2]:.1f} at epoch {int(curve[-1][0]) + 1})")
                deads = [(k.split("/", 2)[2], c) for k, c in sorted(rec["metrics"].items())
                         if k.startswith("train/dead_codes/") and c]
                for module, dead in deads:  # one per bottleneck; named where there are several
                    first = next((int(e[0]) + 1 for e in dead if e[2] > 0), None)
                    text += (f", dead codes{f' of {module}' if len(deads) > 1 else ''} {100 * dead[-1][2]:.0f}%"
                             + (f" (from epoch {first})" if first else ""))
                seeds.append(text)
            lines.append(f"* {label} (`{metric}`, {max(vals) - min(vals):.1f} nats apart): " + "; ".join(seeds))
        if lines:
            self.w("## Seeds that disagree", "",
                   f"Finals whose seeds lie more than {spread:g} nats apart (validation: `val/loss` per epoch, "
                   "epochs counted from 1; the test uses the best epoch's checkpoint; dead codes: the share of "
                   "(latent, category) pairs no training sample took in the last epoch, from the recipes' "
                   "`LatentUtilizationMonitor`, and the first epoch that had any). A seed whose best epoch comes "
                   "early and whose validation rises after it stalled or drifted in training:", "",
                   *lines, "")

    def annealing_effect(self) -> None:
        """Annealed ST minus ST per task, ours beside the paper's: the sign is the paper's claim."""
        parts = []
        for task, label in TASKS.items():
            ours = [finite(self.values(self.final_cell(f"gs_{task}_{est}_final")[1], PAPER_MEASURE[task]))
                    for est in ("annealed_st", "st")]
            if all(ours):
                diff = statistics.fmean(ours[0]) - statistics.fmean(ours[1])
                paper = PAPER_TABLE1[task]["annealed_st"] - PAPER_TABLE1[task]["st"]
                parts.append(f"{label}: {diff:+.1f} (paper {paper:+.1f})")
        if parts:
            self.w("Annealed ST minus ST, in the paper's measure (mean over seeds; negative: annealing helps): "
                   + "; ".join(parts) + ". Our annealed ST keeps exact forward samples and anneals only the "
                   "backward temperature; the slope annealing of Chung et al. also sharpens the sampled "
                   "distribution (softmax(l / tau)): that variant is the `*_annealed_st_check` groups "
                   "below.", "")

    def optimiser_effect(self) -> None:
        """The Bernoulli VAE's ST against slope-annealed ST with the paper's optimiser (the
        ``*_sgd_check`` groups) beside the same pair with Adam, on the SGD checks' seeds; said once
        all four are stored."""
        pairs = {"SGD with momentum 0.9": ("gs_vae_bern_st_sgd_check", "gs_vae_bern_slope_st_sgd_check"),
                 "Adam": ("gs_vae_bern_st_final", "gs_vae_bern_annealed_st_check")}
        seeds = set(self.planned_seeds("gs_vae_bern_st_sgd_check"))
        parts = []
        for optimiser, groups in pairs.items():
            cells, values = [], []
            for group in groups:
                cell, recs = self.final_cell(group)
                vals = finite(self.values([r for r in recs if r["seed"] in seeds], "test/loss"))
                if not vals:
                    return
                cells.append(cell)
                values.append(statistics.fmean(vals))
            parts.append(f"{optimiser} (ST at {cells[0]}, slope-annealed at {cells[1]}): ST {values[0]:.1f}, "
                         f"slope-annealed ST {values[1]:.1f} ({values[1] - values[0]:+.1f})")
        paper = PAPER_TABLE1["vae_bern"]
        self.w("The Bernoulli VAE's annealing with the paper's optimiser (test -ELBO, seed"
               f"{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))}; learning rates chosen "
               "on the validation set at 20 epochs): " + "; ".join(parts) + f". The paper: ST {paper['st']:.1f}, "
               f"annealed ST {paper['annealed_st']:.1f} ({paper['annealed_st'] - paper['st']:+.1f}).", "")

    def benchmark(self) -> None:
        self.w("## MNIST-VAE estimator benchmark (categories x latents)", "",
               "160 epochs, batch 100, constant temperature chosen with the learning rate on the validation set "
               "(20-epoch tuning runs, seed 0). Test negative ELBO (`test/loss`), importance-weighted bound "
               "(`test/nll`, m = 1000) and the final training negative ELBO (`train/loss`, the quantity the ReinMax "
               "paper tabulates), mean ± sd over seeds. `tuning val/loss`: the selected cell's best validation "
               "negative ELBO in its 20-epoch tuning run (seed 0): a one-seed, short-budget preview that ranks the "
               "estimators before the finals land, not a result.", "",
               "| size | estimator | selected cell | tuning val/loss | test/loss (-ELBO) | test/nll (m=1000) | train/loss |",
               "|---|---|---|---|---|---|---|")
        for size, size_label in SIZES.items():
            for est, est_label in BENCH_ESTIMATORS.items():
                group = f"mv_{size}_{est}_final"
                self.final_row(group, [size_label, est_label], [], lambda recs, g=group: [
                    self.tuned_value(g), *(self.final_value(g, m) for m in ("test/loss", "test/nll", "train/loss"))])
        self.w("", *self.ranking_lines(), "")
        dots = self.finals_plot()
        if dots:
            self.w("Test -ELBO of each final (dots: seeds; bars: means):", "", *dots, "")
        self.w("Temperature cells each estimator's tuning tried (learning rates aside; Decoupled ST's two "
               "sequential steps together, so it gets more than the baselines): "
               + "; ".join(self.temperature_cells(size) for size in SIZES) + ".", "")
        for size, size_label in SIZES.items():
            cell = self.selected_cell(f"mv_{size}_dst_final") or {}
            tau_f = cell.get("model.init_args.tau_f", 1.0)
            if tau_f != 1.0:
                self.w(f"{size_label}: Decoupled ST samples from softmax(l / {tau_f:g}) in training while its KL, "
                       "validation and test use q = softmax(l), so its `train/loss` is not q's negative ELBO (nor "
                       "comparable with the other rows' `train/loss`); its `test/loss` is.", "")
            if self.same_training(f"mv_{size}_dst_final", f"mv_{size}_st_final"):
                self.w(f"{size_label}: Decoupled ST's sequential tuning kept tau_f = 1 and chose ST's tau_b, so its "
                       "selected cell is ST's and its finals are the ST runs (trained once, stored under both "
                       "groups): on this size Decoupled ST adds nothing over ST at the tuning budget.", "")
        figures = []
        for size, size_label in SIZES.items():
            cells = {label: self.final_cell(f"mv_{size}_{est}_final")[1] for est, label in BENCH_ESTIMATORS.items()}
            figures += self.curve_plot(f"mnist_vae_{size}", cells, f"MNIST-VAE {size_label}")
        if figures:
            self.w("Validation -ELBO per epoch of the finals:", "", *figures, "")
        self.dst_heatmaps()

    def temperature_cells(self, size: str) -> str:
        """How many temperature cells (learning rates aside) each estimator's tuning tried at ``size``,
        counted from the stored tuning runs; Decoupled ST's are its two sequential steps together."""
        tuning = {est: [f"mv_{size}_{est}_tune"] for est in BENCH_ESTIMATORS if est != "dst"}
        tuning["dst"] = [f"mv_{size}_dst_seq_f", f"mv_{size}_dst_seq_b"]
        counts = []
        for est, groups in tuning.items():
            cells = {tuple(sorted((k, v) for k, v in rec["cell"].items() if not k.endswith(".lr")))
                     for g in groups for rec in self.runs(g)}
            counts.append(f"{bench_name(est)} {len(cells)}")
        return f"{SIZES[size]}: " + ", ".join(counts)

    def checks_of(self, prefix: str) -> List[str]:
        """The check groups whose compared final starts with ``prefix``."""
        return [g for g, spec in self.plan["groups"].items() if str(spec.get("compare", "")).startswith(prefix)]

    def curve_plot(self, name: str, cells: Dict[str, List[dict]], title: str) -> List[str]:
        """Validation-loss curves of ``cells`` (label -> stored runs) saved as ``<name>.png``; the
        Markdown image line, or nothing when no cell has runs."""
        cells = {label: recs for label, recs in cells.items() if recs}
        if not cells:
            return []
        import matplotlib.pyplot as plt

        fig = curve_figure(cells, "val/loss", title, zoom=True)
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.fig_dir / f"{name}.png", dpi=110)
        plt.close(fig)
        return [f"![{title}]({self.fig_dir.name}/{name}.png)"]

    def dst_heatmaps(self) -> None:
        """Decoupled ST's full (tau_f, tau_b) grids as heatmaps, one figure per size that has one."""
        figures = []
        for size, size_label in SIZES.items():
            recs = self.runs(f"mv_{size}_dst_tune")
            if not recs:
                continue
            from lightning_discrete.sweep import heatmap_figure

            rows = [{"state": "COMPLETE", "tau_f": r["cell"]["model.init_args.tau_f"],
                     "tau_b": r["cell"]["model.init_args.tau_b"],
                     "lr": r["cell"]["model.init_args.optimizer.init_args.lr"], "value": mean_best([r])} for r in recs]
            total = len(group_runs(self.plan, f"mv_{size}_dst_tune", self.results)[0])
            fig = heatmap_figure(rows, "best val/loss (-ELBO, 20 epochs)",
                                 f"Decoupled ST, MNIST-VAE {size_label}: {len(recs)} of {total} runs")
            name = f"dst_grid_{size}.png"
            self.fig_dir.mkdir(parents=True, exist_ok=True)
            fig.savefig(self.fig_dir / name, dpi=110, bbox_inches="tight")
            figures.append(f"![Decoupled ST {size_label}]({self.fig_dir.name}/{name})")
        if figures:
            self.w("Decoupled ST's full (tau_f, tau_b) grid, a picture of the landscape (best validation -ELBO over "
                   "the two learning rates, seed 0, 20 epochs; red outline: tau_f = tau_b, i.e. softmax ST at that "
                   "temperature; dashed: the best cell; the tau_f = 1 row is the ST baseline). The finals select by "
                   "the sequential protocol (`*_dst_seq_f`, then `*_dst_seq_b`), not from this grid:", "",
                   *figures, "")

    def checks(self) -> None:
        """Diagnostic groups (``compare: <final group>`` in the plan): each beside the final it
        questions, on the check's seeds only (a paired comparison)."""
        groups = [g for g, spec in self.plan["groups"].items() if spec.get("compare")]
        if not groups:
            return
        notes = sorted({self.plan["groups"][g].get("note", "") for g in groups} - {""})
        self.w("## Checks", "", "Diagnostics beside the tables above, not rows of them. " + " ".join(notes)
               + " Each check is shown with the final it questions, on the same seeds.", "",
               "| group | cell | seeds | test/nll (m=1000) | test/loss | best val/loss | last val/loss |",
               "|---|---|---|---|---|---|---|")
        for check in groups:
            seeds = set(self.plan["groups"][check]["seeds"])
            for name in (self.plan["groups"][check]["compare"], check):
                cell, recs = self.final_cell(name)
                recs = [r for r in recs if r["seed"] in seeds]
                shown = ", ".join(str(r["seed"]) for r in recs) or "pending"
                self.w("| " + " | ".join([f"`{name}`", cell, shown, fmt(self.values(recs, "test/nll"), 1),
                                          fmt(self.values(recs, "test/loss"), 1),
                                          fmt([best_value(r, "val/loss", "min") for r in recs], 2),
                                          fmt(self.values(recs, "val/loss"), 2)]) + " |")
        self.w("")

    def tuning(self) -> None:
        self.w("## Tuning runs", "", "Best `val/loss` of each cell (seed 0); pending groups are omitted. The learning "
               "rate is chosen after 20 epochs, the finals run 100 (SBN) or 160 (VAE): a short selection budget "
               "favours large learning rates, so a best cell at the top of the grid widened the grid (see the "
               "plan's protocol), and a final may do worse late in training than a smaller rate would.", "")
        for name, spec in self.plan["groups"].items():
            if name.endswith("_final") or spec.get("compare"):
                continue
            rows = self.tuning_rows(name)
            done = len(rows)
            total = len(group_runs(self.plan, name, self.results)[0])
            if done:
                edge = self.best_at_edge(name)
                self.w(f"* `{name}` ({done} / {total} cells): " + "; ".join(rows)
                       + (f" — **best at the grid's edge ({edge})**: the grid may be too narrow" if edge else ""))
        self.w("")

    def best_at_edge(self, group: str) -> Optional[str]:
        """``key=value`` when the cell with the lowest mean best val/loss of a complete tuning group
        takes the smallest or largest value of one of the group's grid axes (of 3 or more values)."""
        runs, _ = group_runs(self.plan, group, self.results)
        grid = self.plan["groups"][group].get("grid") or {}
        if not runs or not grid or any(rid not in self.results for rid, _, _ in runs):
            return None
        # the cell a select group would take from this one (runplan's own ranking)
        best = select_cells({"keys": list(grid), "metric": "val/loss", "mode": "min", "top": 1},
                            [self.results[rid] for rid, _, _ in runs])[0]
        for key, values in grid.items():
            if len(values) >= 3 and best.get(key) in (min(values), max(values)):
                return f"{short(key)}={fmt_value(best[key])}"
        return None

    def write(self) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        self.w("# Discrete VAE and structured output prediction benchmarks", "",
               f"Generated by `python benchmarks/vae_report.py` on {stamp} from the {len(self.results)} runs stored "
               f"under `{self.plan['results']}` (plan: `{self.plan_path.relative_to(ROOT) if self.plan_path.is_relative_to(ROOT) else self.plan_path}`; "
               "the protocol is at the top of the plan). Nothing here is re-run: a row without stored runs says "
               "'pending'. Run the plan with `python benchmarks/runplan.py run docs/benchmarks_vae/plan.yaml`.", "",
               "Differences from the papers: Adam over the learning rates {1e-4, 3e-4, 1e-3, 3e-3}, SBN also 1e-2 (widened twice on 2026-12-04 when the best value sat at the top of the grid) instead of SGD with momentum over "
               "6 values (the `*_sgd_check` groups rerun two Bernoulli VAE rows with SGD); REINFORCE uses a leave-one-out baseline over 2 samples (the paper's SF row used its own "
               "baseline); the categorical KL is analytic for every estimator (relaxed Gumbel-Softmax included); "
               "evaluation always draws exact samples from q(z|x). MNIST-VAE benchmark: temperatures from {0.5, 1, 2}, "
               "widened once by a factor 2 where the best value sat at an edge; Decoupled ST tuned by the "
               "sequential protocol (tau_f at tau_b = 1, then tau_b), so it tries more temperature cells than the "
               "baselines (counted under the benchmark table); tuning on one seed for 20 epochs. The ReinMax "
               "authors' MNIST-VAE code (their examples repository, `mnist_vae/`, built on the GST code) trains "
               "on grey-level MNIST (torchvision's `ToTensor`, no binarisation) with a binary cross-entropy against the "
               "grey values, on all 60,000 training images: its -ELBO is on another scale than ours (binarised pixels, "
               "a 10,000-image validation split), so this benchmark ranks the estimators against each other and its "
               "numbers are not to be read beside those papers' tables.", "", *compute_summary(list(self.results.values())), "")
        self.table1()
        self.benchmark()
        self.seed_disagreements()
        self.elbo_terms()
        self.checks()
        self.tuning()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text("\n".join(self.lines).rstrip() + "\n")


def replace_block(text: str, name: str, lines: List[str]) -> str:
    """``text`` with the lines between ``<!-- name -->`` and ``<!-- /name -->`` replaced by ``lines``.

    Raises:
        ValueError: when the markers are missing, repeated or out of order.
    """
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"expected one {begin} ... {end} block")
    head, rest = text.split(begin)
    tail = rest.split(end)[1]
    return head + "\n".join([begin, *lines, end]) + tail


def main(argv: Optional[List[str]] = None) -> None:
    out = ROOT / "docs" / "benchmarks_vae.md"
    report = report_main(Report, __doc__, ROOT / "docs" / "benchmarks_vae" / "plan.yaml", out, argv)
    if report.out == out.resolve():  # the repository's own report: its README summary follows it
        readme = ROOT / "README.md"
        text = readme.read_text()
        tables = report.readme_tables()
        for name, lines in tables.items():
            text = replace_block(text, name, lines)
        readme.write_text(text)
        print(f"updated the tables {', '.join(tables)} of {readme}")


if __name__ == "__main__":
    main()
