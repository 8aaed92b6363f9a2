"""The fused / chunked kernels of decoupled ST (categorical and binary): every code path
(hand-written small-k softmax, ATen's fused softmax for larger k, one or many CPU
chunks, low-precision dtypes) keeps the exactness properties."""

from __future__ import annotations

import pytest
import torch

from lightning_discrete import functional as LF
from lightning_discrete.nn import logic as logic_mod


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def one_thread():
    """The CPU chunk loop runs single-threaded only (several threads: one pass)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["one-chunk", "many-chunks"])
def chunking(request, monkeypatch, one_thread):
    if request.param == "many-chunks":
        monkeypatch.setattr(LF, "_CHUNK_ELEMENTS", 37)
        monkeypatch.setattr(LF, "_FLAT_CHUNK_ELEMENTS", 53)
    else:
        monkeypatch.setattr(LF, "_CHUNK_ELEMENTS", 1 << 30)
        monkeypatch.setattr(LF, "_FLAT_CHUNK_ELEMENTS", 1 << 30)
    return request.param


@pytest.mark.parametrize("k", [2, 3, 8, 15, 16, 40, 512])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("tau_f,tau_b", [(2.0, 0.5), (1.0, 1.0), (0.0, 0.7)])
def test_decoupled_st_one_hot_and_exact_gradient(k, dtype, tau_f, tau_b, chunking):
    x = (torch.randn(33, k, dtype=torch.float64, generator=_gen(k)) * 3).to(dtype).requires_grad_()
    z = LF.decoupled_st(x, tau_f, tau_b, generator=_gen(1))
    assert z.dtype == dtype and z.shape == x.shape
    assert bool(((z == 0) | (z == 1)).all()) and bool((z.sum(-1) == 1).all())
    if tau_f == 0.0:
        assert torch.equal(z.argmax(-1), x.argmax(-1))
    up = torch.randn(33, k, dtype=torch.float64, generator=_gen(2)).to(dtype)
    (g,) = torch.autograd.grad(z, x, up)
    xc = x.detach().to(torch.float64).requires_grad_()
    (ref,) = torch.autograd.grad(torch.softmax(xc / tau_b, -1), xc, up.to(torch.float64))
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    assert g.dtype == dtype
    torch.testing.assert_close(g.to(torch.float64), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("k", [3, 16, 40])
def test_sample_independent_of_chunking(k, monkeypatch, one_thread):
    x = torch.randn(500, k, generator=_gen(3)) * 2
    monkeypatch.setattr(LF, "_CHUNK_ELEMENTS", 1 << 30)
    a = LF.decoupled_st(x, 0.8, 1.0, generator=_gen(4))
    monkeypatch.setattr(LF, "_CHUNK_ELEMENTS", 7 * k + 3)
    b = LF.decoupled_st(x, 0.8, 1.0, generator=_gen(4))
    assert torch.equal(a, b)
    xb = x.reshape(-1)
    monkeypatch.setattr(LF, "_FLAT_CHUNK_ELEMENTS", 1 << 30)
    a = LF.bernoulli_decoupled_st(xb, 0.8, 1.0, generator=_gen(5))
    monkeypatch.setattr(LF, "_FLAT_CHUNK_ELEMENTS", 97)
    b = LF.bernoulli_decoupled_st(xb, 0.8, 1.0, generator=_gen(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("k,tau_f", [(16, 1.0), (40, 0.6)])
def test_fused_path_frequencies(k, tau_f, chunking):
    """Categorical frequencies match softmax(l / tau_f) for the fused-softmax sizes of k."""
    n = 40_000
    logits = torch.randn(k, generator=_gen(6), dtype=torch.float64)
    z = LF.decoupled_st(logits.expand(n, k), tau_f, 1.0, generator=_gen(7))
    freq = z.mean(0)
    p = torch.softmax(logits / tau_f, -1)
    se = (p * (1 - p) / n).sqrt()
    assert bool(((freq - p).abs() <= 5 * se + 1e-9).all()), (freq, p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_bernoulli_exact_values_gradient_and_extremes(dtype, chunking):
    x = (torch.randn(301, dtype=torch.float64, generator=_gen(8)) * 3).to(dtype).requires_grad_()
    for tau_f in (0.0, 0.1, 1.0, 2.5):
        z = LF.bernoulli_decoupled_st(x, tau_f, 0.7, generator=_gen(9))
        assert z.dtype == dtype and bool(((z == 0) | (z == 1)).all())
        up = torch.randn(301, dtype=torch.float64, generator=_gen(10)).to(dtype)
        (g,) = torch.autograd.grad(z, x, up)
        s = torch.sigmoid(x.detach().to(torch.float64) / 0.7)
        ref = up.to(torch.float64) * s * (1 - s) / 0.7
        tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 2e-2)
        torch.testing.assert_close(g.to(torch.float64), ref, rtol=tol, atol=tol)
    # p = 0 and p = 1 exactly: never / always 1, whatever the uniforms
    big = torch.full((20_000,), 1e4 if dtype != torch.float16 else 6e4, dtype=dtype)
    assert bool((LF.bernoulli_decoupled_st(big, 1.0, 1.0, generator=_gen(11)) == 1).all())
    assert bool((LF.bernoulli_decoupled_st(-big, 1.0, 1.0, generator=_gen(11)) == 0).all())


def test_bernoulli_frequencies_fine(chunking):
    n = 200_000
    logits = torch.tensor([-6.0, -2.0, 0.0, 0.3, 3.0])
    z = LF.bernoulli_decoupled_st(logits.expand(n, 5), 0.7, 1.0, generator=_gen(12))
    p = torch.sigmoid(logits.double() / 0.7)
    se = (p * (1 - p) / n).sqrt()
    assert bool(((z.double().mean(0) - p).abs() <= 5 * se).all())


def test_non_cpu_devices_take_one_pass():
    """No Python loop over chunks off the CPU (CUDA), nor with several CPU threads."""
    meta = torch.device("meta")
    threads = torch.get_num_threads()
    assert LF._row_chunks(10_000_000, 8, meta) == [(0, 10_000_000)]
    assert LF._chunks(10_000_000, LF._FLAT_CHUNK_ELEMENTS, meta) == [(0, 10_000_000)]
    assert logic_mod._neuron_chunks(4096, 100_000, meta) == [(0, 100_000)]
    cpu = torch.device("cpu")
    try:
        torch.set_num_threads(1)
        assert len(LF._row_chunks(10_000_000, 8, cpu)) > 1 and len(LF._chunks(10_000_000, LF._FLAT_CHUNK_ELEMENTS, cpu)) > 1
        torch.set_num_threads(2)
        assert LF._row_chunks(10_000_000, 8, cpu) == [(0, 10_000_000)]
    finally:
        torch.set_num_threads(threads)
    assert LF._row_chunks(0, 8, meta) == [] and LF._chunks(0, LF._FLAT_CHUNK_ELEMENTS, meta) == []


def test_non_contiguous_input_matches_contiguous(chunking):
    base = torch.randn(20, 40, 3, generator=_gen(13))
    x_nc = base.transpose(1, 2)  # (20, 3, 40), categories (40) last, non-contiguous
    x_c = x_nc.contiguous()
    a = LF.decoupled_st(x_nc.requires_grad_(), 1.3, 0.6, generator=_gen(14))
    b = LF.decoupled_st(x_c.requires_grad_(), 1.3, 0.6, generator=_gen(14))
    assert torch.equal(a, b)
    up = torch.randn(a.shape, generator=_gen(15))
    torch.testing.assert_close(
        torch.autograd.grad(a, x_nc, up)[0], torch.autograd.grad(b, x_c, up)[0]
    )
