"""Reproduce the Decoupled ST paper's comparisons at a CPU-sized budget and write a report.

    python benchmarks/reproduction.py run     # train every job (resumable: finished runs are skipped)
    python benchmarks/reproduction.py report  # prints the tables of docs/reproduction.md, writes its PNGs

Every job is one ``lightning-discrete fit`` of a recipe with a baseline override, a
seed and a reduced budget, logged with ``CSVLogger`` under ``runs/reproduction/``.
Jobs run ``--workers`` at a time (one torch thread each). Data: Fashion-MNIST from
``data/`` (``lightning-discrete import-idx /usr/share/datasets/fashion-mnist data``).
MNIST and CIFAR-10 cannot be downloaded on the machines this was measured on, so the
autoencoder and the logic-gate network run on Fashion-MNIST too. The report needs
matplotlib (``pip install matplotlib``; not a dependency of the package).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "reproduction"
DOCS = ROOT / "docs"

# recipe files recipes/estimators/{name}.yaml (registry names decoupled_st, identity_st,
# softmax_st, gumbel_softmax_st); also the run folders under runs/reproduction/<task>/
ESTIMATORS = ["decoupled_st", "identity_st", "softmax_st", "gumbel_softmax_st"]
LABEL = {
    "decoupled_st": "Decoupled ST",
    "identity_st": "Identity ST",
    "softmax_st": "Softmax ST (tau=1)",
    "gumbel_softmax_st": "ST Gumbel-Softmax (tau=1)",
}

TASKS: Dict[str, dict] = {
    "binary": dict(
        title="Stochastic binary network, Fashion-MNIST (784-200-200-10, tau_f=0.1, tau_b=0.7)",
        recipe="recipes/binary_fashion_mnist.yaml",
        seeds=[0, 1, 2],
        args=["--trainer.max_epochs=10"],
        budget="10 epochs (paper: 100)",
        metric="val/acc",
        perplexity_prefix="val/perplexity/",
    ),
    "autoencoder": dict(
        title="Categorical autoencoder, 4 x 8 latents, Fashion-MNIST (tau_f=2.0, tau_b=0.5)",
        recipe="recipes/autoencoder_mnist.yaml",
        seeds=[0, 1, 2],
        args=["--data.class_path=FashionMNISTDataModule", "--trainer.max_epochs=10"],
        budget="10 epochs (paper: 160 on MNIST)",
        metric="val/loss",
        perplexity_prefix="val/perplexity/",
    ),
    "logic_gates": dict(
        title="Logic-gate network, 2 x 8000 gates, thermometer-binarised Fashion-MNIST (tau_f=0.1, tau_b=2.0)",
        recipe="recipes/logic_gates_cifar10.yaml",
        seeds=[0],
        args=[
            "--data.class_path=FashionMNISTDataModule",
            "--data.binarize_thresholds=3",
            "--model.in_features=2352",
            "--model.num_neurons=8000",
            "--model.num_layers=2",
            "--model.group_sum_tau=30",
            "--trainer.max_steps=1500",
            "--trainer.val_check_interval=500",
        ],
        budget="1,500 steps of batch 100, about 3 epochs (paper: 4 x 12,000 gates, 200k steps on CIFAR-10)",
        metric="val/acc",
        perplexity_prefix="gates/perplexity/",
    ),
}


def job_dir(task: str, est: str, seed: int) -> Path:
    return OUT / task / est / f"seed{seed}"


def run_job(task: str, est: str, seed: int, data_dir: str) -> str:
    spec = TASKS[task]
    out = job_dir(task, est, seed)
    if (out / "done.json").exists():
        return f"skip {task}/{est}/seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "lightning_discrete", "fit",
        "--config", spec["recipe"], "--config", f"recipes/estimators/{est}.yaml",
        *spec["args"],
        f"--data.data_dir={data_dir}", f"--seed_everything={seed}",
        f"--trainer.default_root_dir={out}",
        "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={out}", "--trainer.logger.name=csv",
        "--trainer.enable_progress_bar=false",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.time()
    with open(out / "fit.log", "w") as log:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.time() - start
    if rc != 0:
        return f"FAILED {task}/{est}/seed{seed} (rc {rc}); see {out / 'fit.log'}"
    (out / "done.json").write_text(json.dumps({"wall_s": wall, "command": " ".join(cmd[1:])}))
    return f"done {task}/{est}/seed{seed} in {wall:.0f} s"


def cmd_run(args: argparse.Namespace) -> None:
    jobs = [
        (task, est, seed)
        for task in args.tasks
        for est in ESTIMATORS
        for seed in TASKS[task]["seeds"]
    ]
    print(f"{len(jobs)} jobs, {args.workers} at a time", flush=True)
    with ThreadPoolExecutor(args.workers) as pool:
        for i, msg in enumerate(pool.map(lambda j: run_job(*j, args.data_dir), jobs), 1):
            print(f"[{i}/{len(jobs)}] {msg}", flush=True)


# --------------------------------------------------------------------------- #
# report
# --------------------------------------------------------------------------- #


def read_metrics(path: Path) -> List[Dict[str, float]]:
    rows = []
    with open(path) as fh:
        for row in csv.DictReader(fh):
            rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def last(rows: List[Dict[str, float]], key: str) -> Optional[float]:
    vals = [r[key] for r in rows if key in r]
    return vals[-1] if vals else None


def last_prefixed(rows: List[Dict[str, float]], prefix: str) -> Optional[float]:
    """Mean over keys with ``prefix`` of their last value (e.g. perplexity of each bottleneck)."""
    keys = sorted({k for r in rows for k in r if k.startswith(prefix) and k.count("/") <= prefix.count("/") + 1})
    vals = [last(rows, k) for k in keys]
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else None


def curve(rows: List[Dict[str, float]], key: str):
    pts = [(r["step"], r[key]) for r in rows if key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def fmt(values: List[Optional[float]], digits: int = 4) -> str:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{statistics.fmean(v):.{digits}f} ± {statistics.stdev(v):.{digits}f}"


def cmd_report(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = []
    for task in args.tasks:
        spec = TASKS[task]
        metric = spec["metric"]
        fig, ax = plt.subplots(figsize=(6, 4))
        table = [
            f"| estimator | seeds | final {metric} | best {metric} | perplexity | % inactive units | wall time per run |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for est in ESTIMATORS:
            finals, bests, perps, inactive, walls, n = [], [], [], [], [], 0
            for seed in spec["seeds"]:
                d = job_dir(task, est, seed)
                files = sorted(d.glob("csv/version_*/metrics.csv"))
                if not (d / "done.json").exists() or not files:
                    continue
                n += 1
                rows = read_metrics(files[-1])
                vals = [r[metric] for r in rows if metric in r]
                finals.append(vals[-1] if vals else None)
                if vals:
                    bests.append(max(vals) if metric.endswith("acc") else min(vals))
                perps.append(last_prefixed(rows, spec["perplexity_prefix"]))
                act = last(rows, "active_units/all")
                inactive.append(None if act is None else 100.0 - act)
                walls.append(json.loads((d / "done.json").read_text())["wall_s"])
                xs, ys = curve(rows, metric)
                ax.plot(xs, ys, color=f"C{ESTIMATORS.index(est)}", alpha=0.8,
                        label=LABEL[est] if seed == spec["seeds"][0] else None)
            if n:
                table.append(
                    f"| {LABEL[est]} | {n} | {fmt(finals)} | {fmt(bests)} | {fmt(perps, 3)} | "
                    f"{fmt(inactive, 1)} | {statistics.fmean(walls):.0f} s |"
                )
        ax.set_xlabel("training step")
        ax.set_ylabel(metric)
        ax.set_title(task)
        ax.legend(fontsize=8)
        fig.tight_layout()
        png = f"reproduction_{task}.png"
        fig.savefig(DOCS / png, dpi=100)
        plt.close(fig)
        sections.append((task, spec, table, png))

    lines = []
    for task, spec, table, png in sections:
        lines += [f"### {spec['title']}", "", f"Budget: {spec['budget']}. Recipe: `{spec['recipe']}` with "
                  f"`{' '.join(spec['args'])}`.", "", *table, "", f"![{task} learning curves]({png})", ""]
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["run", "report"])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data_dir", default="data")
    args = p.parse_args()
    DOCS.mkdir(exist_ok=True)
    (cmd_run if args.command == "run" else cmd_report)(args)


if __name__ == "__main__":
    main()
