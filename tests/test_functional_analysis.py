"""Exact-gradient analysis (``lightning_discrete.analysis``): unbiasedness of the
score-function estimators, SPIGOT's projection, and bias / std / cosine orderings."""

import pytest
import torch

from lightning_discrete import analysis as A
from lightning_discrete import functional as LF

N_EST = 20_000



# a small categorical problem with a loss that couples the variables non-linearly,
# so the straight-through estimators are biased on it
LOGITS = torch.tensor([[0.8, -0.5, 0.1], [-0.2, 0.4, 1.0], [0.0, -1.0, 0.5]], dtype=torch.float64)
W = torch.tensor([[1.0, -2.0, 0.5], [0.3, 1.5, -1.0], [-0.7, 0.2, 2.0]], dtype=torch.float64)


def coupled_loss(z):  # (S, 3, 3) -> (S,)
    s = (z * W).sum((-2, -1))
    return (s - 0.5) ** 2 + torch.sin(2 * s)


BIN_LOGITS = torch.tensor([0.5, -1.0, 1.5, 0.0], dtype=torch.float64)
BIN_W = torch.tensor([1.0, -2.0, 0.7, 1.3], dtype=torch.float64)


def binary_loss(b):  # (S, 4) -> (S,)
    s = (b * BIN_W).sum(-1)
    return (s - 0.3) ** 2 + b[..., 0] * b[..., 3]


def test_enumeration_covers_every_state_once():
    s = A.enumerate_categorical(3, 4)
    assert s.shape == (64, 3, 4)
    assert len({tuple(r.argmax(-1).tolist()) for r in s}) == 64
    b = A.enumerate_binary(5)
    assert b.shape == (32, 5) and len({tuple(r.tolist()) for r in b}) == 32
    total = A.exact_expectation(LOGITS, lambda z: torch.ones(z.shape[0], dtype=z.dtype))
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_exact_gradient_matches_closed_form(tau, gen):
    # E||z - t||^2 = 1 - 2 <p(tau), t> + ||t||^2 per variable, so the gradient is J(tau)^T (-2 t)
    t = torch.randn(3, 3, dtype=torch.float64, generator=gen(1))
    g = A.exact_gradient(LOGITS, lambda z: ((z - t) ** 2).sum((-2, -1)), tau=tau)
    p = torch.softmax(LOGITS / tau, -1)
    expected = p * (-2 * t - (p * -2 * t).sum(-1, keepdim=True)) / tau
    torch.testing.assert_close(g, expected)
    tb = torch.randn(4, dtype=torch.float64, generator=gen(2))
    gb = A.exact_gradient_binary(BIN_LOGITS, lambda b: ((b - tb) ** 2).sum(-1), tau=tau)
    s = torch.sigmoid(BIN_LOGITS / tau)
    torch.testing.assert_close(gb, s * (1 - s) / tau * (1 - 2 * tb))


def test_reinforce_loo_is_unbiased(gen):
    stats = A.estimator_stats(A.reinforce_loo(2), LOGITS, coupled_loss, N_EST, generator=gen(3))
    assert stats["max_z"] < 5.0, stats
    assert stats["bias"] < 5 * stats["bias_se"]


def test_disarm_is_unbiased(gen):
    stats = A.estimator_stats(A.disarm(), BIN_LOGITS, binary_loss, N_EST, generator=gen(4))
    assert stats["max_z"] < 5.0, stats
    assert stats["bias"] < 5 * stats["bias_se"]


def test_unbiasedness_check_has_power(gen):
    """A wrong score function (log-prob at the wrong temperature) is detected."""

    def wrong(logits, loss_fn, num, generator=None):
        return A.reinforce_loo(2)(logits * 1.3, loss_fn, num, generator)

    stats = A.estimator_stats(wrong, LOGITS, coupled_loss, N_EST, generator=gen(5))
    assert stats["max_z"] > 5.0


def _st(fn):
    return A.pathwise(fn)


