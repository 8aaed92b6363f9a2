"""Adaptive temperatures: ``tau_f`` and ``tau_b`` of every bottleneck steered, during one run,
by what the monitors measure (a callback used instead of a temperature sweep)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from ..nn.bottleneck import DiscreteBottleneck
from ._utils import log_value, named_bottlenecks
from .active_units import ActiveUnitMonitor
from .gradient_snr import GradientSNRMonitor
from .temperature import TemperatureScheduler
from .utilization import LatentUtilizationMonitor

__all__ = ["adapt_temperature", "AdaptiveTemperature"]

_UTILIZATION_KINDS = ("perplexity", "codes")
_SNR_STATISTICS = ("median", "mean")


def _check_bounds(bounds: Sequence[float], name: str) -> Tuple[float, float]:
    if len(bounds) != 2 or not 0.0 < float(bounds[0]) <= float(bounds[1]) or math.isinf(float(bounds[1])):
        raise ValueError(f"`{name}` must be (low, high) with 0 < low <= high < inf, got {tuple(bounds)}")
    return float(bounds[0]), float(bounds[1])


def adapt_temperature(
    tau: float,
    measured: float,
    target: float,
    gain: float = 1.0,
    max_log_step: float = 0.1,
    bounds: Sequence[float] = (0.05, 5.0),
    allow_raise: bool = True,
) -> float:
    """One multiplicative step of a temperature toward a target (a pure function).

    ``log tau += clip(gain * (target - measured), -max_log_step, max_log_step)``, then ``tau``
    is clamped to ``bounds``. A measurement below its target raises the temperature, one above
    lowers it, and the step is proportional to the error up to ``max_log_step`` (a factor of
    ``exp(max_log_step)`` per step). With ``allow_raise=False`` (a floor is violated) a raising
    step is dropped; a lowering step still applies. See ``docs/design.md``, "Adaptive temperatures".

    Args:
        tau: the current temperature, ``> 0``.
        measured: the measurement, as a fraction in ``[0, 1]``.
        target: its target, as a fraction in ``[0, 1]``.
        gain: log-temperature change per unit of error (``> 0``).
        max_log_step: largest change of ``log tau`` per step (``> 0``).
        bounds: ``(low, high)``, ``0 < low <= high``.
        allow_raise: ``False`` drops a step that would raise ``tau``.

    Returns:
        The new temperature, a float in ``bounds``.

    Examples:
        >>> round(adapt_temperature(1.0, measured=0.5, target=0.8), 4)  # too low: up by exp(0.1)
        1.1052
        >>> round(adapt_temperature(1.0, measured=0.85, target=0.8), 4)  # a little high: down by exp(-0.05)
        0.9512
        >>> adapt_temperature(1.0, measured=0.5, target=0.8, allow_raise=False)  # a floor holds it
        1.0
        >>> adapt_temperature(4.9, measured=0.0, target=1.0, bounds=(0.1, 5.0))
        5.0
    """
    low, high = _check_bounds(bounds, "bounds")
    if not tau > 0 or math.isinf(tau):
        raise ValueError(f"`tau` must be a finite number > 0, got {tau}")
    if not (gain > 0 and max_log_step > 0):  # NaN fails too
        raise ValueError(f"`gain` and `max_log_step` must be > 0, got {gain} and {max_log_step}")
    if not (math.isfinite(measured) and math.isfinite(target)):  # a NaN would become the temperature
        raise ValueError(f"`measured` and `target` must be finite, got {measured} and {target}")
    step = min(max(float(gain) * (float(target) - float(measured)), -max_log_step), max_log_step)
    if step > 0 and not allow_raise:
        step = 0.0
    return min(max(float(tau) * math.exp(step), low), high)


class AdaptiveTemperature(Callback):
    """Steer ``tau_f`` and ``tau_b`` of every :class:`~lightning_discrete.nn.DiscreteBottleneck`
    during one run, from the monitors' measurements, instead of sweeping them.

    One rule per temperature, per bottleneck (each layer has its own temperatures and its own
    readings), applied at the end of a training epoch with :func:`adapt_temperature`
    (multiplicative, in log space, bounded):

    * ``tau_f`` steers the **utilisation** of the layer's codes toward ``target_utilization``:
      with ``utilization="perplexity"`` the normalised perplexity ``(P - 1) / (k - 1)`` of the
      training codes (``P`` = ``train/perplexity/{layer}`` of a
      :class:`LatentUtilizationMonitor`, ``k`` codes per latent; 0 when every latent always
      picks one code, 1 when its codes are used uniformly; binary units are ``k = 2``); with
      ``"codes"`` the share of codes ever used, ``1 - train/dead_codes/{layer}``. Raising
      ``tau_f`` explores more (higher utilisation) at the price of a noisier gradient, so a
      raise is blocked while the gradient SNR (``{snr_statistic}`` of the first
      :class:`GradientSNRMonitor`) is below ``snr_floor``.
    * ``tau_b`` steers the share of logit-gradient entries above the threshold of the first
      :class:`ActiveUnitMonitor` (``active_units/{layer}``, as a fraction) toward
      ``target_active``. Raising ``tau_b`` spreads the gradient over more units with a smaller
      magnitude, so a raise is blocked while the norm of the mean gradient (``grad_norm`` of
      the :class:`GradientSNRMonitor`) is below ``grad_norm_floor``.

    The readings are smoothed across epochs (``s = smoothing * s + (1 - smoothing) * x``).
    During the first ``warmup`` epochs nothing is read or changed; after it, the readings of
    every epoch enter the smoothing and the temperatures change every ``interval`` epochs.
    At the start of a fit the temperatures are read from the bottlenecks and clamped to the
    bounds (``tau_f = 0``, argmax, becomes the lower bound). A layer without a reading (no
    gradient recorded yet) keeps its temperature.

    Each update adds the (capped) error to ``log tau``, so the temperature keeps moving for as
    long as the reading stays on one side of its target: it settles only where the target is
    reached, and otherwise ends at a bound. Early in training the utilisation is low because
    the model has not learned to use its codes yet, whatever ``tau_f`` is; the rule cannot
    tell, and raises ``tau_f`` by the full ``max_log_step`` every epoch of that phase. With the
    autoencoder recipe (start 2.0, bound 5.0, target 0.85, lr 3e-4) ``tau_f`` reaches 5.0
    after 10 epochs on all 4 seeds of the 20-epoch runs in ``docs/adaptive.md``, while the
    training utilisation is still rising toward the target (0.05-0.3 at the first reading,
    about 0.85 after 20 epochs). A longer ``warmup``, a smaller ``max_log_step`` or a lower
    upper bound keeps ``tau_f`` away from the bound. The
    reading is the **training** perplexity of the sampled codes; the validation perplexity
    (argmax codes, ``eval_mode``) is lower and is not what the target refers to.

    The callback computes nothing itself: it reads the ``last_results`` of the monitors in
    ``trainer.callbacks`` (already reduced across ranks) and raises a ``ValueError`` at setup
    when one it needs is missing, sits after it in the callback list (its epoch values would
    not be there yet), when a :class:`TemperatureScheduler` or a second
    ``AdaptiveTemperature`` would also set the temperatures, or when an estimator has no
    separate ``tau_f`` and ``tau_b``. It has no per-step hook: no host-device sync, no cost
    between updates. Under DDP every rank computes the same update from the same reduced
    values and rank 0's result is broadcast, so no rank diverges. Its state (temperatures as
    Python floats, smoothed readings) is saved in checkpoints and set on the bottlenecks when
    a run resumes, so the run continues exactly. Logged every epoch:
    ``temperature/{layer}/tau_f``, ``temperature/{layer}/tau_b`` (read back from the
    bottleneck) and, once smoothed, ``adaptive/{layer}/utilization`` and
    ``adaptive/{layer}/active``. See ``docs/design.md``, "Adaptive temperatures".

    Args:
        target_utilization: target of the utilisation in ``[0, 1]``; ``None`` leaves ``tau_f`` alone.
        target_active: target share of active logit gradients in ``[0, 1]``; ``None`` leaves
            ``tau_b`` alone.
        snr_floor: gradient SNR below which ``tau_f`` is not raised; ``None``: no floor.
        grad_norm_floor: norm of the mean gradient below which ``tau_b`` is not raised;
            ``None``: no floor.
        tau_f_bounds: ``(low, high)`` of ``tau_f``, ``low > 0``.
        tau_b_bounds: ``(low, high)`` of ``tau_b``, ``low > 0``.
        gain: change of ``log tau`` per unit of error.
        max_log_step: largest change of ``log tau`` per update.
        warmup: epochs before the first reading.
        interval: epochs between updates (``>= 1``).
        smoothing: weight of the past in the moving average of the readings, in ``[0, 1)``.
        utilization: ``"perplexity"`` or ``"codes"`` (see above).
        snr_statistic: ``"median"`` or ``"mean"`` SNR of the :class:`GradientSNRMonitor`.
        log: log the temperatures and the smoothed readings.

    Examples:
        >>> cb = AdaptiveTemperature(target_utilization=0.8, target_active=0.3, warmup=0)
        >>> cb.start({"hidden.1": (0.5, 1.0)})
        >>> cb.step(0, {"hidden.1": {"utilization": 0.5, "active": 0.4}}, snr=0.2, grad_norm=1.0)
        True
        >>> tau_f, tau_b = cb.temperatures["hidden.1"]
        >>> round(tau_f, 4), round(tau_b, 4)  # utilisation low: tau_f up; too many active: tau_b down
        (0.5526, 0.9048)

    In YAML (LightningCLI), after the monitors it reads::

        trainer:
          callbacks:
            - class_path: LatentUtilizationMonitor
            - class_path: ActiveUnitMonitor
            - class_path: GradientSNRMonitor
              init_args: {mode: window, window: 50, stride: 5}
            - class_path: AdaptiveTemperature
              init_args: {target_utilization: 0.9, target_active: 0.25}
    """

    def __init__(
        self,
        target_utilization: Optional[float] = 0.85,
        target_active: Optional[float] = 0.25,
        snr_floor: Optional[float] = 0.05,
        grad_norm_floor: Optional[float] = 1e-3,
        tau_f_bounds: Sequence[float] = (0.05, 5.0),
        tau_b_bounds: Sequence[float] = (0.1, 5.0),
        gain: float = 1.0,
        max_log_step: float = 0.1,
        warmup: int = 1,
        interval: int = 1,
        smoothing: float = 0.5,
        utilization: str = "perplexity",
        snr_statistic: str = "median",
        log: bool = True,
    ) -> None:
        if target_utilization is None and target_active is None:
            raise ValueError("give at least one of `target_utilization`, `target_active`")
        for name, value in (("target_utilization", target_utilization), ("target_active", target_active)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1] (a fraction) or None, got {value}")
        for name, value in (("snr_floor", snr_floor), ("grad_norm_floor", grad_norm_floor)):
            if value is not None and value < 0:
                raise ValueError(f"`{name}` must be >= 0 or None, got {value}")
        if not (gain > 0 and max_log_step > 0):  # NaN fails too
            raise ValueError(f"`gain` and `max_log_step` must be > 0, got {gain} and {max_log_step}")
        if int(warmup) != warmup or warmup < 0:
            raise ValueError(f"`warmup` must be an integer >= 0, got {warmup}")
        if int(interval) != interval or interval < 1:
            raise ValueError(f"`interval` must be an integer >= 1, got {interval}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"`smoothing` must be in [0, 1), got {smoothing}")
        if utilization not in _UTILIZATION_KINDS:
            raise ValueError(f"`utilization` must be one of {_UTILIZATION_KINDS}, got {utilization!r}")
        if snr_statistic not in _SNR_STATISTICS:
            raise ValueError(f"`snr_statistic` must be one of {_SNR_STATISTICS}, got {snr_statistic!r}")
        self.target_utilization = target_utilization
        self.target_active = target_active
        self.snr_floor = snr_floor
        self.grad_norm_floor = grad_norm_floor
        self.tau_f_bounds = _check_bounds(tau_f_bounds, "tau_f_bounds")
        self.tau_b_bounds = _check_bounds(tau_b_bounds, "tau_b_bounds")
        self.gain = float(gain)
        self.max_log_step = float(max_log_step)
        self.warmup = int(warmup)
        self.interval = int(interval)
        self.smoothing = float(smoothing)
        self.utilization = utilization
        self.snr_statistic = snr_statistic
        self.log = log
        #: ``{layer: (tau_f, tau_b)}``: the temperatures this callback set last.
        self.temperatures: Dict[str, Tuple[float, float]] = {}
        #: ``{layer: {"utilization": ..., "active": ...}}``: the smoothed readings.
        self.smoothed: Dict[str, Dict[str, float]] = {}
        self._restored = False
        self._modules: List[Tuple[str, DiscreteBottleneck]] = []
        self._utilization_monitor: Optional[LatentUtilizationMonitor] = None
        self._active_monitor: Optional[ActiveUnitMonitor] = None
        self._snr_monitor: Optional[GradientSNRMonitor] = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(target_utilization=self.target_utilization, target_active=self.target_active)

    # -- the rule (pure: no Trainer) ---------------------------------------------------- #
    def start(self, temperatures: Mapping[str, Tuple[float, float]]) -> None:
        """Start from ``{layer: (tau_f, tau_b)}`` (clamped to the bounds), with no smoothed readings.

        Args:
            temperatures: the initial temperatures of every layer.

        Examples:
            >>> cb = AdaptiveTemperature(tau_f_bounds=(0.05, 5.0))
            >>> cb.start({"units": (0.0, 0.7)}); cb.temperatures
            {'units': (0.05, 0.7)}
        """
        self.temperatures = {
            name: (min(max(float(f), self.tau_f_bounds[0]), self.tau_f_bounds[1]),
                   min(max(float(b), self.tau_b_bounds[0]), self.tau_b_bounds[1]))
            for name, (f, b) in temperatures.items()
        }
        self.smoothed = {}

    def is_update_epoch(self, epoch: int) -> bool:
        """Whether the temperatures change at the end of ``epoch`` (0-based).

        Args:
            epoch: the epoch that just ended.

        Returns:
            ``True`` on epochs ``warmup + interval - 1``, ``warmup + 2 * interval - 1``, ...

        Examples:
            >>> cb = AdaptiveTemperature(warmup=2, interval=3)
            >>> [e for e in range(12) if cb.is_update_epoch(e)]
            [4, 7, 10]
        """
        return epoch >= self.warmup and (epoch - self.warmup + 1) % self.interval == 0

    def step(
        self,
        epoch: int,
        readings: Mapping[str, Mapping[str, float]],
        snr: Optional[float] = None,
        grad_norm: Optional[float] = None,
    ) -> bool:
        """Take the readings of the epoch that ended and, on an update epoch, apply both rules.

        Call :meth:`start` first. Pure bookkeeping on Python floats: the Trainer hook collects
        the readings from the monitors and sets the result on the bottlenecks.

        Args:
            epoch: the epoch that ended (0-based); nothing happens during the warm-up.
            readings: ``{layer: {"utilization": u, "active": a}}``, fractions in ``[0, 1]``;
                either key may be missing (that temperature then holds, until a reading comes).
            snr: the gradient SNR (``None``: unknown, which blocks raising ``tau_f`` when
                ``snr_floor`` is set).
            grad_norm: the norm of the mean gradient (``None``: unknown, which blocks raising
                ``tau_b`` when ``grad_norm_floor`` is set).

        Returns:
            Whether the temperatures were updated (an update epoch).

        Examples:
            >>> cb = AdaptiveTemperature(target_active=None, snr_floor=0.1, warmup=0)
            >>> cb.start({"code": (1.0, 1.0)})
            >>> cb.step(0, {"code": {"utilization": 0.2}}, snr=0.05)  # SNR below the floor: no raise
            True
            >>> cb.temperatures["code"]
            (1.0, 1.0)
        """
        unknown = sorted(set(readings) - set(self.temperatures))
        if unknown:
            raise ValueError(f"readings for layers without temperatures {unknown}: call `start` with them first")
        if epoch < self.warmup:
            return False
        for name, values in readings.items():
            smoothed = self.smoothed.setdefault(name, {})
            for key, value in values.items():
                if key not in ("utilization", "active"):
                    raise ValueError(f"unknown reading {key!r} of layer {name!r}: use 'utilization' or 'active'")
                if value is None or math.isnan(value):
                    continue
                old = smoothed.get(key)
                smoothed[key] = float(value) if old is None else self.smoothing * old + (1.0 - self.smoothing) * float(value)
        if not self.is_update_epoch(epoch):
            return False
        raise_f = self.snr_floor is None or (snr is not None and snr >= self.snr_floor)
        raise_b = self.grad_norm_floor is None or (grad_norm is not None and grad_norm >= self.grad_norm_floor)
        for name, (tau_f, tau_b) in self.temperatures.items():
            smoothed = self.smoothed.get(name, {})
            if self.target_utilization is not None and "utilization" in smoothed:
                tau_f = adapt_temperature(tau_f, smoothed["utilization"], self.target_utilization, self.gain,
                                          self.max_log_step, self.tau_f_bounds, allow_raise=raise_f)
            if self.target_active is not None and "active" in smoothed:
                tau_b = adapt_temperature(tau_b, smoothed["active"], self.target_active, self.gain,
                                          self.max_log_step, self.tau_b_bounds, allow_raise=raise_b)
            self.temperatures[name] = (tau_f, tau_b)
        return True

    # -- the Trainer side ----------------------------------------------------------------- #
    def _first(self, trainer: Trainer, kind: type, needed: bool, what: str, epoch_end: bool) -> Optional[Any]:
        callbacks = list(trainer.callbacks)
        found = [c for c in callbacks if isinstance(c, kind)
                 and (kind is not LatentUtilizationMonitor or "train" in c.stages)]
        if not needed:
            return found[0] if found else None
        if not found:
            raise ValueError(
                f"AdaptiveTemperature needs a {kind.__name__} for {what}: add one to the Trainer's callbacks "
                f"(before AdaptiveTemperature), or set that target / floor to None"
            )
        if epoch_end and callbacks.index(found[0]) > callbacks.index(self):
            raise ValueError(
                f"put AdaptiveTemperature after the {kind.__name__} in the Trainer's callbacks: it reads that "
                f"monitor's epoch values at the end of the epoch, after the monitor has computed them"
            )
        return found[0]

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        others = [type(c).__name__ for c in trainer.callbacks
                  if isinstance(c, TemperatureScheduler) or (isinstance(c, AdaptiveTemperature) and c is not self)]
        if others:
            raise ValueError(
                f"AdaptiveTemperature and {', '.join(others)} would both set the temperatures: keep only one "
                f"controller of tau_f / tau_b in the Trainer's callbacks"
            )
        self._modules = named_bottlenecks(pl_module)
        if not self._modules:
            raise ValueError("AdaptiveTemperature found no DiscreteBottleneck in the model")
        single = sorted({m.estimator for _, m in self._modules if not m.estimator_spec.decoupled_temperatures})
        if single:
            raise ValueError(
                f"AdaptiveTemperature sets tau_f and tau_b separately, but estimator(s) {single} do not have two "
                f"temperatures: use estimator='decoupled_st'"
            )
        self._utilization_monitor = self._first(trainer, LatentUtilizationMonitor, self.target_utilization is not None,
                                                "the utilisation of tau_f's rule (with 'train' in `stages`)", True)
        self._active_monitor = self._first(trainer, ActiveUnitMonitor, self.target_active is not None,
                                           "the active units of tau_b's rule", True)
        needs_snr = self.snr_floor is not None or self.grad_norm_floor is not None
        self._snr_monitor = self._first(trainer, GradientSNRMonitor, needs_snr,
                                        "the floors (`snr_floor`, `grad_norm_floor`)", False)

    def _apply(self) -> None:
        for name, m in self._modules:
            tau_f, tau_b = self.temperatures[name]
            m.set_temperature(tau_f=tau_f, tau_b=tau_b)

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._restored:  # resumed: continue from the saved temperatures, exactly
            missing = sorted({name for name, _ in self._modules} - set(self.temperatures))
            if missing:
                raise ValueError(f"the checkpoint's AdaptiveTemperature state has no temperatures for {missing}")
            self._restored = False
        else:
            self.start({name: m.temperatures() for name, m in self._modules})
        self._apply()

    def _readings(self) -> Dict[str, Dict[str, float]]:
        util = self._utilization_monitor.last_results if self._utilization_monitor is not None else {}
        active = self._active_monitor.last_results if self._active_monitor is not None else {}
        prefix = self._active_monitor.prefix if self._active_monitor is not None else ""
        out: Dict[str, Dict[str, float]] = {}
        for name, m in self._modules:
            reading: Dict[str, float] = {}
            if self.target_utilization is not None:
                if self.utilization == "perplexity" and f"train/perplexity/{name}" in util:
                    reading["utilization"] = (util[f"train/perplexity/{name}"] - 1.0) / (m.num_categories - 1)
                elif self.utilization == "codes" and f"train/dead_codes/{name}" in util:
                    reading["utilization"] = 1.0 - util[f"train/dead_codes/{name}"]
            if self.target_active is not None and f"{prefix}/{name}" in active:
                reading["active"] = active[f"{prefix}/{name}"] / 100.0
            out[name] = reading
        return out

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        snr_results = self._snr_monitor.last_results if self._snr_monitor is not None else {}
        # the monitors' values are reduced across ranks: every rank takes the same step
        if self.step(trainer.current_epoch, self._readings(), snr_results.get(self.snr_statistic),
                     snr_results.get("grad_norm")):
            # rank 0's decision wins on every rank (a collective on every rank)
            self.temperatures, self.smoothed = trainer.strategy.broadcast((self.temperatures, self.smoothed), src=0)
            self._apply()
        if not self.log:
            return
        for name, m in self._modules:
            tau_f, tau_b = m.temperatures()  # the values in use
            log_value(pl_module, f"temperature/{name}/tau_f", tau_f, on_step=False)
            log_value(pl_module, f"temperature/{name}/tau_b", tau_b, on_step=False)
            for key, value in sorted(self.smoothed.get(name, {}).items()):
                log_value(pl_module, f"adaptive/{name}/{key}", value, on_step=False)

    # -- checkpoints ------------------------------------------------------------------------ #
    @override
    def state_dict(self) -> Dict[str, Any]:
        """The temperatures (Python floats) and the smoothed readings; identical on every rank."""
        return {"temperatures": {k: list(v) for k, v in self.temperatures.items()},
                "smoothed": {k: dict(v) for k, v in self.smoothed.items()}}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.temperatures = {k: (float(v[0]), float(v[1])) for k, v in state_dict["temperatures"].items()}
        self.smoothed = {k: {kk: float(vv) for kk, vv in v.items()} for k, v in state_dict["smoothed"].items()}
        self._restored = True  # set on the bottlenecks in on_fit_start
