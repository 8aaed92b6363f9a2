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

from .. import functional as LF
from ..nn.bottleneck import DiscreteBottleneck

__all__ = ["DiscreteModule", "classification_step"]


def default_adam(params: Iterable) -> torch.optim.Optimizer:
    """Adam with lr 1e-3, the default optimizer of every model here."""
    return torch.optim.Adam(params, lr=1e-3)


def classification_step(logits: Tensor, y: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Per-example cross-entropy ``(N,)`` and ``{"acc": accuracy}`` of class logits ``(N, C)``:
    the ``step`` return value of every classifier here."""
    acc = (logits.argmax(-1) == y).float().mean()
    return torch.nn.functional.cross_entropy(logits, y, reduction="none"), {"acc": acc}


class DiscreteModule(LightningModule):
    """Base LightningModule owning the estimator and temperatures of its bottlenecks.

    Args:
        estimator: registry name (see :data:`lightning_discrete.functional.ESTIMATORS`).
        tau_f: forward temperature (decoupled estimator; 0 means argmax).
        tau_b: backward temperature; defaults to ``tau_f``.
        tau: single temperature for single-temperature estimators (sets both).
        num_samples: samples per example for ``reinforce`` (leave-one-out, >= 2).
        eval_mode: bottleneck output in eval mode: ``argmax``, ``sample`` or ``soft``.
        estimator_kwargs: extra keyword arguments for the estimator.
        optimizer: callable building the optimizer from parameters (LightningCLI
            ``OptimizerCallable``); Adam(lr=1e-3) by default.
        lr_scheduler: optional callable building an LR scheduler from the optimizer.
        compile: run the training objective (:meth:`compute_loss`) and the evaluation
            :meth:`step` through ``torch.compile``; ``True`` for the defaults or a dict
            of ``torch.compile`` keyword arguments (e.g. ``{"mode": "max-autotune"}``).
            Every model here compiles with ``fullgraph=True``.
        validate_args: check every bottleneck's logits for NaN/Inf on each call (one
            extra pass and, on CUDA, a host-device sync per call); ``None`` follows
            :func:`lightning_discrete.functional.set_validate_args` (off by default).
            Turn it on when a loss goes NaN to find the first non-finite logits.
    """

    def __init__(
        self,
        estimator: str = "decoupled",
        tau_f: Optional[float] = None,
        tau_b: Optional[float] = None,
        tau: Optional[float] = None,
        num_samples: int = 2,
        eval_mode: str = "argmax",
        estimator_kwargs: Optional[Dict[str, Any]] = None,
        optimizer: OptimizerCallable = default_adam,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        compile: Union[bool, Dict[str, Any]] = False,
        validate_args: Optional[bool] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        spec = LF.get_estimator(estimator)  # fail early with the list of names
        if spec.name == "reinforce" and num_samples < 2:
            raise ValueError(f"`num_samples` must be >= 2 for 'reinforce', got {num_samples}")
        self._bottleneck_kwargs: Dict[str, Any] = dict(
            estimator=estimator,
            tau_f=tau_f,
            tau_b=tau_b,
            tau=tau,
            eval_mode=eval_mode,
            num_samples=2 if spec.name == "disarm" else num_samples,
            estimator_kwargs=estimator_kwargs,
            validate_args=validate_args,
        )
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
        """Keyword arguments every bottleneck of the model is built with."""
        return dict(self._bottleneck_kwargs)

    def discrete_modules(self) -> Iterator[DiscreteBottleneck]:
        """Every :class:`DiscreteBottleneck` inside the model."""
        for m in self.modules():
            if isinstance(m, DiscreteBottleneck):
                yield m

    def set_temperature(
        self, tau_f: Optional[float] = None, tau_b: Optional[float] = None, tau: Optional[float] = None
    ) -> None:
        """Set the temperatures of every bottleneck."""
        for m in self.discrete_modules():
            m.set_temperature(tau_f=tau_f, tau_b=tau_b, tau=tau)

    @property
    def num_score_samples(self) -> int:
        """How many copies of each example a training step evaluates (1 for pathwise estimators)."""
        spec = LF.get_estimator(self._bottleneck_kwargs["estimator"])
        return self._bottleneck_kwargs["num_samples"] if spec.score_function else 1

    # -- the subclass hook ------------------------------------------------------- #
    def step(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Per-example losses ``(N,)`` and a dict of scalar metrics for ``batch``."""
        raise NotImplementedError("subclasses of DiscreteModule implement step(batch)")

    # -- training objective -------------------------------------------------------- #
    def compute_loss(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Training objective of ``batch``: mean loss plus every surrogate loss.

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
        if stage == "train" and trainer is not None and batch_idx % max(trainer.log_every_n_steps, 1) == 0:
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
            self.log(f"{stage}/{name}", total / values[-1], prog_bar=name in ("loss", "acc"), batch_size=1)

    def on_train_epoch_end(self) -> None:
        self._log_epoch_means("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_means("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_means("test")

    @staticmethod
    def _batch_size(batch: Any) -> int:
        first = batch[0] if isinstance(batch, (list, tuple)) else batch
        return int(first.shape[0]) if isinstance(first, Tensor) and first.dim() else 1

    def configure_model(self) -> None:
        """Compile the training objective and the evaluation step when ``compile`` is set."""
        if self._compile_kwargs is not None and self._compiled is None:
            self._compiled = (
                torch.compile(self.compute_loss, **self._compile_kwargs),
                torch.compile(self.step, **self._compile_kwargs),
            )

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        compute_loss = self._compiled[0] if self._compiled is not None else self.compute_loss
        loss, metrics = compute_loss(batch)
        self._log_metrics("train", metrics, self._batch_size(batch), batch_idx)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """On logging steps only (no extra host-device sync otherwise), say once how to find
        the cause when the training loss is no longer finite."""
        trainer = self._trainer
        if self._nan_reported or trainer is None or batch_idx % max(trainer.log_every_n_steps, 1):
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

    def _eval_step(self, stage: str, batch: Any, batch_idx: int) -> Tensor:
        step = self._compiled[1] if self._compiled is not None else self.step
        losses, metrics = step(batch)
        metrics = dict(metrics)
        metrics["loss"] = losses.mean()
        self._log_metrics(stage, metrics, self._batch_size(batch), batch_idx)
        return metrics["loss"]

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._eval_step("val", batch, batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._eval_step("test", batch, batch_idx)

    # -- optimisation --------------------------------------------------------------- #
    def __getstate__(self) -> Dict[str, Any]:
        # compiled functions do not pickle (ddp_spawn, deepcopy): configure_model rebuilds them
        state = super().__getstate__()
        state["_compiled"] = None
        return state

    def configure_optimizers(self) -> OptimizerLRScheduler:
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
