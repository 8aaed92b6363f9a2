"""``DiscreteModule``: the LightningModule base class for models with discrete bottlenecks.

Subclass contract (three things):

1. Build every bottleneck with ``**self.bottleneck_kwargs()`` so the estimator and
   temperatures chosen on the command line reach it, e.g.
   ``self.code = CategoricalBottleneck(num_categories=8, **self.bottleneck_kwargs())``.
2. Implement ``forward(x)``.
3. Implement ``step(batch) -> (losses, metrics)``: ``losses`` is the ``(N,)`` tensor of
   per-example losses of the rows of ``batch`` and ``metrics`` a dict of scalar
   tensors to log (e.g. ``{"acc": ...}``).

The base does the rest: it repeats the batch for score-function estimators
(``reinforce``: ``num_samples`` copies, ``disarm``: antithetic pairs), adds each
bottleneck's surrogate loss (:meth:`compute_loss`), logs the epoch means
``train/loss``, ``val/loss``, ``test/loss`` and ``{stage}/{metric}`` (weighted by
examples, over all ranks) plus ``train/{name}_step`` every ``log_every_n_steps``
batches, and builds the optimizer/LR scheduler from LightningCLI callables (Adam,
lr 1e-3 by default). A subclass that overrides an ``on_{train,validation,test}_epoch_end``
hook calls ``super()`` so the epoch means are still logged.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, Optional, Tuple, Union

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable  # jsonargparse-aware aliases
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from lightning_utilities.core.apply_func import apply_to_collection
from torch import Tensor
from typing_extensions import override

from ..functional import get_estimator
from ..nn.bottleneck import BottleneckConfig, DiscreteBottleneck

__all__ = ["DiscreteModule", "classification_step", "is_logging_step"]


def is_logging_step(trainer: Any) -> bool:
    """Whether the current training batch is one whose logged values Lightning writes to
    the loggers (every ``trainer.log_every_n_steps`` optimizer steps), as Lightning's own
    ``LearningRateMonitor`` decides it. Constant over a batch (``on_train_batch_start``,
    ``training_step``, ``on_train_batch_end``); work that only feeds the logs (a host read,
    a figure) is done on these batches only.

    Args:
        trainer: the running ``lightning.pytorch.Trainer``.

    Returns:
        ``True`` on logging batches (and outside a fit loop), ``False`` otherwise.

    Examples:
        >>> import lightning.pytorch as pl
        >>> is_logging_step(pl.Trainer(logger=False, log_every_n_steps=0, enable_progress_bar=False))
        False
    """
    return bool(trainer._logger_connector.should_update_logs)


def default_adam(params: Iterable) -> torch.optim.Optimizer:
    """Adam with lr 1e-3, the default optimizer of every model here; ``fused=True`` when every
    parameter is a floating tensor on the CPU or a CUDA device (one kernel over all
    parameters: on the CPU about 3x faster than Adam's default per-parameter loop for the VAE
    recipes' 1.2 M parameters, ``benchmarks/vae_step.py``; the same updates up to float
    rounding). The recipes set ``fused: true`` on their Adam the same way.

    Lightning refuses gradient clipping with a fused optimizer under ``precision="16-mixed"``
    (the fused step unscales the gradients itself): pass ``optimizer=`` a non-fused Adam there.

    Args:
        params: the parameters to optimise.

    Examples:
        >>> import torch
        >>> from lightning_discrete.models.base import default_adam
        >>> opt = default_adam(torch.nn.Linear(2, 2).parameters())
        >>> opt.defaults["lr"], opt.defaults["fused"]
        (0.001, True)
    """
    params = list(params)
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    fused = bool(tensors) and all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors)
    return torch.optim.Adam(params, lr=1e-3, fused=fused or None)


def classification_step(logits: Tensor, y: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Per-example cross-entropy ``(N,)`` and ``{"acc": accuracy}`` of class logits ``(N, C)``:
    the ``step`` return value of every classifier here.

    Args:
        logits: ``(N, C)`` class logits.
        y: ``(N,)`` integer class labels.

    Examples:
        >>> import torch
        >>> from lightning_discrete.models import classification_step
        >>> losses, metrics = classification_step(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]))
        >>> losses.shape, metrics["acc"].item()
        (torch.Size([2]), 0.5)
    """
    acc = (logits.argmax(-1) == y).float().mean()
    return torch.nn.functional.cross_entropy(logits, y, reduction="none"), {"acc": acc}


