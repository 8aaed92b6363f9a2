"""benchmarks/vae_posteriors.py: posterior statistics of a VAE whose encoder output is set by hand."""
import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from vae_posteriors import main, posterior_stats  # noqa: E402

from lightning_discrete.models import CategoricalVAE  # noqa: E402


def _fixed_encoder(vae, logits):
    """Make the encoder output ``logits`` (flattened to its last layer's size) for every input."""
    last = vae.encoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.as_tensor(logits, dtype=last.bias.dtype).flatten())


def test_categorical_posterior_statistics_match_the_hand_computed_values():
    torch.manual_seed(0)
    vae = CategoricalVAE(6, num_latents=2, num_categories=3, hidden_dims=[5], estimator="softmax_st", tau=1.0,
                         test_num_samples=0)
    # latent 0: logits (0, log 2, log 5 - 10), range 10 + log 2 - log 5, q far from one-hot;
    # latent 1: (40, 0, 0), range 40, saturated at tau_b = 1 (1 - max q = 2 e^-40 < 1e-6)
    l0, l1 = [0.0, math.log(2.0), math.log(5.0) - 10.0], [40.0, 0.0, 0.0]
    _fixed_encoder(vae, [l0, l1])
    x = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 0, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.float32)
    stats = posterior_stats(vae, x)

    def entropy(logits):
        q = torch.tensor(logits, dtype=torch.float64).softmax(-1)
        return float(-(q * q.log()).sum())

    h0, h1 = entropy(l0), entropy(l1)
    assert stats["entropy"] == pytest.approx((h0 + h1) / 2, abs=1e-5)
    assert stats["logit_range"] == pytest.approx((10.0 + math.log(2.0) - math.log(5.0) + 40.0) / 2, abs=1e-4)
    assert stats["saturated"] == 0.5
    # buried: latent 1's codes 1 and 2 (e^-40); latent 0's code 2 is 5 e^-10 / 3 ~ 8e-5, within reach
    assert stats["buried"] == pytest.approx(2 / 6)
    # the same q for every image: each latent's marginal is q itself; the smaller perplexity is latent 1's
    assert stats["min_marginal_perplexity"] == pytest.approx(math.exp(h1), abs=1e-4)
    # the most likely codes: category 1 of latent 0 (log 2 is the largest logit), category 0 of latent 1
    mode = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    expected = F.binary_cross_entropy_with_logits(vae.decoder(mode.flatten()).expand(3, 6), x, reduction="none").sum(-1)
    assert stats["recon_mode"] == pytest.approx(expected.mean().item(), abs=1e-4)
    # KL to the uniform prior: log k - H per latent, summed
    assert stats["kl"] == pytest.approx(2 * math.log(3.0) - h0 - h1, abs=1e-4)
    assert stats["loss"] == pytest.approx(stats["recon"] + stats["kl"], abs=1e-3)
    assert vae.training  # the mode it came in with
    # a higher backward temperature unsaturates latent 1: 1 - max softmax(l1 / 4) = 2 e^-10 > 1e-6
    vae.bottleneck.set_temperature(tau=4.0)
    unburied = posterior_stats(vae, x)
    assert unburied["saturated"] == 0.0 and unburied["buried"] == 0.0


def test_bernoulli_latent_counts_as_the_pair_zero_and_its_logit():
    vae = CategoricalVAE(4, num_latents=2, num_categories=2, bernoulli=True, hidden_dims=[3], estimator="softmax_st",
                         test_num_samples=0)
    _fixed_encoder(vae, [3.0, -1.0])
    stats = posterior_stats(vae, torch.ones(2, 4))
    assert stats["logit_range"] == pytest.approx(2.0, abs=1e-6)  # (|3| + |-1|) / 2
    assert stats["saturated"] == 0.0
    p = torch.tensor([3.0, -1.0]).sigmoid()
    h = -(p * p.log() + (1 - p) * (1 - p).log())
    assert stats["entropy"] == pytest.approx(h.mean().item(), abs=1e-5)
    assert stats["min_marginal_perplexity"] == pytest.approx(math.exp(h.min().item()), abs=1e-4)
    mode = torch.tensor([1.0, 0.0])  # unit 0 on (logit 3 > 0), unit 1 off
    expected = F.binary_cross_entropy_with_logits(vae.decoder(mode), torch.ones(4), reduction="none").sum()
    assert stats["recon_mode"] == pytest.approx(expected.item(), abs=1e-4)


def test_no_matching_run_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nothing_here_*")])
    assert "no run folder matches" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--images", "0"])
    assert "--images must be >= 1" in capsys.readouterr().err
