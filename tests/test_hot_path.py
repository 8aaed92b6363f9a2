"""The training hot path: no host-device synchronisation on steps where nothing is logged,
and training steps that compile with ``torch.compile(fullgraph=True)``."""

from __future__ import annotations

import traceback
from typing import List

import pytest
import torch
from lightning.pytorch import Callback, seed_everything
from torch.utils._python_dispatch import TorchDispatchMode

from lightning_discrete.callbacks import (
    ActiveUnitMonitor,
    GradientSNRMonitor,
    LatentUtilizationMonitor,
    SaturationMonitor,
    TemperatureScheduler,
)


# ops that copy a value to the host (``.item()``, ``float(t)``, ``.tolist()``) or whose
# output size depends on the data (a sync on CUDA)
_SYNC_OPS = ("_local_scalar_dense", "bincount", "nonzero", "masked_select", "unique", "item")


class _OpSpy(TorchDispatchMode):
    def __init__(self, ops: List[str]) -> None:
        super().__init__()
        self.ops = ops

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        # torch's CPU Adam reads its step counter, a host tensor, with ``.item()``: not ours,
        # and no device sync (on CUDA the counter stays on the host too)
        if not (name in _SYNC_OPS and any("torch/optim/" in f.filename for f in traceback.extract_stack())):
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


class _SpyStart(Callback):
    """First callback: opens a dispatch spy around each training batch (closed by _SpyEnd)."""

    def __init__(self) -> None:
        self.per_step: List[List[str]] = []
        self.mode = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.per_step.append([])
        self.mode = _OpSpy(self.per_step[-1])
        self.mode.__enter__()


class _SpyEnd(Callback):
    def __init__(self, start: _SpyStart) -> None:
        self.start = start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.start.mode.__exit__(None, None, None)


def test_no_sync_on_steps_that_log_nothing(make_trainer, mixed_net, classification_data, loader):
    seed_everything(0)
    model = mixed_net()
    start = _SpyStart()
    monitors = [
        TemperatureScheduler(tau_f={"kind": "exponential", "start": 1.0, "end": 0.5}, tau_b=0.7),
        ActiveUnitMonitor(),
        LatentUtilizationMonitor(),
        LatentUtilizationMonitor(stages="train", stride=3),  # records on every 3rd step only
        GradientSNRMonitor(mode="window", window=100),
        SaturationMonitor(),
    ]
    trainer = make_trainer(max_epochs=1, callbacks=[start, *monitors, _SpyEnd(start)], log_every_n_steps=5)
    trainer.fit(model, loader(classification_data(96), 8))  # 12 steps; Lightning writes logs at steps 4 and 9
    assert len(start.per_step) == 12
    for step, ops in enumerate(start.per_step):
        assert "addmm" in ops or "mm" in ops  # the spy saw the step's work
        if (step + 1) % 5:
            synced = sorted({op for op in ops if op in _SYNC_OPS})
            assert synced == [], f"step {step} synchronised with the host via {synced}"


# --------------------------------------------------------------------------- #
# torch.compile(fullgraph=True)
# --------------------------------------------------------------------------- #


