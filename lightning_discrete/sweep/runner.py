"""Temperature sweeps (``lightning-discrete sweep``), the two protocols of the Decoupled ST paper.

* ``grid`` — every ``(tau_f, tau_b)`` pair of the two value lists.
* ``sequential`` — ``tau_f`` over its list at ``tau_b = fixed_tau_b``, then ``tau_b`` over
  its list at the best ``tau_f``.
* ``single`` — one temperature ``tau`` over its list (baselines: softmax ST, ST
  Gumbel-Softmax).

Each point may further be crossed with learning rates (``--lr``) and seeds (``--seeds``).
Every trial runs the same LightningCLI ``fit`` config (the ``--config`` files plus any
extra ``--trainer.*`` / ``--model.*`` / ``--data.*`` overrides) with the temperatures,
learning rate and seed set, in its own folder ``OUTPUT_DIR/trials/<phase>-NNNN``. A trial's
score is its lowest ``val/loss`` over the run (``--metric``); a configuration's score is
the mean over seeds; the chosen configuration has the lowest score.

Built on Optuna's ``GridSampler``: the trials live in an Optuna storage, a local SQLite
file ``OUTPUT_DIR/sweep.db`` by default. Start the same command on several machines with
one ``--storage`` URL (e.g. ``postgresql://...`` or an SQLite file on a shared disk) to
spread the grid over them; re-running a command resumes its study and only runs the
missing points. Outputs: ``OUTPUT_DIR/trials.csv`` (every trial), ``heatmap.png``
(score over ``(tau_f, tau_b)``, the diagonal ``tau_f = tau_b`` — softmax ST — outlined)
and ``best.json``.

Example::

    lightning-discrete sweep --config recipes/binary_fashion_mnist.yaml --protocol grid \\
        --tau_f 0.1 0.3 1 --tau_b 0.3 0.7 1 --seeds 0 1 --trainer.max_epochs=10
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from lightning.pytorch import Callback

__all__ = ["SweepError", "SweepConfig", "run_sweep", "run_trial", "write_heatmap", "main"]

DEFAULT_TAUS = (0.1, 0.3, 0.5, 0.7, 1.0, 2.0)
PROTOCOLS = ("grid", "sequential", "single")


class SweepError(RuntimeError):
    """The sweep could not produce a result; the message says why and what to do."""


@dataclass
class SweepConfig:
    """What to sweep; see the module docstring and ``lightning-discrete sweep --help``."""

    configs: List[str]
    protocol: str = "grid"
    tau_f: Sequence[float] = DEFAULT_TAUS
    tau_b: Sequence[float] = DEFAULT_TAUS
    tau: Sequence[float] = DEFAULT_TAUS
    fixed_tau_b: float = 1.0
    lr: Optional[Sequence[float]] = None
    seeds: Optional[Sequence[int]] = None
    metric: str = "val/loss"
    output_dir: Optional[str] = None
    storage: Optional[str] = None
    study_name: Optional[str] = None
    overrides: List[str] = field(default_factory=list)
    wait_timeout: float = 24 * 3600.0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"`protocol` must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not self.configs:
            raise ValueError("a sweep needs at least one `--config` file (e.g. a recipe)")
        for name in ("tau_f", "tau_b", "tau"):
            values = [float(v) for v in getattr(self, name)]
            if not values:
                raise ValueError(f"`--{name}` needs at least one value")
            lo = 0.0 if name == "tau_f" else 1e-300
            bad = [v for v in values if not math.isfinite(v) or v < lo]
            if bad:
                bound = ">= 0" if name == "tau_f" else "> 0"
                raise ValueError(f"every `--{name}` value must be a finite number {bound}, got {bad}")
            setattr(self, name, sorted(set(values)))
        if self.fixed_tau_b <= 0:
            raise ValueError(f"`--fixed_tau_b` must be > 0, got {self.fixed_tau_b}")
        if self.study_name is None:
            stem = "+".join(os.path.splitext(os.path.basename(c))[0] for c in self.configs)
            self.study_name = f"{stem}-{self.protocol}"
        if self.output_dir is None:
            self.output_dir = os.path.join("sweeps", re.sub(r"[^\w.+-]", "_", self.study_name))
        if self.storage is None:
            self.storage = f"sqlite:///{os.path.abspath(os.path.join(self.output_dir, 'sweep.db'))}"


def _log(msg: str) -> None:
    print(f"[sweep] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------- #
# one trial
# --------------------------------------------------------------------------------- #
class _MetricTracker(Callback):
    """Callback recording the lowest and the last value of ``metric`` after each validation."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.best = math.inf
        self.last = math.nan
        self.history: List[float] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        v = float(trainer.callback_metrics[self.metric])
        self.history.append(v)
        self.last = v
        if not math.isnan(v) and v < self.best:
            self.best = v


