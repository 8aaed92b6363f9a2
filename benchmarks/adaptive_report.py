"""Write docs/adaptive.md and its figure from the stored runs of the adaptive plan and of the
reproduction plan: one adaptive run per seed against the fixed-temperature grid.

    python benchmarks/adaptive_report.py                       # docs/adaptive.md + docs/adaptive/*.png
    python benchmarks/adaptive_report.py --plan P --reproduction-plan R --out F

``--plan`` is the adaptive plan (default ``docs/adaptive/plan.yaml``: the adaptive runs and the
autoencoder's paper cell at the adaptive runs' learning rate), ``--reproduction-plan`` the plan
whose finals hold the grid's contenders (default ``docs/reproduction/plan.yaml``), ``--out`` the
report; figures go to the folder named after it (``docs/adaptive/``). Everything is computed
from the JSON files ``benchmarks/runplan.py`` stored: nothing is re-run, and a row or section
whose runs are not stored says "pending". Per task, rows: the adaptive runs; the paper's fixed
cell; the best grid cell (the Decoupled ST final, off the diagonal, that the reproduction's
search selected and that has the lowest mean best ``val/loss`` over its seeds); the best
diagonal cell (Softmax ST). Test values come from each run's best-validation checkpoint
(``test: true`` in both plans). The design of the controller: ``docs/design.md``, "Adaptive
temperatures".
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reproduction  # noqa: E402
from reproduction import (TAU_B, TAU_F, Final, cell_label, converged, diagonal, final, fmt, mean_best,  # noqa: E402
                          report_main, series, welch)
from runplan import ROOT, best_value, group_runs, select_cells, short  # noqa: E402

TEMPERATURE = re.compile(r"^temperature/(.+)/(tau_[fb])$")


def adaptive_bounds(configs: Sequence[str]) -> Dict[str, Tuple[float, float]]:
    """``{"tau_f": (lo, hi), "tau_b": (lo, hi)}`` of the ``AdaptiveTemperature`` callback in the
    stacked recipe files (the callback's defaults where a file leaves them out)."""
    import inspect

    from lightning_discrete.callbacks import AdaptiveTemperature

    defaults = {k: v.default for k, v in inspect.signature(AdaptiveTemperature).parameters.items()}
    found: Dict[str, object] = {}
    for path in configs:
        with open(os.path.join(ROOT, path)) as fh:
            cfg = yaml.safe_load(fh) or {}
        for cb in (cfg.get("trainer") or {}).get("callbacks") or []:
            if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("AdaptiveTemperature"):
                found = {**defaults, **(cb.get("init_args") or {})}
    return {k: tuple(found[f"{k}_bounds"]) for k in ("tau_f", "tau_b")} if found else {}


def best_epoch(rec: dict) -> Optional[float]:
    """The epoch of the run's lowest finite val/loss (the checkpoint ``test: true`` evaluates)."""
    s = [(e, v) for e, v in series(rec, "val/loss") if math.isfinite(v)]
    return min(s, key=lambda ev: ev[1])[0] if s else None


def mark_bound(values: Sequence[float], bounds: Optional[Tuple[float, float]]) -> str:
    """``fmt(values, 3)``, with ``(bound)`` when their mean sits at a bound (relative 1e-6)."""
    text = fmt(list(values), 3)
    if values and bounds and any(math.isclose(statistics.fmean(values), b, rel_tol=1e-6) for b in bounds):
        text += " (bound)"
    return text


@dataclass(frozen=True)
class Task:
    """One comparison: which groups of which plan hold each contender.

    Args:
        title: section title.
        metric: the test metric compared (``test/acc``, ``test/loss``).
        mode: ``"max"`` or ``"min"``: which direction is better.
        digits: decimals printed for ``metric``.
        adaptive: the adaptive plan's group of adaptive runs.
        start: where the adaptive runs start (the recipe's cell).
        paper: ``(label, "adaptive" or "reproduction", group, cell)`` rows of the paper's cell.
        dst_final: the reproduction's Decoupled ST final group (selected cells + fixed cells).
        dst_tuning: the reproduction's groups of the Decoupled ST search (runs counted).
        diag_final: the reproduction's group holding the best diagonal cell.
        diag_tuning: the groups of the diagonal's search (runs counted).
        diag_only: count only the diagonal cells (``tau_f == tau_b``) of ``diag_tuning``.
        converged: add the reproduction's convergence column (autoencoder).
    """

    title: str
    metric: str
    mode: str
    digits: int
    adaptive: str
    start: str
    paper: Tuple[Tuple[str, str, str, Dict[str, float]], ...]
    dst_final: str
    dst_tuning: Tuple[str, ...]
    diag_final: str
    diag_tuning: Tuple[str, ...]
    diag_only: bool = False
    converged: bool = False


TASKS = (
    Task("Stochastic binary network, Fashion-MNIST, 100 epochs", "test/acc", "max", 4, "adaptive_binary",
         "from tau_f=0.1, tau_b=0.7",
         (("paper's cell (reproduction final)", "reproduction", "binary_final", {TAU_F: 0.1, TAU_B: 0.7}),),
         "binary_final", ("binary_grid",), "binary_final", ("binary_grid",), diag_only=True),
    Task("Categorical autoencoder, MNIST, 160 epochs", "test/loss", "min", 2, "adaptive_autoencoder",
         "from tau_f=2, tau_b=0.5, lr=0.0003",
         (("paper's cell, lr 3e-4 (as the adaptive runs)", "adaptive", "fixed_autoencoder_paper_cell",
           {TAU_F: 2.0, TAU_B: 0.5}),
          ("paper's cell, lr 1e-3 (reproduction final)", "reproduction", "ae_final_dst",
           {TAU_F: 2.0, TAU_B: 0.5, "model.init_args.optimizer.init_args.lr": 0.001})),
         "ae_final_dst", ("ae_dst_tau_f", "ae_dst_tau_b"), "ae_final_softmax", ("ae_softmax_tune",),
         converged=True),
)


def matches(rec: dict, cell: Dict[str, float]) -> bool:
    """Whether the stored run ``rec`` has every entry of ``cell`` (it may have more).

    Args:
        rec: a stored run record.
        cell: ``{config key: value}``.
    """
    return all(rec["cell"].get(k) == v for k, v in cell.items())


@dataclass
class Row:
    """One contender: its runs, its planned seeds, and the tuning runs its search stored
    (``None``: no search of ours; ``note`` says where the cell came from)."""

    final: Final
    planned: int
    tuning: Optional[int] = None
    note: str = ""

    def values(self, metric: str) -> List[float]:
        return self.final.values(metric)

    @property
    def cost(self) -> str:
        """The training runs this row needed: ``"1 per seed (3)"``, ``"31 tuning + 1 per seed (36 in all)"``."""
        n = len(self.final.recs)
        if self.tuning is None:
            return f"1 per seed ({n}){self.note}"
        return f"{self.tuning} tuning + 1 per seed ({self.tuning + n} in all)"


def converged_seeds(row: "Row") -> Tuple[int, int]:
    """(converged, stored) final runs of ``row`` by the reproduction's convergence rule."""
    return sum(converged(r) for r in row.final.recs), len(row.final.recs)


class Report(reproduction.Report):
    """The adaptive-vs-grid report: ``write()`` renders it to ``out``.

    Args:
        plan_path: the adaptive plan (YAML) whose stored runs are read.
        out: the Markdown file to write; figures go to the folder ``out`` without its suffix.
        reproduction_plan: the reproduction plan holding the grid's runs and finals.
    """

    def __init__(self, plan_path: Path, out: Path, reproduction_plan: Path) -> None:
        super().__init__(plan_path, out)
        self.grid = reproduction.Report(reproduction_plan, out)
        self.fig_dir = out.with_suffix("")
        for task in TASKS:
            for report, groups in ((self, [task.adaptive] + [g for _, p, g, _ in task.paper if p == "adaptive"]),
                                   (self.grid, [task.dst_final, task.diag_final, *task.dst_tuning, *task.diag_tuning,
                                                *(g for _, p, g, _ in task.paper if p == "reproduction")])):
                missing = [g for g in groups if g not in report.plan["groups"]]
                if missing:
                    raise SystemExit(f"{report.plan_path}: the report needs the group(s) {missing}")

    def path_label(self, path: Path) -> str:
        """``path`` relative to the repository when it is inside it."""
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)

    # ------------------------------------------------------------------- contenders
    def planned_seeds(self, report: reproduction.Report, group: str) -> int:
        """Seeds ``group`` of ``report``'s plan lists."""
        return len(report.plan["groups"][group]["seeds"])

    def tuning_runs(self, groups: Sequence[str], diag_only: bool) -> int:
        """Stored runs of the reproduction's ``groups`` (only the diagonal cells with ``diag_only``)."""
        return sum(1 for g in groups for r in self.grid.runs(g) if not diag_only or diagonal(r["cell"]))

    def grid_best(self, task: Task) -> Tuple[Optional[Row], str]:
        """The selected off-diagonal Decoupled ST final with the lowest mean best val/loss, or a reason."""
        g = self.grid.plan["groups"][task.dst_final]
        _, waiting = group_runs(self.grid.plan, task.dst_final, self.grid.results)
        if waiting:
            return None, f"pending: the search is not complete (`{task.dst_final}` {waiting})"
        chosen = [c for sel in g.get("select", []) if "equal" not in sel
                  for c in select_cells(sel, self.grid.runs(sel["from"]))]
        by_cell: Dict[str, List[dict]] = {}
        for rec in self.grid.runs(task.dst_final):
            if not diagonal(rec["cell"]) and any(matches(rec, c) for c in chosen):
                by_cell.setdefault(cell_label(rec["cell"]), []).append(rec)
        if not by_cell:
            return None, f"pending: no final of a selected cell stored in `{task.dst_final}`"
        cell, recs = min(by_cell.items(), key=lambda kv: mean_best(kv[1]))
        return Row(Final("Decoupled ST", cell, recs), self.planned_seeds(self.grid, task.dst_final),
                   self.tuning_runs(task.dst_tuning, False)), ""

    def diag_best(self, task: Task) -> Tuple[Optional[Row], str]:
        """The diagonal (Softmax ST) final with the lowest mean best val/loss (the group can hold
        several: a top-k selection may keep diagonal cells too), or a reason it is pending."""
        by_cell: Dict[str, List[dict]] = {}
        for rec in self.grid.runs(task.diag_final):
            if diagonal(rec["cell"]):
                by_cell.setdefault(cell_label(rec["cell"]), []).append(rec)
        _, waiting = group_runs(self.grid.plan, task.diag_final, self.grid.results)
        if not by_cell:
            return None, f"pending (`{task.diag_final}` {waiting or 'has no run stored yet'})"
        cell, recs = min(by_cell.items(), key=lambda kv: mean_best(kv[1]))
        return Row(Final("Softmax ST", cell, recs), self.planned_seeds(self.grid, task.diag_final),
                   self.tuning_runs(task.diag_tuning, task.diag_only)), ""

    def paper_rows(self, task: Task) -> List[Tuple[str, Optional[Row]]]:
        """``(label, row or None while not stored)`` per paper cell of ``task``."""
        rows: List[Tuple[str, Optional[Row]]] = []
        for label, plan, group, cell in task.paper:
            report = self if plan == "adaptive" else self.grid
            recs = [r for r in report.runs(group) if matches(r, cell)]
            row = Row(Final("Decoupled ST", cell_label(cell), recs), self.planned_seeds(report, group),
                      note="; chosen by the paper's own grid")
            rows.append((label, row if recs else None))
        return rows

    # ------------------------------------------------------------------- sections
    def task(self, task: Task) -> Tuple[Optional[Row], Optional[Row]]:
        """The section of one task; returns its adaptive and best-grid rows (``None`` while pending)."""
        self.w(f"## {task.title}", "")
        adaptive = self.runs(task.adaptive)
        ada = Row(Final("Adaptive", task.start, adaptive),
                  self.planned_seeds(self, task.adaptive)) if adaptive else None
        best, why_best = self.grid_best(task)
        diag, why_diag = self.diag_best(task)
        so_far = "{} tuning run(s) stored so far"
        rows: List[Tuple[str, Optional[Row], str, str]] = [("adaptive", ada, "pending (no adaptive run stored yet)", "-")]
        rows += [(label, row, "pending (not stored yet)", "-") for label, row in self.paper_rows(task)]
        rows += [("best grid cell (Decoupled ST)", best, why_best, so_far.format(self.tuning_runs(task.dst_tuning, False))),
                 ("best diagonal (Softmax ST)", diag, why_diag,
                  so_far.format(self.tuning_runs(task.diag_tuning, task.diag_only)))]
        conv = " converged |" if task.converged else ""
        self.w(f"| approach | cell | seeds (stored / planned) | {task.metric} | training runs needed |{conv} "
               f"Welch t vs best grid cell (p) |",
               "|---|---|---:|---:|---|" + ("---:|" if task.converged else "") + "---|")
        for label, row, why, cost in rows:
            if row is None:
                self.w(f"| {label} | {why} | 0 | - | {cost} |" + (" - |" if task.converged else "") + " - |")
                continue
            test = None if best is None or row is best else welch(row.values(task.metric), best.values(task.metric))
            ttxt = "-" if test is None else f"{test[0]:+.2f} ({test[1]:.3g})"
            conv = " {} / {} |".format(*converged_seeds(row)) if task.converged else ""
            self.w(f"| {label} | {row.final.cell} | {len(row.final.recs)} / {row.planned} | "
                   f"{fmt(row.values(task.metric), task.digits)} | {row.cost} |{conv} {ttxt} |")
        self.w("", self.verdict(task, ada, best), "")
        return ada, best

    def verdict(self, task: Task, ada: Optional[Row], best: Optional[Row]) -> str:
        """One line: is the adaptive mean within one standard deviation (over seeds) of the best
        grid cell's mean, with the magnitudes."""
        a = ada.values(task.metric) if ada else []
        b = best.values(task.metric) if best else []
        if len(a) < 2 or len(b) < 2:
            return (f"**Verdict: pending** (needs at least 2 stored seeds of both the adaptive runs ({len(a)}) and "
                    f"the best grid cell ({len(b)})).")
        diff = statistics.fmean(a) - statistics.fmean(b)
        sd = statistics.stdev(b)
        better = diff > 0 if task.mode == "max" else diff < 0
        within = abs(diff) <= sd
        test = welch(a, b)
        partial = "" if len(a) == ada.planned and len(b) == best.planned else \
            f" (partial: {len(a)} of {ada.planned} adaptive and {len(b)} of {best.planned} grid seeds stored)"
        d = task.digits
        conv = ""
        if task.converged:  # a collapsed seed inflates the sd the verdict compares with: say so
            conv = "; converged seeds: adaptive {} of {}, grid {} of {}".format(*converged_seeds(ada), *converged_seeds(best))
        return (f"**Verdict: {'within' if within else 'not within'} one standard deviation of the best grid cell.** "
                f"Adaptive {statistics.fmean(a):.{d}f} vs {statistics.fmean(b):.{d}f} at {best.final.cell}: "
                f"{task.metric} difference {diff:+.{d}f} ({'better' if better else 'worse' if diff else 'equal'}), "
                f"{abs(diff) / sd if sd else float('inf'):.2f} standard deviations of the grid cell (sd {sd:.{d}f}); "
                f"Welch t {test[0]:+.2f}, p {test[1]:.3g}{conv}; training runs: {ada.cost} against {best.cost}{partial}.")

    def temperatures(self, tasks: Sequence[Tuple[Task, Optional[Row], Optional[Row]]]) -> None:
        """The adaptive runs' logged temperatures per epoch (mean, band over seeds), the grid-best cell's
        fixed values as horizontal lines, and a table of the final temperatures."""
        self.w("## Temperature trajectories", "")
        drawn = [(t, ada, best) for t, ada, best in tasks if ada is not None]
        if not drawn:
            self.w("Pending: no adaptive run stored yet. Once stored, the figure shows every adaptive run's logged "
                   "`temperature/<layer>/tau_f` and `tau_b` per epoch (mean over seeds, band = min..max), one panel "
                   "per task, with the best grid cell's fixed values as horizontal lines.", "")
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        fig, axes = plt.subplots(1, len(drawn), figsize=(6.5 * len(drawn), 4.2), squeeze=False)
        self.w("Temperatures of the adaptive runs (mean ± std over seeds) at the epoch of the best val/loss (the "
               "checkpoint that is tested; epochs counted from 1, as in the figure) and at the end; `(bound)` marks a mean at one of the callback's bounds "
               "(the rule integrates its error, so a target it cannot reach drives the temperature to a bound).", "",
               "| task | layer | best epoch | tau_f at best | tau_b at best | final tau_f | final tau_b | best grid cell |",
               "|---|---|---:|---:|---:|---:|---:|---|")
        for ax, (task, ada, best) in zip(axes[0], drawn):
            names = sorted({m.group(1) for r in ada.final.recs for k in r["metrics"] if (m := TEMPERATURE.match(k))})
            if not names:
                self.w(f"| {task.title.split(',')[0]} | - | - | no `temperature/...` metric logged | - | - | - | - |")
            bounds = adaptive_bounds(self.plan["groups"][task.adaptive]["configs"])
            best_epochs = [best_epoch(r) for r in ada.final.recs]
            for i, layer in enumerate(names):
                finals, at_best = {}, {}
                for which, style in (("tau_f", "-"), ("tau_b", "--")):
                    curves = [series(r, f"temperature/{layer}/{which}") for r in ada.final.recs]
                    finals[which] = mark_bound([c[-1][1] for c in curves if c], bounds.get(which))
                    at_best[which] = mark_bound([dict(c)[e] for c, e in zip(curves, best_epochs) if e in dict(c)],
                                                bounds.get(which))
                    curves = [c for c in curves if c]
                    if not curves:
                        continue
                    n = min(len(c) for c in curves)
                    y = np.array([[v for _, v in c[:n]] for c in curves])
                    x = np.array([e for e, _ in curves[0][:n]]) + 1
                    ax.plot(x, y.mean(0), style, color=f"C{i}", label=f"{layer} {which} ({len(curves)} seeds)")
                    ax.fill_between(x, y.min(0), y.max(0), color=f"C{i}", alpha=0.2)
                self.w(f"| {task.title.split(',')[0]} | {layer} | {fmt([e + 1 for e in best_epochs if e is not None], 1)} | "
                       f"{at_best['tau_f']} | {at_best['tau_b']} | {finals['tau_f']} | {finals['tau_b']} | "
                       f"{best.final.cell if best else 'pending'} |")
            if best:
                cell = best.final.recs[0]["cell"]
                for which, style in ((TAU_F, "-"), (TAU_B, "--")):
                    if which in cell:
                        ax.axhline(cell[which], color="grey", linestyle=style, lw=1,
                                   label=f"grid best {short(which)} = {cell[which]:g}")
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel("temperature")
            ax.set_title(task.title, fontsize=9)
            ax.legend(fontsize=7)
        fig.suptitle("AdaptiveTemperature: tau_f (solid) and tau_b (dashed) per layer; band = min..max over seeds",
                     fontsize=9)
        fig.tight_layout()
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.fig_dir / "temperatures.png", dpi=110)
        plt.close(fig)
        self.w("", f"![temperature trajectories]({self.fig_dir.name}/temperatures.png)", "")

    def plans(self) -> None:
        """How many runs of each group the report reads are stored."""
        self.w("## Runs stored", "", "| plan | group | stored / planned |", "|---|---|---:|")
        for report in (self, self.grid):
            wanted = [g for t in TASKS for g in (
                [t.adaptive, *(g for _, p, g, _ in t.paper if p == "adaptive")] if report is self else
                [*t.dst_tuning, t.dst_final, *t.diag_tuning, t.diag_final, *(g for _, p, g, _ in t.paper if p == "reproduction")])]
            for group in dict.fromkeys(wanted):
                runs, waiting = group_runs(report.plan, group, report.results)
                done = sum(rid in report.results for rid, _, _ in runs)
                self.w(f"| `{self.path_label(report.plan_path)}` | `{group}` | {done} / {len(runs)}"
                       + (f" ({waiting})" if waiting else "") + " |")
        self.w("")

    def header(self) -> None:
        """Title, provenance and the definitions every table uses."""
        self.w("# Adaptive temperatures against the temperature grid", "",
               "Generated by `python benchmarks/adaptive_report.py` on "
               f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} from the runs stored under "
               f"`{self.plan['results']}` (plan `{self.path_label(self.plan_path)}`) and `{self.grid.plan['results']}` "
               f"(plan `{self.path_label(self.grid.plan_path)}`); nothing is re-run, and what is not stored yet says "
               "\"pending\". `AdaptiveTemperature` (`docs/design.md`, \"Adaptive temperatures\") steers each "
               "layer's tau_f and tau_b during one run; the grid needs a search (tens of runs) before its final.", "",
               "* **Metric:** the test value of each run's best-validation checkpoint (lowest val/loss; `test: true` in both plans), "
               "mean ± std over seeds.",
               "* **Budgets:** every row trains for the paper's budget (binary network 100 epochs, autoencoder 160). "
               "The adaptive runs use the recipes' learning rates (binary 1e-3; autoencoder 3e-4) and start from the "
               "recipes' temperatures; the grid rows use the learning rate their search chose, so on the "
               "autoencoder the like-for-like fixed-temperature row is the paper's cell at lr 3e-4.",
               "* **Best grid cell:** among the Decoupled ST finals whose cell the reproduction's search selected "
               "(off the diagonal), the one with the lowest mean best `val/loss` over its seeds (the search's own "
               "score); Welch's t compares every row with it.",
               "* **Training runs needed:** adaptive 1 per seed; a grid row counts the tuning runs the reproduction "
               "stored for its search (binary network: the 10-epoch grid, its diagonal cells for Softmax ST; "
               "autoencoder: both stages of the sequential search, the Softmax ST search), then 1 final per seed; "
               "the paper's cell is 1 per seed, but it was chosen by the paper's own grid.",
               "* **Verdict:** \"within one standard deviation of the best grid cell\" when |adaptive mean - grid "
               "mean| <= the grid cell's standard deviation over its seeds; on the autoencoder it also gives the "
               "converged seeds of both, since one collapsed seed inflates that standard deviation.",
               "* **Converged** (autoencoder): the reproduction's rule, fixed before any run was looked at: final "
               f"validation perplexity >= {reproduction.CONVERGED_PERPLEXITY:g} of 8 and best val/loss <= "
               f"{reproduction.CONVERGED_LOSS:g} nats.", "")

    # ------------------------------------------------------------------- interim, short budgets
    def best_cell(self, recs: List[dict], label: str) -> Optional[Final]:
        """The cell of ``recs`` with the lowest mean best val/loss over its seeds."""
        by_cell: Dict[str, List[dict]] = {}
        for rec in recs:
            by_cell.setdefault(cell_label(rec["cell"]), []).append(rec)
        if not by_cell:
            return None
        cell, runs = min(by_cell.items(), key=lambda kv: mean_best(kv[1]))
        return Final(label, cell, runs)

    def interim(self) -> None:
        """Adaptive runs at the reproduction's tuning budgets against the stored tuning runs of the
        same budget (validation values: the tuning runs are not tested)."""
        lr = "model.init_args.optimizer.init_args.lr"

        def runs(report: reproduction.Report, group: str) -> List[dict]:  # a plan without the group: none
            return report.runs(group) if group in report.plan["groups"] else []

        grid = runs(self.grid, "binary_grid")
        c3 = runs(self.grid, "c3_binary_tau_b")
        paper = [r for r in grid if matches(r, {TAU_F: 0.1, TAU_B: 0.7})] + [r for r in c3 if matches(r, {TAU_B: 0.7})]
        binary = [("adaptive", Final("Adaptive", "from tau_f=0.1, tau_b=0.7", runs(self, "adaptive_binary_short")), "1 per seed"),
                  ("paper's cell", Final("Decoupled ST", "tau_f=0.1, tau_b=0.7", paper), "chosen by the paper's grid"),
                  ("best grid cell so far", self.best_cell([r for r in grid if not diagonal(r["cell"])], "Decoupled ST"),
                   f"{len(grid)} grid runs stored"),
                  ("best diagonal so far (Softmax ST)", self.best_cell([r for r in grid if diagonal(r["cell"])], "Softmax ST"),
                   f"{sum(diagonal(r['cell']) for r in grid)} diagonal runs")]
        dst = runs(self.grid, "ae_dst_tau_f") + runs(self.grid, "ae_dst_tau_b")
        ae = [("adaptive (lr 3e-4)", Final("Adaptive", "from tau_f=2, tau_b=0.5", runs(self, "adaptive_autoencoder_short")),
               "1 per seed"),
              ("adaptive (lr 7e-4, the search's)", Final("Adaptive", "from tau_f=2, tau_b=0.5, lr=0.0007",
                                                          runs(self, "adaptive_autoencoder_short_lr7")),
               "1 per seed (the lr borrowed from the search)"),
              ("paper's cell, lr 3e-4", Final("Decoupled ST", "tau_f=2, tau_b=0.5, lr=0.0003",
                                              [r for r in runs(self.grid, "ae_recipe_lr") if r["cell"].get(lr) == 0.0003]),
               "chosen by the paper's grid"),
              ("best tuned cell at lr 3e-4", self.best_cell([r for r in dst if r["cell"].get(lr) == 0.0003], "Decoupled ST"),
               f"{len(dst)} sequential-search runs stored"),
              ("best tuned cell, any lr", self.best_cell(dst, "Decoupled ST"), f"{len(dst)} sequential-search runs stored"),
              ("best diagonal (Softmax ST), any lr", self.best_cell(runs(self.grid, "ae_softmax_tune"), "Softmax ST"),
               f"{len(runs(self.grid, 'ae_softmax_tune'))} runs")]
        self.w("## At the reproduction's tuning budgets", "",
               "The adaptive runs at the budgets the reproduction searched "
               "with (binary network 10 epochs; autoencoder 20 epochs at lr 3e-4, and at 7e-4, the learning rate the "
               "sequential search selected; `*_short*` groups of the adaptive plan), against the stored search runs of the same budget. Validation values (search runs are not "
               "tested); grid cells of the binary network have one seed (seed 0) except the paper's cell "
               "(seeds 1 and 2 from `c3_binary_tau_b`).", "")
        for title, rows, digits, extra in (
                ("Binary network, 10 epochs", binary, 4, ("best val/acc", lambda rs: fmt([best_value(r, "val/acc", "max") for r in rs], 4))),
                ("Autoencoder, 20 epochs", ae, 1, ("final val perplexity (of 8) | converged",
                                                lambda rs: f"{fmt([reproduction.mean_prefixed(r, 'val/perplexity/') for r in rs], 2)} | "
                                                           f"{sum(converged(r) for r in rs)} / {len(rs)}"))):
            self.w(f"### {title}", "", f"| approach | cell | seeds | best val/loss | {extra[0]} | runs |",
                   "|---|---|---:|---:|---:|" + ("---:|" if "converged" in extra[0] else "") + "---|")
            for label, fin, runs in rows:
                if fin is None or not fin.recs:
                    self.w(f"| {label} | pending | 0 | - | - |" + (" - |" if "converged" in extra[0] else "") + f" {runs} |")
                    continue
                self.w(f"| {label} | {fin.cell} | {len(fin.recs)} | "
                       f"{fmt([best_value(r, 'val/loss', 'min') for r in fin.recs], digits)} | {extra[1](fin.recs)} | {runs} |")
            self.w("")
            refs = [(label, fin) for label, fin, _ in rows if fin is not None and fin.recs and not label.startswith("adaptive")]
            for label, ada, _ in rows:
                if label.startswith("adaptive") and ada is not None and len(ada.recs) >= 2:
                    self.w(f"{label}:", "", *(self.interim_line(ada, ref_label, ref, digits) for ref_label, ref in refs), "")

    @staticmethod
    def interim_line(ada: Final, label: str, ref: Final, digits: int) -> str:
        """Adaptive against one reference row, by the mean best val/loss: the difference and whether it
        is within one standard deviation (the reference's over its seeds; the adaptive runs' when the
        reference has one seed)."""
        a = [v for v in (best_value(r, "val/loss", "min") for r in ada.recs) if v is not None]
        b = [v for v in (best_value(r, "val/loss", "min") for r in ref.recs) if v is not None]
        if len(a) < 2 or not b:
            return f"* against the {label} ({ref.cell}): pending (too few runs with a finite val/loss)."
        diff = statistics.fmean(a) - statistics.fmean(b)
        sd, whose = (statistics.stdev(b), "its") if len(b) >= 2 else (statistics.stdev(a), "the adaptive runs'")
        ratio = abs(diff) / sd if sd else (0.0 if diff == 0 else float("inf"))
        return (f"* against the {label} ({ref.cell}): best val/loss {diff:+.{digits}f} "
                f"({'lower: better' if diff < 0 else 'higher: worse'}), {ratio:.2f} of {whose} standard deviations "
                f"({sd:.{digits}f}): **{'within' if abs(diff) <= sd else 'not within'} one standard deviation**.")

    def write(self) -> None:
        self.header()
        drawn = [(task, *self.task(task)) for task in TASKS]
        self.temperatures(drawn)
        self.interim()
        self.plans()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text("\n".join(self.lines).rstrip() + "\n")


def main(argv: Optional[List[str]] = None) -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--reproduction-plan", type=Path, default=ROOT / "docs" / "reproduction" / "plan.yaml")
    args, rest = pre.parse_known_args(argv)
    report_main(functools.partial(Report, reproduction_plan=args.reproduction_plan.resolve()), __doc__,
                ROOT / "docs" / "adaptive" / "plan.yaml", ROOT / "docs" / "adaptive.md", rest)


if __name__ == "__main__":
    main()
