"""Running a sweep: one LightningCLI ``fit`` per trial, Optuna grid studies, the outputs.

Progress goes to the module logger (``logging.getLogger(__name__)``, INFO: the start of
the sweep, each trial as it starts and when it finishes with its score and the best so
far, the phases, the result); the command line shows it on stderr, a Python caller
configures ``logging`` as it likes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from ..callbacks import TemperatureScheduler
from ..trainer_cli import cli_main
from .config import SweepConfig, SweepError
from .plots import require_matplotlib, write_heatmap
from .results import all_failed_message, choose, trial_rows, write_csv

__all__ = ["MetricTracker", "check_config", "run_sweep", "run_trial", "trial_args"]

log = logging.getLogger(__name__)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as err:
        raise SweepError("sweeps need Optuna: `pip install lightning_discrete[sweep]`") from err
    return optuna


class MetricTracker(Callback):
    """Records the lowest and the last value of a logged metric after each validation.

    Args:
        metric: the name of the logged metric (``trainer.callback_metrics`` key).

    Examples:
        >>> tracker = MetricTracker("val/loss")
        >>> tracker.best, tracker.history
        (inf, [])
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.best = math.inf
        self.last = math.nan
        self.history: List[float] = []

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Read the metric (once per validation run, not per step).

        Args:
            trainer: the trainer.
            pl_module: the model.
        """
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
    """The LightningCLI arguments of one trial.

    Args:
        cfg: the sweep.
        params: the trial's ``tau_f`` and ``tau_b`` (or ``tau``), optionally ``lr`` and ``seed``.
        trial_dir: the trial's run folder (``--trainer.default_root_dir``).
        subcommand: e.g. ``"fit"``; None for ``cli_main(..., run=False)``.

    Returns:
        the arguments: the config files, the sweep's overrides, then the trial's values.

    Examples:
        >>> cfg = SweepConfig(configs=["recipe.yaml"], overrides=["--trainer.max_epochs=2"])
        >>> trial_args(cfg, {"tau_f": 0.1, "tau_b": 0.5, "seed": 1}, "runs/t0")
        ['--config', 'recipe.yaml', '--trainer.max_epochs=2', '--model.tau=null', '--model.tau_f=0.1', \
'--model.tau_b=0.5', '--seed_everything=1', '--trainer.default_root_dir=runs/t0']
    """
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
    """Train one configuration of the sweep.

    Args:
        cfg: the sweep.
        params: the trial's values (see :func:`trial_args`).
        trial_dir: the trial's run folder.

    Returns:
        ``(lowest, last)`` value of ``cfg.metric`` over the run.

    Raises:
        RuntimeError: the run never logged ``cfg.metric``.

    Examples:
        A LightningCLI config may be a file or a YAML string; two training steps on the digits:

        >>> import os, tempfile
        >>> tiny = ("{model: {class_path: StochasticBinaryNetwork, init_args: {input_dim: 64, hidden_dims: [4]}}, "
        ...         "data: {class_path: DigitsDataModule, init_args: {flatten: true, batch_size: 32}}, "
        ...         "trainer: {max_epochs: 1, limit_train_batches: 2, limit_val_batches: 2, logger: false, "
        ...         "enable_checkpointing: false, enable_progress_bar: false, enable_model_summary: false}}")
        >>> cfg = SweepConfig(configs=[tiny], study_name="tiny", output_dir=tempfile.mkdtemp())
        >>> best, last = run_trial(cfg, {"tau_f": 0.5, "tau_b": 1.0}, os.path.join(cfg.output_dir, "t0"))
        >>> math.isfinite(best) and best <= last
        True
    """
    os.makedirs(trial_dir, exist_ok=True)
    cli = cli_main(trial_args(cfg, params, trial_dir), run=False)
    tracker = MetricTracker(cfg.metric)
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
    """Parse and instantiate the trial config once and load its data, before any trial.

    A bad config or missing data then stops the sweep at once.

    Args:
        cfg: the sweep.

    Raises:
        ConfigError: a value of the config is invalid.
        DataError: the data is missing or corrupt.

    Examples:
        >>> import tempfile
        >>> bad = ("{model: {class_path: StochasticBinaryNetwork, init_args: {input_dim: 64, estimator: nope}}, "
        ...        "data: DigitsDataModule}")
        >>> check_config(SweepConfig(configs=[bad], study_name="bad", output_dir=tempfile.mkdtemp()))
        Traceback (most recent call last):
        ...
        lightning_discrete.trainer_cli.ConfigError: Invalid configuration: unknown `estimator` 'nope'; ...
    """
    params: Dict[str, Any] = {"tau": cfg.tau[0]} if cfg.protocol == "single" else {
        "tau_f": cfg.tau_f[0], "tau_b": cfg.tau_b[0]
    }
    if cfg.lr:
        params["lr"] = cfg.lr[0]
    cli = cli_main(trial_args(cfg, params, os.path.join(cfg.output_dir, "check")), run=False)
    swept = {"tau_f", "tau_b", "tau"} if cfg.protocol == "single" else {"tau_f", "tau_b"}
    for cb in cli.trainer.callbacks:
        scheduled = [n for n in ("tau_f", "tau_b", "tau") if getattr(cb, n, None) is not None] \
            if isinstance(cb, TemperatureScheduler) else []
        overridden = sorted(swept & ({"tau_f", "tau_b"} if "tau" in scheduled else set(scheduled)))
        if overridden:
            log.warning(
                "the config's TemperatureScheduler sets %s during training, so the swept values are used "
                "only until its first update and every trial may end at the same temperature; remove the "
                "scheduler from the sweep's config (or schedule only the temperature you do not sweep)",
                " and ".join(overridden),
            )
    dm = cli.datamodule
    if dm is not None:
        dm.prepare_data()
        dm.setup("fit")


def _with_lr_and_seeds(cfg: SweepConfig, space: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
    space = dict(space)
    if cfg.lr:
        space["lr"] = sorted(set(float(v) for v in cfg.lr))
    if cfg.seeds:
        space["seed"] = sorted(set(int(v) for v in cfg.seeds))
    return space


def _missing(study: Any, space: Dict[str, List[Any]]) -> int:
    """Grid points of ``space`` the study has no complete trial for."""
    optuna = _optuna()
    keys = sorted(space)
    done = set()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if all(k in t.params and t.params[k] in space[k] for k in keys):
            done.add(tuple(t.params[k] for k in keys))
    return math.prod(len(v) for v in space.values()) - len(done)


def _run_study(cfg: SweepConfig, phase: str, space: Dict[str, List[Any]], counter: Dict[str, int]) -> Any:
    optuna = _optuna()
    space = _with_lr_and_seeds(cfg, space)
    label = phase.split("@")[0]
    study = optuna.create_study(
        study_name=f"{cfg.study_name}/{phase}",
        storage=cfg.storage,
        sampler=optuna.samplers.GridSampler(space, seed=0),
        direction="minimize",
        load_if_exists=True,
    )
    missing = _missing(study, space)
    if missing:
        counter["total"] += missing

        def objective(trial: Any) -> float:
            params = {k: trial.suggest_categorical(k, v) for k, v in space.items()}
            trial_dir = os.path.join(cfg.output_dir, "trials", f"{label}-{trial.number:04d}")
            trial.set_user_attr("dir", trial_dir)
            trial.set_user_attr("phase", label)
            counter["started"] += 1
            name = f"{label} trial {counter['started']}/{counter['total']}"
            desc = " ".join(f"{k}={v}" for k, v in params.items())
            log.info("%s: %s", name, desc)
            t0 = time.time()
            try:
                best, last = run_trial(cfg, params, trial_dir)
            except Exception as err:
                log.warning("%s failed after %.0fs: %s: %s", name, time.time() - t0, type(err).__name__, err)
                trial.set_user_attr("error", f"{type(err).__name__}: {err}")
                with open(os.path.join(trial_dir, "error.txt"), "w") as fh:
                    fh.write(traceback.format_exc())
                raise
            trial.set_user_attr("last", last)
            try:
                so_far = min(study.best_value, best)
            except ValueError:  # no complete trial yet
                so_far = best
            log.info("%s done (%.0fs): %s best %.5g, last %.5g; best trial so far %.5g",
                     name, time.time() - t0, cfg.metric, best, last, so_far)
            if math.isnan(best) or math.isinf(best):
                raise FloatingPointError(f"{cfg.metric} was {best}")
            return best

        study.optimize(objective, n_trials=None, catch=(Exception,), gc_after_trial=True)
    _wait_for(study, cfg)
    return study


def _wait_for(study: Any, cfg: SweepConfig) -> None:
    """Wait for trials other workers still run (a distributed sweep), up to ``wait_timeout``."""
    optuna = _optuna()
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
            log.info("waiting for %d trial(s) run by other workers ...", len(running))
            announced = True
        time.sleep(5.0)


def _write_outputs(cfg: SweepConfig, studies: List[Any]) -> Dict[str, Any]:
    rows = trial_rows(studies)
    out: Dict[str, Any] = {
        "csv": write_csv(rows, os.path.join(cfg.output_dir, "trials.csv")),
        "best": choose(rows),
        "protocol": cfg.protocol,
        "metric": cfg.metric,
        "study_name": cfg.study_name,
        "storage": cfg.storage,
    }
    if rows:
        out["heatmap"] = write_heatmap(rows, os.path.join(cfg.output_dir, "heatmap.png"),
                                       title=f"{cfg.study_name}: {cfg.metric}", metric=cfg.metric)
    with open(os.path.join(cfg.output_dir, "best.json"), "w") as fh:
        json.dump(out, fh, indent=2)
    return out


def run_sweep(cfg: SweepConfig, check: bool = True) -> Dict[str, Any]:
    """Run (or resume, or join) the sweep described by ``cfg``.

    Writes ``trials.csv``, ``heatmap.png`` and ``best.json`` into ``cfg.output_dir``.

    Args:
        cfg: the sweep.
        check: instantiate the trial config and load its data first (:func:`check_config`).

    Returns:
        ``{"csv", "heatmap", "best", "protocol", "metric", "study_name", "storage"}``;
        ``best`` is :func:`~lightning_discrete.sweep.results.choose`'s choice.

    Raises:
        SweepError: Optuna or matplotlib is missing, every trial failed, or other workers'
            trials did not finish within ``cfg.wait_timeout``.

    Examples:
        A one-point grid, a two-step trial on the digits (the config may be a file or a YAML string):

        >>> import tempfile
        >>> tiny = ("{model: {class_path: StochasticBinaryNetwork, init_args: {input_dim: 64, hidden_dims: [4]}}, "
        ...         "data: {class_path: DigitsDataModule, init_args: {flatten: true, batch_size: 32}}, "
        ...         "trainer: {max_epochs: 1, limit_train_batches: 2, limit_val_batches: 2, logger: false, "
        ...         "enable_checkpointing: false, enable_progress_bar: false, enable_model_summary: false}}")
        >>> cfg = SweepConfig(configs=[tiny], study_name="tiny", output_dir=tempfile.mkdtemp(),
        ...                   tau_f=[0.5], tau_b=[1.0])
        >>> out = run_sweep(cfg)
        >>> out["best"]["tau_f"], out["best"]["tau_b"], sorted(os.listdir(cfg.output_dir))
        (0.5, 1.0, ['best.json', 'heatmap.png', 'sweep.db', 'trials', 'trials.csv'])
    """
    optuna = _optuna()
    try:
        require_matplotlib()
    except ImportError as err:
        raise SweepError(str(err)) from err
    os.makedirs(cfg.output_dir, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if check:
        check_config(cfg)
    counter = {"started": 0, "total": 0}
    log.info("study %r in %s; outputs in %s", cfg.study_name, cfg.storage, cfg.output_dir)
    studies = []
    if cfg.protocol == "grid":
        studies.append(_run_study(cfg, "grid", {"tau_f": list(cfg.tau_f), "tau_b": list(cfg.tau_b)}, counter))
    elif cfg.protocol == "single":
        studies.append(_run_study(cfg, "single", {"tau": list(cfg.tau)}, counter))
    else:
        first_phase = _run_study(cfg, "tau_f", {"tau_f": list(cfg.tau_f), "tau_b": [float(cfg.fixed_tau_b)]}, counter)
        studies.append(first_phase)
        first = choose(trial_rows([first_phase]))
        if first is None:
            raise SweepError(all_failed_message(trial_rows([first_phase])))
        tf = first["tau_f"]
        log.info("phase 1 done: best tau_f=%g at tau_b=%g; now sweeping tau_b", tf, cfg.fixed_tau_b)
        rest = [v for v in cfg.tau_b if not math.isclose(v, cfg.fixed_tau_b)]
        if rest:
            studies.append(_run_study(cfg, f"tau_b@tau_f={tf:g}", {"tau_f": [tf], "tau_b": rest}, counter))
    out = _write_outputs(cfg, studies)
    best = out["best"]
    if best is None:
        raise SweepError(all_failed_message(trial_rows(studies)))
    lr = f", lr={best['lr']:g}" if best["lr"] is not None else ""
    log.info("best: tau_f=%g, tau_b=%g%s: mean %s %.5g over %d trial(s); wrote %s and %s", best["tau_f"],
             best["tau_b"], lr, cfg.metric, best["value"], best["num_trials"], out["csv"], out["heatmap"])
    return out
