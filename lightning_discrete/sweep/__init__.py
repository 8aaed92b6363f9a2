"""Temperature sweeps (``lightning-discrete sweep``), the two protocols of the Decoupled ST paper.

* ``grid`` -- every ``(tau_f, tau_b)`` pair of the two value lists.
* ``sequential`` -- ``tau_f`` over its list at ``tau_b = fixed_tau_b``, then ``tau_b`` over
  its list at the best ``tau_f``.
* ``single`` -- one temperature ``tau`` over its list (baselines: softmax ST, ST
  Gumbel-Softmax).

Each point may further be crossed with learning rates (``--lr``) and seeds (``--seeds``).
Every trial runs the same LightningCLI ``fit`` config (the ``--config`` files plus any
extra ``--trainer.*`` / ``--model.*`` / ``--data.*`` overrides) with the temperatures,
learning rate and seed set, in its own folder ``OUTPUT_DIR/trials/<phase>-NNNN``. A trial's
score is its lowest ``val/loss`` over the run (``--metric``); a configuration's score is
the mean over seeds; the chosen configuration has the lowest score.

The trials live in an Optuna storage, a local SQLite file ``OUTPUT_DIR/sweep.db`` by
default. Start the same command on several machines with one ``--storage`` URL (e.g.
``postgresql://...``, which needs the ``sweep-postgres`` extra: SQLAlchemy 2 with psycopg 3)
to spread the grid over them: the worker that creates the study queues every cell once
(Optuna's ``enqueue_trial``), each worker claims one queued cell at a time through the
storage's atomic WAITING -> RUNNING change, so no cell runs twice; a running trial records a
heartbeat every ``--heartbeat_interval`` seconds, and one without a heartbeat for
``--grace_period`` seconds (its worker died) is marked FAIL and its cell queued again (Optuna's
``RetryHeartbeatStaleTrialCallback``, at most ``--max_retry`` times). Every worker waits for
the others' trials, then writes the outputs of the whole study. Re-running a command resumes
its study and only runs the missing cells. Outputs: ``OUTPUT_DIR/trials.csv`` (every trial,
with the worker that ran it), ``heatmap.png`` (score over ``(tau_f, tau_b)``, the diagonal
``tau_f = tau_b`` -- softmax ST -- marked) and ``best.json``. Progress is logged
(``logging``) by :mod:`lightning_discrete.sweep.runner`.

Modules: :mod:`~lightning_discrete.sweep.config` (what to sweep),
:mod:`~lightning_discrete.sweep.runner` (trials and studies),
:mod:`~lightning_discrete.sweep.results` (rows, means over seeds, the choice, the CSV),
:mod:`~lightning_discrete.sweep.plots` (the heatmap) and
:mod:`~lightning_discrete.sweep.cli` (the command line). See ``docs/design.md``.

Example::

    lightning-discrete sweep --config recipes/binary_fashion_mnist.yaml --protocol grid \\
        --tau_f 0.1 0.3 1 --tau_b 0.3 0.7 1 --seeds 0 1 --trainer.max_epochs=10
"""

from .cli import main
from .config import DEFAULT_TAUS, PROTOCOLS, SweepConfig, SweepError
from .plots import heatmap_figure, write_heatmap
from .results import COLUMNS, LOST_WORKER, aggregate, choose, trial_rows, write_csv
from .runner import MetricTracker, check_config, open_storage, public_url, run_sweep, run_trial, trial_args

__all__ = [
    "COLUMNS",
    "DEFAULT_TAUS",
    "LOST_WORKER",
    "PROTOCOLS",
    "MetricTracker",
    "SweepConfig",
    "SweepError",
    "aggregate",
    "check_config",
    "choose",
    "heatmap_figure",
    "main",
    "open_storage",
    "public_url",
    "run_sweep",
    "run_trial",
    "trial_args",
    "trial_rows",
    "write_csv",
    "write_heatmap",
]
