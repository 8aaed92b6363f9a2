"""Share of units / categories whose logit gradient is non-negligible (the paper's "% active neurons")."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from ..metrics import ActiveUnits, InactiveNeurons, _active_units_compute, _inactive_neurons_compute
from ..nn.bottleneck import DiscreteBottleneck
from ._utils import global_states, log_value, named_bottlenecks, restore_states

__all__ = ["ActiveUnitMonitor"]


class ActiveUnitMonitor(Callback):
    """Percentage of logit-gradient entries with ``|g| > threshold``, over a window.

    It asks every :class:`~lightning_discrete.nn.DiscreteBottleneck` to record its logit
    gradients (``record(True, grads=True)``, ``docs/design.md``, "Protocols") and, after
    each training batch's backward, counts the entries of ``last_logit_grad`` (one per
    example and binary unit, or per example, latent and category) whose magnitude
    exceeds ``threshold``, in one :class:`~lightning_discrete.metrics.ActiveUnits` per
    bottleneck.  The gradient is first put on a per-example scale: multiplied by the
    rows of the batch (the gradient's first dim; the loss is a batch mean) and by
    ``accumulate_grad_batches``, and divided by the AMP loss scale when there is one --
    so the threshold does not depend on the batch size or accumulation.  Counting
    stays on the device (no host-device sync per step).

    With ``stride > 1`` only every ``stride``-th optimizer step is counted (its gradients
    recorded and counted; the other steps cost next to nothing): the percentages become estimates
    from a sample of the window's steps, for a fraction of the cost (on the 784-200-200-10
    binary network of ``recipes/binary_fashion_mnist.yaml`` counting every step costs
    about 15% of the training time).

    At the end of each window (``window`` optimizer steps, or the epoch when
    ``window`` is ``None``) the counts are summed across ranks and logged as
    percentages in ``[0, 100]``:

    * ``{prefix}/{name}`` per bottleneck (``{name}``: qualified module name);
    * ``{prefix}/all`` over every bottleneck.

    With ``neuron_thresholds`` it also measures the paper's per-neuron reading: a unit
    (one logit per example: a binary unit, or one category of one latent) is *inactive*
    when its mean per-example ``|g|`` over the window is ``<= t``
    (:class:`~lightning_discrete.metrics.InactiveNeurons`), logged for each ``t`` as

    * ``inactive_neurons/{name}@{t}`` and ``inactive_neurons/all@{t}`` (percent of units;
      ``{prefix}_inactive_neurons/...`` when ``prefix`` is not the default).

    The counts of a window in progress are saved in checkpoints, so a resumed run
    logs the same window as an uninterrupted one. Several monitors can share a Trainer
    (e.g. two thresholds, each with its own ``prefix``); :attr:`state_key` names the
    prefix, the threshold and the window.

    Args:
        threshold: absolute per-example gradient threshold (``>= 0``).
        window: optimizer steps per window; ``None`` for one window per epoch.
        prefix: namespace of the logged names.
        neuron_thresholds: thresholds of the per-neuron measure (e.g. ``[1e-4, 1e-3, 1e-2]``
            to show its sensitivity); ``None`` (default) measures per entry only.
        stride: count the gradients of every ``stride``-th optimizer step (``>= 1``; 1:
            every step).

    Examples:
        >>> monitor = ActiveUnitMonitor(threshold=1e-2, window=50, prefix="active_1e-2")
        >>> monitor.state_key
        "ActiveUnitMonitor{'prefix': 'active_1e-2', 'threshold': 0.01, 'window': 50, 'neuron_thresholds': None}"
    """

    def __init__(
        self,
        threshold: float = 1e-3,
        window: Optional[int] = None,
        prefix: str = "active_units",
        neuron_thresholds: Optional[Sequence[float]] = None,
        stride: int = 1,
    ) -> None:
        if threshold < 0:
            raise ValueError(f"`threshold` must be >= 0, got {threshold}")
        if window is not None and window < 1:
            raise ValueError(f"`window` must be >= 1 or None, got {window}")
        if not prefix:
            raise ValueError("`prefix` must be a non-empty string")
        if stride < 1:
            raise ValueError(f"`stride` must be >= 1, got {stride}")
        if window is not None and window < stride:
            raise ValueError(f"`window` ({window}) must be >= `stride` ({stride}): every window needs a counted step")
        if neuron_thresholds is not None and (not neuron_thresholds or min(neuron_thresholds) < 0):
            raise ValueError(f"`neuron_thresholds` must be a non-empty list of values >= 0, got {neuron_thresholds}")
        self.threshold = float(threshold)
        self.window = window
        self.stride = int(stride)
        self._grads_on = False  # whether the bottlenecks record gradients for this step
        self.prefix = prefix
        self.neuron_thresholds = None if neuron_thresholds is None else tuple(float(t) for t in neuron_thresholds)
        self.neuron_prefix = "inactive_neurons" if prefix == "active_units" else f"{prefix}_inactive_neurons"
        self._neurons: Dict[str, InactiveNeurons] = {}
        self.last_results: Dict[str, float] = {}
        self._metrics: Dict[str, ActiveUnits] = {}
        self._modules: List[Tuple[str, DiscreteBottleneck]] = []
        self._restored: Dict[str, Dict[str, Tensor]] = {}
        self._restored_neurons: Dict[str, Dict[str, Tensor]] = {}
        self._last_flush_step = -1
        self._seen: Dict[str, Tensor] = {}  # name -> the last gradient counted (no double counting)

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            prefix=self.prefix, threshold=self.threshold, window=self.window, neuron_thresholds=self.neuron_thresholds
        )

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._modules = named_bottlenecks(pl_module)  # walked once, not every step
        # every bottleneck gets its metric on every rank now: the flush's collectives match
        self._metrics = {name: ActiveUnits().to(pl_module.device) for name, _ in self._modules}
        for name, states in self._restored.items():
            if name in self._metrics:
                restore_states(self._metrics[name], states)
        self._restored = {}
        self._neurons = {}
        for name, states in self._restored_neurons.items():
            self._neurons[name] = self._neuron_metric(states["sum_abs"].numel(), pl_module.device)
            restore_states(self._neurons[name], states)
        self._restored_neurons = {}
        self._record_grads(True)

    def _record_grads(self, on: bool) -> None:
        for _, m in self._modules:
            m.record(True, grads=on, owner=self)
        self._grads_on = on

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        sampled = self.stride == 1 or trainer.global_step % self.stride == 0
        if sampled != self._grads_on:  # switched twice per stride, not every step
            self._record_grads(sampled)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop()

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        """The bottlenecks stop recording for this monitor (no gradient hooks left behind)."""
        for _, m in self._modules:
            m.record(False, owner=self)

    @override
    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # right after the backward: the AMP loss scale is still the one this backward used
        # (the optimizer step's scaler update may change it)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        for name, m in self._modules:
            g = m.last_logit_grad
            if g is None or self._seen.get(name) is g:
                continue
            self._seen[name] = g
            rows = g.shape[0] if g.dim() else 1  # the logits' batch dim (the loss is a batch mean)
            # per-example |g| = |g| * rows * accumulation / loss_scale; the AMP scale stays a
            # device tensor (no sync per step): the scaler's ``_scale``, as ``get_scale()``
            # would read it back
            loss_scale: Any = 1.0
            if scaler is not None and scaler.is_enabled():
                scale = getattr(scaler, "_scale", None)
                loss_scale = scale if scale is not None else scaler.get_scale()
            per_example = rows * trainer.accumulate_grad_batches
            # |g| * per_example / loss_scale > threshold, as one comparison against a rescaled threshold
            self._metrics[name].update(g, self.threshold / per_example * loss_scale)
            if self.neuron_thresholds is not None:
                metric = self._neurons.get(name)
                if metric is None:  # sized by the first gradient (the same step on every rank)
                    metric = self._neurons[name] = self._neuron_metric(g[0].numel() if g.dim() else 1, g.device)
                metric.update(g, per_example / loss_scale)

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.window is not None and step % self.window == 0 and step != self._last_flush_step and step > 0:
            self._last_flush_step = step
            self._flush(pl_module)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.window is None:
            self._flush(pl_module)

    def _flush(self, pl_module: LightningModule) -> None:
        if not self._metrics:
            return
        names = sorted(self._metrics)
        states = [global_states(self._metrics[n]) for n in names]  # collectives on every rank
        for metric in self._metrics.values():
            metric.reset()
        on_step = self.window is not None
        active = torch.stack([s["active"] for s in states])
        total = torch.stack([s["total"] for s in states])
        results = {f"{self.prefix}/{n}": _active_units_compute(a, t) for n, a, t in zip(names, active, total) if t > 0}
        if int(total.sum()) > 0:
            results[f"{self.prefix}/all"] = _active_units_compute(active.sum(), total.sum())
        if self.neuron_thresholds is not None:
            results.update(self._flush_neurons())
        for key, value in results.items():
            self.last_results[key] = float(value)
            log_value(pl_module, key, value, on_step=on_step)

    def _neuron_metric(self, num_units: int, device: Any) -> InactiveNeurons:
        return InactiveNeurons(num_units, self.neuron_thresholds).to(device)

    def _flush_neurons(self) -> Dict[str, Tensor]:
        names = sorted(self._neurons)
        states = [global_states(self._neurons[n]) for n in names]  # collectives on every rank
        for metric in self._neurons.values():
            metric.reset()
        thresholds = self.neuron_thresholds or ()
        one = torch.ones((), dtype=torch.long)
        # per-unit mean |g| of each bottleneck that saw gradients; "all" puts them side by side
        means = {n: st["sum_abs"] / st["examples"] for n, st in zip(names, states) if int(st["examples"]) > 0}
        if means:
            means["all"] = torch.cat(list(means.values()))
        return {
            f"{self.neuron_prefix}/{name}@{t:g}": v
            for name, mean in means.items()
            for t, v in zip(thresholds, _inactive_neurons_compute(mean, one, thresholds))
        }

    @override
    def state_dict(self) -> Dict[str, Any]:
        """The counts of the window in progress summed across ranks, and the last logged step.

        A collective when distributed: Lightning calls it on every rank when it saves.
        """
        counts = {name: global_states(self._metrics[name]) for name in sorted(self._metrics)}
        counts = {name: s for name, s in counts.items() if int(s["total"]) > 0}
        neurons = {name: global_states(self._neurons[name]) for name in sorted(self._neurons)}
        neurons = {name: s for name, s in neurons.items() if int(s["examples"]) > 0}
        return {"last_flush_step": self._last_flush_step, "counts": counts, "neurons": neurons}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._last_flush_step = int(state_dict["last_flush_step"])
        self._restored = dict(state_dict["counts"])  # applied in on_fit_start, once the metrics exist
        self._restored_neurons = dict(state_dict.get("neurons", {}))
