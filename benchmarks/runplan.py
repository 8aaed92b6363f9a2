"""Execute a plan of training runs, resumably: each finished run is stored as one JSON file.

    python benchmarks/runplan.py status docs/reproduction/plan.yaml
    python benchmarks/runplan.py run docs/reproduction/plan.yaml --groups binary_grid \
        --workers 2 --budget-minutes 150 --commit
    python benchmarks/runplan.py run PLAN --dry-run          # print the commands, run nothing
    python benchmarks/runplan.py run PLAN --groups ae_final_dst ae_final_identity --by-seed
                                                             # seed 0 of every group, then seed 1, ...
    python benchmarks/runplan.py retest PLAN --groups G --metric test/objective \
        --test-arg=--model.init_args.test_num_samples=0      # add a test metric new code logs to
                                                             # stored runs, from their checkpoints

A plan (YAML) names where results go and lists groups of runs::

    results: docs/reproduction/runs     # one <run id>.json per finished run (commit these)
    scratch: runs/reproduction          # logs and checkpoints of each run (not committed)
    data_dir: data
    groups:
      binary_grid:
        configs: [recipes/binary_fashion_mnist.yaml]
        args: [--trainer.max_epochs=10]
        grid:                           # the product of these values, times the seeds
          model.init_args.tau_f: [0.0, 0.1]
          model.init_args.tau_b: [0.5, 0.7]
        seeds: [0]
      binary_final:
        configs: [recipes/binary_fashion_mnist.yaml]
        args: [--trainer.max_epochs=100]
        select:                         # cells chosen from the stored runs of another group
          - {from: binary_grid, metric: val/loss, mode: min, top: 5,
             keys: [model.init_args.tau_f, model.init_args.tau_b]}
          - {from: binary_grid, metric: val/loss, mode: min, top: 1, equal: [tau_f, tau_b], ...}
          # score: worst ranks a cell by its worst seed instead of the mean (reliability first)
        cells:                          # fixed cells added to the selection
          - {model.init_args.tau_f: 0.1, model.init_args.tau_b: 0.7}
        seeds: [0, 1, 2, 3, 4]

Every run is one ``python -m lightning_discrete fit`` of the group's configs, its args, one
cell (``--key=value``) and ``--seed_everything=SEED``, logged with ``CSVLogger`` under
``scratch/<run id>``, one torch thread per worker. A group with ``test: true`` then runs
``python -m lightning_discrete test`` with the same arguments on the run's best checkpoint
(``checkpoints/best*.ckpt``; the last one when there is none), and its ``test/*`` metrics
join the run's record. A run is finished when its JSON exists;
``run`` never starts a finished run again, so any session continues where the last one
stopped. A run stopped midway (the runner killed, the session over) continues from its
``checkpoints/latest.ckpt`` when its recipe saves one (every recipe does): Lightning restores the
model, optimiser, epoch and callbacks, the record joins the epochs of every attempt and lists
``resumed_after_epochs`` (random streams are not restored, so a resumed run is another draw
from the same experiment, not a bit-identical repeat); its ``wall_s`` sums the attempts the
runner timed (``attempts_s``: each earlier attempt from its start, kept in the scratch folder, to
its last logger file); earlier attempts it did not start are not timed, and the reports count them.
A record deleted by hand is rebuilt from the run's scratch folder the same way; delete the
folder too to train the run again from the start. ``--budget-minutes`` stops launching runs
that would not finish in time (the estimate is the slowest finished run of the group on the
same kind of device, CPU or GPU; before the group has one, a ``select`` group scales the runs
it selects from by the ratio of ``--trainer.max_epochs``; else the group's ``minutes``). A
group with ``select`` waits until every run of the group it selects from is stored. A run
whose exact training (configs, arguments, cell, seed, testing)
is already stored under another group is not trained again: its record is copied, with
``same_as`` naming the original.

The JSON holds the run id, group, cell, seed, command, wall time, start and end time, the
versions of torch / lightning / lightning_discrete (git commit), the host (and its GPU, if any), and every
epoch-level metric the run logged as ``{name: [[epoch, step, value], ...]}``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import itertools
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHILDREN: set = set()  # runs in flight, stopped with the runner (SIGTERM / Ctrl-C)
STOPPING = threading.Event()  # set when the runner is stopped: no new process, nothing stored


# --------------------------------------------------------------------------- #
# plan and runs
# --------------------------------------------------------------------------- #


def short(key: str) -> str:
    """The last component of a dotted config key (``model.init_args.tau_f`` -> ``tau_f``)."""
    return key.rsplit(".", 1)[-1]


def fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def run_id(group: str, cell: Dict[str, object], seed: int) -> str:
    """A file-name-safe id: ``group__tau_f=0.1__tau_b=0.7__seed=0``."""
    parts = [group] + [f"{short(k)}={fmt_value(v)}" for k, v in cell.items()] + [f"seed={seed}"]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", "__".join(parts))


def load_plan(path: Path) -> dict:
    plan = yaml.safe_load(Path(path).read_text())
    for key in ("results", "groups"):
        if key not in plan:
            raise SystemExit(f"{path}: the plan needs a `{key}` entry")
    plan.setdefault("scratch", "runs/plan")
    plan.setdefault("data_dir", "data")
    for name, g in plan["groups"].items():
        if not g.get("configs"):
            raise SystemExit(f"{path}: group {name!r} needs `configs` (a list of recipe files)")
        if not g.get("seeds"):
            raise SystemExit(f"{path}: group {name!r} needs `seeds`")
        for sel in g.get("select", []):
            if sel.get("from") not in plan["groups"]:
                raise SystemExit(f"{path}: group {name!r} selects from unknown group {sel.get('from')!r}")
    return plan


def stored(plan: dict) -> Dict[str, dict]:
    """Every finished run of the plan, by run id."""
    out = {}
    for f in sorted((ROOT / plan["results"]).glob("*.json")):
        rec = json.loads(f.read_text())
        out[rec["id"]] = rec
    return out


def best_value(rec: dict, metric: str, mode: str) -> Optional[float]:
    """Best value of ``metric`` over the run's epochs (``min`` or ``max``), NaNs ignored."""
    vals = [v for _, _, v in rec["metrics"].get(metric, []) if math.isfinite(v)]
    if not vals:
        return None
    return min(vals) if mode == "min" else max(vals)