def trial_args(
    cfg: SweepConfig, params: Dict[str, Any], trial_dir: str, subcommand: Optional[str] = None
) -> List[str]:
    """LightningCLI arguments of one trial (``subcommand=None``: for ``run=False``)."""
    args = [subcommand] if subcommand else []
    for c in cfg.configs:
        args += ["--config", c]
    args += list(cfg.overrides)
    if "tau" in params:
        args += ["--model.tau_f=null", "--model.tau_b=null", f"--model.tau={params['tau']}"]
    else:
        args += ["--model.tau=null", f"--model.tau_f={params['tau_f']}", f"--model.tau_b={params['tau_b']}"]
    if params.get("lr") is not None:
        args.append(f"--model.optimizer.lr={params['lr']}")
    if params.get("seed") is not None:
        args.append(f"--seed_everything={params['seed']}")
    args.append(f"--trainer.default_root_dir={trial_dir}")
    return args


def run_trial(cfg: SweepConfig, params: Dict[str, Any], trial_dir: str) -> Tuple[float, float]:
    """Train one configuration; returns ``(lowest, last)`` value of ``cfg.metric``."""
    from .cli import cli_main

    os.makedirs(trial_dir, exist_ok=True)
    cli = cli_main(trial_args(cfg, params, trial_dir), run=False)
    tracker = _MetricTracker(cfg.metric)
    cli.trainer.callbacks.append(tracker)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    if not tracker.history:
        raise RuntimeError(
            f"the run logged no `{cfg.metric}`: make sure validation runs (`--trainer.limit_val_batches` > 0, "
            f"`check_val_every_n_epoch` <= max_epochs or `val_check_interval` set) and that the model logs "
            f"`{cfg.metric}` (`--metric` chooses another)"
        )
    return tracker.best, tracker.last


def check_config(cfg: SweepConfig) -> None:
    """Parse and instantiate the trial config once, and load its data, so that a bad config
    or missing data stops the sweep before any trial (raises ConfigError / DataError)."""
    from .cli import cli_main

    params: Dict[str, Any] = {"tau": cfg.tau[0]} if cfg.protocol == "single" else {
        "tau_f": cfg.tau_f[0], "tau_b": cfg.tau_b[0]
    }
    if cfg.lr:
        params["lr"] = cfg.lr[0]
    cli = cli_main(trial_args(cfg, params, os.path.join(cfg.output_dir, "check")), run=False)
    dm = cli.datamodule
    if dm is not None:
        dm.prepare_data()
        dm.setup("fit")


