"""Maths of the estimators in ``lightning_discrete.functional``: expected gradients,
sample distributions, equivalences with reference implementations, exactness."""

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_discrete import functional as LF

N_GRAD = 20_000  # sampled gradients per closed-form check
N_FREQ = 50_000  # samples per frequency check
Z_MAX = 5.0  # tolerance in standard errors



def _jacobian_t(p, tau, v):
    """J(tau)^T v with J = (diag p - p p^T) / tau, written as a matrix product."""
    j = (torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)) / tau
    return (j.transpose(-1, -2) @ v.unsqueeze(-1)).squeeze(-1)


def _assert_mean_within_se(grads, expected, z_max=Z_MAX):
    """Mean of ``grads`` (S, *) equals ``expected`` within ``z_max`` standard errors."""
    mean = grads.mean(0)
    se = grads.std(0) / math.sqrt(grads.shape[0])
    err = (mean - expected).abs()
    # coordinates with zero variance (tau_f = 0) must match to rounding
    tol = z_max * se + 1e-9 * (1 + expected.abs())
    assert bool((err <= tol).all()), (
        f"mean {mean}\nexpected {expected}\nerr/se {err / se}"
    )


# --------------------------------------------------------------------------- #
# 2. expected gradient of decoupled ST equals the closed form
# --------------------------------------------------------------------------- #

TAU_PAIRS = [(0.0, 1.0), (0.0, 0.3), (0.5, 2.0), (2.0, 0.5), (1.0, 3.0), (4.0, 0.25)]


@pytest.mark.parametrize("tau_f,tau_b", TAU_PAIRS)
def test_decoupled_st_mean_gradient_matches_closed_form(tau_f, tau_b, gen):
    logits = torch.tensor([1.2, -0.4, 0.3, 2.0, -1.5], dtype=torch.float64)
    target = torch.tensor([0.1, 0.7, -0.2, 0.4, 0.0], dtype=torch.float64)
    rep = logits.expand(N_GRAD, -1).clone().requires_grad_()
    z = LF.decoupled_st(rep, tau_f, tau_b, generator=gen(1))
    (grads,) = torch.autograd.grad(((z - target) ** 2).sum(), rep)
    if tau_f == 0:
        p_f = F.one_hot(logits.argmax(), 5).to(logits.dtype)
    else:
        p_f = torch.softmax(logits / tau_f, -1)
    expected = _jacobian_t(torch.softmax(logits / tau_b, -1), tau_b, 2 * (p_f - target))
    _assert_mean_within_se(grads, expected)
    # the check has power: the same samples do not match the diagonal (tau_b := tau_f)
    if tau_f > 0 and abs(tau_f - tau_b) > 1:
        wrong = _jacobian_t(torch.softmax(logits / tau_f, -1), tau_f, 2 * (p_f - target))
        se = grads.std(0) / math.sqrt(N_GRAD)
        assert bool(((grads.mean(0) - wrong).abs() > Z_MAX * se).any())


@pytest.mark.parametrize("tau_f,tau_b", TAU_PAIRS)
def test_bernoulli_decoupled_st_mean_gradient_matches_closed_form(tau_f, tau_b, gen):
    logits = torch.tensor([1.2, -0.4, 0.3, 2.0, -1.5, 0.0], dtype=torch.float64)
    target = torch.tensor([0.1, 0.7, -0.2, 0.4, 0.0, 1.0], dtype=torch.float64)
    rep = logits.expand(N_GRAD, -1).clone().requires_grad_()
    z = LF.bernoulli_decoupled_st(rep, tau_f, tau_b, generator=gen(2))
    (grads,) = torch.autograd.grad(((z - target) ** 2).sum(), rep)
    s_b = torch.sigmoid(logits / tau_b)
    p_f = (logits >= 0).to(logits.dtype) if tau_f == 0 else torch.sigmoid(logits / tau_f)
    expected = s_b * (1 - s_b) / tau_b * 2 * (p_f - target)
    _assert_mean_within_se(grads, expected)


