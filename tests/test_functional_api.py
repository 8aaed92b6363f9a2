"""API contract of ``lightning_discrete.functional``: shapes, dims, layouts, dtypes,
generators, ``torch.compile``, numerical robustness, input validation, registry."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightning_discrete import functional as LF

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]

# the estimator tables (``categorical_case``, ``binary_case``, ``estimator_case``) and the
# ``gen(seed)`` generator factory are fixtures of tests/conftest.py


def _grad(out, x, seed=0):
    up = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.dtype)
    if not out.requires_grad:
        return None
    (g,) = torch.autograd.grad(out, x, up)
    return g


# --------------------------------------------------------------------------- #
# 1. any dim, any leading shape, non-contiguous input, dtypes, generators
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_categorical_any_dim_layout_dtype(categorical_case, dtype, gen):
    fn = categorical_case
    base = torch.randn(5, 6, 4, 3, generator=gen(1)).to(dtype)
    for dim in (0, 1, -2, -1):
        # non-contiguous input: a transposed view, and its contiguous copy
        x_nc = base.transpose(0, 2).requires_grad_()  # (4, 6, 5, 3)
        assert not x_nc.is_contiguous()
        x_c = x_nc.detach().contiguous().requires_grad_()
        out_nc = fn(x_nc, gen(2), dim=dim)
        out_c = fn(x_c, gen(2), dim=dim)
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
def test_binary_any_shape_layout_dtype(binary_case, dtype, gen):
    fn = binary_case
    for shape in [(7,), (3, 4, 5), ()]:
        base = torch.randn(shape, generator=gen(3)).to(dtype)
        x_nc = base.transpose(0, -1) if base.dim() > 1 else base
        x_nc = x_nc.requires_grad_()
        x_c = x_nc.detach().contiguous().requires_grad_()
        out_nc, out_c = fn(x_nc, gen(4)), fn(x_c, gen(4))
        expected_shape = ((2,) if fn.estimator.antithetic else ()) + tuple(x_nc.shape)
        assert tuple(out_nc.shape) == expected_shape and out_nc.dtype == dtype
        if not fn.estimator.hard:  # soft output: last-ulp tolerance
            torch.testing.assert_close(out_nc, out_c)
        else:
            assert torch.equal(out_nc, out_c)
        g_nc, g_c = _grad(out_nc, x_nc), _grad(out_c, x_c)
        if g_nc is not None:
            assert g_nc.shape == x_nc.shape and bool(torch.isfinite(g_nc).all())
            # elementwise kernels may round differently on strided input: last-ulp tolerance
            torch.testing.assert_close(g_nc, g_c)


def test_decoupled_st_dim_is_a_pure_relabelling(gen):
    x = torch.randn(8, 5, 7, requires_grad=True)
    a = LF.decoupled_st(x, 1.3, 0.6, dim=1, generator=gen(5))
    b = LF.decoupled_st(x.movedim(1, -1), 1.3, 0.6, generator=gen(5)).movedim(-1, 1)
    assert torch.equal(a, b)
    up = torch.randn(8, 5, 7)
    assert torch.equal(torch.autograd.grad(a, x, up)[0], torch.autograd.grad(b, x, up)[0])


def test_categorical_generator_reproducible(categorical_case, gen):
    fn = categorical_case
    if not fn.stochastic:
        pytest.skip("deterministic estimator")
    x = torch.randn(300, 6)
    a, b, c = fn(x, gen(7)), fn(x, gen(7)), fn(x, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the global RNG is not touched when a generator is given
    state = torch.get_rng_state()
    fn(x, gen(7))
    assert torch.equal(state, torch.get_rng_state())


def test_binary_generator_reproducible(binary_case, gen):
    fn = binary_case
    if not fn.stochastic:
        pytest.skip("deterministic estimator")
    x = torch.randn(2000)
    a, b, c = fn(x, gen(7)), fn(x, gen(7)), fn(x, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_gumbel_rao_backward_reproducible_with_generator(gen):
    x = torch.randn(50, 6, requires_grad=True)
    up = torch.randn(50, 6)
    g1 = torch.autograd.grad(LF.gumbel_rao(x, 0.5, 4, generator=gen(9)), x, up)[0]
    g2 = torch.autograd.grad(LF.gumbel_rao(x, 0.5, 4, generator=gen(9)), x, up)[0]
    assert torch.equal(g1, g2)


def test_decoupled_st_large_input_chunked_matches_rowwise(gen):
    """Inputs larger than one internal chunk give the same samples as row by row."""
    x = torch.randn(70_000, 3, requires_grad=True)  # > 2 chunks of rows
    z = LF.decoupled_st(x, 1.0, 0.5, generator=gen(10))
    u = torch.rand(70_000, generator=gen(10)).clamp_min(torch.finfo(torch.float32).tiny)
    cdf = torch.softmax(x.detach(), -1).cumsum(-1)
    ref = (cdf < u.unsqueeze(-1) * cdf[:, -1:]).sum(-1).clamp_max(2)
    agree = (z.argmax(-1) == ref).double().mean()
    assert float(agree) > 0.9999  # differ only by rounding at category boundaries
    up = torch.randn(70_000, 3)
    (g,) = torch.autograd.grad(z, x, up)
    (ref_g,) = torch.autograd.grad(torch.softmax(x / 0.5, -1), x, up)
    torch.testing.assert_close(g, ref_g, rtol=1e-4, atol=1e-6)


def test_torch_compile_aot_eager(gen):
    torch._dynamo.reset()
    x = torch.randn(16, 3, 5, requires_grad=True)
    up = torch.randn(16, 3, 5)

    def f(logits, g):
        return LF.decoupled_st(logits, 2.0, 0.5, dim=1, generator=g)

    def h(logits):  # no generator: a single graph
        return LF.decoupled_st(logits, 2.0, 0.5, dim=1) + LF.bernoulli_decoupled_st(logits, 0.5, 2.0)

    compiled = torch.compile(f, backend="aot_eager")
    a, b = compiled(x, gen(11)), f(x, gen(11))
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
def test_no_nan_or_inf_extreme_inputs(values, tau_f, tau_b, dtype, seed, gen):
    base = torch.tensor(values, dtype=torch.float32).view(4, 3).to(dtype)
    for name, est in LF.ESTIMATORS.items():
        for binary in (False, True):
            if not (est.has_binary if binary else est.has_categorical):
                continue
            x = base.clone().requires_grad_()
            z = est(x, tau_f, tau_b, binary=binary, generator=gen(seed))
            z = torch.stack(z) if est.antithetic else z
            assert bool(torch.isfinite(z).all()), (name, binary)
            if z.requires_grad:
                up = torch.randn(z.shape, generator=gen(seed)).to(dtype)
                (g,) = torch.autograd.grad(z, x, up)
                assert bool(torch.isfinite(g).all()), (name, binary, g)
    # score-function surrogates
    x = base.clone().requires_grad_()
    z = LF.reinforce(x, generator=gen(seed))
    lp = LF.categorical_log_prob(x, z).view(2, 2)
    sur = LF.reinforce_loo_surrogate(lp, torch.randn(2, 2))
    (g,) = torch.autograd.grad(sur, x)
    assert bool(torch.isfinite(g).all()) and bool(torch.isfinite(lp).all())
    b1, b2 = LF.bernoulli_disarm(x, generator=gen(seed))
    sur = LF.disarm_surrogate(x, b1, b2, torch.randn(4), torch.randn(4))
    (g,) = torch.autograd.grad(sur, x)
    assert bool(torch.isfinite(g).all())
    lpb = LF.bernoulli_log_prob(x, b1)
    assert bool(torch.isfinite(lpb).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_gumbel_noise_never_infinite(dtype, gen):
    """Many draws in half precision: the Gumbel noise is drawn in float32 and clamped."""
    x = torch.zeros(400_000, 2, dtype=dtype, requires_grad=True)
    y = LF.gumbel_softmax(x, 1e-3, generator=gen(12))
    z = LF.gumbel_softmax_st(x, 1e-3, generator=gen(12))
    assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(z).all())
    (g,) = torch.autograd.grad(z, x, torch.ones_like(z))
    assert bool(torch.isfinite(g).all())


def test_float64_is_kept_in_log_probs_and_surrogates(gen):
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    z = LF.reinforce(x, generator=gen(13))
    assert LF.categorical_log_prob(x, z).dtype == torch.float64
    assert LF.bernoulli_log_prob(x, (x > 0).double()).dtype == torch.float64
    b1, b2 = LF.bernoulli_disarm(x, generator=gen(13))
    assert LF.disarm_surrogate(x, b1, b2, torch.randn(3), torch.randn(3)).dtype == torch.float64
    # exact value of the log-probability in float64
    torch.testing.assert_close(
        LF.categorical_log_prob(x, z), torch.log_softmax(x, -1).gather(-1, z.argmax(-1, keepdim=True)).squeeze(-1),
        rtol=1e-15, atol=1e-15,
    )



@pytest.mark.parametrize("dim", [-1, 1])
def test_categorical_log_prob_broadcasts_samples_and_has_the_log_softmax_gradient(dim, gen):
    """Samples ``(S, *)`` of one set of logits: the same values and gradients as ``log_softmax``
    of the logits repeated S times (the importance-weighted bound's use), and exact in the tails."""
    x = (torch.randn(5, 6, 3, generator=gen(2)) * 4).requires_grad_()  # categories on `dim`
    k, end = x.shape[dim], dim % x.dim() - x.dim()  # the category dim counted from the end
    idx = torch.randint(0, k, (7, 5, 3 if dim == 1 else 6), generator=gen(3))
    z = torch.nn.functional.one_hot(idx, k).double().movedim(-1, end)  # (7, 5, 6, 3)
    got = LF.categorical_log_prob(x, z, dim)
    up = torch.randn(got.shape, generator=gen(4))
    (g,) = torch.autograd.grad(got, x, up)
    x64 = x.detach().double().requires_grad_()
    want = (torch.log_softmax(x64.expand(7, *x.shape), end) * z).sum(end)
    (g64,) = torch.autograd.grad(want, x64, up.double())
    assert got.shape == ((7, 5, 3) if dim == 1 else (7, 5, 6))
    torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-6)
    torch.testing.assert_close(g.double(), g64, rtol=0, atol=2e-6)
    tails = torch.tensor([[1e4, 0.0, -1e4]])
    assert LF.categorical_log_prob(tails, torch.tensor([[1.0, 0.0, 0.0]])).item() == 0.0
    assert LF.categorical_log_prob(tails, torch.tensor([[0.0, 1.0, 0.0]])).item() == -1e4

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
        (lambda: LF.bernoulli_gumbel_softmax_st(_OK, 0.0), "tau"),
        (lambda: LF.bernoulli_reinmax(_OK, 0.0), "tau"),
        (lambda: LF.bernoulli_gumbel_rao(_OK, 1.0, num_samples=0), "num_samples"),
        (lambda: LF.bernoulli_spigot(_OK, 0.0), "step_size"),
        (lambda: LF.decoupled_st(torch.tensor([[0.0, float("nan")]]), 1.0, 1.0), "logits"),
        (lambda: LF.decoupled_st(torch.tensor([[0.0, float("inf")]]), 1.0, 1.0), "logits"),
        (lambda: LF.gumbel_softmax_st(torch.tensor([[float("-inf"), 0.0]])), "logits"),
        (lambda: LF.bernoulli_decoupled_st(torch.tensor([float("nan")])), "logits"),
        (lambda: LF.sign_st(torch.tensor([float("inf")])), "logits"),
        (lambda: LF.decoupled_st(torch.tensor([[1, 2]]), 1.0, 1.0), "logits"),
        (lambda: LF.identity_st(torch.tensor([[1, 2]])), "logits"),
        (lambda: LF.bernoulli_decoupled_st(torch.tensor([1, 0])), "logits"),
        (lambda: LF.reinforce(torch.tensor([[True, False]])), "logits"),
        (lambda: LF.bernoulli_reinforce(torch.tensor([1, 0])), "logits"),
        (lambda: LF.bernoulli_disarm(torch.tensor([1, 0])), "logits"),
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
    with pytest.raises(ValueError, match="decoupled_st"):
        LF.get_estimator("nope")


