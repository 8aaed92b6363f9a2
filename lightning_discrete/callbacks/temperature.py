"""Temperature schedules for ``tau_f`` / ``tau_b`` (pure functions of the training step or epoch)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from ..models.base import is_logging_step
from ._utils import log_value, named_bottlenecks

__all__ = ["SCHEDULE_KINDS", "schedule_value", "Schedule", "TemperatureScheduler"]

SCHEDULE_KINDS = ("constant", "linear", "exponential", "cosine", "step", "exp_decay")


def schedule_value(
    kind: str,
    start: float,
    end: Optional[float],
    step: int,
    total: int,
    step_size: Optional[int] = None,
    gamma: Optional[float] = None,
    rate: Optional[float] = None,
    floor: Optional[float] = None,
    every: Optional[int] = None,
) -> float:
    """Value of a schedule at ``step`` (a pure function).

    With ``t = min(step / total, 1)`` (``t = 1`` when ``total <= 0``) and ``end``
    defaulting to ``start``:

    * ``constant``: ``start``;
    * ``linear``: ``start + (end - start) * t``;
    * ``exponential``: ``start * (end / start) ** t`` (geometric; needs ``start, end > 0``);
    * ``cosine``: ``end + (start - end) * (1 + cos(pi * t)) / 2``;
    * ``step``: with ``gamma``, ``start * gamma ** (step // step_size)`` clamped at
      ``end``; without ``gamma``, the exponential schedule held constant over blocks of
      ``step_size`` steps (evaluated at ``step_size * (step // step_size)``), so it
      reaches ``end`` at ``total``. ``step_size`` defaults to ``total // 10``;
    * ``exp_decay``: ``start * exp(-rate * step)`` (no ``end``, no ``total``).

    Steps past ``total`` keep the final value. Two modifiers apply to every kind:
    ``every = N`` evaluates the schedule at ``N * (step // N)`` (the value changes every
    ``N`` steps only) and ``floor`` clamps the value from below. The Gumbel-Softmax paper's
    annealing ``tau = max(0.5, exp(-r t))``, updated every 500 steps, is
    ``exp_decay`` with ``start=1, rate=r, floor=0.5, every=500``.

    Args:
        kind: one of :data:`SCHEDULE_KINDS`.
        start: value at step 0.
        end: value at ``total`` (``None``: ``start``).
        step: the step (or epoch) to evaluate, ``>= 0``.
        total: length of the schedule.
        step_size: block length of the ``step`` schedule.
        gamma: factor per block of the ``step`` schedule.
        rate: decay rate per step of the ``exp_decay`` schedule (``>= 0``).
        floor: lower bound of the value (``None``: none).
        every: hold the value over blocks of ``every`` steps (``None`` or ``1``: change every step).

    Returns:
        The value, a float.

    Examples:
        >>> schedule_value("linear", 1.0, 0.0, step=25, total=100)
        0.75
        >>> schedule_value("step", 1.0, 0.1, step=7, total=100, step_size=5, gamma=0.5)
        0.5
        >>> round(schedule_value("exp_decay", 1.0, None, step=1499, total=0, rate=1e-4, every=500), 4)  # exp(-0.1)
        0.9048
        >>> schedule_value("exp_decay", 1.0, None, step=10**6, total=0, rate=1e-4, floor=0.5, every=500)
        0.5
    """
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"`kind` must be one of {SCHEDULE_KINDS}, got {kind!r}")
    if step < 0:
        raise ValueError(f"`step` must be >= 0, got {step}")
    if every is not None:
        if int(every) != every or every < 1:
            raise ValueError(f"`every` must be an integer >= 1, got {every}")
        step = int(every) * (step // int(every))
    if floor is not None:
        return max(float(floor), schedule_value(kind, start, end, step, total, step_size, gamma, rate))
    if kind == "exp_decay":
        if rate is None or rate < 0:
            raise ValueError(f"the 'exp_decay' schedule needs `rate` >= 0, got {rate}")
        return float(start) * math.exp(-float(rate) * step)
    start = float(start)
    end = start if end is None else float(end)
    if kind == "constant" or start == end and kind != "step":
        return start
    t = 1.0 if total <= 0 else min(step / total, 1.0)
    if kind == "linear":
        return start + (end - start) * t
    if kind == "cosine":
        return end + (start - end) * (1.0 + math.cos(math.pi * t)) / 2.0
    if kind in ("exponential", "step") and (start <= 0 or end <= 0):
        raise ValueError(f"the {kind!r} schedule needs `start` > 0 and `end` > 0, got {start} and {end}")
    if kind == "exponential":
        return start * (end / start) ** t
    # step
    size = int(step_size) if step_size is not None else max(1, int(total) // 10)
    if size < 1:
        raise ValueError(f"`step_size` must be >= 1, got {step_size}")
    if gamma is not None:
        if gamma <= 0:
            raise ValueError(f"`gamma` must be > 0, got {gamma}")
        value = start * float(gamma) ** (step // size)
        return max(value, end) if end <= start else min(value, end)
    return schedule_value("exponential", start, end, size * (step // size), total)


@dataclass
class Schedule:
    """One temperature schedule (buildable from YAML: ``{kind: linear, start: 1.0, end: 0.1}``).

    Args:
        kind: ``constant``, ``linear``, ``exponential``, ``cosine`` or ``step``.
        start: value at step (or epoch) 0.
        end: value at ``total`` (defaults to ``start``).
        total: length of the schedule in the scheduler's ``interval`` units; ``None``
            means the whole run (``trainer.estimated_stepping_batches`` or ``max_epochs``).
        step_size: block length of the ``step`` schedule.
        gamma: multiplicative factor per block of the ``step`` schedule.
        rate: decay rate per step of the ``exp_decay`` schedule.
        floor: lower bound of the value.
        every: hold the value over blocks of ``every`` steps.

    Examples:
        >>> Schedule("exponential", start=1.0, end=0.01).value(step=50, total=100)
        0.1
        >>> Schedule("exp_decay", start=1.0, rate=1e-4, floor=0.5, every=500).value(step=10**5, total=0)
        0.5
    """

    kind: str = "constant"
    start: float = 1.0
    end: Optional[float] = None
    total: Optional[int] = None
    step_size: Optional[int] = None
    gamma: Optional[float] = None
    rate: Optional[float] = None
    floor: Optional[float] = None
    every: Optional[int] = None

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"`kind` must be one of {SCHEDULE_KINDS}, got {self.kind!r}")
        # validate the parameters once, at a representative step
        self.value(0, self.total or 1)

    def value(self, step: int, total: int) -> float:
        """Value at ``step`` when the run is ``total`` long (``self.total`` wins if set).

        Args:
            step: the step (or epoch), ``>= 0``.
            total: the length of the run in the same units.

        Returns:
            The value, a float.

        Examples:
            >>> Schedule("linear", 2.0, 1.0, total=10).value(5, total=1000)
            1.5
        """
        total = self.total if self.total is not None else total
        return schedule_value(
            self.kind, self.start, self.end, step, total, self.step_size, self.gamma, self.rate, self.floor, self.every
        )


ScheduleLike = Union[Schedule, float, Dict[str, Any], None]


def _as_schedule(value: ScheduleLike, name: str) -> Optional[Schedule]:
    if value is None or isinstance(value, Schedule):
        return value
    if isinstance(value, dict):
        return Schedule(**value)
    if isinstance(value, (int, float)):
        return Schedule("constant", float(value))
    raise ValueError(f"`{name}` must be a Schedule, a dict of its fields or a number, got {type(value).__name__}")


class TemperatureScheduler(Callback):
    """Set the temperatures of every :class:`~lightning_discrete.nn.DiscreteBottleneck`
    from schedules, before every training batch (``interval="step"``) or epoch.

    The temperatures are a pure function of ``trainer.global_step`` (or
    ``trainer.current_epoch``), so a run resumed from a checkpoint continues exactly
    and the callback has no state to save (``docs/design.md``, "Distributed rules").
    Logs the temperatures it schedules, ``temperature/tau_f`` and/or
    ``temperature/tau_b`` (both for ``tau``): the values read back from the first
    bottleneck, i.e. those actually in use; per step on the steps whose values Lightning
    writes to the loggers (every ``trainer.log_every_n_steps``) and on the last batch of each
    epoch and of the run, per epoch every epoch. Several schedulers can share a Trainer,
    e.g. one for ``tau_f`` per step and one for ``tau_b`` per epoch; their
    :attr:`state_key` is built from the schedules and the interval.

    Args:
        tau_f: schedule of the forward temperature (``None``: leave it alone).
        tau_b: schedule of the backward temperature (``None``: leave it alone).
        tau: schedule of both (single-temperature estimators); excludes the other two.
        interval: ``"step"`` (optimizer steps) or ``"epoch"``.
        log: log the temperatures.

    Each schedule is a :class:`Schedule`, a dict of its fields or a number (constant).

    Examples:
        >>> sched = TemperatureScheduler(tau_f={"kind": "linear", "start": 1.0, "end": 0.5}, tau_b=2.0)
        >>> sched.temperatures_at(step=50, total=100)
        {'tau_f': 0.75, 'tau_b': 2.0}

    In YAML (LightningCLI)::

        trainer:
          callbacks:
            - class_path: lightning_discrete.callbacks.TemperatureScheduler
              init_args:
                tau_f: {kind: exponential, start: 1.0, end: 0.1}
                tau_b: {kind: constant, start: 2.0}

    The Gumbel-Softmax paper's annealing, ``tau = max(0.5, exp(-1e-4 t))`` updated every 500 steps::

                tau: {kind: exp_decay, start: 1.0, rate: 1.0e-4, floor: 0.5, every: 500}
    """

    def __init__(
        self,
        tau_f: Optional[Schedule] = None,
        tau_b: Optional[Schedule] = None,
        tau: Optional[Schedule] = None,
        interval: str = "step",
        log: bool = True,
    ) -> None:
        if interval not in ("step", "epoch"):
            raise ValueError(f"`interval` must be 'step' or 'epoch', got {interval!r}")
        self.tau_f = _as_schedule(tau_f, "tau_f")
        self.tau_b = _as_schedule(tau_b, "tau_b")
        self.tau = _as_schedule(tau, "tau")
        if self.tau is not None and (self.tau_f is not None or self.tau_b is not None):
            raise ValueError("pass either `tau` or `tau_f`/`tau_b`, not both")
        if self.tau is None and self.tau_f is None and self.tau_b is None:
            raise ValueError("give at least one of `tau_f`, `tau_b`, `tau`")
        self.interval = interval
        self.log = log
        self._modules: Optional[List[Tuple[str, Any]]] = None  # the bottlenecks, found once per fit
        self._run_total: Optional[int] = None  # the run's length, read once per fit

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(tau_f=self.tau_f, tau_b=self.tau_b, tau=self.tau, interval=self.interval)

    # -- pure part ------------------------------------------------------------ #
    def _total(self, trainer: Trainer) -> int:
        if self.interval == "step":
            total = trainer.estimated_stepping_batches
        else:
            total = trainer.max_epochs if trainer.max_epochs is not None else -1
        if total is None or total < 0 or math.isinf(total):
            if any(s is not None and s.total is None and s.kind != "exp_decay" for s in (self.tau_f, self.tau_b, self.tau)):
                raise ValueError(
                    "the run has no finite length (max_steps/max_epochs); give every schedule a `total`"
                )
            return 0
        return int(total)

    def temperatures_at(self, step: int, total: int) -> Dict[str, float]:
        """The temperatures the schedules give at ``step`` of a run ``total`` long.

        Args:
            step: optimizer step (or epoch, with ``interval="epoch"``).
            total: length of the run in the same units.

        Returns:
            ``{"tau_f": ..., "tau_b": ...}`` or ``{"tau": ...}``: the scheduled ones only.

        Examples:
            >>> TemperatureScheduler(tau=0.5).temperatures_at(3, 10)
            {'tau': 0.5}
        """
        out: Dict[str, float] = {}
        for name in ("tau", "tau_f", "tau_b"):
            sched = getattr(self, name)
            if sched is not None:
                out[name] = sched.value(step, total)
        return out

    # -- hooks ---------------------------------------------------------------- #
    def _apply(self, trainer: Trainer, pl_module: LightningModule, step: int) -> None:
        total = self._run_total if self._run_total is not None else self._total(trainer)
        modules = self._modules if self._modules is not None else named_bottlenecks(pl_module)
        temps = self.temperatures_at(step, total)
        for _, m in modules:
            m.set_temperature(**temps)
        on_step = self.interval == "step"
        # per-step values reach the loggers on logging steps only (``self.log`` costs about
        # 0.4 ms a call, as much as a training step of a small network); the last batch of an
        # epoch and the run's last step log too, so ``callback_metrics`` end with the values in use
        last = trainer.is_last_batch or (total > 0 and step + 1 >= total)
        if self.log and modules and (not on_step or last or is_logging_step(trainer)):
            m = modules[0][1]
            if "tau" in temps or "tau_f" in temps:
                log_value(pl_module, "temperature/tau_f", m.tau_f, on_step=on_step)
            if "tau" in temps or "tau_b" in temps:
                log_value(pl_module, "temperature/tau_b", m.tau_b, on_step=on_step)

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._modules = named_bottlenecks(pl_module)
        self._run_total = self._total(trainer)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._modules = self._run_total = None

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.interval == "step":
            self._apply(trainer, pl_module, trainer.global_step)

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.interval == "epoch":
            self._apply(trainer, pl_module, trainer.current_epoch)
