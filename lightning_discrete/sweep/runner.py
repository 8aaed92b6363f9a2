"""Running a sweep: one LightningCLI ``fit`` per trial, Optuna grid studies, the outputs.

Progress goes to the module logger (``logging.getLogger(__name__)``, INFO: the start of
the sweep, each trial as it starts and when it finishes with its score and the best so
far, the phases, the result); the command line shows it on stderr, a Python caller
configures ``logging`` as it likes.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
import math
import os
import random
import socket
import threading
import time
import traceback
import warnings
from typing import Any, Dict, Iterator, List, Optional, Tuple

from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from ..callbacks import TemperatureScheduler
from ..trainer_cli import cli_main
from .config import SweepConfig, SweepError
from .plots import require_matplotlib, write_heatmap
from .results import all_failed_message, choose, trial_rows, write_csv

__all__ = ["MetricTracker", "check_config", "open_storage", "public_url", "run_sweep", "run_trial", "trial_args"]

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


@contextlib.contextmanager
def _no_experimental_warnings() -> Iterator[None]:
    """Hide Optuna's ``ExperimentalWarning`` (its heartbeats are marked experimental)."""
    optuna = _optuna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def open_storage(cfg: SweepConfig) -> Any:
    """The sweep's Optuna ``RDBStorage``: heartbeats on, a trial whose worker died retried.

    A worker records a heartbeat of its running trial every ``cfg.heartbeat_interval``
    seconds; a RUNNING trial without one for ``cfg.grace_period`` seconds is marked FAIL
    by whichever worker looks next, and queued again (at most ``cfg.max_retry`` times).

    Args:
        cfg: the sweep (``storage``, ``heartbeat_interval``, ``grace_period``, ``max_retry``).

    Returns:
        the storage.

    Raises:
        SweepError: the URL's database driver is not installed, or the database cannot be
            reached; the message names the URL (without its password) and what to do.

    Examples:
        >>> import tempfile
        >>> storage = open_storage(SweepConfig(configs=["a.yaml"], output_dir=tempfile.mkdtemp()))
        >>> storage.get_heartbeat_interval()
        60
    """
    optuna = _optuna()
    url = public_url(cfg.storage)
    for attempt in itertools.count(1):
        try:
            with _no_experimental_warnings():
                return optuna.storages.RDBStorage(
                    cfg.storage,
                    heartbeat_interval=cfg.heartbeat_interval,
                    grace_period=cfg.grace_period,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=cfg.max_retry
                    ),
                )
        except ImportError as err:
            raise SweepError(
                f"the storage {url} needs a database driver that is not installed ({err}); for postgresql:// "
                f"URLs: `pip install lightning_discrete[sweep-postgres]` (SQLAlchemy 2 with psycopg 3)"
            ) from err
        except Exception as err:  # sqlalchemy errors: bad URL, server down, wrong password
            # workers that start together on a new database race to create Optuna's tables; the
            # losers find them made on the next attempt
            if attempt < _OPEN_ATTEMPTS and type(err).__name__ in ("IntegrityError", "ProgrammingError"):
                time.sleep(0.5 + random.random())
                continue
            raise SweepError(f"cannot open the sweep storage {url}: {type(err).__name__}: {err}") from err


_OPEN_ATTEMPTS = 5


def public_url(url: str) -> str:
    """A storage URL with its password masked, for logs and ``best.json``.

    Args:
        url: an SQLAlchemy database URL.

    Returns:
        the URL, ``***`` in place of a password.

    Examples:
        >>> public_url("postgresql://me:secret@db.example:5432/sweeps")
        'postgresql://me:***@db.example:5432/sweeps'
        >>> public_url("sqlite:///sweeps/sweep.db")
        'sqlite:///sweeps/sweep.db'
    """
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: shown as given
        return url