# --------------------------------------------------------------------------- #
# 10. the registry
# --------------------------------------------------------------------------- #


def _module_function(name):
    return getattr(LF, name) if name in LF.__all__ else None


@pytest.mark.parametrize("name", sorted(LF.ESTIMATORS))
def test_registry_names_follow_the_naming_rule(name):
    """Registry name N: categorical function ``N``, binary ``bernoulli_N`` (``sign_st``: ``sign_st``)."""
    est = LF.get_estimator(name)
    assert est.name == name and est.has_categorical + est.has_binary >= 1
    if est.has_categorical:
        assert est.categorical is _module_function(name)
    if est.has_binary:
        expected = name if est.signed else f"bernoulli_{name}"
        assert est.binary is _module_function(expected)
    for fn in (est.categorical, est.binary):
        if fn is not None:
            assert fn.__doc__ and "Examples:" in fn.__doc__


def test_registered_estimators_called_through_the_registry(estimator_case, gen):
    est = estimator_case.estimator
    if estimator_case.binary:
        x = torch.randn(5, 4, requires_grad=True)
        z = estimator_case(x, gen(15))
        for value in z if est.antithetic else (z,):
            assert value.shape == x.shape
            if est.hard:
                allowed = (value == 0) | (value == 1) | ((value == -1) if est.signed else False)
                assert bool(allowed.all())
            assert value.requires_grad != est.score_function
        return
    x = torch.randn(5, 6, 3, requires_grad=True)
    z = estimator_case(x, gen(14), dim=1)
    assert z.shape == x.shape
    if est.hard:
        assert torch.equal(z.sum(1), torch.ones(5, 3))
    else:
        torch.testing.assert_close(z.sum(1), torch.ones(5, 3))
    assert z.requires_grad != est.score_function
    assert torch.equal(z, estimator_case(x, gen(14), dim=1))