def _models():
    from lightning_discrete.models import (
        CategoricalAutoencoder,
        CategoricalVAE,
        LogicGateNetwork,
        StochasticBinaryNetwork,
        StructuredOutputNetwork,
    )

    x = torch.rand(6, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    return {
        "binary": lambda **kw: (StochasticBinaryNetwork(input_dim=16, hidden_dims=(12, 12), num_classes=3, **kw), (x, y)),
        "autoencoder": lambda **kw: (CategoricalAutoencoder(input_dim=16, num_latents=2, num_categories=4, hidden_dims=[8], **kw), (x, y)),
        "logic": lambda **kw: (LogicGateNetwork(in_features=16, num_neurons=24, num_layers=2, num_classes=3, **kw), (x.round(), y)),
        "vae": lambda **kw: (CategoricalVAE(input_dim=16, num_latents=2, num_categories=4, hidden_dims=[8], **kw), (x.round(), y)),
        "structured": lambda **kw: (StructuredOutputNetwork(input_dim=10, output_dim=6, hidden_dims=(8, 8), **kw), (x.round(), y)),
    }


class _CountingBackend:
    """A ``torch.compile`` backend that runs the captured graph eagerly and counts graphs."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


@pytest.mark.parametrize("name", ["binary", "autoencoder", "logic", "vae", "structured"])
def test_training_step_compiles_fullgraph_once_for_all_temperatures(name):
    torch._dynamo.reset()
    model, batch = _models()[name](tau_f=0.5, tau_b=0.7)
    model.train()
    backend = _CountingBackend()
    compiled = torch.compile(lambda b: model.compute_loss(b)[0], fullgraph=True, backend=backend)
    for tau_f, tau_b in [(0.5, 0.7), (1.3, 0.7), (0.0, 2.0), (0.2, 0.3)]:
        model.set_temperature(tau_f=tau_f, tau_b=tau_b)
        loss = compiled(batch)
        assert torch.isfinite(loss)
        loss.backward()
    # a temperature that changes is a graph input: no recompilation, no data-dependent guard
    assert backend.graphs == 1
    # a smaller (last) batch: one more graph, with a dynamic batch size, that serves any size
    for n in (4, 3, 5):
        loss = compiled(tuple(t[:n] for t in batch))
        assert torch.isfinite(loss)
        loss.backward()
    assert backend.graphs == 2
    # deterministic forward (tau_f = 0, argmax): compiled loss and gradients equal eager ones
    model.set_temperature(tau_f=0.0, tau_b=0.6)
    model.zero_grad()
    compiled(batch).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.compute_loss(batch)[0].backward()
    assert grads
    for n, p in model.named_parameters():
        if n in grads:
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-5, atol=1e-6)


def _estimator_cases():
    from lightning_discrete.functional import ESTIMATORS

    return [(name, binary) for name, est in ESTIMATORS.items() for binary in (True, False)
            if (est.binary if binary else est.categorical)]


@pytest.mark.parametrize("estimator, binary", _estimator_cases())
def test_every_estimator_trains_a_vae_under_fullgraph_compile(estimator, binary):
    """Every registry estimator, binary and categorical, in a VAE training step (sampling, KL,
    a learned prior) under ``torch.compile(fullgraph=True)``: no graph break, finite loss,
    gradients reaching the encoder and the prior; a new temperature does not recompile."""
    from lightning_discrete.models import CategoricalVAE

    torch._dynamo.reset()
    vae = CategoricalVAE(16, num_latents=3, num_categories=2 if binary else 4, bernoulli=binary, hidden_dims=[8],
                         estimator=estimator, prior="learned").train()
    x = torch.rand(6, 16, generator=torch.Generator().manual_seed(0)).round()
    backend = _CountingBackend()
    compiled = torch.compile(lambda b: vae.compute_loss(b)[0], fullgraph=True, backend=backend)
    for tau in (1.0, 0.7):
        if not vae.bottleneck.score_function:
            vae.set_temperature(tau=tau)
        vae.zero_grad()
        loss = compiled((x,))
        assert torch.isfinite(loss)
        loss.backward()
        assert vae.encoder[0].weight.grad.abs().sum() > 0 and vae.prior_logits.grad.abs().sum() > 0
    assert backend.graphs == 1


def test_compiled_samples_follow_the_forward_temperature():
    """The tensor-temperature (compiled) kernels sample Bernoulli(sigmoid(l / tau_f)) and
    Cat(softmax(l / tau_f)), and tau_f = 0 is the argmax."""
    from lightning_discrete import functional as LF

    torch._dynamo.reset()
    torch.manual_seed(0)
    l_bin = torch.tensor([-1.5, -0.2, 0.0, 0.4, 2.0]).repeat(20000, 1)
    l_cat = torch.tensor([0.3, -1.0, 1.2, 0.0]).repeat(20000, 1)
    tf = torch.tensor(0.7)
    fb = torch.compile(lambda l, t: LF.bernoulli_decoupled_st(l, t, torch.tensor(1.0)), fullgraph=True, backend="eager")
    fc = torch.compile(lambda l, t: LF.decoupled_st(l, t, torch.tensor(1.0)), fullgraph=True, backend="eager")
    zb, zc = fb(l_bin, tf), fc(l_cat, tf)
    assert set(zb.unique().tolist()) <= {0.0, 1.0} and torch.equal(zc.sum(-1), torch.ones(20000))
    for freq, p in ((zb.mean(0), torch.sigmoid(l_bin[0] / 0.7)), (zc.mean(0), torch.softmax(l_cat[0] / 0.7, -1))):
        se = (p * (1 - p) / 20000).sqrt()
        assert ((freq - p).abs() < 5 * se).all(), (freq, p)
    zero = torch.tensor(0.0)
    assert torch.equal(fb(l_bin, zero)[0], (l_bin[0] >= 0).float())
    assert torch.equal(fc(l_cat, zero)[0], torch.tensor([0.0, 0.0, 1.0, 0.0]))


def test_compile_flag_trains_like_eager(make_trainer, classification_data, loader):
    """``DiscreteModule(compile=...)`` from YAML: the compiled run (fullgraph, with a
    temperature schedule and index recording on) ends with the eager run's weights."""
    from lightning_discrete.models import StochasticBinaryNetwork

    def run(compile_arg):
        torch._dynamo.reset()
        seed_everything(0)
        model = StochasticBinaryNetwork(
            input_dim=8, hidden_dims=(16, 16), num_classes=2, tau_f=0.0, tau_b=0.7, compile=compile_arg
        )
        callbacks = [TemperatureScheduler(tau_b={"kind": "linear", "start": 1.0, "end": 0.5}), LatentUtilizationMonitor()]
        trainer = make_trainer(max_epochs=2, callbacks=callbacks)
        trainer.fit(model, loader(classification_data(64), 8), loader(classification_data(16, seed=1), 8))
        return model, trainer

    eager, t_eager = run(False)
    backend = _CountingBackend()
    compiled, t_compiled = run({"backend": backend, "fullgraph": True})
    assert backend.graphs >= 2  # the training objective and the evaluation step went through it
    for (n, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=n)
    for key in ("val/loss", "val/perplexity/hidden.1"):
        assert float(t_compiled.callback_metrics[key]) == pytest.approx(float(t_eager.callback_metrics[key]), rel=1e-4)


def test_compile_argument_is_checked():
    from lightning_discrete.models import StochasticBinaryNetwork

    with pytest.raises(ValueError, match="`compile`"):
        StochasticBinaryNetwork(input_dim=4, compile="yes")
