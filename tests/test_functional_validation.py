"""The validation switch: value checks (NaN / Inf) off by default, on by request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lightning_discrete import functional as LF

_NAN = torch.tensor([[0.5, float("nan"), 1.0]])
_INF = torch.tensor([[0.5, float("inf"), 1.0]])

# the estimator tables are fixtures of tests/conftest.py: ``estimator_case`` runs every
# form of every registered estimator through the registry


def _shaped(case, x):
    """``x`` (2-D) as the input of ``case``: binary units take one row."""
    return x[0] if case.binary else x


@pytest.fixture(autouse=True)
def _restore_switch():
    before = LF.validate_args_enabled()
    yield
    LF.set_validate_args(before)


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def test_default_is_off_without_env():
    if os.environ.get("LIGHTNING_DISCRETE_VALIDATE"):
        pytest.skip("LIGHTNING_DISCRETE_VALIDATE is set in this environment")
    assert LF.validate_args_enabled() is False


def test_off_no_value_check_runs(estimator_case, monkeypatch):
    LF.set_validate_args(False)
    called = []
    real = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda *a, **k: called.append(1) or real(*a, **k))
    for bad in (_NAN, _INF):
        with _OpLog() as log:
            estimator_case(_shaped(estimator_case, bad))  # passes through without raising
        assert not called
        assert not any("aminmax" in op or "isfinite" in op or "isnan" in op for op in log.ops), log.ops


def test_off_no_host_sync(monkeypatch):
    """With the checks off an estimator call reads no tensor value back to the host."""
    LF.set_validate_args(False)
    reads = []
    for meth in ("__float__", "__bool__", "item", "tolist"):
        real = getattr(torch.Tensor, meth)
        monkeypatch.setattr(
            torch.Tensor, meth, lambda t, *a, _real=real, **k: reads.append(1) or _real(t, *a, **k)
        )
    x = torch.randn(6, 5, requires_grad=True)
    z = LF.decoupled_st(x, 1.0, 0.5)
    z.backward(torch.randn(6, 5))
    xb = torch.randn(7, requires_grad=True)
    LF.bernoulli_decoupled_st(xb, 0.3, 0.7).backward(torch.randn(7))
    assert not reads


@pytest.mark.parametrize("bad", [_NAN, _INF, -_INF], ids=["nan", "inf", "-inf"])
def test_on_non_finite_raises_naming_argument(estimator_case, bad):
    LF.set_validate_args(True)
    with pytest.raises(ValueError, match=r"`logits` contains NaN or Inf"):
        estimator_case(_shaped(estimator_case, bad))


def test_on_finite_input_passes(estimator_case):
    LF.set_validate_args(True)
    x = torch.randn(4, 3)
    z = estimator_case(_shaped(estimator_case, x))
    assert bool(torch.isfinite(z).all())


def test_check_logits_public_and_named():
    with LF.validate_args():
        with pytest.raises(ValueError, match="`scores` contains NaN or Inf"):
            LF.check_logits(_NAN, "scores")
    LF.check_logits(_NAN, "scores")  # off: value not inspected
    with pytest.raises(ValueError, match="floating-point"):
        LF.check_logits(torch.tensor([1, 2]))  # cheap checks always run
    assert LF.check_tau(2, "tau") == 2.0
    assert LF.check_dim(torch.zeros(2, 3), -1) == 1


def test_cheap_checks_always_on():
    LF.set_validate_args(False)
    with pytest.raises(ValueError, match="tau_f"):
        LF.decoupled_st(torch.randn(2, 3), -1.0, 1.0)
    with pytest.raises(ValueError, match="dim"):
        LF.decoupled_st(torch.randn(2, 3), 1.0, 1.0, dim=3)
    with pytest.raises(ValueError, match="logits"):
        LF.decoupled_st(torch.tensor([[1, 2]]), 1.0, 1.0)


@pytest.mark.parametrize("initial", [False, True])
def test_context_manager_restores_previous_state(initial):
    LF.set_validate_args(initial)
    with LF.validate_args():
        assert LF.validate_args_enabled() is True
        with LF.validate_args(False):
            assert LF.validate_args_enabled() is False
        assert LF.validate_args_enabled() is True
    assert LF.validate_args_enabled() is initial
    with pytest.raises(RuntimeError):
        with LF.validate_args(not initial):
            raise RuntimeError("boom")
    assert LF.validate_args_enabled() is initial  # restored on error too


def test_bottleneck_follows_switch():
    from lightning_discrete.nn import BinaryBottleneck, CategoricalBottleneck

    for b in (CategoricalBottleneck(3), BinaryBottleneck()):
        b.train()
        LF.set_validate_args(False)
        b(_NAN)
        with LF.validate_args(), pytest.raises(ValueError, match="NaN or Inf"):
            b(_NAN)


def test_bottleneck_validate_args_overrides_switch():
    from lightning_discrete.nn import BinaryBottleneck, CategoricalBottleneck

    for cls, x in ((CategoricalBottleneck, _NAN), (BinaryBottleneck, _NAN)):
        on, off = cls(validate_args=True), cls(validate_args=False)
        LF.set_validate_args(False)
        with pytest.raises(ValueError, match="NaN or Inf"):
            on(x)  # checks although the process-wide switch is off
        LF.set_validate_args(True)
        off(x)  # never checks
        assert LF.validate_args_enabled() is True  # the module restored the switch


def test_model_validate_args_reaches_bottlenecks_and_nan_loss_says_how():
    import warnings

    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_discrete.models import CategoricalAutoencoder

    LF.set_validate_args(False)
    x = torch.rand(16, 4)
    x[3, 1] = float("nan")  # reaches the loss (the reconstruction target) and the logits
    data = DataLoader(TensorDataset(x, torch.zeros(16, dtype=torch.long)), batch_size=16)
    kw = dict(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, log_every_n_steps=1)
    model = CategoricalAutoencoder(input_dim=4, num_latents=2, num_categories=3, hidden_dims=(5,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(**kw).fit(model, data)  # NaN input -> NaN loss, no check on the hot path
    hints = [str(w.message) for w in caught if "validate_args" in str(w.message)]
    assert len(hints) == 1  # said once, not every step
    assert "train/loss is nan" in hints[0] and "--model.validate_args=true" in hints[0]
    model = CategoricalAutoencoder(input_dim=4, num_latents=2, num_categories=3, hidden_dims=(5,), validate_args=True)
    assert all(m.validate_args is True for m in model.discrete_modules())
    with pytest.raises(ValueError, match="NaN or Inf"):
        Trainer(**kw).fit(model, data)


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("0", False), ("", False)])
def test_env_var_sets_default(value, expected):
    env = dict(os.environ, LIGHTNING_DISCRETE_VALIDATE=value)
    root = os.path.dirname(os.path.dirname(os.path.abspath(LF.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [root, env.get("PYTHONPATH", "")] if p)
    code = "from lightning_discrete import functional as LF; print(LF.validate_args_enabled())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == str(expected)