@pytest.mark.parametrize(
    "name,call",
    [
        ("decoupled_st", lambda x, g: LF.decoupled_st(x, 3.0, 0.25, generator=g)),
        ("softmax_st", lambda x, g: LF.softmax_st(x, 3.0, generator=g)),  # tau_b ignored
        ("identity_st", lambda x, g: LF.identity_st(x)),
        ("spigot", lambda x, g: LF.spigot(x, 3.0)),
        ("gumbel_rao", lambda x, g: LF.gumbel_rao(x, 3.0, num_samples=2, generator=g)),
    ],
)
def test_registry_call_passes_each_function_its_own_temperatures(name, call, gen):
    x = torch.randn(10, 4, requires_grad=True)
    up = torch.randn(10, 4)
    kwargs = {"num_samples": 2} if name == "gumbel_rao" else {}
    z = LF.get_estimator(name)(x, 3.0, 0.25, generator=gen(16), **kwargs)
    ref = call(x, gen(16))
    assert torch.equal(z, ref)
    torch.testing.assert_close(torch.autograd.grad(z, x, up)[0], torch.autograd.grad(ref, x, up)[0])


def test_binary_only_estimator_has_no_categorical_call():
    with pytest.raises(ValueError, match="no categorical form"):
        LF.get_estimator("sign_st")(torch.randn(3, 2))


