"""Training-step time of the VAE recipes against a hand-written PyTorch step, and of the
step's parts (analytic KL, Adam) against the plain PyTorch way of writing them.

Usage::

    python benchmarks/vae_step.py                    # every configuration, 1 and 2 threads
    python benchmarks/vae_step.py --threads 1 --configs cat_10x30 --repeats 15

Configurations (batch 100, encoder 784-512-256, decoder mirrored, the recipes' sizes):

* ``cat_20x10``: ``recipes/vae_mnist.yaml``, 20 latents x 10 categories, relaxed Gumbel-Softmax;
* ``cat_10x30``: the MNIST-VAE benchmark's 30 latents x 10 categories, ST Gumbel-Softmax;
* ``cat_8x4``: its 4 latents x 8 categories, ST Gumbel-Softmax;
* ``bern_200``: ``recipes/vae_mnist_bernoulli.yaml``, 200 binary latents, relaxed Gumbel-Softmax.

Rows, each a ratio of medians measured in this run, the contenders alternated:

* ``KL``: ``LF.categorical_kl`` / ``LF.bernoulli_kl`` (analytic backward) forward+backward
  on the ``(100, L, k)`` / ``(100, L)`` encoder logits, against autograd through
  ``torch.log_softmax`` (categorical) or the four ``F.logsigmoid`` terms (Bernoulli);
* ``Adam``: one ``step()`` of ``torch.optim.Adam(fused=True)`` (the recipes' setting) over
  the VAE's parameters against the default ``torch.optim.Adam`` (its for-loop step on CPU);
* ``step``: ``CategoricalVAE.step`` + ``backward`` + the recipes' fused Adam step, against
  the step a user writes by hand: the same layers, ``F.gumbel_softmax`` (``hard=True`` for
  ST-GS), the KL through ``torch.log_softmax`` and the default Adam. This is the model's
  part of an epoch; the Lightning loop around it is ``benchmarks/training_speed.py``'s.
  ``training step, both default Adam`` gives the library's model the hand-written step's
  optimiser, so what is left is the model code (sampling, KL, loss) alone.
* ``test bound``: ``CategoricalVAE.sample_log_weights`` for 100 exact samples of each of 100
  images (one chunk of ``test/nll``) against ``torch.distributions.OneHotCategorical`` /
  ``Bernoulli`` sampling and ``log_prob`` with the same decoder.

Times are medians over ``--repeats`` rounds of ``--iters`` calls each after a warm-up.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from lightning_discrete import functional as LF
from lightning_discrete.models import CategoricalVAE

CONFIGS = {  # name: (latents, categories, bernoulli, estimator, hard)
    "cat_20x10": (20, 10, False, "gumbel_softmax", False),
    "cat_10x30": (30, 10, False, "gumbel_softmax_st", True),
    "cat_8x4": (4, 8, False, "gumbel_softmax_st", True),
    "bern_200": (200, 2, True, "gumbel_softmax", False),
}
BATCH = 100


def plain_categorical_kl(logits: torch.Tensor) -> torch.Tensor:
    log_q = torch.log_softmax(logits, -1)
    return (log_q.exp() * (log_q + math.log(logits.shape[-1]))).sum(-1)


def plain_bernoulli_kl(logits: torch.Tensor) -> torch.Tensor:
    q = torch.sigmoid(logits)
    return q * (F.logsigmoid(logits) + math.log(2.0)) + (1 - q) * (F.logsigmoid(-logits) + math.log(2.0))


class PlainVAE(nn.Module):
    """The hand-written VAE: given encoder and decoder layers, PyTorch's own sampling and KL.
    Training feeds the decoder ``F.gumbel_softmax`` at ``self.tau`` (``hard``: ST-GS); evaluation
    an exact sample of ``q(z|x)``, as the library's VAE. ``loss(x)`` is the batch mean of
    reconstruction + KL. Also the plain loop of ``benchmarks/training_speed.py --tasks vae``."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_shape, hard: bool, tau: float = 1.0) -> None:
        super().__init__()
        self.encoder, self.decoder, self.hard, self.tau = encoder, decoder, hard, tau
        self.shape, self.bernoulli = tuple(latent_shape), len(latent_shape) == 1

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.encoder(x).view(-1, *self.shape)
        if self.bernoulli:  # a binary relaxed sample: Gumbel-Softmax over (logit, 0)
            if self.training:
                two = torch.stack([logits, torch.zeros_like(logits)], -1)
                z = F.gumbel_softmax(two, tau=self.tau, hard=self.hard)[..., 0]
            else:
                z = (torch.rand_like(logits) < torch.sigmoid(logits)).to(logits.dtype)
            kl = plain_bernoulli_kl(logits)
        else:
            z = F.gumbel_softmax(logits, tau=self.tau, hard=self.hard or not self.training)
            kl = plain_categorical_kl(logits)
        recon = F.binary_cross_entropy_with_logits(self.decoder(z.flatten(1)), x, reduction="none").sum(-1)
        return (recon + kl.flatten(1).sum(-1)).mean()


