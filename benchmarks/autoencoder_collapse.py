"""Why the 4 x 8 categorical autoencoder collapses to one code on real MNIST: one change at a time.

    python benchmarks/autoencoder_collapse.py --variants baseline small_init layernorm layernorm_affine centered \
        --lr 1e-3 --seeds 0 1 --epochs 3
    python benchmarks/autoencoder_collapse.py --variants baseline --lr 3e-4 1e-4 --seeds 0 1 2 3 --epochs 5

A plain PyTorch loop (no Lightning, one thread) of the recipe's model: MLP 784-512-256-32 encoder,
4 latents x 8 categories, Decoupled ST (tau_f, tau_b) = (2.0, 0.5), mirrored decoder, BCE summed over
pixels, Adam, batch 200, the recipe's 55,000 / 5,000 split of MNIST (``data/MNIST/raw``; import it
with ``lightning-discrete import-mnist-pickle``). Variants: ``baseline``; ``small_init`` (encoder's
last layer x 0.01, bias 0); ``layernorm`` / ``layernorm_affine`` (LayerNorm over each latent's 8
logits, without / with a learned scale); ``centered`` (inputs x - 0.5). After each epoch it prints
(validation loss with argmax codes, mean code perplexity of 8, mean logit range max - min).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_discrete import functional as LF
from lightning_discrete.models.autoencoder import _mlp as mlp  # the recipe model's MLP

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("baseline", "small_init", "layernorm", "layernorm_affine", "centered")


def load(data_dir: Path):
    raw = (data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()
    x = torch.tensor(np.frombuffer(raw[16:], dtype=np.uint8).reshape(-1, 784).astype(np.float32) / 255.0)
    perm = torch.randperm(60000, generator=torch.Generator().manual_seed(42))
    return x[perm[:55000]], x[perm[55000:]]


def run(train, val, variant, lr, seed, epochs, tau_f=2.0, tau_b=0.5):
    torch.manual_seed(seed)
    enc, dec = mlp([784, 512, 256, 32]), mlp([32, 256, 512, 784])
    norm = nn.LayerNorm(8, elementwise_affine=variant == "layernorm_affine") if variant.startswith("layernorm") else None
    if variant == "small_init":
        with torch.no_grad():
            enc[-1].weight.mul_(0.01)
            enc[-1].bias.zero_()
    params = [*enc.parameters(), *dec.parameters(), *(norm.parameters() if norm is not None else [])]
    opt = torch.optim.Adam(params, lr=lr)

    def logits_of(xb):
        logits = enc(xb - 0.5 if variant == "centered" else xb).view(-1, 4, 8)
        return norm(logits) if norm is not None else logits

    out = []
    for _ in range(epochs):
        order = torch.randperm(len(train))
        for i in range(0, len(train), 200):
            xb = train[order[i:i + 200]]
            z = LF.decoupled_st(logits_of(xb), tau_f, tau_b)
            loss = F.binary_cross_entropy_with_logits(dec(z.flatten(1)), xb, reduction="none").sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = logits_of(val)
            codes = F.one_hot(logits.argmax(-1), 8).float()
            loss = F.binary_cross_entropy_with_logits(dec(codes.flatten(1)), val, reduction="none").sum(-1).mean()
            p = codes.mean(0)
            perplexity = torch.exp(-(p * p.clamp_min(1e-12).log()).sum(-1)).mean()
            spread = (logits.amax(-1) - logits.amin(-1)).mean()
        out.append((round(float(loss), 1), round(float(perplexity), 2), round(float(spread), 1)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["baseline"], choices=VARIANTS)
    p.add_argument("--lr", nargs="+", type=float, default=[1e-3])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--data_dir", type=Path, default=ROOT / "data")
    args = p.parse_args()
    torch.set_num_threads(1)
    train, val = load(args.data_dir)
    print("variant lr seed [(val loss, perplexity of 8, logit range) per epoch] seconds")
    for variant in args.variants:
        for lr in args.lr:
            for seed in args.seeds:
                t = time.perf_counter()
                res = run(train, val, variant, lr, seed, args.epochs)
                print(variant, f"{lr:g}", seed, res, f"{time.perf_counter() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()