def test_decoupled_st_gradient_is_softmax_jacobian_for_every_sample(gen):
    """Not only in expectation: each backward is exactly J(tau_b)^T dL/dz (autograd reference)."""
    logits = torch.randn(6, 4, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(6, 4, 5, dtype=torch.float64)
    for dim in (0, 1, 2):
        for tau_f, tau_b in [(0.0, 0.7), (1.5, 0.4), (0.3, 3.0)]:
            z = LF.decoupled_st(logits, tau_f, tau_b, dim=dim, generator=gen(3))
            (g,) = torch.autograd.grad(z, logits, upstream)
            (ref,) = torch.autograd.grad(torch.softmax(logits / tau_b, dim), logits, upstream)
            torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- #
# 3. forward sample frequencies
# --------------------------------------------------------------------------- #


def _assert_frequencies(counts, probs, n):
    """Per-category z-test: |count - n p| <= 5 sqrt(n p (1 - p))."""
    counts = counts.to(torch.float64)
    probs = probs.to(torch.float64)
    sd = (n * probs * (1 - probs)).sqrt()
    z = (counts - n * probs).abs() / sd.clamp_min(1e-12)
    assert float(counts.sum()) == n
    assert bool((z <= Z_MAX).all()), f"counts {counts}, expected {n * probs}, z {z}"


LOGITS6 = torch.tensor([0.5, -1.0, 1.5, 0.0, -0.3, 1.0])


@pytest.mark.parametrize("tau_f", [0.5, 1.0, 3.0])
def test_decoupled_st_frequencies(tau_f, gen):
    # categories on dim 1 of a 3-D tensor, so the sampler is checked off the last dim
    logits = LOGITS6.view(1, 6, 1).expand(N_FREQ // 5, 6, 5)
    z = LF.decoupled_st(logits, tau_f, 1.0, dim=1, generator=gen(4))
    counts = z.sum((0, 2))
    _assert_frequencies(counts, torch.softmax(LOGITS6 / tau_f, -1), N_FREQ)


@pytest.mark.parametrize(
    "name,fn",
    [
        ("reinforce", lambda l, g: LF.reinforce(l, generator=g)),
        ("gumbel_softmax_st", lambda l, g: LF.gumbel_softmax_st(l, 0.5, generator=g)),
        ("reinmax", lambda l, g: LF.reinmax(l, 2.0, generator=g)),
        ("gumbel_rao", lambda l, g: LF.gumbel_rao(l, 0.5, num_samples=2, generator=g)),
    ],
)
def test_sampling_estimators_frequencies(name, fn, gen):
    z = fn(LOGITS6.expand(N_FREQ, 6), gen(5))
    _assert_frequencies(z.sum(0), torch.softmax(LOGITS6, -1), N_FREQ)


@pytest.mark.parametrize("tau_f", [0.5, 1.0, 3.0])
def test_bernoulli_decoupled_st_frequencies(tau_f, gen):
    logits = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0])
    z = LF.bernoulli_decoupled_st(logits.expand(N_FREQ, 5), tau_f, 1.0, generator=gen(6))
    for j in range(5):
        p1 = torch.sigmoid(logits[j] / tau_f)
        ones = z[:, j].sum()
        _assert_frequencies(torch.stack([ones, N_FREQ - ones]), torch.stack([p1, 1 - p1]), N_FREQ)


@pytest.mark.parametrize(
    "fn",
    [
        lambda l, g: LF.bernoulli_reinforce(l, generator=g),
        lambda l, g: LF.bernoulli_gumbel_softmax_st(l, 0.3, generator=g),
        lambda l, g: LF.bernoulli_reinmax(l, 0.3, generator=g),
        lambda l, g: LF.bernoulli_gumbel_rao(l, 0.3, num_samples=2, generator=g),
        lambda l, g: LF.bernoulli_disarm(l, generator=g)[0],
        lambda l, g: LF.bernoulli_disarm(l, generator=g)[1],
    ],
    ids=["reinforce", "gumbel_softmax_st", "reinmax", "gumbel_rao", "disarm_b", "disarm_b_tilde"],
)
def test_binary_samplers_frequencies(fn, gen):
    logits = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0])
    z = fn(logits.expand(N_FREQ, 5), gen(7))
    for j in range(5):
        p1 = torch.sigmoid(logits[j])
        ones = z[:, j].sum()
        _assert_frequencies(torch.stack([ones, N_FREQ - ones]), torch.stack([p1, 1 - p1]), N_FREQ)


def test_tau_f_zero_is_argmax():
    logits = torch.randn(200, 7)
    z = LF.decoupled_st(logits, 0.0, 1.0)
    assert torch.equal(z.argmax(-1), logits.argmax(-1))
    zb = LF.bernoulli_decoupled_st(logits, 0.0, 1.0)
    assert torch.equal(zb, (logits >= 0).to(zb.dtype))