def group_cells(plan: dict, name: str) -> List[Dict[str, object]]:
    g = plan["groups"][name]
    grid = g.get("grid") or {}
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def group_runs(plan: dict, name: str, results: Dict[str, dict]) -> Tuple[List[Tuple[str, dict, int]], Optional[str]]:
    """``([(run id, cell, seed), ...], reason it is not (fully) expandable yet or None)``."""
    g = plan["groups"][name]
    base = [dict(c) for c in group_cells(plan, name)]
    cells: List[Dict[str, object]] = []
    waiting = None
    for sel in g.get("select", []):
        src = sel["from"]
        src_runs, upstream = group_runs(plan, src, results)
        src_ids = [rid for rid, _, _ in src_runs]
        missing = [rid for rid in src_ids if rid not in results]
        if missing or upstream:
            waiting = f"waits for {len(missing)} run(s) of {src}" if missing else f"waits for {src}, which {upstream}"
            continue
        cells += select_cells(sel, [results[rid] for rid in src_ids])
    for c in g.get("cells", []) or []:
        cells.append(dict(c))
    if g.get("select") or g.get("cells"):
        # grid entries of a select group vary over the selected cells (e.g. learning rates)
        cells = [dict(c, **b) for c in cells for b in (base or [{}])]
    else:
        cells = base or [{}]
    unique: List[Dict[str, object]] = []
    for c in cells:
        if c not in unique:
            unique.append(c)
    runs = [(run_id(name, c, s), c, s) for c in unique for s in g["seeds"]]
    return runs, waiting


def select_cells(sel: dict, recs: List[dict]) -> List[Dict[str, object]]:
    """Rank the cells of ``recs`` by their best ``metric`` over seeds and keep the ``top``.

    ``score: mean`` (default) ranks by the mean over seeds; ``score: worst`` by the worst seed,
    which prefers a cell that never fails over one that is better on average but collapses on
    some seeds (a mean over two tuning seeds cannot see a 20-30 % failure rate; the worst of
    several can)."""
    keys = sel["keys"]
    mode = sel.get("mode", "min")
    score = sel.get("score", "mean")
    if score not in ("mean", "worst"):
        raise SystemExit(f"select: score must be 'mean' or 'worst', not {score!r}")
    worst = max if mode == "min" else min
    by_cell: Dict[Tuple, List[float]] = {}
    for rec in recs:
        cell = rec["cell"]
        if any(k not in cell for k in keys):
            raise SystemExit(f"select: run {rec['id']} has no key among {keys}")
        if "equal" in sel and len({cell[k] for k in sel["equal"]}) != 1:
            continue
        v = best_value(rec, sel["metric"], mode)
        by_cell.setdefault(tuple(cell[k] for k in keys), []).append(
            v if v is not None else (math.inf if mode == "min" else -math.inf)
        )
    rank = (lambda v: sum(v) / len(v)) if score == "mean" else worst
    ranked = sorted(by_cell.items(), key=lambda kv: rank(kv[1]), reverse=(mode == "max"))
    return [dict(zip(keys, cell)) for cell, _ in ranked[: sel.get("top", 1)]]