class DiscreteModule(LightningModule):
    """Base LightningModule owning the estimator and temperatures of its bottlenecks.

    Args:
        optimizer: callable building the optimizer from parameters (LightningCLI
            ``OptimizerCallable``); Adam(lr=1e-3) by default.
        lr_scheduler: optional callable building an LR scheduler from the optimizer.
        compile: run the training objective (:meth:`compute_loss`) and the evaluation
            :meth:`step` through ``torch.compile``; ``True`` for the defaults or a dict
            of ``torch.compile`` keyword arguments (e.g. ``{"mode": "max-autotune"}``).
            Every model here compiles with ``fullgraph=True``.
        **kwargs: the estimator settings every bottleneck is built with, declared and
            checked in :class:`lightning_discrete.nn.BottleneckConfig`: ``estimator``,
            ``tau_f``, ``tau_b``, ``tau``, ``eval_mode``, ``num_samples``,
            ``estimator_kwargs``, ``validate_args`` (on the command line
            ``--model.estimator=...``). Turn ``validate_args`` on when a loss goes NaN to
            find the first non-finite logits.

    Examples:
        >>> import torch
        >>> from lightning_discrete.models import DiscreteModule, classification_step
        >>> from lightning_discrete.nn import BinaryBottleneck
        >>> class Tiny(DiscreteModule):
        ...     def __init__(self, **kwargs):
        ...         super().__init__(**kwargs)
        ...         self.units = BinaryBottleneck(**self.bottleneck_kwargs())
        ...         self.head = torch.nn.Linear(3, 2)
        ...     def forward(self, x):
        ...         return self.head(self.units(x))
        ...     def step(self, batch):
        ...         x, y = batch
        ...         return classification_step(self(x), y)
        >>> model = Tiny(estimator="reinforce", num_samples=4)
        >>> model.units.estimator, model.num_score_samples
        ('reinforce', 4)
        >>> loss, metrics = model.compute_loss((torch.randn(8, 3), torch.randint(0, 2, (8,))))
        >>> loss.shape, sorted(metrics)
        (torch.Size([]), ['acc', 'loss'])
    """

    def __init__(
        self,
        optimizer: OptimizerCallable = default_adam,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        compile: Union[bool, Dict[str, Any]] = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.bottleneck_config = BottleneckConfig(**kwargs)  # fails early with a named argument
        # every setting in the hyperparameters (checkpoints rebuild the same bottlenecks),
        # the estimator under its current registry name
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.hparams.update(self.bottleneck_config.as_kwargs())
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        if not isinstance(compile, (bool, dict)):
            raise ValueError(f"`compile` must be true/false or a dict of torch.compile arguments, got {compile!r}")
        self._compile_kwargs: Optional[Dict[str, Any]] = (
            (dict(compile) if isinstance(compile, dict) else {}) if compile else None
        )
        self._compiled: Optional[Tuple[Any, Any]] = None  # (compute_loss, step), see configure_model
        self._nan_reported = False
        self._metric_sums: Dict[str, Tuple[Tuple[str, ...], Tensor]] = {}  # stage -> (names, [sums..., count])

    # -- bottlenecks ------------------------------------------------------------ #
    def bottleneck_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments every bottleneck of the model is built with (a fresh dict of
        :attr:`bottleneck_config`; see the class example)."""
        return self.bottleneck_config.as_kwargs()

    def discrete_modules(self) -> Iterator[DiscreteBottleneck]:
        """Every :class:`DiscreteBottleneck` inside the model (see the class example)."""
        for m in self.modules():
            if isinstance(m, DiscreteBottleneck):
                yield m

    def set_temperature(
        self, tau_f: Optional[float] = None, tau_b: Optional[float] = None, tau: Optional[float] = None
    ) -> None:
        """Set the temperatures of every bottleneck.

        Args:
            tau_f: forward temperature.
            tau_b: backward temperature.
            tau: both temperatures (single-temperature estimators).

        Examples:
            >>> from lightning_discrete.models import StochasticBinaryNetwork
            >>> model = StochasticBinaryNetwork(8, [4], 2, estimator="decoupled_st", tau_f=1.0, tau_b=1.0)
            >>> model.set_temperature(tau_f=0.2)
            >>> [m.temperatures() for m in model.discrete_modules()]
            [(0.2, 1.0)]
        """
        for m in self.discrete_modules():
            m.set_temperature(tau_f=tau_f, tau_b=tau_b, tau=tau)

    @property
    def num_score_samples(self) -> int:
        """How many copies of each example a training step evaluates (1 for pathwise
        estimators; see the class example)."""
        config = self.bottleneck_config
        return config.num_samples if get_estimator(config.estimator).score_function else 1

    # -- the subclass hook ------------------------------------------------------- #
    def step(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Per-example losses ``(N,)`` and a dict of scalar metrics for ``batch`` (the
        subclass hook; see the class example).

        Args:
            batch: a batch of the datamodule.
        """
        raise NotImplementedError("subclasses of DiscreteModule implement step(batch)")

    # -- training objective -------------------------------------------------------- #
    def compute_loss(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Training objective of ``batch``: mean loss plus every surrogate loss (see the
        class example).

        Args:
            batch: a training batch, as :meth:`step` takes it.

        Returns:
            ``(loss, metrics)``; ``loss`` is a scalar whose gradient is the chosen
            estimator's, and ``metrics`` includes the plain mean task loss.
        """
        s = self.num_score_samples
        if s > 1:
            batch = apply_to_collection(
                batch, Tensor, lambda t: t.repeat((s,) + (1,) * (t.dim() - 1)) if t.dim() else t
            )
        losses, metrics = self.step(batch)
        if losses.dim() != 1:
            raise ValueError(f"step() must return per-example losses of shape (N,), got {tuple(losses.shape)}")
        loss = losses.mean()
        metrics = dict(metrics)
        metrics["loss"] = loss.detach()
        for m in self.discrete_modules():
            if m.score_function:
                loss = loss + m.surrogate_loss(losses.detach())
        return loss, metrics

    def _log_metrics(self, stage: str, metrics: Dict[str, Tensor], batch_size: int, batch_idx: int) -> None:
        """Accumulate ``metrics`` (batch means) on the device; log them only where they are read.

        Lightning's ``self.log`` costs about half a millisecond per call, more than a step of
        a small network, so a step adds its batch-size-weighted values to one running sum
        (two tensor ops, no host-device sync). Training steps also log ``train/{name}_step``
        every ``trainer.log_every_n_steps`` batches; the epoch means ``{stage}/{name}`` are
        logged once, in :meth:`_log_epoch_means`, from the sums of every rank.
        """
        names = tuple(metrics)
        values = torch.stack([v.detach().to(torch.float32).reshape(()) for v in metrics.values()])
        sums = self._metric_sums.get(stage)
        if sums is None or sums[0] != names:
            sums = self._metric_sums[stage] = (names, torch.zeros(len(names) + 1, device=values.device))
        sums[1][:-1].add_(values, alpha=float(batch_size))
        sums[1][-1] += batch_size
        trainer = self._trainer
        if stage == "train" and trainer is not None and is_logging_step(trainer):
            for name, value in metrics.items():
                self.log(f"train/{name}_step", value, on_step=True, on_epoch=False, prog_bar=name in ("loss", "acc"))

    def _log_epoch_means(self, stage: str) -> None:
        """Log ``{stage}/{name}``: the example-weighted means of the epoch over all ranks."""
        entry = self._metric_sums.pop(stage, None)
        if entry is None or self._trainer is None:
            return
        names, sums = entry
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")  # a collective on every rank
        values = sums.tolist()  # already identical on every rank: logged as plain numbers
        if values[-1] <= 0:
            return
        for name, total in zip(names, values[:-1]):
            # identical on every rank: declared synchronised (no sync_dist warning) and not reduced
            # again (rank_zero_only skips Lightning's all-reduce; see callbacks._utils.log_value)
            self.log(f"{stage}/{name}", total / values[-1], prog_bar=name in ("loss", "acc"), batch_size=1,
                     sync_dist=True, rank_zero_only=True)

    @override
    def on_train_epoch_end(self) -> None:
        self._log_epoch_means("train")

    @override
    def on_validation_epoch_end(self) -> None:
        self._log_epoch_means("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_epoch_means("test")

    @staticmethod
    def _batch_size(batch: Any) -> int:
        first = batch[0] if isinstance(batch, (list, tuple)) else batch
        return int(first.shape[0]) if isinstance(first, Tensor) and first.dim() else 1

    @override
    def configure_model(self) -> None:
        """Compile the training objective and the evaluation step when ``compile`` is set."""
        if self._compile_kwargs is not None and self._compiled is None:
            self._compiled = (
                torch.compile(self.compute_loss, **self._compile_kwargs),
                torch.compile(self.step, **self._compile_kwargs),
            )

    @override
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        compute_loss = self._compiled[0] if self._compiled is not None else self.compute_loss
        loss, metrics = compute_loss(batch)
        self._log_metrics("train", metrics, self._batch_size(batch), batch_idx)
        return loss

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """On logging steps only (no extra host-device sync otherwise), say once how to find
        the cause when the training loss is no longer finite."""
        trainer = self._trainer
        if self._nan_reported or trainer is None or not is_logging_step(trainer):
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            self._nan_reported = True
            rank_zero_warn(
                f"train/loss is {float(loss.detach())} at step {trainer.global_step}. To find the first "
                "non-finite logits, rerun with argument validation on: `--model.validate_args=true` on the "
                "command line (Python: `lightning_discrete.functional.set_validate_args(True)`), which "
                "raises a ValueError naming the estimator input. Common causes: a learning rate that is too "
                "high, a very small tau_b, or an input that is not scaled to [0, 1]."
            )

    def _eval_step(
        self, stage: str, batch: Any, batch_idx: int, extra: Optional[Dict[str, Tensor]] = None
    ) -> Tensor:
        """Evaluate :meth:`step` on ``batch`` and accumulate its metrics, ``{stage}/loss`` and
        ``extra`` (more batch means) as ``{stage}/{name}``."""
        step = self._compiled[1] if self._compiled is not None else self.step
        losses, metrics = step(batch)
        metrics = dict(metrics, **(extra or {}))
        metrics["loss"] = losses.mean()
        self._log_metrics(stage, metrics, self._batch_size(batch), batch_idx)
        return metrics["loss"]

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._eval_step("val", batch, batch_idx)

    @override
    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._eval_step("test", batch, batch_idx)

    # -- optimisation --------------------------------------------------------------- #
    @override
    def __getstate__(self) -> Dict[str, Any]:
        # compiled functions do not pickle (ddp_spawn, deepcopy): configure_model rebuilds them
        state = super().__getstate__()
        state["_compiled"] = None
        return state

    @override
    def configure_optimizers(self) -> OptimizerLRScheduler:
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