@pytest.mark.parametrize("sampled", [2, 1])  # the likeliest category (p 0.48) and an unlikely one (p 0.11)
def test_gumbel_rao_gradient_is_st_gs_s_conditioned_on_the_sample(sampled, gen):
    """Gumbel-Rao's backward = E[J^T grad of softmax((l + g) / tau) | argmax(l + g) = sample],
    here against that expectation by rejection: unconditional Gumbel draws, kept when their
    argmax is the sample."""
    from lightning_discrete.functional import _gumbel_rao_grad

    logits, tau = torch.tensor([0.3, -0.5, 1.0, 0.0], dtype=torch.float64), 0.7
    up = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    g = -torch.empty(800_000, 4, dtype=torch.float64).exponential_(generator=gen(11)).log()
    kept = (logits + g)[(logits + g).argmax(-1) == sampled]
    y = torch.softmax(kept / tau, -1)
    ref = y * (up - (y * up).sum(-1, keepdim=True)) / tau  # one J^T up per kept draw
    n = 200_000
    mean = _gumbel_rao_grad(logits[None], torch.tensor([[sampled]]), up[None], tau, n, gen(13))[0]
    # the per-draw spread of GR's average is that of the kept draws (same conditional law)
    se = (ref.var(0) / len(ref) + ref.var(0) / n).sqrt()
    assert bool(((mean - ref.mean(0)).abs() < 5 * se).all()), (mean, ref.mean(0), se)
    assert abs(float(mean.sum())) < 1e-9  # a softmax Jacobian's columns sum to zero


def test_gumbel_rao_gradient_stays_finite_for_extreme_logits(gen):
    from lightning_discrete.functional import _gumbel_rao_grad

    logits = torch.tensor([[0.0, -200.0, 150.0, 3.0]])
    for sampled in range(4):  # even the categories a sample could not reach
        grad = _gumbel_rao_grad(logits, torch.tensor([[sampled]]), torch.randn(1, 4, generator=gen(3)), 0.5, 64, gen(4))
        assert bool(torch.isfinite(grad).all()), (sampled, grad)


# --------------------------------------------------------------------------- #
# 4. equivalences
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("tau", [0.3, 1.0, 2.5])
def test_decoupled_on_diagonal_equals_softmax_st(tau, gen):
    logits = torch.randn(64, 3, 6, requires_grad=True)
    upstream = torch.randn(64, 3, 6)
    a = LF.decoupled_st(logits, tau, tau, dim=1, generator=gen(8))
    b = LF.softmax_st(logits, tau, dim=1, generator=gen(8))
    assert torch.equal(a, b)
    (ga,) = torch.autograd.grad(a, logits, upstream)
    (gb,) = torch.autograd.grad(b, logits, upstream)
    assert torch.equal(ga, gb)
    # and softmax ST's gradient is the Jacobian of softmax(l / tau) (autograd reference)
    (ref,) = torch.autograd.grad(torch.softmax(logits / tau, 1), logits, upstream)
    torch.testing.assert_close(gb, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("tau,dim,shape", [(1.0, -1, (256, 7)), (0.4, 1, (32, 5, 9)), (3.0, 0, (6, 40))])
def test_gumbel_softmax_equals_torch_gumbel_softmax(tau, dim, shape, hard):
    """ST (``hard``) and relaxed Gumbel-Softmax: given the same noise, the sample and the gradient
    of ``F.gumbel_softmax``, for small k (hand-written softmax passes) and k = 40 (ATen's)."""
    logits = torch.randn(shape, requires_grad=True)
    upstream = torch.randn(shape)
    torch.manual_seed(123)
    ours = (LF.gumbel_softmax_st if hard else LF.gumbel_softmax)(logits, tau, dim=dim)
    torch.manual_seed(123)
    ref = F.gumbel_softmax(logits, tau=tau, hard=hard, dim=dim)
    assert torch.equal(ours.argmax(dim), ref.argmax(dim))
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-5, atol=1e-6)
    (g_ours,) = torch.autograd.grad(ours, logits, upstream, retain_graph=True)
    (g_ref,) = torch.autograd.grad(ref, logits, upstream)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-5)
    if not hard:  # the backward reads the sample as a constant: a second derivative is refused
        (g2,) = torch.autograd.grad((ours ** 2).sum(), logits, create_graph=True)
        with pytest.raises(RuntimeError, match="once_differentiable"):
            g2.sum().backward()