def command(
    plan: dict, name: str, cell: Dict[str, object], seed: int, rid: str, subcommand: str = "fit"
) -> List[str]:
    g = plan["groups"][name]
    out = ROOT / plan["scratch"] / rid
    cmd = [sys.executable, "-m", "lightning_discrete", subcommand]
    for c in g["configs"]:
        cmd += ["--config", c]
    cmd += list(g.get("args", []))
    cmd += [f"--{k}={fmt_value(v)}" for k, v in cell.items()]
    cmd += [
        f"--seed_everything={seed}",
        f"--data.init_args.data_dir={plan['data_dir']}",
        f"--trainer.default_root_dir={out}",
        "--trainer.logger=CSVLogger",
        f"--trainer.logger.init_args.save_dir={out}",
        "--trainer.logger.init_args.name=csv",
        "--trainer.enable_progress_bar=false",
    ]
    return cmd


# --------------------------------------------------------------------------- #
# one run
# --------------------------------------------------------------------------- #


def read_epoch_metrics(path: Path) -> Dict[str, List[List[float]]]:
    """Every metric of a ``CSVLogger`` file except per-step ones, as ``[[epoch, step, value]]``."""
    out: Dict[str, List[List[float]]] = {}
    with open(path) as fh:
        for row in csv.DictReader(fh):
            epoch, step = float(row.get("epoch") or "nan"), float(row.get("step") or "nan")
            for k, v in row.items():
                if k in ("epoch", "step") or v in ("", None) or k.endswith("_step"):
                    continue
                out.setdefault(k, []).append([epoch, step, float(v)])
    return out


def versions() -> Dict[str, str]:
    import lightning
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "lightning_discrete"],
            cwd=ROOT, capture_output=True, text=True,
        ).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "lightning_discrete": commit + ("+dirty" if dirty else ""),
    }