@pytest.mark.parametrize(
    "old,new",
    [("decoupled", "decoupled_st"), ("identity", "identity_st"), ("softmax", "softmax_st"),
     ("gumbel_st", "gumbel_softmax_st"), ("sign", "sign_st")],
)
def test_old_registry_names_resolve_with_a_future_warning(old, new):
    with pytest.warns(FutureWarning, match=f"'{new}'"):
        est = LF.get_estimator(old)
    assert est is LF.get_estimator(new)


def test_register_user_estimator_and_refuse_duplicates():
    name = "test_user_hard_max"
    est = LF.Estimator(name, LF.identity_st, None, num_temperatures=0, stochastic=False)
    try:
        assert LF.register_estimator(est) is est
        assert LF.get_estimator(name) is est
        z = LF.get_estimator(name)(torch.randn(3, 4), 1.0, 1.0, dim=-1)
        assert torch.equal(z.sum(-1), torch.ones(3))
        with pytest.raises(ValueError, match="already registered"):
            LF.register_estimator(LF.Estimator(name, LF.identity_st, None, num_temperatures=0))
        with pytest.raises(ValueError, match="already registered"):
            LF.register_estimator(LF.Estimator("decoupled_st", LF.identity_st, None))
        replacement = LF.Estimator(name, LF.softmax_st, None)
        LF.register_estimator(replacement, overwrite=True)
        assert LF.get_estimator(name) is replacement
        with pytest.raises(ValueError, match="num_temperatures"):
            LF.register_estimator(LF.Estimator(name + "_2", LF.softmax_st, None, num_temperatures=3))
        with pytest.raises(ValueError, match="categorical"):
            LF.register_estimator(LF.Estimator(name + "_3", None, None))
        with pytest.raises(ValueError, match="antithetic"):
            LF.register_estimator(LF.Estimator(name + "_4", LF.reinforce, None, antithetic=True))
    finally:
        LF.ESTIMATORS.pop(name, None)
    assert name not in LF.ESTIMATORS