class _Heartbeat:
    """Records a heartbeat of one trial now and then every ``interval`` seconds, in a thread."""

    def __init__(self, storage: Any, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"sweep-heartbeat-{trial_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as err:  # a lost connection: the next beat tries again
                log.warning("could not record the heartbeat of trial id %d: %s", self.trial_id, err)

    def __enter__(self) -> "_Heartbeat":
        self.storage.record_heartbeat(self.trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _cell(params: Dict[str, Any], keys: List[str]) -> Optional[Tuple[Any, ...]]:
    if not all(k in params for k in keys):
        return None
    return tuple(params[k] for k in keys)


def _trial_cell(t: Any, keys: List[str]) -> Optional[Tuple[Any, ...]]:
    """The grid cell of a trial: the values it was queued with and those it has set (a running
    trial may have set some of them only)."""
    return _cell({**t.system_attrs.get("fixed_params", {}), **t.params}, keys)


class _Study:
    """One grid of a sweep in the storage: cells queued once, claimed one at a time by the workers.

    The grid is queued as WAITING trials (Optuna's ``enqueue_trial``) by the worker that
    creates the study; every worker then claims WAITING trials through the storage's atomic
    WAITING -> RUNNING change, so no two workers run the same trial. A claimed trial that
    finds its cell already complete or claimed under a smaller number (two workers queued
    the same new cell at once) is PRUNED without running.
    """

    def __init__(self, cfg: SweepConfig, storage: Any, phase: str, space: Dict[str, List[Any]]) -> None:
        optuna = _optuna()
        self.cfg, self.storage, self.space = cfg, storage, space
        self.keys = sorted(space)
        self.label = phase.split("@")[0]
        self.cells = [dict(zip(self.keys, values)) for values in itertools.product(*(space[k] for k in self.keys))]
        name = f"{cfg.study_name}/{phase}"
        sampler = optuna.samplers.RandomSampler(seed=0)  # never samples: every trial is queued with its values
        try:
            self.study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="minimize")
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            self.study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
            created = False
        self.study_id = storage.get_study_id_from_name(name)
        self._queue(created)

    def trials(self, *states: Any) -> List[Any]:
        """The study's trials of the grid's cells (in the given states; all without)."""
        found = self.study.get_trials(deepcopy=False, states=states or None)
        cells = {_cell(c, self.keys) for c in self.cells}
        return [t for t in found if _trial_cell(t, self.keys) in cells]

    def _queue(self, created: bool) -> None:
        """Queue the cells that have no trial yet. The creator queues the whole grid and marks it
        queued; the others wait for that mark, then queue only cells added since (a larger grid)."""
        if not created:
            t0 = time.time()
            while "queued" not in self.study.user_attrs and time.time() - t0 < _QUEUE_WAIT_S:
                if any(t.state.name != "WAITING" for t in self.study.get_trials(deepcopy=False)):
                    break  # a study of an older version (no mark): queue what is missing
                time.sleep(0.2)
        have = {_trial_cell(t, self.keys) for t in self.study.get_trials(deepcopy=False)}
        for c in self.cells:
            if _cell(c, self.keys) not in have:
                self.study.enqueue_trial(c)
        if "queued" not in self.study.user_attrs:
            self.study.set_user_attr("queued", len(self.cells))

    def claim(self) -> Optional[Any]:
        """Take a WAITING trial of the grid (RUNNING from now on, ours), or None when there is none."""
        optuna = _optuna()
        for t in self.trials(optuna.trial.TrialState.WAITING):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, t.number)
            try:
                if not self.storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING):
                    continue  # another worker took it
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            return trial_id
        return None

    @property
    def grace_period(self) -> int:
        """Seconds without heartbeat after which a RUNNING trial counts as dead."""
        return self.cfg.grace_period or 2 * self.cfg.heartbeat_interval

    def unsettled(self) -> Tuple[List[Any], List[Any]]:
        """The WAITING and RUNNING trials of the grid, and its orphans: trials failed for lack of
        heartbeat (no error recorded) whose retry is due (``max_retry``) but not queued, in cells
        without a complete trial. A cell is settled when it has neither."""
        trials = self.trials()
        retried = {t.system_attrs["retry_history"][-1] for t in trials if t.system_attrs.get("retry_history")}
        complete = {_trial_cell(t, self.keys) for t in trials if t.state.name == "COMPLETE"}
        live = [t for t in trials if t.state.name in ("WAITING", "RUNNING")]
        orphans = [
            t for t in trials
            if t.state.name == "FAIL" and "error" not in t.user_attrs and t.number not in retried
            and len(t.system_attrs.get("retry_history", [])) < self.cfg.max_retry
            and _trial_cell(t, self.keys) not in complete
        ]
        return live, orphans

    def duplicate_of(self, number: int, cell: Tuple[Any, ...]) -> Optional[int]:
        """The number of another trial of ``cell`` that wins over trial ``number``, if any."""
        live = ("WAITING", "RUNNING")
        for t in self.trials():
            if t.number != number and _trial_cell(t, self.keys) == cell:
                if t.state.name == "COMPLETE" or (t.state.name in live and t.number < number):
                    return t.number
        return None