@pytest.mark.parametrize("tau_f,tau_b", [(0.0, 1.0), (1.0, 1.0), (0.5, 2.0), (3.0, 0.2)])
def test_bernoulli_decoupled_equals_two_category_decoupled(tau_f, tau_b, gen):
    logits = (torch.randn(4000, dtype=torch.float64) * 2).requires_grad_()
    upstream = torch.randn(4000, dtype=torch.float64)
    zb = LF.bernoulli_decoupled_st(logits, tau_f, tau_b, generator=gen(9))
    pair = torch.stack([logits, torch.zeros_like(logits)], -1)
    zc = LF.decoupled_st(pair, tau_f, tau_b, generator=gen(9))[..., 0]
    assert torch.equal(zb, zc)
    (gb,) = torch.autograd.grad(zb, logits, upstream)
    (gc,) = torch.autograd.grad(zc, logits, upstream)
    torch.testing.assert_close(gb, gc, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- #
# 5. exact one-hot / {0, 1} outputs in every dtype
# --------------------------------------------------------------------------- #

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_hard_categorical_outputs_are_exact_one_hot(categorical_case, dtype, gen):
    if not categorical_case.estimator.hard:
        pytest.skip("relaxed estimator")
    logits = (torch.randn(3000, 9) * 3).to(dtype)
    z = categorical_case(logits, gen(10))
    assert z.dtype == dtype and z.shape == logits.shape
    assert bool(((z == 0) | (z == 1)).all())
    assert bool((z.sum(-1) == 1).all())
    assert bool((z.double().sum(-1) == 1).all())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_hard_binary_outputs_are_exact(binary_case, dtype, gen):
    est = binary_case.estimator
    if not est.hard or est.signed:
        pytest.skip("relaxed or signed estimator (sign_st: see its own test)")
    logits = (torch.randn(3000, 5) * 3).to(dtype)
    z = binary_case(logits, gen(11))
    for value in z if est.antithetic else (z,):
        assert value.dtype == dtype and value.shape == logits.shape
        assert bool(((value == 0) | (value == 1)).all())
        assert 0 < float(value.double().mean()) < 1  # both values occur


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_sign_st_exact_and_identity_backward(dtype):
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-3, 5.0], dtype=dtype, requires_grad=True)
    y = LF.sign_st(x)
    assert torch.equal(y, torch.tensor([-1.0, 0.0, 0.0, 1.0, 1.0], dtype=dtype))
    up = torch.arange(5, dtype=dtype)
    (g,) = torch.autograd.grad(y, x, up)
    assert torch.equal(g, up)


def test_identity_st_backward_is_identity():
    logits = torch.randn(10, 4, requires_grad=True)
    up = torch.randn(10, 4)
    (g,) = torch.autograd.grad(LF.identity_st(logits), logits, up)
    assert torch.equal(g, up)


# --------------------------------------------------------------------------- #
# 7. ReinMax agrees with the authors' package
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("tau,shape", [(1.0, (50, 6)), (0.5, (7, 3, 5)), (2.0, (20, 4))])
def test_reinmax_matches_package(monkeypatch, tau, shape, gen):
    reinmax_pkg = pytest.importorskip("reinmax")
    logits = (torch.randn(shape) * 1.5).requires_grad_()
    upstream = torch.randn(shape)
    ours = LF.reinmax(logits, tau, generator=gen(12))
    idx = ours.argmax(-1).reshape(-1, 1)
    calls = []

    def fake_multinomial(probs, num_samples, replacement=False, **kwargs):
        calls.append(probs.shape)
        assert probs.shape == (idx.shape[0], shape[-1])
        return idx.clone()

    monkeypatch.setattr(torch, "multinomial", fake_multinomial)
    theirs, _ = reinmax_pkg.reinmax(logits, tau)
    assert calls, "the package did not sample through torch.multinomial"
    assert torch.equal(ours, theirs.detach())
    (g_ours,) = torch.autograd.grad(ours, logits, upstream)
    (g_theirs,) = torch.autograd.grad(theirs, logits, upstream)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-6)


def test_reinmax_other_dim_matches_last_dim(gen):
    logits = torch.randn(4, 6, 3, requires_grad=True)
    up = torch.randn(4, 6, 3)
    a = LF.reinmax(logits, 0.7, dim=1, generator=gen(13))
    b = LF.reinmax(logits.movedim(1, -1), 0.7, dim=-1, generator=gen(13)).movedim(-1, 1)
    assert torch.equal(a, b)
    (ga,) = torch.autograd.grad(a, logits, up)
    (gb,) = torch.autograd.grad(b, logits, up)
    torch.testing.assert_close(ga, gb)
