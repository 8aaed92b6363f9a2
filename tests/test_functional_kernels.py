"""The fused / chunked kernels of decoupled ST (categorical and binary): every code path
(hand-written small-k softmax, ATen's fused softmax for larger k, one or many CPU
chunks, low-precision dtypes) keeps the exactness properties.

A single-threaded CPU run works on cache-sized chunks, several threads make one pass
(``docs/design.md``, "Speed"): the tests compare the two through the public behaviour,
on inputs of several chunks."""

from __future__ import annotations

import contextlib

import pytest
import torch

from lightning_discrete import functional as LF

# more elements than one CPU chunk holds (2^17 categorical, 2^19 binary elements)
LARGE = 3 << 19


@contextlib.contextmanager
def _threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(params=[1, 2], ids=["1-thread-chunked", "2-threads-one-pass"])
def chunking(request):
    """Run the test single-threaded (CPU chunk loop) and with two threads (one pass)."""
    with _threads(request.param):
        yield request.param


@pytest.mark.parametrize("k", [2, 3, 8, 15, 16, 40, 512])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("tau_f,tau_b", [(2.0, 0.5), (1.0, 1.0), (0.0, 0.7)])
def test_decoupled_st_one_hot_and_exact_gradient(k, dtype, tau_f, tau_b, chunking, gen):
    x = (torch.randn(33, k, dtype=torch.float64, generator=gen(k)) * 3).to(dtype).requires_grad_()
    z = LF.decoupled_st(x, tau_f, tau_b, generator=gen(1))
    assert z.dtype == dtype and z.shape == x.shape
    assert bool(((z == 0) | (z == 1)).all()) and bool((z.sum(-1) == 1).all())
    if tau_f == 0.0:
        assert torch.equal(z.argmax(-1), x.argmax(-1))
    up = torch.randn(33, k, dtype=torch.float64, generator=gen(2)).to(dtype)
    (g,) = torch.autograd.grad(z, x, up)
    xc = x.detach().to(torch.float64).requires_grad_()
    (ref,) = torch.autograd.grad(torch.softmax(xc / tau_b, -1), xc, up.to(torch.float64))
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    assert g.dtype == dtype
    torch.testing.assert_close(g.to(torch.float64), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("k", [3, 16, 40])
def test_chunked_equals_one_pass(k, dtype, gen):
    """One thread (chunks) and two threads (one pass) give the same samples and gradients
    for inputs of several chunks."""
    x = (torch.randn(LARGE // k, k, generator=gen(3)) * 2).to(dtype)
    xb = x.reshape(-1)
    up = torch.randn(x.shape, generator=gen(6)).to(dtype)
    results = []
    for n in (1, 2):
        with _threads(n):
            xc, xbc = x.clone().requires_grad_(), xb.clone().requires_grad_()
            z = LF.decoupled_st(xc, 0.8, 0.6, generator=gen(4))
            zb = LF.bernoulli_decoupled_st(xbc, 0.8, 0.6, generator=gen(5))
            g = torch.autograd.grad(z, xc, up)[0]
            gb = torch.autograd.grad(zb, xbc, up.reshape(-1))[0]
            results.append((z, zb, g, gb))
    (z1, zb1, g1, gb1), (z2, zb2, g2, gb2) = results
    assert torch.equal(z1, z2) and torch.equal(zb1, zb2)
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(gb1, gb2)


@pytest.mark.parametrize("k,tau_f", [(16, 1.0), (40, 0.6)])
def test_fused_path_frequencies(k, tau_f, chunking, gen):
    """Categorical frequencies match softmax(l / tau_f) for the fused-softmax sizes of k."""
    n = 40_000
    logits = torch.randn(k, generator=gen(6), dtype=torch.float64)
    z = LF.decoupled_st(logits.expand(n, k), tau_f, 1.0, generator=gen(7))
    freq = z.mean(0)
    p = torch.softmax(logits / tau_f, -1)
    se = (p * (1 - p) / n).sqrt()
    assert bool(((freq - p).abs() <= 5 * se + 1e-9).all()), (freq, p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_bernoulli_exact_values_gradient_and_extremes(dtype, chunking, gen):
    x = (torch.randn(301, dtype=torch.float64, generator=gen(8)) * 3).to(dtype).requires_grad_()
    for tau_f in (0.0, 0.1, 1.0, 2.5):
        z = LF.bernoulli_decoupled_st(x, tau_f, 0.7, generator=gen(9))
        assert z.dtype == dtype and bool(((z == 0) | (z == 1)).all())
        up = torch.randn(301, dtype=torch.float64, generator=gen(10)).to(dtype)
        (g,) = torch.autograd.grad(z, x, up)
        s = torch.sigmoid(x.detach().to(torch.float64) / 0.7)
        ref = up.to(torch.float64) * s * (1 - s) / 0.7
        tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 2e-2)
        torch.testing.assert_close(g.to(torch.float64), ref, rtol=tol, atol=tol)
    # p = 0 and p = 1 exactly: never / always 1, whatever the uniforms
    big = torch.full((20_000,), 1e4 if dtype != torch.float16 else 6e4, dtype=dtype)
    assert bool((LF.bernoulli_decoupled_st(big, 1.0, 1.0, generator=gen(11)) == 1).all())
    assert bool((LF.bernoulli_decoupled_st(-big, 1.0, 1.0, generator=gen(11)) == 0).all())


def test_bernoulli_frequencies_fine(chunking, gen):
    n = 200_000
    logits = torch.tensor([-6.0, -2.0, 0.0, 0.3, 3.0])
    z = LF.bernoulli_decoupled_st(logits.expand(n, 5), 0.7, 1.0, generator=gen(12))
    p = torch.sigmoid(logits.double() / 0.7)
    se = (p * (1 - p) / n).sqrt()
    assert bool(((z.double().mean(0) - p).abs() <= 5 * se).all())


def test_non_contiguous_input_matches_contiguous(chunking, gen):
    base = torch.randn(20, 40, 3, generator=gen(13))
    x_nc = base.transpose(1, 2)  # (20, 3, 40), categories (40) last, non-contiguous
    x_c = x_nc.contiguous()
    a = LF.decoupled_st(x_nc.requires_grad_(), 1.3, 0.6, generator=gen(14))
    b = LF.decoupled_st(x_c.requires_grad_(), 1.3, 0.6, generator=gen(14))
    assert torch.equal(a, b)
    up = torch.randn(a.shape, generator=gen(15))
    torch.testing.assert_close(
        torch.autograd.grad(a, x_nc, up)[0], torch.autograd.grad(b, x_c, up)[0]
    )