def _median_ms(fns: Dict[str, Callable[[], None]], repeats: int, iters: int) -> Dict[str, float]:
    for fn in fns.values():  # warm-up
        for _ in range(3):
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():  # alternated, so load from other processes hits all alike
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            times[key].append((time.perf_counter() - t0) / iters * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(name: str, repeats: int, iters: int) -> List[tuple]:
    L, k, bern, est, hard = CONFIGS[name]
    torch.manual_seed(0)
    vae = CategoricalVAE(784, num_latents=L, num_categories=k, bernoulli=bern, estimator=est, tau=1.0)
    vae.train()
    plain = PlainVAE(vae.encoder, vae.decoder, vae.latent_shape, hard)
    x = (torch.rand(BATCH, 784) < 0.3).float()
    rows = []

    # the KL term alone
    shape = (BATCH, L) if bern else (BATCH, L, k)
    logits = (torch.randn(shape) * 3).requires_grad_()
    lib_kl, ref_kl = (LF.bernoulli_kl, plain_bernoulli_kl) if bern else (LF.categorical_kl, plain_categorical_kl)

    def kl_run(fn):
        def run():
            logits.grad = None
            fn(logits).sum().backward()
        return run

    m = _median_ms({"lib": kl_run(lib_kl), "ref": kl_run(ref_kl)}, repeats, iters * 4)
    rows.append((name, "KL fwd+bwd", m["lib"], m["ref"]))

    # the optimiser step alone (gradients of one training step in place)
    vae.step(x)[0].mean().backward()
    params = [p for p in vae.parameters() if p.grad is not None]
    fused = torch.optim.Adam(params, lr=1e-9, fused=True)
    loop = torch.optim.Adam(params, lr=1e-9)
    m = _median_ms({"lib": fused.step, "ref": loop.step}, repeats, iters)
    rows.append((name, "Adam step", m["lib"], m["ref"]))

    # the whole training step
    opt_lib = torch.optim.Adam(vae.parameters(), lr=1e-4, fused=True)
    opt_ref = torch.optim.Adam(plain.parameters(), lr=1e-4)

    def lib_step():
        opt_lib.zero_grad()
        vae.step(x)[0].mean().backward()
        opt_lib.step()

    def ref_step():
        opt_ref.zero_grad()
        plain.loss(x).backward()
        opt_ref.step()

    opt_lib_loop = torch.optim.Adam(vae.parameters(), lr=1e-4)

    def lib_step_loop():  # the library's model with the plain step's optimiser
        opt_lib_loop.zero_grad()
        vae.step(x)[0].mean().backward()
        opt_lib_loop.step()

    m = _median_ms({"lib": lib_step, "lib_loop": lib_step_loop, "ref": ref_step}, repeats, iters)
    rows.append((name, "training step", m["lib"], m["ref"]))
    rows.append((name, "training step, both default Adam", m["lib_loop"], m["ref"]))

    # one chunk of the test bound (100 exact samples of each of the 100 images)
    vae.eval()

    def plain_log_weights():
        logits = vae.encoder(x).view(-1, *vae.latent_shape)
        q = (torch.distributions.Bernoulli(logits=logits) if bern
             else torch.distributions.OneHotCategorical(logits=logits))
        z = q.sample((100,))
        log_q = q.log_prob(z).flatten(2).sum(-1) if bern else q.log_prob(z).sum(-1)
        log_px = -F.binary_cross_entropy_with_logits(vae.decoder(z.flatten(2)), x.expand(100, *x.shape),
                                                     reduction="none").sum(-1)
        return log_px - L * math.log(k) - log_q

    with torch.no_grad():
        m = _median_ms({"lib": lambda: vae.sample_log_weights(x, 100), "ref": plain_log_weights},
                       max(3, repeats // 3), max(1, iters // 10))
    rows.append((name, "test bound, 100 x 100 samples", m["lib"], m["ref"]))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=9, help="alternated rounds per contender")
    parser.add_argument("--iters", type=int, default=20, help="calls per round")
    args = parser.parse_args(argv)
    for nthreads in args.threads:
        torch.set_num_threads(nthreads)
        print(f"\ntorch {torch.__version__}, CPU threads {torch.get_num_threads()}, batch {BATCH}; "
              f"medians of {args.repeats} alternated rounds\n")
        print("| config | part | library (ms) | plain PyTorch (ms) | ratio |")
        print("|---|---|---:|---:|---:|")
        for name in args.configs:
            for cfg, part, lib, ref in bench(name, args.repeats, args.iters):
                print(f"| {cfg} | {part} | {lib:.3f} | {ref:.3f} | {lib / ref:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
