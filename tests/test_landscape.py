"""``analysis.temperature_landscape``: exact bias / variance of decoupled ST over a
(tau_f, tau_b) grid, checked against brute-force sampling of the library's estimators,
closed forms and the existing enumeration helpers."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_discrete import analysis as A
from lightning_discrete import functional as LF
from lightning_discrete.models import CategoricalAutoencoder, StochasticBinaryNetwork

F64 = torch.float64


def _quadratic_problem(batch=2, n=2, k=3, seed=0):
    """Per-example loss ||W vec(z) - t_b||^2: couples the variables, so dL/dz depends on z."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, n, k, generator=g, dtype=F64)
    w = torch.randn(n * k, n * k, generator=g, dtype=F64)
    t = torch.randn(batch, n * k, generator=g, dtype=F64)

    def loss_fn(z):  # (C, B, n, k) -> (C, B)
        return ((z.flatten(-2) @ w.T - t) ** 2).sum(-1)

    return logits, loss_fn


def _sampled_batch_gradients(st_fn, logits, loss_fn, num):
    """``num`` gradients of the batch loss, summed over examples: ``(num, D)``."""
    rep = logits.unsqueeze(0).expand((num,) + tuple(logits.shape)).clone().requires_grad_()
    (g,) = torch.autograd.grad(loss_fn(st_fn(rep)).sum(), rep)
    return g.sum(1).flatten(1)


def _assert_matches_sampling(land_stats, i, draws, exact, num_cos_draws):
    """Bias, variance and cosine of a landscape cell against ``draws`` ``(S, D)`` of the
    estimator itself, within a few standard errors."""
    s = draws.shape[0]
    mean = draws.mean(0)
    dev2 = (draws - mean).pow(2).sum(-1)  # (S,)
    var, var_se = dev2.mean(), dev2.std() / math.sqrt(s)
    assert abs(float(land_stats["variance"][i]) - float(var)) <= 5 * float(var_se)
    # | ||a|| - ||b|| | <= ||a - b||, whose square has expectation var / S
    assert abs(float(land_stats["bias"][i]) - float((mean - exact).norm())) <= 5 * math.sqrt(float(var) / s)
    cos = torch.nn.functional.cosine_similarity(draws, exact.expand_as(draws), dim=-1)
    cos_se = float(cos.std()) * math.sqrt(1 / s + 1 / num_cos_draws)
    assert abs(float(land_stats["cosine"][i]) - float(cos.mean())) <= 5 * cos_se


TAU_F, TAU_B = [0.5, 1.0, 2.0], [0.5, 1.0, 3.0]


@pytest.fixture(scope="module")
def quadratic():
    logits, loss_fn = _quadratic_problem()
    land = A.temperature_landscape(
        logits, loss_fn, TAU_F, TAU_B, num_samples=4000, chunk_size=4, generator=torch.Generator().manual_seed(1)
    )
    return logits, loss_fn, land


def test_reference_is_the_exact_gradient_at_tau_f_of_every_example(quadratic):
    logits, loss_fn, land = quadratic
    for i, tf in enumerate(TAU_F + [1.0]):
        per_example = [
            A.exact_gradient(logits[b], lambda z, b=b: loss_fn(z.unsqueeze(1).expand(-1, 2, -1, -1))[:, b], tf)
            for b in range(2)
        ]
        expected = torch.stack(per_example).sum(0).flatten()
        got = land.exact[i] if i < len(TAU_F) else land.exact_tau1
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("i,j", [(0, 1), (0, 2), (1, 1), (2, 0), (2, 2)])
def test_decoupled_st_matches_sampling_the_estimator(quadratic, i, j):
    """Off the diagonal against ``functional.decoupled_st``, on it (tau_f = tau_b) against
    ``functional.softmax_st``."""
    logits, loss_fn, land = quadratic
    tf, tb = TAU_F[i], TAU_B[j]
    gen = torch.Generator().manual_seed(10 + 3 * i + j)
    if tf == tb:
        st = lambda l: LF.softmax_st(l, tf, generator=gen)  # noqa: E731
    else:
        st = lambda l: LF.decoupled_st(l, tf, tb, generator=gen)  # noqa: E731
    draws = _sampled_batch_gradients(st, logits, loss_fn, 40000)
    cell = {key: value[i] for key, value in land.dst.items()}
    _assert_matches_sampling(cell, j, draws, land.exact[i], land.num_samples)


def test_identity_st_matches_sampling_and_ignores_tau_b(quadratic):
    logits, loss_fn, land = quadratic
    gen = torch.Generator().manual_seed(7)
    for i, tf in enumerate(TAU_F):
        # forward: decoupled ST's sample at tau_f; backward: dL/dz unchanged
        st = lambda l: LF.decoupled_st(l, tf, 1.0, generator=gen).detach() + l - l.detach()  # noqa: E731
        draws = _sampled_batch_gradients(st, logits, loss_fn, 40000)
        _assert_matches_sampling(land.identity, i, draws, land.exact[i], land.num_samples)
    other = A.temperature_landscape(
        logits, loss_fn, TAU_F, [0.1, 7.0], num_samples=4000, chunk_size=4, generator=torch.Generator().manual_seed(1)
    )
    for key in land.identity:
        torch.testing.assert_close(other.identity[key], land.identity[key])
    assert not torch.allclose(other.dst["variance"][:, 0], land.dst["variance"][:, 0])


