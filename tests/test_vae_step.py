"""benchmarks/vae_step.py: its hand-written VAE computes the library VAE's loss, so the step
times it prints compare like with like."""

from __future__ import annotations

import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from vae_step import PlainVAE  # noqa: E402

from lightning_discrete.models import CategoricalVAE  # noqa: E402


@pytest.mark.parametrize("estimator, hard", [("gumbel_softmax", False), ("gumbel_softmax_st", True)])
def test_plain_vae_loss_and_gradients_equal_the_library_vae(estimator, hard):
    torch.manual_seed(0)
    vae = CategoricalVAE(20, num_latents=3, num_categories=5, hidden_dims=[16], estimator=estimator, tau=0.7)
    plain = PlainVAE(vae.encoder, vae.decoder, vae.latent_shape, hard=hard, tau=0.7)
    x = (torch.rand(8, 20) < 0.4).float()
    vae.train(), plain.train()
    torch.manual_seed(1)  # the same Gumbel noise: the library draws it as F.gumbel_softmax does
    ours = vae.step(x)[0].mean()
    g_ours = torch.autograd.grad(ours, list(vae.parameters()))
    torch.manual_seed(1)
    ref = plain.loss(x)
    g_ref = torch.autograd.grad(ref, list(vae.parameters()))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # evaluation: both draw exact samples of q(z|x); the losses are one-sample -ELBOs of the same q
    vae.eval(), plain.eval()
    with torch.no_grad():
        a = torch.stack([vae.step(x)[0].mean() for _ in range(400)]).mean()
        b = torch.stack([plain.loss(x) for _ in range(400)]).mean()
    assert abs(float(a - b)) < 0.02 * abs(float(a))
