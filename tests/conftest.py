"""Shared test setup: hermetic datamodules, quiet Trainers, tiny data and models.

The model classes live here (not in a test module) so that ``ddp_spawn`` children can
unpickle them: pytest puts this folder on ``sys.path`` and the children inherit it.
Tests reach everything through the fixtures below, never by importing this module.
"""

from __future__ import annotations

import atexit
import dataclasses
import socket
from typing import Any, Callable, Dict, List, Tuple

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_discrete import functional as LF
from lightning_discrete.cli import _destroy_process_group
from lightning_discrete.models import CategoricalAutoencoder, DiscreteModule, StochasticBinaryNetwork
from lightning_discrete.nn import BinaryBottleneck, CategoricalBottleneck, DiscreteBottleneck
from lightning_discrete.nn.logic import GroupSum, LogicGateLayer


@pytest.fixture(autouse=True)
def _no_offline_copies_of_this_machine(monkeypatch):
    """Hermetic tests: an offline copy installed on the machine (Debian's
    dataset-fashion-mnist in /usr/share/datasets/fashion-mnist) is not looked at;
    tests of the lookup point ``offline_dirs`` at their own temp folders."""
    try:
        from lightning_discrete.data import FashionMNISTDataModule, MNISTDataModule
    except ImportError:  # torchvision or the data part missing
        return
    for cls in (FashionMNISTDataModule, MNISTDataModule):
        monkeypatch.setattr(cls, "offline_dirs", ())


@pytest.fixture(scope="session")
def parity6():
    """All 64 inputs of 6 bits ``(64, 6)`` float and their labels ``(64,)`` long: the
    parity of the first 3 bits (a small Boolean function a logic-gate network learns
    exactly). Shared by the session: do not modify the tensors."""
    import itertools

    import torch

    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)))
    return x, (x[:, :3].sum(1) % 2).long()