def test_st_gumbel_softmax_matches_sampling_the_estimator(quadratic):
    logits, loss_fn, land = quadratic
    gen = torch.Generator().manual_seed(3)
    for j, tau in enumerate(land.tau_gs):
        draws = _sampled_batch_gradients(lambda l: LF.gumbel_softmax_st(l, tau, generator=gen), logits, loss_fn, 40000)
        mean = draws.mean(0)
        assert abs(float(land.st_gs["variance"][j]) / float(draws.var(0).sum()) - 1) < 0.1
        bias_mc = float((mean - land.exact_tau1).norm())
        noise = 5 * (float(land.st_gs["bias_se"][j]) + math.sqrt(float(draws.var(0).sum()) / 40000))
        assert abs(float(land.st_gs["bias"][j]) - bias_mc) <= noise
    assert torch.equal(land.st_gs["bias"], land.st_gs["bias_tau1"])


def test_two_categories_closed_form():
    """One latent, logits [a, 0], L(z) = (z_0 - t)^2. With p = sigmoid(a / tau_f),
    q = sigmoid(a / tau_b): exact gradient (1 - 2t) p (1 - p) / tau_f [1, -1]; decoupled ST
    g = 2 (z_0 - t) q (1 - q) / tau_b [1, -1], so E[g] = 2 (p - t) q (1 - q) / tau_b [1, -1]
    and variance 2 (q (1 - q) / tau_b)^2 * 4 p (1 - p); identity ST g = [2 (z_0 - t), 0]."""
    a, t, tf, tb = 0.8, 0.3, 1.5, 0.4
    land = A.temperature_landscape(
        torch.tensor([[[a, 0.0]]], dtype=F64), lambda z: (z[..., 0, 0] - t) ** 2, [tf], [tb], num_samples=20000,
        generator=torch.Generator().manual_seed(0),
    )
    p, q = 1 / (1 + math.exp(-a / tf)), 1 / (1 + math.exp(-a / tb))
    exact = (1 - 2 * t) * p * (1 - p) / tf
    c = q * (1 - q) / tb
    torch.testing.assert_close(land.exact[0], torch.tensor([exact, -exact], dtype=F64))
    assert float(land.dst["bias"][0, 0]) == pytest.approx(math.sqrt(2) * abs(2 * (p - t) * c - exact))
    assert float(land.dst["variance"][0, 0]) == pytest.approx(2 * c**2 * 4 * p * (1 - p))
    assert float(land.dst["mean_norm"][0, 0]) == pytest.approx(math.sqrt(2) * abs(2 * (p - t) * c))
    assert float(land.identity["bias"][0]) == pytest.approx(math.hypot(2 * (p - t) - exact, exact))
    assert float(land.identity["variance"][0]) == pytest.approx(4 * p * (1 - p))
    # each estimate is +-[1, -1]: cosine +1 when z_0 = 1 (probability p), -1 otherwise
    m = land.num_samples
    assert abs(float(land.dst["cosine"][0, 0]) - (2 * p - 1)) <= 5 * math.sqrt((1 - (2 * p - 1) ** 2) / m)


def test_chunked_enumeration_equals_unchunked(quadratic):
    logits, loss_fn, land = quadratic
    for chunk in (5, None):
        other = A.temperature_landscape(
            logits, loss_fn, TAU_F, TAU_B, num_samples=4000, chunk_size=chunk, generator=torch.Generator().manual_seed(1)
        )
        for attr in ("dst", "identity", "st_gs"):
            for key, value in getattr(land, attr).items():
                torch.testing.assert_close(getattr(other, attr)[key], value, rtol=1e-10, atol=1e-12)


def test_stacked_aggregate_adds_per_example_figures(quadratic):
    logits, loss_fn, land = quadratic
    stacked = A.temperature_landscape(logits, loss_fn, TAU_F, TAU_B, aggregate="stack", num_samples=16)
    singles = [
        A.temperature_landscape(
            logits[b : b + 1], lambda z, b=b: loss_fn(z.expand(-1, 2, -1, -1))[:, b : b + 1], TAU_F, TAU_B, num_samples=16
        )
        for b in range(2)
    ]
    torch.testing.assert_close(stacked.dst["bias"] ** 2, sum(s.dst["bias"] ** 2 for s in singles))
    torch.testing.assert_close(stacked.dst["variance"], sum(s.dst["variance"] for s in singles))
    torch.testing.assert_close(land.dst["variance"], stacked.dst["variance"])  # variances add either way
    assert stacked.exact.shape == (3, 2 * 2 * 3) and land.exact.shape == (3, 2 * 3)


