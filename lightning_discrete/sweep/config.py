"""What a temperature sweep runs: :class:`SweepConfig`, validated when it is built.

The command line ``lightning-discrete sweep`` is generated from this dataclass
(:mod:`lightning_discrete.sweep.cli`), so its defaults and help live here only.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import List, Literal, Optional, Sequence, get_args

__all__ = ["DEFAULT_TAUS", "PROTOCOLS", "SweepConfig", "SweepError"]

DEFAULT_TAUS = (0.1, 0.3, 0.5, 0.7, 1.0, 2.0)
"""The temperatures swept when none are given (the paper's grid)."""

Protocol = Literal["grid", "sequential", "single"]
PROTOCOLS = get_args(Protocol)
"""``grid``: every (tau_f, tau_b) pair; ``sequential``: tau_f at a fixed tau_b, then tau_b at the
best tau_f; ``single``: one temperature ``tau`` (single-temperature baselines)."""


class SweepError(RuntimeError):
    """The sweep could not produce a result; the message says why and what to do.

    Examples:
        >>> isinstance(SweepError("every trial failed"), RuntimeError)
        True
    """


@dataclass
class SweepConfig:
    """A temperature sweep: the protocol, the values and where the trials are stored.

    Every trial runs the LightningCLI ``fit`` config of ``configs`` plus ``overrides`` with
    its temperatures (and learning rate, seed) set; see :mod:`lightning_discrete.sweep`.
    Temperature lists are sorted and deduplicated; bad values raise ``ValueError``
    naming the argument.

    Args:
        configs: LightningCLI config files of every trial (e.g. a recipe, then an
            estimator override file), in order.
        protocol: grid (every (tau_f, tau_b) pair), sequential (tau_f at
            tau_b = fixed_tau_b, then tau_b at the best tau_f) or single (one
            temperature tau, for single-temperature baselines).
        tau_f: forward temperatures (>= 0; 0 is argmax).
        tau_b: backward temperatures (> 0).
        tau: temperatures of the single protocol (> 0).
        fixed_tau_b: tau_b of the first phase of the sequential protocol (> 0).
        lr: learning rates crossed with every point (sets --model.optimizer.lr); none:
            the config's.
        seeds: seeds crossed with every point (sets --seed_everything); a point's score
            is the mean over seeds. None: the config's seed.
        metric: the logged metric to minimise; a trial's score is its lowest value.
        output_dir: folder of trials.csv, heatmap.png, best.json and the trials' runs
            (None: sweeps/<study_name>).
        storage: Optuna storage URL; one URL shared by several machines spreads the sweep
            over them (None: sqlite:///<output_dir>/sweep.db).
        study_name: Optuna study name (None: <config file stems>-<protocol>).
        overrides: extra LightningCLI arguments of every trial (``--trainer.*``,
            ``--model.*``, ``--data.*``, ``--seed_everything``).
        wait_timeout: seconds a worker with nothing left to claim waits for the trials other
            workers still run (distributed sweeps) before it gives up.
        heartbeat_interval: seconds between two heartbeats of a running trial in the storage.
        grace_period: seconds without a heartbeat after which a RUNNING trial counts as
            dead (its worker was killed or lost): it is marked FAIL and its cell queued
            again (None: twice ``heartbeat_interval``; must exceed it).
        max_retry: how many times a cell whose worker died is queued again.

    Examples:
        >>> cfg = SweepConfig(configs=["recipes/quickstart.yaml"], tau_f=[1.0, 0.1, 0.1], output_dir="sw")
        >>> cfg.tau_f, cfg.study_name, cfg.storage.endswith("sw/sweep.db")
        ([0.1, 1.0], 'quickstart-grid', True)
        >>> SweepConfig(configs=["a.yaml"], tau_b=[0.0])
        Traceback (most recent call last):
        ...
        ValueError: every `--tau_b` value must be a finite number > 0, got [0.0]
    """

    configs: List[str]
    protocol: Protocol = "grid"
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
    heartbeat_interval: int = 60
    grace_period: Optional[int] = None
    max_retry: int = 3

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"`protocol` must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not self.configs:
            raise ValueError("a sweep needs at least one `--config` file (e.g. a recipe)")
        for name in ("tau_f", "tau_b", "tau"):
            values = [float(v) for v in getattr(self, name)]
            if not values:
                raise ValueError(f"`--{name}` needs at least one value")
            bad = [v for v in values if not math.isfinite(v) or v < 0 or (v == 0 and name != "tau_f")]
            if bad:
                bound = ">= 0" if name == "tau_f" else "> 0"
                raise ValueError(f"every `--{name}` value must be a finite number {bound}, got {bad}")
            setattr(self, name, sorted(set(values)))
        if not (math.isfinite(self.fixed_tau_b) and self.fixed_tau_b > 0):
            raise ValueError(f"`--fixed_tau_b` must be a finite number > 0, got {self.fixed_tau_b}")
        if self.lr is not None:
            bad = [v for v in self.lr if not (math.isfinite(float(v)) and float(v) > 0)]
            if not self.lr or bad:
                raise ValueError(f"every `--lr` value must be a finite number > 0, got {list(self.lr)}")
        if self.seeds is not None and not self.seeds:
            raise ValueError("`--seeds` needs at least one value (leave it out to use the config's seed)")
        if self.wait_timeout < 0:
            raise ValueError(f"`--wait_timeout` must be >= 0 seconds, got {self.wait_timeout}")
        if self.heartbeat_interval < 1:
            raise ValueError(f"`--heartbeat_interval` must be >= 1 second, got {self.heartbeat_interval}")
        if self.grace_period is not None and self.grace_period <= self.heartbeat_interval:
            raise ValueError(f"`--grace_period` must exceed `--heartbeat_interval` ({self.heartbeat_interval}), "
                             f"got {self.grace_period}")
        if self.max_retry < 0:
            raise ValueError(f"`--max_retry` must be >= 0, got {self.max_retry}")
        if self.study_name is None:
            stem = "+".join(os.path.splitext(os.path.basename(c))[0] for c in self.configs)
            self.study_name = f"{stem}-{self.protocol}"
        if self.output_dir is None:
            self.output_dir = os.path.join("sweeps", re.sub(r"[^\w.+-]", "_", self.study_name))
        if self.storage is None:
            self.storage = f"sqlite:///{os.path.abspath(os.path.join(self.output_dir, 'sweep.db'))}"
