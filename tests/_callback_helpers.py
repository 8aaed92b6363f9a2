"""Small models, data and Trainer settings shared by the callback tests (importable by
``ddp_spawn`` children, so no fixtures here)."""

from __future__ import annotations

import socket
from typing import Any, Dict, Tuple

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_discrete.models import CategoricalAutoencoder, DiscreteModule, StochasticBinaryNetwork
from lightning_discrete.nn import BinaryBottleneck, CategoricalBottleneck

from lightning_discrete.nn.logic import GroupSum, LogicGateLayer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_free_master_port(monkeypatch) -> None:
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))


def trainer_kwargs(**kw: Any) -> Dict[str, Any]:
    base = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    base.update(kw)
    return base


def sgd(lr: float):
    def make(params):
        return torch.optim.SGD(params, lr=lr)

    return make


def classification_data(n: int = 32, d: int = 8, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x, y)


def binary_images(n: int = 32, d: int = 8, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    proto = (torch.rand(4, d, generator=g) > 0.5).float()
    x = proto[torch.randint(0, 4, (n,), generator=g)]
    flip = torch.rand(n, d, generator=g) < 0.1
    return TensorDataset(torch.where(flip, 1 - x, x))


def loader(ds: TensorDataset, batch_size: int = 8) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False)


def tiny_binary_net(**kw: Any) -> StochasticBinaryNetwork:
    kw.setdefault("tau_f", 1.0)
    kw.setdefault("tau_b", 1.0)
    return StochasticBinaryNetwork(input_dim=8, hidden_dims=(6, 6), num_classes=2, **kw)


def tiny_autoencoder(**kw: Any) -> CategoricalAutoencoder:
    kw.setdefault("tau_f", 1.0)
    kw.setdefault("tau_b", 1.0)
    return CategoricalAutoencoder(input_dim=8, num_latents=2, num_categories=4, hidden_dims=(16,), **kw)


class MixedNet(DiscreteModule):
    """Categorical latents (2 x 4), binary units and a logic-gate layer in one model,
    so one run exercises every monitor. ``(B, 8) -> (B, 2)``."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("tau_f", 1.0)
        kw.setdefault("tau_b", 1.0)
        super().__init__(**kw)
        self.encoder = nn.Linear(8, 8)
        self.code = CategoricalBottleneck(num_categories=4, **self.bottleneck_kwargs())
        self.pre = nn.Linear(8, 8)
        self.units = BinaryBottleneck(**self.bottleneck_kwargs())
        self.gates = LogicGateLayer(16, 16, init="gaussian", generator_seed=0, **self.bottleneck_kwargs())
        self.readout = GroupSum(2, tau=2.0)

    def forward(self, x: Tensor) -> Tensor:
        c = self.code(self.encoder(x).view(-1, 2, 4)).flatten(1)
        u = self.units(self.pre(x))
        return self.readout(self.gates(torch.cat([c, u], 1)))

    def step(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        x, y = batch
        logits = self(x)
        return F.cross_entropy(logits.float(), y, reduction="none"), {}


class NoisyLinearModel(LightningModule):
    """``loss = sum_i w_i (c_i + sigma * eps_i)``, ``eps ~ N(0, 1)`` drawn from the global
    RNG on every call: the gradient w.r.t. ``w`` is ``c + sigma * eps``, so the SNR of
    element ``i`` is ``|c_i| / sigma`` exactly. SGD with lr 0 keeps ``w`` fixed."""

    def __init__(self, c: Tensor, sigma: float, lr: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros_like(c))
        self.register_buffer("c", c.clone())
        self.sigma = sigma
        self.lr = lr

    def compute_loss(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        noise = torch.randn(self.c.shape, device=self.c.device)
        return (self.w * (self.c + self.sigma * noise)).sum(), {}

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.compute_loss(batch)[0]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class KnownLogitGradModel(DiscreteModule):
    """Binary units with fixed logits ``l`` shared by every row and
    ``loss_row = sum_j a_j z_j``: with the decoupled estimator the per-example
    logit gradient is ``sigmoid'(l_j / tau_b) / tau_b * a_j`` whatever ``z`` is sampled."""

    def __init__(self, logits: Tensor, weights: Tensor, tau_b: float = 1.0) -> None:
        super().__init__(tau_f=1.0, tau_b=tau_b, optimizer=sgd(0.0))
        self.l = nn.Parameter(logits.clone())
        self.register_buffer("a", weights.clone())
        self.units = BinaryBottleneck(**self.bottleneck_kwargs())

    def per_example_logit_grad(self) -> Tensor:
        tb = float(self.units.tau_b)
        s = torch.sigmoid(self.l.detach() / tb)
        return s * (1 - s) / tb * self.a

    def step(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        x = batch[0]
        z = self.units(self.l.expand(x.shape[0], -1))
        return (z * self.a).sum(-1), {}


class Recorder(Callback):
    """Records ``(global_step, tau_f, tau_b)`` of the first bottleneck at every training batch."""

    def __init__(self) -> None:
        self.rows = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        m = next(pl_module.discrete_modules())
        self.rows.append((trainer.global_step, float(m.tau_f), float(m.tau_b)))


def finite_metrics(metrics: Dict[str, Tensor], prefix: str) -> Dict[str, float]:
    out = {k: float(v) for k, v in metrics.items() if k.startswith(prefix)}
    assert out, f"nothing logged under {prefix!r}: {sorted(metrics)}"
    bad = {k: v for k, v in out.items() if not torch.isfinite(torch.tensor(v))}
    assert not bad, f"non-finite values: {bad}"
    return out