def test_binary_units_match_sampling_the_estimators():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, generator=g, dtype=F64)
    w = torch.randn(3, 3, generator=g, dtype=F64)
    t = torch.randn(2, 3, generator=g, dtype=F64)

    def loss_fn(z):  # (C, B, n) -> (C, B)
        return ((z @ w.T - t) ** 2).sum(-1)

    land = A.temperature_landscape(logits, loss_fn, [0.5, 2.0], [0.7], num_samples=4000, generator=torch.Generator().manual_seed(1))
    one = lambda z: loss_fn(z.unsqueeze(1).expand(-1, 2, -1))  # noqa: E731
    expected = sum(A.exact_gradient_binary(logits[b], lambda z, b=b: one(z)[:, b], 2.0) for b in range(2))
    torch.testing.assert_close(land.exact[1], expected)
    gen = torch.Generator().manual_seed(5)
    for i, tf in enumerate(land.tau_f):
        draws = _sampled_batch_gradients(lambda l: LF.bernoulli_decoupled_st(l, tf, 0.7, generator=gen), logits, loss_fn, 40000)
        _assert_matches_sampling({k: v[i] for k, v in land.dst.items()}, 0, draws, land.exact[i], land.num_samples)
    draws = _sampled_batch_gradients(lambda l: LF.bernoulli_gumbel_softmax_st(l, 0.7, generator=gen), logits, loss_fn, 40000)
    assert abs(float(land.st_gs["variance"][0]) / float(draws.var(0).sum()) - 1) < 0.1


def test_autoencoder_size_problem_is_chunked_and_exact():
    """4 x 8 latents: 4,096 codes per example, decoder run on chunks of them."""
    torch.manual_seed(0)
    ae = CategoricalAutoencoder(24, num_latents=4, num_categories=8, hidden_dims=[16]).double()
    x = torch.rand(3, 24, dtype=F64).round()
    with torch.no_grad():
        logits = ae.encode(x)
    runs = [
        A.temperature_landscape(
            logits, lambda z: ae.code_loss(z, x), [1.0, 2.0], [0.5], num_samples=64, chunk_size=chunk,
            generator=torch.Generator().manual_seed(0),
        )
        for chunk in (1000, None)
    ]
    for key, value in runs[0].dst.items():
        torch.testing.assert_close(runs[1].dst[key], value)
    expected = sum(
        A.exact_gradient(logits[b], lambda z, b=b: ae.code_loss(z.unsqueeze(1), x[b : b + 1])[:, 0], 2.0) for b in range(3)
    )
    torch.testing.assert_close(runs[0].exact[1], expected.flatten())


def test_binary_network_layer():
    torch.manual_seed(0)
    model = StochasticBinaryNetwork(12, [6, 10], 3, estimator="identity_st").double()
    x, y = torch.rand(4, 12, dtype=F64), torch.tensor([0, 1, 2, 0])
    logits = model.binary_layer_logits(x)
    torch.testing.assert_close(model.forward_from(model.hidden[-1](logits)), model(x))
    loss_fn = lambda z: torch.nn.functional.cross_entropy(  # noqa: E731
        model.forward_from(z).flatten(0, 1), y.repeat(z.shape[0]), reduction="none"
    ).view(z.shape[:2])
    land = A.temperature_landscape(logits.detach(), loss_fn, [1.0], [0.5, 1.0], num_samples=32, chunk_size=300)
    whole = A.temperature_landscape(logits.detach(), loss_fn, [1.0], [0.5, 1.0], num_samples=32, chunk_size=None)
    torch.testing.assert_close(land.dst["variance"], whole.dst["variance"])
    one = lambda z: loss_fn(z.unsqueeze(1).expand(-1, 4, -1))  # noqa: E731
    expected = sum(A.exact_gradient_binary(logits[b], lambda z, b=b: one(z)[:, b]) for b in range(4))
    torch.testing.assert_close(land.exact_tau1, expected)
    with pytest.raises(ValueError, match="layer"):
        model.binary_layer_logits(x, layer=2)


def test_bad_arguments_raise():
    logits, loss_fn = _quadratic_problem()
    with pytest.raises(ValueError, match="tau_f"):
        A.temperature_landscape(logits, loss_fn, [0.0], [1.0])
    with pytest.raises(ValueError, match="tau_b"):
        A.temperature_landscape(logits, loss_fn, [1.0], [])
    with pytest.raises(ValueError, match="aggregate"):
        A.temperature_landscape(logits, loss_fn, [1.0], [1.0], aggregate="mean")
    with pytest.raises(ValueError, match="loss_fn"):
        A.temperature_landscape(logits, lambda z: loss_fn(z).sum(-1), [1.0], [1.0])
    with pytest.raises(ValueError, match="logits"):
        A.temperature_landscape(logits[0, 0], loss_fn, [1.0], [1.0])
