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

Built on Optuna's ``GridSampler``: the trials live in an Optuna storage, a local SQLite
file ``OUTPUT_DIR/sweep.db`` by default. Start the same command on several machines with
one ``--storage`` URL (e.g. ``postgresql://...`` or an SQLite file on a shared disk) to
spread the grid over them; re-running a command resumes its study and only runs the
missing points. Outputs: ``OUTPUT_DIR/trials.csv`` (every trial), ``heatmap.png``
(score over ``(tau_f, tau_b)``, the diagonal ``tau_f = tau_b`` -- softmax ST -- marked)
and ``best.json``. Progress is logged (``logging``) by :mod:`lightning_discrete.sweep.runner`.

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