_QUEUE_WAIT_S = 30.0  # how long a worker waits for the study's creator to queue the grid


def _worker() -> str:
    """This worker's name in the storage and in ``trials.csv``: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _finish(trial: Any, attrs: Dict[str, Any], **tell: Any) -> bool:
    """Set the trial's user attributes and tell its result; False when another worker had
    already failed it (no heartbeat within the grace period: its cell was queued again)."""
    optuna = _optuna()
    try:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        told = trial.study.tell(trial, skip_if_finished=True, **tell)
        if told.state == tell.get("state", optuna.trial.TrialState.COMPLETE):
            return True
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
    log.warning("trial #%d was marked failed by another worker while it ran (no heartbeat for the grace period: "
                "raise `--grace_period`); its result is dropped and its cell queued again", trial.number)
    return False


def _run_claimed(grid: _Study, trial_id: int) -> None:
    """Run one claimed trial under a heartbeat and tell the storage its result."""
    optuna = _optuna()
    cfg, study = grid.cfg, grid.study
    with _Heartbeat(grid.storage, trial_id, cfg.heartbeat_interval):
        trial = optuna.trial.Trial(study, trial_id)
        params = {k: trial.suggest_categorical(k, grid.space[k]) for k in grid.keys}
        other = grid.duplicate_of(trial.number, _cell(params, grid.keys))
        if other is not None:
            _finish(trial, {"error": f"duplicate of trial {other}, not run"}, state=optuna.trial.TrialState.PRUNED)
            return
        trial_dir = os.path.join(cfg.output_dir, "trials", f"{grid.label}-{trial.number:04d}")
        for key, value in (("dir", trial_dir), ("phase", grid.label), ("worker", _worker())):
            trial.set_user_attr(key, value)
        name = f"{grid.label} trial #{trial.number}"
        log.info("%s (%d/%d cells done): %s", name, len(grid.trials(optuna.trial.TrialState.COMPLETE)),
                 len(grid.cells), " ".join(f"{k}={v}" for k, v in params.items()))
        t0 = time.time()
        try:
            best, last = run_trial(cfg, params, trial_dir)
            if math.isnan(best) or math.isinf(best):
                raise FloatingPointError(f"{cfg.metric} was {best}")
        except Exception as err:
            log.warning("%s failed after %.0fs: %s: %s", name, time.time() - t0, type(err).__name__, err)
            with open(os.path.join(trial_dir, "error.txt"), "w") as fh:
                fh.write(traceback.format_exc())
            _finish(trial, {"error": f"{type(err).__name__}: {err}"}, state=optuna.trial.TrialState.FAIL)
            return
        # Ctrl-C, SIGTERM: the trial stays RUNNING without heartbeat, like one of a dead worker,
        # and is run again after the grace period
        if _finish(trial, {"last": last}, values=best):
            log.info("%s done (%.0fs): %s best %.5g, last %.5g; best trial so far %.5g",
                     name, time.time() - t0, cfg.metric, best, last, study.best_value)


def _run_study(cfg: SweepConfig, storage: Any, phase: str, space: Dict[str, List[Any]]) -> Any:
    """Work on one grid until every cell is settled, then return its Optuna study.

    Each pass fails the trials of workers that stopped sending heartbeats (their cells are
    queued again), claims a waiting trial and runs it; with nothing to claim, it waits for
    the trials other workers run, up to ``cfg.wait_timeout`` seconds without progress.
    """
    optuna = _optuna()
    grid = _Study(cfg, storage, phase, _with_lr_and_seeds(cfg, space))
    idle_since: Optional[float] = None
    orphans_seen: Dict[int, float] = {}
    while True:
        with _no_experimental_warnings():
            optuna.storages.fail_stale_trials(grid.study)
        live, orphans = grid.unsettled()
        if not live and not orphans:
            return grid.study
        trial_id = grid.claim()
        if trial_id is not None:
            _run_claimed(grid, trial_id)
            idle_since = None
            continue
        # a trial failed for lack of heartbeat whose retry is not queued: the worker that failed
        # it is queuing it now, or died in between; after a grace period, queue it here
        for t in orphans:
            if time.time() - orphans_seen.setdefault(t.number, time.time()) > grid.grace_period:
                with _no_experimental_warnings():
                    storage.get_heartbeat_stale_trial_callback()(grid.study, copy.deepcopy(t))
        if idle_since is None:
            idle_since = time.time()
            log.info("waiting for %d trial(s) run by other workers ...", len(live))
        elif time.time() - idle_since > cfg.wait_timeout:
            raise SweepError(
                f"{len(live)} trial(s) of study {grid.study.study_name!r} still RUNNING after "
                f"{cfg.wait_timeout:.0f}s; a trial whose worker died is failed and queued again "
                f"{grid.grace_period}s after its last heartbeat, so another worker is still running "
                f"these: wait for it or raise `--wait_timeout`"
            )
        time.sleep(min(5.0, cfg.heartbeat_interval))


def _replace(path: str, write: Any) -> str:
    """``write(tmp)`` then rename onto ``path``: workers sharing an output folder never see half a file."""
    stem, ext = os.path.splitext(path)
    tmp = f"{stem}.{_worker().replace(':', '-')}.tmp{ext}"
    write(tmp)
    os.replace(tmp, path)
    return path


def _write_outputs(cfg: SweepConfig, studies: List[Any]) -> Dict[str, Any]:
    rows = trial_rows(studies)
    out: Dict[str, Any] = {
        "csv": _replace(os.path.join(cfg.output_dir, "trials.csv"), lambda p: write_csv(rows, p)),
        "best": choose(rows),
        "protocol": cfg.protocol,
        "metric": cfg.metric,
        "study_name": cfg.study_name,
        "storage": public_url(cfg.storage),
    }
    if rows:
        title = f"{cfg.study_name}: {cfg.metric}"
        out["heatmap"] = _replace(os.path.join(cfg.output_dir, "heatmap.png"),
                                  lambda p: write_heatmap(rows, p, title=title, metric=cfg.metric))

    def dump(p: str) -> None:
        with open(p, "w") as fh:
            json.dump(out, fh, indent=2)

    _replace(os.path.join(cfg.output_dir, "best.json"), dump)
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
    storage = open_storage(cfg)
    log.info("study %r in %s; outputs in %s; worker %s", cfg.study_name, public_url(cfg.storage), cfg.output_dir,
             _worker())
    studies = []
    if cfg.protocol == "grid":
        studies.append(_run_study(cfg, storage, "grid", {"tau_f": list(cfg.tau_f), "tau_b": list(cfg.tau_b)}))
    elif cfg.protocol == "single":
        studies.append(_run_study(cfg, storage, "single", {"tau": list(cfg.tau)}))
    else:
        first_phase = _run_study(cfg, storage, "tau_f", {"tau_f": list(cfg.tau_f), "tau_b": [float(cfg.fixed_tau_b)]})
        studies.append(first_phase)
        first = choose(trial_rows([first_phase]))
        if first is None:
            raise SweepError(all_failed_message(trial_rows([first_phase])))
        tf = first["tau_f"]
        log.info("phase 1 done: best tau_f=%g at tau_b=%g; now sweeping tau_b", tf, cfg.fixed_tau_b)
        rest = [v for v in cfg.tau_b if not math.isclose(v, cfg.fixed_tau_b)]
        if rest:
            studies.append(_run_study(cfg, storage, f"tau_b@tau_f={tf:g}", {"tau_f": [tf], "tau_b": rest}))
    out = _write_outputs(cfg, studies)
    best = out["best"]
    if best is None:
        raise SweepError(all_failed_message(trial_rows(studies)))
    lr = f", lr={best['lr']:g}" if best["lr"] is not None else ""
    log.info("best: tau_f=%g, tau_b=%g%s: mean %s %.5g over %d trial(s); wrote %s and %s", best["tau_f"],
             best["tau_b"], lr, cfg.metric, best["value"], best["num_trials"], out["csv"], out["heatmap"])
    return out
