"""Shared test setup: the datamodules see no data outside the tests' own folders."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_offline_copies_of_this_machine(monkeypatch):
    """Hermetic tests: an offline copy installed on the machine (Debian's
    dataset-fashion-mnist in /usr/share/datasets/fashion-mnist) is not looked at;
    tests of the lookup point ``offline_dirs`` at their own temp folders."""
    try:
        from lightning_discrete.data.datamodules import _IDXDataModule
    except ImportError:  # torchvision or the data part missing
        return
    for cls in [_IDXDataModule, *_IDXDataModule.__subclasses__()]:
        monkeypatch.setattr(cls, "offline_dirs", ())


# --------------------------------------------------------------------------- #
# estimator tables of the functional tests: every registered estimator, called
# through the registry (the same path the bottlenecks take)
# --------------------------------------------------------------------------- #

import dataclasses  # noqa: E402
from typing import Any, Dict  # noqa: E402

import torch  # noqa: E402

from lightning_discrete import functional as LF  # noqa: E402


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