def accelerator() -> str:
    """What the run trained on: Lightning's ``auto`` takes the first GPU when there is one."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def run_versions(out: Path) -> List[Path]:
    """The ``CSVLogger`` versions of a run's scratch folder, oldest first."""
    return sorted((out / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def is_test_version(version: Path) -> bool:
    """Whether a logger version holds a ``test`` pass (its metrics have ``test/`` columns)."""
    f = version / "metrics.csv"
    if not f.exists():
        return False
    with open(f) as fh:
        return any(col.startswith("test/") for col in fh.readline().strip().split(","))


def resume_point(out: Path) -> Optional[Path]:
    """The checkpoint a stopped fit of this run continues from: the newest ``latest.ckpt`` (the
    recipes' ``ModelCheckpoint`` without a monitor, rewritten every epoch). Lightning's
    ``last.ckpt`` is not used: beside a monitored checkpoint it is written only when that one
    is, i.e. it holds the best epoch, not the latest. Without a ``latest.ckpt`` the run starts
    again."""
    for version in reversed([v for v in run_versions(out) if not is_test_version(v)]):
        latest = version / "checkpoints" / "latest.ckpt"
        if latest.is_file():
            return latest
    return None


def best_checkpoint(paths: List[Path]) -> Path:
    """The checkpoint with the best monitored value among a run's ``best*.ckpt`` files (one per
    attempt). A resumed fit logs into a new folder, where Lightning's ``ModelCheckpoint`` does not
    restore the old best score, so its first epoch always writes a ``best.ckpt`` of its own: the
    newest file is not necessarily the best. Each file's ``ModelCheckpoint`` state holds its own
    score (``best_model_score``) and the mode in its key (``'mode': 'max'``)."""
    if len(paths) == 1:
        return paths[0]
    import torch

    scored = []
    for path in paths:
        for key, state in torch.load(path, map_location="cpu", weights_only=False).get("callbacks", {}).items():
            if key.startswith("ModelCheckpoint") and "'monitor': None" not in key \
                    and state.get("best_model_score") is not None:
                sign = -1.0 if "'mode': 'max'" in key else 1.0
                scored.append((sign * float(state["best_model_score"]), str(path), path))
                break
    return min(scored)[2] if scored else paths[-1]


def merge_epoch_metrics(files: Iterable[Path]) -> Dict[str, List[List[float]]]:
    """Epoch-level metrics of the fits of one run, oldest file first: for each metric and epoch
    the newest file's rows win, so a fit resumed after epoch e contributes epochs > e and the
    fits before it the rest; a fit started afresh replaces everything."""
    merged: Dict[str, Dict[float, List[List[float]]]] = {}
    for f in files:
        for key, rows in read_epoch_metrics(f).items():
            by_epoch: Dict[float, List[List[float]]] = {}
            for row in rows:
                by_epoch.setdefault(row[0], []).append(row)
            merged.setdefault(key, {}).update(by_epoch)
    return {k: [row for e in sorted(v) for row in v[e]] for k, v in merged.items()}


def earlier_attempts_s(out: Path, starts: List[float]) -> List[float]:
    """Wall seconds of each attempt but the last of a run whose attempts started at the Unix times
    ``starts`` (oldest first): attempt i ends at the newest modification of a logger file (under
    ``out/csv``: its last epoch's metrics or checkpoint) older than attempt i + 1's start, whether
    it was stopped or killed. The runner's own files (logs, ``attempts.json``) are left out: the
    next attempt rewrites them at its start, and a coarse file clock could date that a little
    before the start the runner noted."""
    mtimes = [f.stat().st_mtime for f in (out / "csv").rglob("*") if f.is_file()]
    walls = []
    for start, following in zip(starts, starts[1:]):
        end = max((t for t in mtimes if start <= t < following), default=start)
        walls.append(end - start)
    return walls


def unmeasured_attempts(rec: dict) -> int:
    """Earlier attempts of a stored run whose time is not in its ``wall_s``: every attempt before
    the last one left an entry in ``resumed_after_epochs``, the timed ones also one in
    ``attempts_s`` (which ends with the last attempt); records from before attempts were timed
    have no ``attempts_s``."""
    timed = len(rec.get("attempts_s", [None])) - 1
    return max(0, len(rec.get("resumed_after_epochs", [])) - timed)


def execute(plan: dict, name: str, cell: dict, seed: int, rid: str, threads: int) -> Tuple[str, Optional[dict], str]:
    out = ROOT / plan["scratch"] / rid
    out.mkdir(parents=True, exist_ok=True)
    cmd = command(plan, name, cell, seed, rid)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    resumes = out / "resumed.json"  # the epochs after which this run was stopped and resumed
    attempts = out / "attempts.json"  # the Unix start time of each attempt the runner made
    resume = resume_point(out)
    if resume is None:
        resumes.unlink(missing_ok=True)
        attempts.unlink(missing_ok=True)
    starts = (json.loads(attempts.read_text()) if attempts.exists() else []) + [time.time()]
    attempts.write_text(json.dumps(starts))
    if resume is not None:
        import torch

        epoch = int(torch.load(resume, map_location="cpu", weights_only=False)["epoch"])
        resumes.write_text(json.dumps((json.loads(resumes.read_text()) if resumes.exists() else []) + [epoch]))
    rc = _run_logged(cmd + ([f"--ckpt_path={resume}"] if resume else []), out / "fit.log", env)
    if STOPPING.is_set():  # the fit was stopped with the runner: not finished, whatever its exit status
        return rid, None, "stopped"
    fits = [v for v in run_versions(out) if not is_test_version(v)]
    tested = bool(plan["groups"][name].get("test"))
    test_cmd: List[str] = []
    if rc == 0 and tested:
        best = [c for v in fits for c in sorted(v.glob("checkpoints/best*.ckpt"))]
        ckpts = [best_checkpoint(best)] if best else sorted(fits[-1].glob("checkpoints/*.ckpt") if fits else [])
        if not ckpts:
            return rid, None, f"FAILED (no checkpoint to test under {out / 'csv'})"
        test_cmd = command(plan, name, cell, seed, rid, "test") + [f"--ckpt_path={ckpts[-1]}"]
        rc = _run_logged(test_cmd, out / "test.log", env)
    wall = time.perf_counter() - t0
    files = [v / "metrics.csv" for v in fits if (v / "metrics.csv").exists()]
    if rc != 0 or not files:
        return rid, None, f"FAILED (rc {rc}); see {out / 'fit.log'} (and test.log)"
    earlier = earlier_attempts_s(out, starts)
    attempts_s = [round(w, 1) for w in earlier + [wall]]  # wall_s is their sum, to the same 0.1 s
    resumed_after = json.loads(resumes.read_text()) if resumes.exists() else []
    metrics = merge_epoch_metrics(files)
    if tested:  # the test pass: the newest version
        metrics.update(read_epoch_metrics(run_versions(out)[-1] / "metrics.csv"))
    rec = {
        "id": rid,
        "group": name,
        "cell": cell,
        "seed": seed,
        "command": " ".join(cmd[1:]),
        **({"test_command": " ".join(test_cmd[1:])} if test_cmd else {}),
        **({"resumed_after_epochs": resumed_after} if resumed_after else {}),
        "threads": threads,
        "wall_s": round(sum(attempts_s), 1),
        **({"attempts_s": attempts_s} if earlier else {}),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "accelerator": accelerator()},
        "metrics": metrics,
    }
    return rid, rec, f"done in {wall:.0f} s" + (" (resumed)" if resume else "")


def _run_logged(cmd: List[str], log_path: Path, env: Dict[str, str]) -> int:
    """Run ``cmd`` with its output in ``log_path``; stopped with the runner (none is started once
    it is stopping). Returns the exit code."""
    if STOPPING.is_set():
        return -signal.SIGTERM
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        CHILDREN.add(proc)
        try:
            return proc.wait()
        finally:
            CHILDREN.discard(proc)


def store(plan: dict, rec: dict, commit: bool) -> None:
    path = ROOT / plan["results"] / f"{rec['id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    tmp.replace(path)
    if commit:
        subprocess.run(["git", "add", str(path)], cwd=ROOT, check=True)
        subprocess.run(
            ["git", "commit", "-q", "-m", f"runplan: {rec['id']} ({rec['wall_s']:.0f} s)", "--", str(path)],
            cwd=ROOT, check=True,
        )


# --------------------------------------------------------------------------- #
# commands
# --------------------------------------------------------------------------- #


def pending(plan: dict, groups: Iterable[str], results: Dict[str, dict], by_seed: bool = False):
    """The runs not stored yet, group by group in plan order (each group cell by cell), or, with
    ``by_seed``, every group's first seed before any group's second (the first seeds of every
    final land before the later ones)."""
    todo = []
    for name in groups:
        runs, _ = group_runs(plan, name, results)
        seeds = plan["groups"][name]["seeds"]
        for rid, cell, seed in runs:
            if rid not in results:
                todo.append((name, rid, cell, seed, seeds.index(seed)))
    if by_seed:
        todo.sort(key=lambda t: t[4])  # stable: plan order within a seed position
    for name, rid, cell, seed, _ in todo:
        yield name, rid, cell, seed


def max_epochs(plan: dict, name: str) -> Optional[int]:
    """The group's ``--trainer.max_epochs`` argument, or None."""
    for arg in plan["groups"][name].get("args", []):
        if arg.startswith("--trainer.max_epochs="):
            return int(arg.split("=", 1)[1])
    return None


# Margin on a final estimated from its tuning runs (their wall time times the ratio of epochs):
# a final also tests its best checkpoint. Measured: a 160-epoch VAE final took 1.14x the slowest
# of its 20-epoch tuning runs times 8.
SCALED_ESTIMATE_MARGIN = 1.25


def estimate_s(plan: dict, name: str, results: Dict[str, dict], gpu: bool = False) -> float:
    """Seconds a run of group ``name`` is expected to take: the slowest stored run of the group
    on the same kind of device (``gpu``: this runner trains on a GPU); without one, for a group
    that selects from others, their slowest run scaled by the ratio of ``--trainer.max_epochs``
    (times :data:`SCALED_ESTIMATE_MARGIN`); else the group's ``minutes``."""
    walls = [r["wall_s"] for r in results.values() if r["group"] == name and on_gpu(r) == gpu]
    if walls:
        return max(walls)
    epochs = max_epochs(plan, name)
    scaled = []
    for sel in plan["groups"][name].get("select", []):
        src_epochs = max_epochs(plan, sel["from"])
        if epochs and src_epochs:
            scaled += [r["wall_s"] * epochs / src_epochs * SCALED_ESTIMATE_MARGIN for r in results.values()
                       if r["group"] == sel["from"] and on_gpu(r) == gpu]
    if scaled:
        return max(scaled)
    return 60.0 * float(plan["groups"][name].get("minutes", 0))


OUTPUT_ARGS = ("--trainer.default_root_dir=", "--trainer.logger.init_args.save_dir=")


def signature(args: Iterable[str], tested: bool) -> Tuple[Tuple[str, ...], bool]:
    """What makes two runs the same training: the command's arguments without the run's own
    output folders, and whether its best checkpoint is tested."""
    return tuple(a for a in args if not a.startswith(OUTPUT_ARGS)), tested


def run_signature(plan: dict, name: str, cell: Dict[str, object], seed: int, rid: str) -> Tuple[Tuple[str, ...], bool]:
    """:func:`signature` of a planned run of group ``name``."""
    return signature(command(plan, name, cell, seed, rid)[1:], bool(plan["groups"][name].get("test")))


def twin(plan: dict, name: str, cell: Dict[str, object], seed: int, rid: str,
         results: Dict[str, dict]) -> Optional[dict]:
    """A stored run of another group that is exactly this run (same configs, arguments, cell,
    seed and testing), or None. Two groups may share runs, e.g. a baseline's grid that is one
    row of another estimator's grid; the run is trained once (on one device it is bit-identical)."""
    want = run_signature(plan, name, cell, seed, rid)
    for rec in results.values():
        if rec["id"] != rid and stored_signature(rec["command"], "test_command" in rec) == want:
            return rec
    return None


@functools.lru_cache(maxsize=None)
def stored_signature(command_line: str, tested: bool) -> Tuple[Tuple[str, ...], bool]:
    """:func:`signature` of a stored record's command line, computed once per record (the runner
    asks for every pending run on every pass)."""
    return signature(command_line.split(" "), tested)


def twin_record(src: dict, name: str, cell: Dict[str, object], seed: int, rid: str) -> dict:
    """The record of run ``rid`` taken from its stored twin ``src`` (``same_as`` names it)."""
    return dict(src, id=rid, group=name, cell=cell, seed=seed, same_as=src.get("same_as", src["id"]))


def on_gpu(rec: dict) -> bool:
    """Whether a stored run trained on a GPU (records before the field existed ran on the CPU)."""
    return rec["host"].get("accelerator", "cpu") != "cpu"


def compute_hours(results: Iterable[dict]) -> Tuple[float, float]:
    """``(CPU hours, GPU hours)`` of stored runs: wall time x torch threads on the CPU, wall
    time on a GPU (shared by the runs that ran beside it); a run copied from its twin counts once."""
    recs = [r for r in results if "same_as" not in r]  # a twin's training is counted once
    cpu = sum(r["wall_s"] * r.get("threads", 1) for r in recs if not on_gpu(r))
    gpu = sum(r["wall_s"] for r in recs if on_gpu(r))
    return cpu / 3600, gpu / 3600


def cmd_status(plan: dict, args) -> None:
    results = stored(plan)
    cpu_h, gpu_h = compute_hours(results.values())
    for name in plan["groups"]:
        runs, waiting = group_runs(plan, name, results)
        done = sum(rid in results for rid, _, _ in runs)
        walls = [results[rid]["wall_s"] for rid, _, _ in runs if rid in results]
        per = f", {sum(walls) / len(walls) / 60:.1f} min per run" if walls else ""
        stopped = sum(rid not in results and resume_point(ROOT / plan["scratch"] / rid) is not None
                      for rid, _, _ in runs)
        print(f"{name:28s} {done:4d} / {len(runs):4d} stored{per}" + (f"  ({waiting})" if waiting else "")
              + (f"  ({stopped} stopped midway: resumed by the next run)" if stopped else ""))
    print(f"CPU time of the stored runs: {cpu_h:.2f} h" + (f"; GPU runs: {gpu_h:.2f} h of wall time" if gpu_h else ""))
    count, hours = left_to_train(plan, results)
    print(f"Left to train: {count} runs (a run that another group shares counted once), about {hours:.1f} CPU "
          "hours at their groups' mean CPU time per stored run (else the runner's estimate); groups waiting on a "
          "selection not counted")


def left_to_train(plan: dict, results: Dict[str, dict]) -> Tuple[int, float]:
    """``(runs, CPU hours)`` still to train among the runs the plan can expand now: a run with a
    stored twin costs nothing, runs shared by several groups count once; each costs its group's
    mean CPU time (wall x threads) per stored CPU run (a copied record's time is its original's, a
    run of the same kind), or :func:`estimate_s` without one."""
    pending: Dict[Tuple[Tuple[str, ...], bool], float] = {}
    for name in plan["groups"]:
        cpu = [r["wall_s"] * r.get("threads", 1) for r in results.values() if r["group"] == name and not on_gpu(r)]
        cost = sum(cpu) / len(cpu) if cpu else estimate_s(plan, name, results)
        for rid, cell, seed in group_runs(plan, name, results)[0]:
            sig = run_signature(plan, name, cell, seed, rid)
            if rid in results or sig in pending or twin(plan, name, cell, seed, rid, results) is not None:
                continue
            pending[sig] = cost
    return len(pending), sum(pending.values()) / 3600


def lock(plan: dict):
    """An exclusive lock on the plan's results folder: two runners on one plan would run the
    same runs twice (and share the cores). Held until the process ends."""
    import fcntl

    folder = ROOT / plan["results"]
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / ".runplan.lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        raise SystemExit(f"another runner (pid {fh.read().strip() or '?'}) is executing this plan; stop it first")
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def chosen_groups(plan: dict, groups: Optional[List[str]]) -> List[str]:
    """The groups a command works on (``None``: all, in plan order); an unknown name stops it."""
    groups = groups or list(plan["groups"])
    unknown = [g for g in groups if g not in plan["groups"]]
    if unknown:
        raise SystemExit(f"unknown group(s) {unknown}; the plan has {list(plan['groups'])}")
    return groups


def cmd_run(plan: dict, args) -> None:
    groups = chosen_groups(plan, args.groups)
    deadline = time.monotonic() + 60.0 * args.budget_minutes if args.budget_minutes else math.inf
    results = stored(plan)
    if args.dry_run:
        for name, rid, cell, seed in pending(plan, groups, results, args.by_seed):
            src = twin(plan, name, cell, seed, rid, results)
            print(f"# {rid}: the same run as {src['id']}" if src else " ".join(command(plan, name, cell, seed, rid)[1:]))
        return
    held = lock(plan)  # noqa: F841  (kept open for the whole run)
    gpu = accelerator() != "cpu"
    running: Dict[object, Tuple[Tuple[str, ...], bool]] = {}  # future -> the training signature of its run
    skipped = set()
    with ThreadPoolExecutor(args.workers) as pool:
        while True:
            results.update(stored(plan))  # runs stored since the start (by hand, or an earlier runner)
            in_flight = set(running.values())  # a run in flight is caught by its signature below
            todo = [p for p in pending(plan, groups, results, args.by_seed) if p[1] not in skipped]
            while todo and len(running) < args.workers:
                name, rid, cell, seed = todo.pop(0)
                src = twin(plan, name, cell, seed, rid, results)
                if src is not None:
                    rec = twin_record(src, name, cell, seed, rid)
                    store(plan, rec, args.commit)
                    results[rid] = rec
                    print(f"{'same as ' + rec['same_as']:>14s}  {rid}", flush=True)
                    continue
                sig = run_signature(plan, name, cell, seed, rid)
                if sig in in_flight:  # running, itself or under another group (then copied when it lands)
                    continue
                if time.monotonic() + estimate_s(plan, name, results, gpu) > deadline:
                    skipped.add(rid)
                    continue
                print(f"start {rid}", flush=True)
                running[pool.submit(execute, plan, name, cell, seed, rid, args.threads)] = sig
                in_flight.add(sig)
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                running.pop(fut)
                rid, rec, msg = fut.result()
                print(f"{msg:>14s}  {rid}", flush=True)
                if rec is None:
                    skipped.add(rid)
                else:
                    store(plan, rec, args.commit)
                    results[rid] = rec
    if skipped:
        print(f"{len(skipped)} run(s) not started or failed this time (budget or errors); run again to continue")
    cmd_status(plan, args)


def scratch_checkpoint(plan: dict, rec: dict) -> Optional[Path]:
    """The checkpoint a stored run was tested with, in this machine's scratch folder (the path in
    ``test_command`` from the run's folder on; the runner's root may have been elsewhere)."""
    for arg in rec.get("test_command", "").split():
        if arg.startswith("--ckpt_path="):
            parts = Path(arg.split("=", 1)[1]).parts
            if rec["id"] in parts:
                path = ROOT / plan["scratch"] / Path(*parts[parts.index(rec["id"]):])
                return path if path.is_file() else None
    return None


def retest(plan: dict, rec: dict, metric: str, extra: List[str], threads: int) -> Tuple[Optional[dict], str]:
    """Test a stored run's checkpoint again with the current code and add the test metrics its
    record lacks (``metric`` among them); the stored values are never replaced. Returns the new
    record (``None`` if it failed) and a message."""
    ckpt = scratch_checkpoint(plan, rec)
    if ckpt is None:
        return None, "skipped (its tested checkpoint is not in this machine's scratch folder)"
    out = ROOT / plan["scratch"] / rec["id"]
    cmd = command(plan, rec["group"], rec["cell"], rec["seed"], rec["id"], "test") + [f"--ckpt_path={ckpt}", *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    rc = _run_logged(cmd, out / "retest.log", env)
    if rc != 0:
        return None, f"FAILED (rc {rc}); see {out / 'retest.log'}"
    added = {k: v for k, v in read_epoch_metrics(run_versions(out)[-1] / "metrics.csv").items()
             if k not in rec["metrics"]}
    if metric not in added:
        return None, f"FAILED (the test logged no {metric}); see {out / 'retest.log'}"
    entry = {"command": " ".join(cmd[1:]), "added": sorted(added), "versions": versions(),
             "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    rec = dict(rec, metrics={**rec["metrics"], **added}, retested=[*rec.get("retested", []), entry])
    return rec, f"added {', '.join(sorted(added))}"


def cmd_retest(plan: dict, args) -> None:
    """``retest``: the stored, tested runs of ``--groups`` whose records lack ``--metric`` are
    tested again (one at a time, from their checkpoints) and gain the metrics they lack; a copied
    run (``same_as``) takes them from its original. Resumable: a record with the metric is done."""
    groups = chosen_groups(plan, args.groups)
    held = lock(plan)  # noqa: F841  (kept open for the whole run)
    results = stored(plan)
    todo = [results[rid] for g in groups for rid, _, _ in group_runs(plan, g, results)[0]
            if rid in results and "test_command" in results[rid] and args.metric not in results[rid]["metrics"]]
    todo.sort(key=lambda r: "same_as" in r)  # originals before the copies of them
    for rec in todo:
        if "same_as" in rec:
            src = results.get(rec["same_as"])
            if src is None or args.metric not in src["metrics"]:
                print(f"skipped (retest its original {rec['same_as']})  {rec['id']}", flush=True)
                continue
            new, msg = dict(rec, metrics={**src["metrics"], **rec["metrics"]}), f"copied from {rec['same_as']}"
        else:
            print(f"retest {rec['id']}", flush=True)
            new, msg = retest(plan, rec, args.metric, args.test_arg or [], args.threads)
        print(f"{msg}  {rec['id']}", flush=True)
        if new is not None:
            store(plan, new, args.commit)
            results[rec["id"]] = new
    if not todo:
        print(f"no stored, tested run of these groups lacks {args.metric}")


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["run", "status", "retest"])
    p.add_argument("plan", type=Path)
    p.add_argument("--groups", nargs="+", help="groups to run (default: all, in plan order)")
    p.add_argument("--workers", type=int, default=2, help="runs at a time (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="start no run that would end after this many minutes")
    p.add_argument("--commit", action="store_true", help="git-commit each stored result")
    p.add_argument("--by-seed", action="store_true",
                   help="run every selected group's first seed before any group's second, and so on")
    p.add_argument("--dry-run", action="store_true", help="print the pending commands only")
    p.add_argument("--metric", default="test/objective",
                   help="retest: the test metric a record must have (default test/objective)")
    p.add_argument("--test-arg", action="append",
                   help="retest: one more argument of the test command, e.g. "
                        "--test-arg=--model.init_args.test_num_samples=0 (repeatable)")
    args = p.parse_args(argv)
    plan = load_plan(args.plan)

    def stop(signum, frame):
        STOPPING.set()
        for proc in list(CHILDREN):  # before the pool's shutdown waits for them
            proc.terminate()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        {"run": cmd_run, "status": cmd_status, "retest": cmd_retest}[args.command](plan, args)
    except KeyboardInterrupt:
        STOPPING.set()
        for proc in list(CHILDREN):
            proc.terminate()
        print("stopped; the runs in flight were not stored and start again next time", file=sys.stderr)
        os._exit(1)


if __name__ == "__main__":
    main()