def test_estimator_orderings_on_a_coupled_problem(gen):
    ests = {
        "reinforce_loo(2)": A.reinforce_loo(2),
        "identity_st": _st(lambda l, g: LF.identity_st(l)),
        "softmax_st": _st(lambda l, g: LF.softmax_st(l, 1.0, generator=g)),
        "decoupled_st(1, 0.5)": _st(lambda l, g: LF.decoupled_st(l, 1.0, 0.5, generator=g)),
        "gumbel_softmax_st": _st(lambda l, g: LF.gumbel_softmax_st(l, 1.0, generator=g)),
        "gumbel_rao(K=8)": _st(lambda l, g: LF.gumbel_rao(l, 1.0, 8, generator=g)),
        "reinmax": _st(lambda l, g: LF.reinmax(l, 1.0, generator=g)),
    }
    stats = {n: A.estimator_stats(e, LOGITS, coupled_loss, N_EST, generator=gen(6)) for n, e in ests.items()}
    print("\n| estimator | bias | bias SE | std | cosine |")
    for n, s in stats.items():
        print(f"| {n} | {s['bias']:.4f} | {s['bias_se']:.4f} | {s['std']:.4f} | {s['cosine']:.3f} |")
    # unbiased within standard error
    assert stats["reinforce_loo(2)"]["bias"] < 5 * stats["reinforce_loo(2)"]["bias_se"]
    # identity ST is deterministic (zero variance) and biased far beyond sampling error
    assert stats["identity_st"]["std"] < 1e-9
    assert stats["identity_st"]["max_abs_err_zero_se"] > 0.05
    assert stats["identity_st"]["bias"] > max(s["bias"] for n, s in stats.items() if n != "identity_st")
    # softmax ST and ST-GS are biased on a non-linear loss ...
    for n in ("softmax_st", "gumbel_softmax_st"):
        assert stats[n]["bias"] > 5 * stats[n]["bias_se"], n
    # ... but have lower variance than the score function estimator
    for n in ("softmax_st", "gumbel_softmax_st", "reinmax"):
        assert stats[n]["std"] < stats["reinforce_loo(2)"]["std"], n
    # Rao-Blackwellising ST-GS reduces its variance and keeps the same expectation
    assert stats["gumbel_rao(K=8)"]["std"] < stats["gumbel_softmax_st"]["std"]
    diff = (stats["gumbel_rao(K=8)"]["mean"] - stats["gumbel_softmax_st"]["mean"]).abs()
    se = (stats["gumbel_rao(K=8)"]["stderr"] ** 2 + stats["gumbel_softmax_st"]["stderr"] ** 2).sqrt()
    assert bool((diff < 5 * se).all())
    # the single-sample unbiased estimator aligns worse with the true gradient than softmax ST
    assert stats["softmax_st"]["cosine"] > stats["reinforce_loo(2)"]["cosine"]


def test_softmax_st_unbiased_for_a_linear_loss(gen):
    """E[J^T dL/dz] = J^T w = grad E[<z, w>]: softmax ST is unbiased when L is linear in z."""
    est = _st(lambda l, g: LF.softmax_st(l, 1.0, generator=g))
    stats = A.estimator_stats(est, LOGITS, lambda z: (z * W).sum((-2, -1)), 2000, generator=gen(7))
    assert stats["bias"] < 1e-10 and stats["std"] < 1e-10  # every sample is exact


# --------------------------------------------------------------------------- #
# SPIGOT and the simplex projection
# --------------------------------------------------------------------------- #


def _project_bisection(v, iters=200):
    """Reference projection onto the simplex: find theta with sum(max(v - theta, 0)) = 1
    by bisection (no sorting)."""
    lo = v.min(-1, keepdim=True).values - 1.0
    hi = v.max(-1, keepdim=True).values
    for _ in range(iters):
        mid = (lo + hi) / 2
        too_big = (v - mid).clamp_min(0).sum(-1, keepdim=True) > 1
        lo = torch.where(too_big, mid, lo)
        hi = torch.where(too_big, hi, mid)
    return (v - (lo + hi) / 2).clamp_min(0)


def test_project_simplex_properties(gen):
    v = torch.randn(500, 7, dtype=torch.float64, generator=gen(8)) * 3
    p = LF.project_simplex(v)
    assert bool((p >= 0).all())
    torch.testing.assert_close(p.sum(-1), torch.ones(500, dtype=torch.float64))
    torch.testing.assert_close(p, _project_bisection(v), rtol=0, atol=1e-10)
    torch.testing.assert_close(LF.project_simplex(p), p, rtol=0, atol=1e-12)  # idempotent
    # nearest point: no point of the simplex is closer
    q = torch.distributions.Dirichlet(torch.ones(7, dtype=torch.float64)).sample((200,))
    d_p = (v - p).norm(dim=-1, keepdim=True)
    d_q = (v.unsqueeze(1) - q.unsqueeze(0)).norm(dim=-1)
    assert bool((d_p <= d_q + 1e-12).all())
    # points already on the simplex are fixed
    torch.testing.assert_close(LF.project_simplex(q), q, rtol=0, atol=1e-12)


@pytest.mark.parametrize("eta", [0.1, 1.0, 5.0])
def test_spigot_gradient_is_projection_definition(eta, gen):
    logits = torch.randn(40, 3, 6, dtype=torch.float64, generator=gen(9)).requires_grad_()
    up = torch.randn(40, 3, 6, dtype=torch.float64, generator=gen(10)) * 2
    z = LF.spigot(logits, eta, dim=1)
    assert torch.equal(z.argmax(1), logits.argmax(1))
    (g,) = torch.autograd.grad(z, logits, up)
    zc, gc = z.detach().movedim(1, -1), up.movedim(1, -1)
    expected = (zc - _project_bisection(zc - eta * gc)).movedim(-1, 1)
    torch.testing.assert_close(g, expected, rtol=0, atol=1e-10)
    # the SPIGOT gradient of a one-hot is zero-sum per row (it lives in the simplex's tangent)
    torch.testing.assert_close(g.sum(1), torch.zeros(40, 6, dtype=torch.float64), rtol=0, atol=1e-10)