# ------------------------------------------------------------------------------------- #
# tiny dataset files on disk (IDX for MNIST / Fashion-MNIST, pickles for CIFAR-10)
# ------------------------------------------------------------------------------------- #
IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def _idx_bytes(array):
    """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, data."""
    import struct

    import numpy as np

    a = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def _write_idx_files(folder, n_train=60, n_test=20, seed=0, gz=False):
    """Write the four IDX files (28x28 images, labels 0..9) into ``folder``; returns the arrays."""
    import gzip
    import os

    import numpy as np

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    arrays = {
        ("train", "images"): rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        ("train", "labels"): (np.arange(n_train) % 10).astype(np.uint8),
        ("test", "images"): rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        ("test", "labels"): (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, name in IDX_NAMES.items():
        data = _idx_bytes(arrays[key])
        opener = gzip.open if gz else open
        with opener(os.path.join(folder, name + (".gz" if gz else "")), "wb") as fh:
            fh.write(data)
    return arrays


def _write_mnist_layout(data_dir, name="FashionMNIST", **kwargs):
    """IDX files where torchvision / the datamodules read them: ``<data_dir>/<name>/raw``."""
    import os

    return _write_idx_files(os.path.join(data_dir, name, "raw"), **kwargs)


def _write_cifar_layout(data_dir, per_batch=8, n_test=10, seed=0):
    """Tiny CIFAR-10 python-pickle batches in ``<data_dir>/cifar-10-batches-py``."""
    import os
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    folder = os.path.join(data_dir, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    out = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(os.path.join(folder, name), "wb") as fh:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, fh)
        out[name] = (data, labels)
    with open(os.path.join(folder, "batches.meta"), "wb") as fh:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, fh)
    return out


@pytest.fixture(scope="session")
def idx_names():
    """``{(split, kind): IDX file name}`` of the four MNIST-format files."""
    return dict(IDX_NAMES)


@pytest.fixture(scope="session")
def idx_bytes():
    """``idx_bytes(uint8 array) -> bytes``: the IDX encoding of an array."""
    return _idx_bytes


@pytest.fixture(scope="session")
def make_idx_files():
    """``make_idx_files(folder, n_train=60, n_test=20, seed=0, gz=False) -> arrays``: the four IDX
    files (28x28 random images, labels ``i % 10``) in ``folder``; returns ``{(split, kind): array}``."""
    return _write_idx_files


@pytest.fixture(scope="session")
def make_mnist_layout():
    """``make_mnist_layout(data_dir, name="FashionMNIST", **make_idx_files kwargs) -> arrays``: the
    IDX files in ``<data_dir>/<name>/raw``, where the datamodules read them."""
    return _write_mnist_layout


@pytest.fixture(scope="session")
def make_cifar_layout():
    """``make_cifar_layout(data_dir, per_batch=8, n_test=10, seed=0) -> batches``: tiny CIFAR-10
    pickle batches in ``<data_dir>/cifar-10-batches-py``."""
    return _write_cifar_layout


# ------------------------------------------------------------------------------------- #
# the command line
# ------------------------------------------------------------------------------------- #
@pytest.fixture(scope="session")
def fast_args():
    """``fast_args(data_dir, run_dir) -> list``: LightningCLI overrides that make any recipe run
    three training steps and two validation batches on the tiny data files, without logger,
    progress bar or model summary."""

    def args(data_dir, run_dir):
        return [
            f"--data.data_dir={data_dir}",
            "--data.val_size=8",
            "--data.batch_size=8",
            "--trainer.max_epochs=1",
            "--trainer.max_steps=-1",
            "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=2",
            "--trainer.val_check_interval=null",
            "--trainer.check_val_every_n_epoch=1",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={run_dir}",
        ]

    return args

# --------------------------------------------------------------------------- Trainer settings
QUIET = dict(
    accelerator="cpu",
    devices=1,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    num_sanity_val_steps=0,
)


class OrderlyDDPSpawn(DDPStrategy):
    """``ddp_spawn`` whose ranks destroy their gloo process group when they exit.

    Lightning registers that at-exit destroy for NCCL only; without it a rank can abort
    while its interpreter shuts down ("terminate called without an active exception",
    SIGABRT), which failed one CI run after the test's own assertions had passed.
    """

    def __init__(self) -> None:
        super().__init__(start_method="spawn")

    def setup_distributed(self) -> None:
        super().setup_distributed()
        atexit.register(_destroy_process_group)


@pytest.fixture
def make_trainer() -> Callable[..., Trainer]:
    """``make_trainer(**kw)``: a CPU Trainer without logger, checkpoints, progress bar,
    model summary or sanity check; ``kw`` overrides any of them (``strategy="ddp_spawn"``
    gets :class:`OrderlyDDPSpawn`)."""

    def make(**kw: Any) -> Trainer:
        if kw.get("strategy") == "ddp_spawn":
            kw["strategy"] = OrderlyDDPSpawn()
        return Trainer(**{**QUIET, **kw})

    return make


@pytest.fixture
def ddp_spawn() -> Callable[[], OrderlyDDPSpawn]:
    """``ddp_spawn()``: a fresh :class:`OrderlyDDPSpawn` for a Trainer built by hand."""
    return OrderlyDDPSpawn


@pytest.fixture
def free_master_port(monkeypatch) -> int:
    """``MASTER_ADDR``/``MASTER_PORT`` of a free local port for a ``ddp_spawn`` run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    return port


# --------------------------------------------------------------------------- data
def _classification_data(n: int = 32, d: int = 8, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x, y)


def _binary_images(n: int = 32, d: int = 8, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    proto = (torch.rand(4, d, generator=g) > 0.5).float()
    x = proto[torch.randint(0, 4, (n,), generator=g)]
    flip = torch.rand(n, d, generator=g) < 0.1
    return TensorDataset(torch.where(flip, 1 - x, x))


@pytest.fixture
def classification_data() -> Callable[..., TensorDataset]:
    """``classification_data(n=32, d=8, seed=0)``: ``(x (n, d) normal, y (n,) in {0, 1})``."""
    return _classification_data


@pytest.fixture
def binary_images() -> Callable[..., TensorDataset]:
    """``binary_images(n=32, d=8, seed=0)``: ``(x (n, d) in {0, 1})``, 4 prototypes with 10% flips."""
    return _binary_images


@pytest.fixture
def loader() -> Callable[..., DataLoader]:
    """``loader(dataset, batch_size=8)``: an unshuffled DataLoader."""

    def make(ds: TensorDataset, batch_size: int = 8) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=False)

    return make


# --------------------------------------------------------------------------- models
def sgd(lr: float) -> Callable:
    """An optimizer factory ``params -> SGD(params, lr)`` (the models' ``optimizer`` argument)."""

    def make(params):
        return torch.optim.SGD(params, lr=lr)

    return make


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
        return F.cross_entropy(self(x).float(), y, reduction="none"), {}


class KnownLogitGradModel(DiscreteModule):
    """Binary units with fixed logits ``l`` shared by every row and
    ``loss_row = sum_j a_j z_j``: with the decoupled estimator the per-example
    logit gradient is ``sigmoid'(l_j / tau_b) / tau_b * a_j`` whatever ``z`` is sampled."""

    def __init__(self, logits: Tensor, weights: Tensor, tau_b: float = 1.0) -> None:
        super().__init__(tau_f=1.0, tau_b=tau_b, optimizer=sgd(0.0))
        self.l = nn.Parameter(logits.clone())
        self.register_buffer("a", weights.clone())
        self.units = BinaryBottleneck(**self.bottleneck_kwargs())

    def per_example_logit_grad(self, tau_b: float) -> Tensor:
        s = torch.sigmoid(self.l.detach() / tau_b)
        return s * (1 - s) / tau_b * self.a

    def step(self, batch: Any) -> Tuple[Tensor, Dict[str, Tensor]]:
        z = self.units(self.l.expand(batch[0].shape[0], -1))
        return (z * self.a).sum(-1), {}


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


@pytest.fixture
def mixed_net() -> Callable[..., LightningModule]:
    """``mixed_net(**kw)``: categorical latents, binary units and a logic-gate layer, ``(B, 8) -> (B, 2)``."""
    return MixedNet


@pytest.fixture
def known_logit_grad_model() -> Callable[..., LightningModule]:
    """``known_logit_grad_model(logits, weights, tau_b)``: binary units whose per-example logit
    gradient is known in closed form (``.per_example_logit_grad(tau_b)``)."""
    return KnownLogitGradModel


@pytest.fixture
def noisy_linear_model() -> Callable[..., LightningModule]:
    """``noisy_linear_model(c, sigma, lr=0)``: gradient ``c + sigma * N(0, 1)``, SNR ``|c| / sigma``."""
    return NoisyLinearModel


@pytest.fixture
def tiny_binary_net() -> Callable[..., LightningModule]:
    """``tiny_binary_net(**kw)``: StochasticBinaryNetwork 8 -> (6, 6) -> 2, tau_f = tau_b = 1 by default."""
    def make(**kw: Any) -> LightningModule:
        kw.setdefault("tau_f", 1.0)
        kw.setdefault("tau_b", 1.0)
        return StochasticBinaryNetwork(input_dim=8, hidden_dims=(6, 6), num_classes=2, **kw)

    return make


@pytest.fixture
def tiny_autoencoder() -> Callable[..., LightningModule]:
    """``tiny_autoencoder(**kw)``: CategoricalAutoencoder 8 -> 2 latents x 4 codes, tau_f = tau_b = 1 by default."""
    def make(**kw: Any) -> LightningModule:
        kw.setdefault("tau_f", 1.0)
        kw.setdefault("tau_b", 1.0)
        return CategoricalAutoencoder(input_dim=8, num_latents=2, num_categories=4, hidden_dims=(16,), **kw)

    return make


class _TemperatureRecorder(Callback):
    """Records ``(global_step, tau_f, tau_b)`` of the first bottleneck at every training batch."""

    def __init__(self) -> None:
        self.rows: List[Tuple[int, float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        m = next(pl_module.discrete_modules())
        self.rows.append((trainer.global_step, float(m.tau_f), float(m.tau_b)))


@pytest.fixture
def temperature_recorder() -> Callable[[], Callback]:
    """``temperature_recorder()``: a callback whose ``rows`` are ``(global_step, tau_f, tau_b)`` per batch."""
    return _TemperatureRecorder


class _RaiseBeforeBackward(Callback):
    """Raises ``RuntimeError("boom")`` after the first training forward, before its backward."""

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        raise RuntimeError("boom")


@pytest.fixture
def raise_before_backward() -> Callable[[], Callback]:
    """``raise_before_backward()``: a callback that fails the first training step after its
    forward (``RuntimeError("boom")``), to test what callbacks leave behind when a fit raises."""
    return _RaiseBeforeBackward


class _RankTemperatures(Callback):
    """At the end of a fit, writes ``{bottleneck: [tau_f, tau_b]}`` of this rank's model to
    ``<folder>/rank<global rank>.json`` (picklable: ``ddp_spawn`` children run it)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        import json
        import os

        temps = {name: list(m.temperatures()) for name, m in pl_module.named_modules()
                 if isinstance(m, DiscreteBottleneck)}
        with open(os.path.join(self.folder, f"rank{trainer.global_rank}.json"), "w") as fh:
            json.dump(temps, fh)


@pytest.fixture
def rank_temperatures() -> Callable[[str], Callback]:
    """``rank_temperatures(folder)``: a callback that writes each rank's final bottleneck
    temperatures to ``<folder>/rank<r>.json`` (``{name: [tau_f, tau_b]}``)."""
    return _RankTemperatures


@pytest.fixture
def all_monitors() -> Callable[[], List[Callback]]:
    """``all_monitors()``: a temperature schedule (tau_f 1 -> 0.5 linear, tau_b 2) and every
    monitor (utilisation, SNR probe every 2 steps and window of 2, active units per 2 steps, gates,
    saturation)."""
    from lightning_discrete.callbacks import (
        ActiveUnitMonitor,
        GateUsageMonitor,
        GradientSNRMonitor,
        LatentUtilizationMonitor,
        SaturationMonitor,
        TemperatureScheduler,
    )

    def make() -> List[Callback]:
        return [
            TemperatureScheduler(tau_f={"kind": "linear", "start": 1.0, "end": 0.5}, tau_b=2.0),
            LatentUtilizationMonitor(),
            GradientSNRMonitor(every_n_steps=2, num_samples=4),
            GradientSNRMonitor(mode="window", window=2),
            ActiveUnitMonitor(window=2),
            GateUsageMonitor(),
            SaturationMonitor(),
        ]

    return make

# --------------------------------------------------------------------------- #
# estimator tables of the functional tests: every registered estimator, called
# through the registry (the same path the bottlenecks take)
# --------------------------------------------------------------------------- #


@dataclasses.dataclass(frozen=True)
class EstimatorCase:
    """One registered estimator at fixed temperatures; ``case(logits, generator, dim=...)``."""

    id: str
    estimator: LF.Estimator
    binary: bool
    tau_f: float = 0.8
    tau_b: float = 0.5
    kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def stochastic(self) -> bool:
        """The output depends on the generator (``tau_f = 0`` is argmax)."""
        return self.estimator.stochastic and self.tau_f > 0

    def __call__(self, logits, generator=None, dim=-1):
        out = self.estimator(
            logits, self.tau_f, self.tau_b, binary=self.binary, dim=dim, generator=generator, **self.kwargs
        )
        return torch.stack(out) if self.estimator.antithetic else out  # the pair (b, b~) stacked


def _estimator_cases(binary: bool) -> Dict[str, EstimatorCase]:
    cases = {}
    for name, est in sorted(LF.ESTIMATORS.items()):
        if est.has_binary if binary else est.has_categorical:
            kwargs = {"num_samples": 3} if est.categorical is LF.gumbel_rao else {}
            case_id = f"bernoulli_{name}" if binary and not est.signed else name
            cases[case_id] = EstimatorCase(case_id, est, binary, kwargs=kwargs)
    tau0 = "bernoulli_decoupled_st_tau0" if binary else "decoupled_st_tau0"
    cases[tau0] = EstimatorCase(tau0, LF.get_estimator("decoupled_st"), binary, tau_f=0.0)
    return cases


CATEGORICAL_CASES = _estimator_cases(binary=False)
BINARY_CASES = _estimator_cases(binary=True)


@pytest.fixture(params=sorted(CATEGORICAL_CASES))
def categorical_case(request) -> EstimatorCase:
    """Every registered estimator with a categorical form (plus decoupled ST at ``tau_f = 0``)."""
    return CATEGORICAL_CASES[request.param]


@pytest.fixture(params=sorted(BINARY_CASES))
def binary_case(request) -> EstimatorCase:
    """Every registered estimator with a binary form (plus decoupled ST at ``tau_f = 0``)."""
    return BINARY_CASES[request.param]


@pytest.fixture(params=sorted(CATEGORICAL_CASES) + sorted(BINARY_CASES))
def estimator_case(request) -> EstimatorCase:
    """Every form of every registered estimator."""
    return {**CATEGORICAL_CASES, **BINARY_CASES}[request.param]


@pytest.fixture(scope="session")
def gen():
    """``gen(seed)``: a CPU generator seeded with ``seed`` (0 by default)."""
    return lambda seed=0: torch.Generator().manual_seed(seed)


@pytest.fixture
def tiny_vae() -> Callable[..., LightningModule]:
    """``tiny_vae(**kw)``: CategoricalVAE 4 -> (5,) -> 2 latents x 3 categories, seeded weights
    (torch seed 0), tau = 1 by default: 9 codes, small enough to enumerate."""
    from lightning_discrete.models import CategoricalVAE

    def make(**kw: Any) -> LightningModule:
        kw.setdefault("tau", 1.0)
        kw.setdefault("estimator", "softmax_st")
        torch.manual_seed(0)
        return CategoricalVAE(input_dim=4, num_latents=2, num_categories=3, hidden_dims=(5,), **kw)

    return make
