"""API contract of ``lightning_discrete.functional``: shapes, dims, layouts, dtypes,
generators, ``torch.compile``, numerical robustness, input validation, registry."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightning_discrete import functional as LF

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# fn(logits, dim, generator); the stochastic ones must depend on the generator
CATEGORICAL = {
    "decoupled_st": (lambda l, d, g: LF.decoupled_st(l, 1.5, 0.5, dim=d, generator=g), True),
    "decoupled_st_tau0": (lambda l, d, g: LF.decoupled_st(l, 0.0, 0.5, dim=d, generator=g), False),
    "softmax_st": (lambda l, d, g: LF.softmax_st(l, 0.8, dim=d, generator=g), True),
    "identity_st": (lambda l, d, g: LF.identity_st(l, dim=d), False),
    "gumbel_softmax_st": (lambda l, d, g: LF.gumbel_softmax_st(l, 0.8, dim=d, generator=g), True),
    "gumbel_softmax": (lambda l, d, g: LF.gumbel_softmax(l, 0.8, dim=d, generator=g), True),
    "spigot": (lambda l, d, g: LF.spigot(l, 0.5, dim=d), False),
    "reinmax": (lambda l, d, g: LF.reinmax(l, 1.5, dim=d, generator=g), True),
    "gumbel_rao": (lambda l, d, g: LF.gumbel_rao(l, 0.8, num_samples=3, dim=d, generator=g), True),
    "categorical_sample": (lambda l, d, g: LF.categorical_sample(l, dim=d, generator=g), True),
}

BINARY = {
    "bernoulli_decoupled_st": (lambda l, g: LF.bernoulli_decoupled_st(l, 1.5, 0.5, generator=g), True),
    "bernoulli_softmax_st": (lambda l, g: LF.bernoulli_softmax_st(l, 0.8, generator=g), True),
    "bernoulli_identity_st": (lambda l, g: LF.bernoulli_identity_st(l), False),
    "bernoulli_gumbel_st": (lambda l, g: LF.bernoulli_gumbel_st(l, 0.8, generator=g), True),
    "bernoulli_gumbel_softmax": (lambda l, g: LF.bernoulli_gumbel_softmax(l, 0.8, generator=g), True),
    "sign_ste": (lambda l, g: LF.sign_ste(l), False),
    "bernoulli_sample": (lambda l, g: LF.bernoulli_sample(l, generator=g), True),
    "antithetic_pair": (lambda l, g: torch.stack(LF.bernoulli_antithetic_pair(l, generator=g)), True),
}


def _grad(out, x, seed=0):
    up = torch.randn(out.shape, generator=_gen(seed)).to(out.dtype)
    if not out.requires_grad:
        return None
    (g,) = torch.autograd.grad(out, x, up)
    return g


# --------------------------------------------------------------------------- #
# 1. any dim, any leading shape, non-contiguous input, dtypes, generators
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(CATEGORICAL))
def test_categorical_any_dim_layout_dtype(name, dtype):
    fn, _ = CATEGORICAL[name]
    base = torch.randn(5, 6, 4, 3, generator=_gen(1)).to(dtype)
    for dim in (0, 1, -2, -1):
        # non-contiguous input: a transposed view, and its contiguous copy
        x_nc = base.transpose(0, 2).requires_grad_()  # (4, 6, 5, 3)
        assert not x_nc.is_contiguous()
        x_c = x_nc.detach().contiguous().requires_grad_()
        out_nc = fn(x_nc, dim, _gen(2))
        out_c = fn(x_c, dim, _gen(2))
        assert out_nc.shape == x_nc.shape and out_nc.dtype == dtype
        assert torch.equal(out_nc, out_c)
        sums = out_nc.double().sum(dim)
        torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-2)
        g_nc, g_c = _grad(out_nc, x_nc), _grad(out_c, x_c)
        if g_nc is not None:
            assert g_nc.shape == x_nc.shape and g_nc.dtype == dtype
            assert bool(torch.isfinite(g_nc).all())
            assert torch.equal(g_nc, g_c)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_any_shape_layout_dtype(name, dtype):
    fn, _ = BINARY[name]
    for shape in [(7,), (3, 4, 5), ()]:
        base = torch.randn(shape, generator=_gen(3)).to(dtype)
        x_nc = base.transpose(0, -1) if base.dim() > 1 else base
        x_nc = x_nc.requires_grad_()
        x_c = x_nc.detach().contiguous().requires_grad_()
        out_nc, out_c = fn(x_nc, _gen(4)), fn(x_c, _gen(4))
        expected_shape = (2,) + tuple(shape[::-1] if len(shape) > 1 else shape) if name == "antithetic_pair" else x_nc.shape
        assert tuple(out_nc.shape) == tuple(expected_shape) and out_nc.dtype == dtype
        if name == "bernoulli_gumbel_softmax":  # soft output: last-ulp tolerance
            torch.testing.assert_close(out_nc, out_c)
        else:
            assert torch.equal(out_nc, out_c)
        g_nc, g_c = _grad(out_nc, x_nc), _grad(out_c, x_c)
        if g_nc is not None:
            assert g_nc.shape == x_nc.shape and bool(torch.isfinite(g_nc).all())
            # elementwise kernels may round differently on strided input: last-ulp tolerance
            torch.testing.assert_close(g_nc, g_c)


def test_decoupled_st_dim_is_a_pure_relabelling():
    x = torch.randn(8, 5, 7, requires_grad=True)
    a = LF.decoupled_st(x, 1.3, 0.6, dim=1, generator=_gen(5))
    b = LF.decoupled_st(x.movedim(1, -1), 1.3, 0.6, generator=_gen(5)).movedim(-1, 1)
    assert torch.equal(a, b)
    up = torch.randn(8, 5, 7)
    assert torch.equal(torch.autograd.grad(a, x, up)[0], torch.autograd.grad(b, x, up)[0])


@pytest.mark.parametrize("name", sorted(n for n, (_, s) in CATEGORICAL.items() if s))
def test_categorical_generator_reproducible(name):
    fn, _ = CATEGORICAL[name]
    x = torch.randn(300, 6)
    a, b, c = fn(x, -1, _gen(7)), fn(x, -1, _gen(7)), fn(x, -1, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the global RNG is not touched when a generator is given
    state = torch.get_rng_state()
    fn(x, -1, _gen(7))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("name", sorted(n for n, (_, s) in BINARY.items() if s))
def test_binary_generator_reproducible(name):
    fn, _ = BINARY[name]
    x = torch.randn(2000)
    a, b, c = fn(x, _gen(7)), fn(x, _gen(7)), fn(x, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_gumbel_rao_backward_reproducible_with_generator():
    x = torch.randn(50, 6, requires_grad=True)
    up = torch.randn(50, 6)
    g1 = torch.autograd.grad(LF.gumbel_rao(x, 0.5, 4, generator=_gen(9)), x, up)[0]
    g2 = torch.autograd.grad(LF.gumbel_rao(x, 0.5, 4, generator=_gen(9)), x, up)[0]
    assert torch.equal(g1, g2)


def test_decoupled_st_large_input_chunked_matches_rowwise():
    """Inputs larger than one internal chunk give the same samples as row by row."""
    x = torch.randn(70_000, 3, requires_grad=True)  # > 2 chunks of rows
    z = LF.decoupled_st(x, 1.0, 0.5, generator=_gen(10))
    u = torch.rand(70_000, generator=_gen(10)).clamp_min(torch.finfo(torch.float32).tiny)
    cdf = torch.softmax(x.detach(), -1).cumsum(-1)
    ref = (cdf < u.unsqueeze(-1) * cdf[:, -1:]).sum(-1).clamp_max(2)
    agree = (z.argmax(-1) == ref).double().mean()
    assert float(agree) > 0.9999  # differ only by rounding at category boundaries
    up = torch.randn(70_000, 3)
    (g,) = torch.autograd.grad(z, x, up)
    (ref_g,) = torch.autograd.grad(torch.softmax(x / 0.5, -1), x, up)
    torch.testing.assert_close(g, ref_g, rtol=1e-4, atol=1e-6)


def test_torch_compile_aot_eager():
    torch._dynamo.reset()
    x = torch.randn(16, 3, 5, requires_grad=True)
    up = torch.randn(16, 3, 5)

    def f(logits, g):
        return LF.decoupled_st(logits, 2.0, 0.5, dim=1, generator=g)

    def h(logits):  # no generator: a single graph
        return LF.decoupled_st(logits, 2.0, 0.5, dim=1) + LF.bernoulli_decoupled_st(logits, 0.5, 2.0)

    compiled = torch.compile(f, backend="aot_eager")
    a, b = compiled(x, _gen(11)), f(x, _gen(11))
    assert torch.equal(a, b)
    assert torch.equal(torch.autograd.grad(a, x, up)[0], torch.autograd.grad(b, x, up)[0])

    compiled_h = torch.compile(h, backend="aot_eager", fullgraph=True)
    torch.manual_seed(3)
    a = compiled_h(x)
    torch.manual_seed(3)
    b = h(x)
    assert torch.equal(a, b)
    torch.testing.assert_close(torch.autograd.grad(a, x, up)[0], torch.autograd.grad(b, x, up)[0])
    torch._dynamo.reset()


# --------------------------------------------------------------------------- #
# 8. no NaN / Inf for extreme logits and temperatures
# --------------------------------------------------------------------------- #

_extreme = st.one_of(
    st.sampled_from([-1e4, 1e4, 0.0, -9999.0, 1e-3]),
    st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32),
)
_tau = st.floats(-3.0, 3.0).map(lambda e: float(10.0**e))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(_extreme, min_size=12, max_size=12),
    tau_f=_tau,
    tau_b=_tau,
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    seed=st.integers(0, 2**16),
)
def test_no_nan_or_inf_extreme_inputs(values, tau_f, tau_b, dtype, seed):
    base = torch.tensor(values, dtype=torch.float32).view(4, 3).to(dtype)
    for name, est in LF.ESTIMATORS.items():
        for kind in ("categorical", "binary"):
            fn = getattr(est, kind)
            if fn is None:
                continue
            x = base.clone().requires_grad_()
            kwargs = dict(tau_f=tau_f, tau_b=tau_b, generator=_gen(seed))
            if kind == "categorical":
                kwargs["dim"] = -1
            z = fn(x, **kwargs)
            assert bool(torch.isfinite(z).all()), (name, kind)
            if z.requires_grad:
                up = torch.randn(z.shape, generator=_gen(seed)).to(dtype)
                (g,) = torch.autograd.grad(z, x, up)
                assert bool(torch.isfinite(g).all()), (name, kind, g)
    # score-function surrogates
    x = base.clone().requires_grad_()
    z = LF.categorical_sample(x, generator=_gen(seed))
    lp = LF.categorical_log_prob(x, z).view(2, 2)
    sur = LF.reinforce_loo_surrogate(lp, torch.randn(2, 2))
    (g,) = torch.autograd.grad(sur, x)
    assert bool(torch.isfinite(g).all()) and bool(torch.isfinite(lp).all())
    b1, b2 = LF.bernoulli_antithetic_pair(x, generator=_gen(seed))
    sur = LF.disarm_surrogate(x, b1, b2, torch.randn(4), torch.randn(4))
    (g,) = torch.autograd.grad(sur, x)
    assert bool(torch.isfinite(g).all())
    lpb = LF.bernoulli_log_prob(x, b1)
    assert bool(torch.isfinite(lpb).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_gumbel_noise_never_infinite(dtype):
    """Many draws in half precision: the Gumbel noise is drawn in float32 and clamped."""
    x = torch.zeros(400_000, 2, dtype=dtype, requires_grad=True)
    y = LF.gumbel_softmax(x, 1e-3, generator=_gen(12))
    z = LF.gumbel_softmax_st(x, 1e-3, generator=_gen(12))
    assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(z).all())
    (g,) = torch.autograd.grad(z, x, torch.ones_like(z))
    assert bool(torch.isfinite(g).all())


def test_float64_is_kept_in_log_probs_and_surrogates():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    z = LF.categorical_sample(x, generator=_gen(13))
    assert LF.categorical_log_prob(x, z).dtype == torch.float64
    assert LF.bernoulli_log_prob(x, (x > 0).double()).dtype == torch.float64
    b1, b2 = LF.bernoulli_antithetic_pair(x, generator=_gen(13))
    assert LF.disarm_surrogate(x, b1, b2, torch.randn(3), torch.randn(3)).dtype == torch.float64
    # exact value of the log-probability in float64
    torch.testing.assert_close(
        LF.categorical_log_prob(x, z), torch.log_softmax(x, -1).gather(-1, z.argmax(-1, keepdim=True)).squeeze(-1),
        rtol=1e-15, atol=1e-15,
    )


# --------------------------------------------------------------------------- #
# 9. bad input raises ValueError naming the argument
# --------------------------------------------------------------------------- #

_OK = torch.randn(4, 3)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: LF.decoupled_st(_OK, -0.1, 1.0), "tau_f"),
        (lambda: LF.decoupled_st(_OK, 1.0, 0.0), "tau_b"),
        (lambda: LF.decoupled_st(_OK, 1.0, -1.0), "tau_b"),
        (lambda: LF.decoupled_st(_OK, float("nan"), 1.0), "tau_f"),
        (lambda: LF.decoupled_st(_OK, 1.0, float("inf")), "tau_b"),
        (lambda: LF.decoupled_st(_OK, None, 1.0), "tau_f"),
        (lambda: LF.softmax_st(_OK, 0.0), "tau"),
        (lambda: LF.gumbel_softmax_st(_OK, -1.0), "tau"),
        (lambda: LF.gumbel_softmax(_OK, 0.0), "tau"),
        (lambda: LF.reinmax(_OK, 0.0), "tau"),
        (lambda: LF.gumbel_rao(_OK, 0.0), "tau"),
        (lambda: LF.gumbel_rao(_OK, 1.0, num_samples=0), "num_samples"),
        (lambda: LF.spigot(_OK, 0.0), "step_size"),
        (lambda: LF.bernoulli_decoupled_st(_OK, -1.0, 1.0), "tau_f"),
        (lambda: LF.bernoulli_decoupled_st(_OK, 1.0, 0.0), "tau_b"),
        (lambda: LF.bernoulli_softmax_st(_OK, 0.0), "tau"),
        (lambda: LF.bernoulli_gumbel_st(_OK, 0.0), "tau"),
        (lambda: LF.decoupled_st(torch.tensor([[0.0, float("nan")]]), 1.0, 1.0), "logits"),
        (lambda: LF.decoupled_st(torch.tensor([[0.0, float("inf")]]), 1.0, 1.0), "logits"),
        (lambda: LF.gumbel_softmax_st(torch.tensor([[float("-inf"), 0.0]])), "logits"),
        (lambda: LF.bernoulli_decoupled_st(torch.tensor([float("nan")])), "logits"),
        (lambda: LF.sign_ste(torch.tensor([float("inf")])), "logits"),
        (lambda: LF.decoupled_st(torch.tensor([[1, 2]]), 1.0, 1.0), "logits"),
        (lambda: LF.identity_st(torch.tensor([[1, 2]])), "logits"),
        (lambda: LF.bernoulli_decoupled_st(torch.tensor([1, 0])), "logits"),
        (lambda: LF.categorical_sample(torch.tensor([[True, False]])), "logits"),
        (lambda: LF.decoupled_st(_OK, 1.0, 1.0, dim=2), "dim"),
        (lambda: LF.decoupled_st(_OK, 1.0, 1.0, dim=-3), "dim"),
        (lambda: LF.gumbel_softmax_st(_OK, dim=5), "dim"),
        (lambda: LF.decoupled_st(torch.randn(4, 1), 1.0, 1.0), "dim"),
        (lambda: LF.identity_st(torch.randn(1, 4), dim=0), "dim"),
        (lambda: LF.spigot(torch.randn(3, 1)), "dim"),
        (lambda: LF.get_estimator("no_such_estimator"), "estimator"),
        (lambda: LF.reinforce_loo_surrogate(torch.zeros(1, 3), torch.zeros(1, 3)), "num_samples"),
        (lambda: LF.reinforce_loo_surrogate(torch.zeros(2, 3), torch.zeros(2, 4)), "log_probs"),
        (lambda: LF.disarm_surrogate(_OK, _OK, _OK, torch.zeros(3), torch.zeros(4)), "loss1"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, match):
    # the NaN / Inf cases need the value checks, which are off by default
    with LF.validate_args(), pytest.raises(ValueError, match=match):
        call()


def test_unknown_estimator_message_lists_known_names():
    with pytest.raises(ValueError, match="decoupled"):
        LF.get_estimator("nope")


# --------------------------------------------------------------------------- #
# 10. the registry
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", sorted(LF.ESTIMATORS))
def test_registered_estimators_uniform_signature(name):
    est = LF.get_estimator(name)
    assert est.name == name and est.temperature in ("decoupled", "single", "none")
    assert est.categorical is not None or est.binary is not None
    if est.categorical is not None:
        x = torch.randn(5, 6, 3, requires_grad=True)
        z = est.categorical(x, tau_f=0.7, tau_b=1.3, dim=1, generator=_gen(14))
        assert z.shape == x.shape
        if est.hard:
            assert torch.equal(z.sum(1), torch.ones(5, 3))
        else:
            torch.testing.assert_close(z.sum(1), torch.ones(5, 3))
        assert z.requires_grad != est.score_function
        z2 = est.categorical(x, tau_f=0.7, tau_b=1.3, dim=1, generator=_gen(14))
        assert torch.equal(z, z2)
    if est.binary is not None:
        x = torch.randn(5, 4, requires_grad=True)
        z = est.binary(x, tau_f=0.7, tau_b=1.3, generator=_gen(15))
        assert z.shape == x.shape
        if est.hard:
            allowed = (z == 0) | (z == 1) | ((z == -1) if name == "sign" else False)
            assert bool(allowed.all())
        assert z.requires_grad != est.score_function


def test_decoupled_registry_entry_uses_both_temperatures():
    est = LF.get_estimator("decoupled")
    x = torch.randn(10, 4, requires_grad=True)
    up = torch.randn(10, 4)
    z = est.categorical(x, tau_f=3.0, tau_b=0.25, generator=_gen(16))
    assert torch.equal(z, LF.decoupled_st(x, 3.0, 0.25, generator=_gen(16)))
    (g,) = torch.autograd.grad(z, x, up)
    (ref,) = torch.autograd.grad(torch.softmax(x / 0.25, -1), x, up)
    torch.testing.assert_close(g, ref)


def test_register_user_estimator_and_refuse_duplicates():
    name = "test_user_hard_max"

    def cat(l, *, tau_f, tau_b, dim=-1, generator=None):
        return LF.identity_st(l, dim)

    est = LF.Estimator(name, cat, None, temperature="none")
    try:
        assert LF.register_estimator(est) is est
        assert LF.get_estimator(name) is est
        z = LF.get_estimator(name).categorical(torch.randn(3, 4), tau_f=1.0, tau_b=1.0, dim=-1)
        assert torch.equal(z.sum(-1), torch.ones(3))
        with pytest.raises(ValueError, match="already registered"):
            LF.register_estimator(LF.Estimator(name, cat, None, temperature="none"))
        with pytest.raises(ValueError, match="already registered"):
            LF.register_estimator(LF.Estimator("decoupled", cat, None))
        replacement = LF.Estimator(name, cat, None, temperature="single")
        LF.register_estimator(replacement, overwrite=True)
        assert LF.get_estimator(name) is replacement
        with pytest.raises(ValueError, match="temperature"):
            LF.register_estimator(LF.Estimator(name + "_2", cat, None, temperature="two"))
        with pytest.raises(ValueError, match="categorical"):
            LF.register_estimator(LF.Estimator(name + "_3", None, None))
    finally:
        LF.ESTIMATORS.pop(name, None)
    assert name not in LF.ESTIMATORS