# --------------------------------------------------------------------------------- #
# the studies
# --------------------------------------------------------------------------------- #
def _grid(cfg: SweepConfig, space: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
    space = dict(space)
    if cfg.lr:
        space["lr"] = sorted(set(float(v) for v in cfg.lr))
    if cfg.seeds:
        space["seed"] = sorted(set(int(v) for v in cfg.seeds))
    return space


def _n_points(space: Dict[str, List[Any]]) -> int:
    n = 1
    for v in space.values():
        n *= len(v)
    return n


def _covered(study, space: Dict[str, List[Any]]) -> int:
    import optuna

    keys = sorted(space)
    done = set()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if all(k in t.params for k in keys) and all(t.params[k] in space[k] for k in keys):
            done.add(tuple(t.params[k] for k in keys))
    return len(done)


def _run_study(cfg: SweepConfig, phase: str, space: Dict[str, List[Any]], counter: Dict[str, int]):
    import optuna

    space = _grid(cfg, space)
    label = phase.split("@")[0]
    study = optuna.create_study(
        study_name=f"{cfg.study_name}/{phase}",
        storage=cfg.storage,
        sampler=optuna.samplers.GridSampler(space, seed=0),
        direction="minimize",
        load_if_exists=True,
    )
    total = _n_points(space)
    if _covered(study, space) < total:
        counter["total"] += total - _covered(study, space)

        def objective(trial: "optuna.Trial") -> float:
            params = {k: trial.suggest_categorical(k, v) for k, v in space.items()}
            trial_dir = os.path.join(cfg.output_dir, "trials", f"{label}-{trial.number:04d}")
            trial.set_user_attr("dir", trial_dir)
            trial.set_user_attr("phase", label)
            counter["started"] += 1
            desc = " ".join(f"{k}={v}" for k, v in params.items())
            if cfg.progress:
                _log(f"{label} trial {counter['started']}/{counter['total']}: {desc}")
            t0 = time.time()
            try:
                best, last = run_trial(cfg, params, trial_dir)
            except Exception as err:
                if cfg.progress:
                    _log(f"  failed after {time.time() - t0:.0f}s: {type(err).__name__}: {err}")
                trial.set_user_attr("error", f"{type(err).__name__}: {err}")
                import traceback

                with open(os.path.join(trial_dir, "error.txt"), "w") as fh:
                    fh.write(traceback.format_exc())
                raise
            trial.set_user_attr("last", last)
            if cfg.progress:
                try:
                    so_far = min(study.best_value, best)
                except ValueError:
                    so_far = best
                _log(f"  {cfg.metric} best {best:.5g}, last {last:.5g} ({time.time() - t0:.0f}s); "
                     f"best trial so far {so_far:.5g}")
            if math.isnan(best) or math.isinf(best):
                raise FloatingPointError(f"{cfg.metric} was {best}")
            return best

        study.optimize(objective, n_trials=None, catch=(Exception,), gc_after_trial=True)
    _wait_for(study, cfg)
    return study


def _wait_for(study, cfg: SweepConfig) -> None:
    """Wait for trials other workers still run (a distributed sweep), up to ``wait_timeout``."""
    import optuna

    t0 = time.time()
    announced = False
    while True:
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if not running:
            return
        if time.time() - t0 > cfg.wait_timeout:
            raise SweepError(
                f"{len(running)} trial(s) of study {study.study_name!r} still RUNNING after "
                f"{cfg.wait_timeout:.0f}s; if their worker died, mark them failed or delete the study "
                f"(`optuna delete-study`), then re-run the sweep"
            )
        if not announced:
            _log(f"waiting for {len(running)} trial(s) run by other workers ...")
            announced = True
        time.sleep(5.0)


# --------------------------------------------------------------------------------- #
# results
# --------------------------------------------------------------------------------- #
_COLUMNS = ["phase", "number", "state", "tau_f", "tau_b", "tau", "lr", "seed", "value", "last", "duration_s",
            "dir", "error"]


def _rows(studies) -> List[Dict[str, Any]]:
    rows = []
    for study in studies:
        phase = study.study_name.rsplit("/", 1)[-1].split("@")[0]
        for t in study.get_trials(deepcopy=False):
            dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else ""
            rows.append({
                "phase": phase,
                "number": t.number,
                "state": t.state.name,
                "tau_f": t.params.get("tau_f", t.params.get("tau", "")),
                "tau_b": t.params.get("tau_b", t.params.get("tau", "")),
                "tau": t.params.get("tau", ""),
                "lr": t.params.get("lr", ""),
                "seed": t.params.get("seed", ""),
                "value": t.value if t.value is not None else "",
                "last": t.user_attrs.get("last", ""),
                "duration_s": f"{dur:.1f}" if dur != "" else "",
                "dir": t.user_attrs.get("dir", ""),
                "error": t.user_attrs.get("error", ""),
            })
    return rows


def aggregate(rows: List[Dict[str, Any]]) -> Dict[Tuple[float, float, Any], Tuple[float, int]]:
    """``{(tau_f, tau_b, lr): (mean value over seeds and repeats, count)}`` over complete trials."""
    groups: Dict[Tuple[float, float, Any], List[float]] = {}
    for r in rows:
        if r["state"] != "COMPLETE" or r["value"] == "":
            continue
        key = (float(r["tau_f"]), float(r["tau_b"]), None if r["lr"] == "" else float(r["lr"]))
        groups.setdefault(key, []).append(float(r["value"]))
    return {k: (statistics.fmean(v), len(v)) for k, v in groups.items()}


def choose(rows: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The configuration with the lowest mean value (over seeds), or None."""
    agg = aggregate(rows)
    if not agg:
        return None
    (tf, tb, lr), (v, n) = min(agg.items(), key=lambda kv: kv[1][0])
    return {"tau_f": tf, "tau_b": tb, "lr": lr, "value": v, "num_trials": n}


def write_csv(rows: List[Dict[str, Any]], path: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(r)


_VIRIDIS = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]


def _colour(t: float) -> Tuple[int, int, int]:
    t = min(max(t, 0.0), 1.0) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    f = t - i
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    return tuple(int(round(x + (y - x) * f)) for x, y in zip(a, b))  # type: ignore[return-value]


def write_heatmap(rows: List[Dict[str, Any]], path: str, title: str = "", metric: str = "val/loss") -> None:
    """PNG heatmap of the score (min over lr of the mean over seeds) over ``(tau_f, tau_b)``.

    Rows: ``tau_f``; columns: ``tau_b``; low values are bright (yellow), missing cells grey,
    the best cell has a white frame and cells with ``tau_f == tau_b`` a red frame joined by
    a red line (the diagonal: softmax ST). Needs Pillow (a torchvision dependency).
    """
    from PIL import Image, ImageDraw, ImageFont

    agg = aggregate(rows)
    cells: Dict[Tuple[float, float], float] = {}
    for (tf, tb, _), (v, _) in agg.items():
        cells[(tf, tb)] = min(v, cells.get((tf, tb), math.inf))
    tfs = sorted({float(r["tau_f"]) for r in rows if r["tau_f"] != ""})
    tbs = sorted({float(r["tau_b"]) for r in rows if r["tau_b"] != ""})
    if not tfs or not tbs:
        tfs, tbs = tfs or [0.0], tbs or [0.0]
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    cw, ch, left, top, right, bottom = 72, 40, 70, 50, 20, 50
    w, h = max(left + cw * len(tbs) + right, 520), top + ch * len(tfs) + bottom
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    vals = [v for v in cells.values() if math.isfinite(v)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    best = min(cells, key=cells.get) if cells else None
    d.text((left, 8), title or f"{metric} over (tau_f, tau_b)", fill="black", font=font)
    d.text((left, 26), f"bright = low {metric}; red = tau_f = tau_b; white frame = best", fill="dimgray", font=font)
    diag = []
    for i, tf in enumerate(tfs):  # tau_f rows, top to bottom ascending
        y0 = top + i * ch
        d.text((6, y0 + ch // 2 - 7), f"{tf:g}", fill="black", font=font)
        for j, tb in enumerate(tbs):
            x0 = left + j * cw
            v = cells.get((tf, tb))
            if v is None or not math.isfinite(v):
                fill, text = (200, 200, 200), "" if v is None else "nan"
            else:
                fill = _colour(1.0 - (v - lo) / (hi - lo) if hi > lo else 1.0)
                text = f"{v:.4g}"
            d.rectangle([x0, y0, x0 + cw - 1, y0 + ch - 1], fill=fill, outline="white")
            if text:
                lum = 0.3 * fill[0] + 0.59 * fill[1] + 0.11 * fill[2]
                d.text((x0 + 6, y0 + ch // 2 - 7), text, fill="black" if lum > 140 else "white", font=font)
            if math.isclose(tf, tb):
                d.rectangle([x0 + 1, y0 + 1, x0 + cw - 2, y0 + ch - 2], outline=(220, 0, 0), width=3)
                diag.append((x0 + cw // 2, y0 + ch // 2))
            if best == (tf, tb):
                d.rectangle([x0 + 5, y0 + 5, x0 + cw - 6, y0 + ch - 6], outline="white", width=2)
    if len(diag) > 1:
        d.line(diag, fill=(220, 0, 0), width=2)
    for j, tb in enumerate(tbs):
        d.text((left + j * cw + cw // 2 - 10, top + ch * len(tfs) + 6), f"{tb:g}", fill="black", font=font)
    d.text((left + cw * len(tbs) // 2 - 20, h - 20), "tau_b", fill="black", font=font)
    d.text((6, top - 16), "tau_f", fill="black", font=font)
    img.save(path, format="PNG")


def _write_outputs(cfg: SweepConfig, studies) -> Dict[str, Any]:
    rows = _rows(studies)
    csv_path = os.path.join(cfg.output_dir, "trials.csv")
    write_csv(rows, csv_path)
    best = choose(rows)
    out: Dict[str, Any] = {"csv": csv_path, "best": best, "protocol": cfg.protocol, "metric": cfg.metric,
                           "study_name": cfg.study_name, "storage": cfg.storage}
    if cfg.protocol != "single" or rows:
        png = os.path.join(cfg.output_dir, "heatmap.png")
        write_heatmap(rows, png, title=f"{cfg.study_name}: {cfg.metric}", metric=cfg.metric)
        out["heatmap"] = png
    with open(os.path.join(cfg.output_dir, "best.json"), "w") as fh:
        json.dump(out, fh, indent=2)
    return out


def run_sweep(cfg: SweepConfig, check: bool = True) -> Dict[str, Any]:
    """Run (or resume / join) the sweep described by ``cfg``; returns the paths and the best configuration."""
    import optuna

    os.makedirs(cfg.output_dir, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if check:
        check_config(cfg)
    counter = {"started": 0, "total": 0}
    if cfg.progress:
        _log(f"study {cfg.study_name!r} in {cfg.storage}; outputs in {cfg.output_dir}")
    studies = []
    if cfg.protocol == "grid":
        studies.append(_run_study(cfg, "grid", {"tau_f": list(cfg.tau_f), "tau_b": list(cfg.tau_b)}, counter))
    elif cfg.protocol == "single":
        studies.append(_run_study(cfg, "single", {"tau": list(cfg.tau)}, counter))
    else:
        s1 = _run_study(cfg, "tau_f", {"tau_f": list(cfg.tau_f), "tau_b": [float(cfg.fixed_tau_b)]}, counter)
        studies.append(s1)
        first = choose(_rows([s1]))
        if first is None:
            raise SweepError(_all_failed(_rows([s1])))
        tf = first["tau_f"]
        if cfg.progress:
            _log(f"phase 1 done: best tau_f={tf:g} at tau_b={cfg.fixed_tau_b:g}; now sweeping tau_b")
        rest = [v for v in cfg.tau_b if not math.isclose(v, cfg.fixed_tau_b)]
        if rest:
            studies.append(_run_study(cfg, f"tau_b@tau_f={tf:g}", {"tau_f": [tf], "tau_b": rest}, counter))
    out = _write_outputs(cfg, studies)
    if out["best"] is None:
        raise SweepError(_all_failed(_rows(studies)))
    if cfg.progress:
        b = out["best"]
        lr = f", lr={b['lr']:g}" if b["lr"] is not None else ""
        _log(f"best: tau_f={b['tau_f']:g}, tau_b={b['tau_b']:g}{lr}: mean {cfg.metric} {b['value']:.5g} "
             f"over {b['num_trials']} trial(s); wrote {out['csv']}" + (f" and {out['heatmap']}" if "heatmap" in out else ""))
    return out


def _all_failed(rows: List[Dict[str, Any]]) -> str:
    errors = [r["error"] for r in rows if r["error"]]
    first = errors[0] if errors else "no trial completed"
    return (
        f"every trial of the sweep failed; the first error was: {first}. Each trial's traceback is in "
        f"its folder (error.txt); fix the config or the overrides and run the sweep again with a new "
        f"`--study_name` (or delete the output folder), since failed grid points are not retried."
    )


# --------------------------------------------------------------------------------- #
# command line
# --------------------------------------------------------------------------------- #
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lightning-discrete sweep",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1].split("Example::")[0].strip()
        + "\n\nAny other argument (e.g. --trainer.max_epochs=10, --data.data_dir=PATH) is passed to every trial.",
    )
    p.add_argument("--config", action="append", required=True, help="LightningCLI config (repeatable; e.g. a recipe)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="grid")
    p.add_argument("--tau_f", type=float, nargs="+", default=list(DEFAULT_TAUS), help="forward temperatures")
    p.add_argument("--tau_b", type=float, nargs="+", default=list(DEFAULT_TAUS), help="backward temperatures")
    p.add_argument("--tau", type=float, nargs="+", default=list(DEFAULT_TAUS), help="temperatures (protocol single)")
    p.add_argument("--fixed_tau_b", type=float, default=1.0, help="tau_b of the first sequential phase (default 1)")
    p.add_argument("--lr", type=float, nargs="+", default=None, help="learning rates (sets --model.optimizer.lr)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (sets --seed_everything)")
    p.add_argument("--metric", default="val/loss", help="logged metric to minimise (default val/loss)")
    p.add_argument("--output_dir", default=None, help="default sweeps/<study_name>")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///<output_dir>/sweep.db)")
    p.add_argument("--study_name", default=None, help="default <config stems>-<protocol>")
    p.add_argument("--wait_timeout", type=float, default=24 * 3600.0,
                   help="seconds to wait for other workers' running trials (distributed sweeps)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``lightning-discrete sweep ...``; unknown ``--trainer.*``/``--model.*``/``--data.*`` args go to every trial."""
    p = build_parser()
    args, extra = p.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    stray = [a for a in extra if a.startswith("-") and not re.match(r"--(trainer|model|data|seed_everything)\b", a)]
    if stray:
        p.error(f"unrecognised arguments {stray}: trial overrides must start with --trainer., --model. or --data.")
    try:
        cfg = SweepConfig(
            configs=args.config, protocol=args.protocol, tau_f=args.tau_f, tau_b=args.tau_b, tau=args.tau,
            fixed_tau_b=args.fixed_tau_b, lr=args.lr, seeds=args.seeds, metric=args.metric,
            output_dir=args.output_dir, storage=args.storage, study_name=args.study_name, overrides=extra,
            wait_timeout=args.wait_timeout, progress=not args.quiet,
        )
    except ValueError as err:
        p.error(str(err))
    return run_sweep(cfg)
