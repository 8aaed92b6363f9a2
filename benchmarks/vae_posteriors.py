"""What a trained VAE's encoder does, from the best checkpoints of the VAE benchmark's runs.

    python benchmarks/vae_posteriors.py 'mv_8x4_*_final__*'          # run folders under runs/benchmarks_vae/
    python benchmarks/vae_posteriors.py RUN_DIR [RUN_DIR ...] --images 2000 --data-dir data

For each run (the scratch folder ``benchmarks/runplan.py`` trained it in, with its
``csv/version_*/checkpoints/best.ckpt``; the best over resumed attempts is taken) it loads the
:class:`~lightning_discrete.models.CategoricalVAE` and reads the first ``--images`` validation
images of the recipes' binarised MNIST (fixed binarisation, seed 0; validation split 10,000,
split seed 42), then prints one row of :func:`posterior_stats`: the one-sample -ELBO and its
terms, the mean entropy of q(z|x) per latent, the mean encoder-logit range per latent, the
shares of latents saturated and of codes buried at the backward temperature, the smallest
per-latent perplexity of the codes' marginal (mean q over the images), and the reconstruction
when the decoder gets each latent's most likely code instead of a sample.

Where two estimators reach different -ELBOs, these say whether the encoder is less certain
(entropy), its logits are squashed or spread (range), the backward pass has stopped reaching
whole latents (saturated) or some of their codes (buried), codes died (marginal perplexity),
or the decoder is worse even on the most likely code. Run folders are scratch (not in the
repository): run the plan first.
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_discrete.metrics import _backward_probs, buried_codes, saturation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runplan import ROOT, best_checkpoint, load_plan, run_versions, stored  # noqa: E402

COLUMNS = {
    "loss": "-ELBO",
    "recon": "recon",
    "kl": "KL",
    "entropy": "H(q) per latent",
    "logit_range": "logit range",
    "saturated": "saturated at tau_b",
    "buried": "buried at tau_b",
    "min_marginal_perplexity": "min marginal perplexity",
    "recon_mode": "recon, most likely code",
}


@torch.no_grad()
def posterior_stats(model, x: Tensor) -> Dict[str, float]:
    """Statistics of ``model``'s posterior over the images ``x`` (eval mode, one exact sample per
    image for the -ELBO terms), each a mean over the images (nats; entropies natural-log):

    * ``loss``, ``recon``, ``kl``: the model's own one-sample -ELBO and its two terms;
    * ``entropy``: ``H(q(z|x))`` per latent;
    * ``logit_range``, ``saturated``: the mean ``max - min`` of the encoder's logits per latent
      (``|l|`` for a Bernoulli latent), the input of the bottleneck, and the share of latents
      whose backward distribution at the bottleneck's ``tau_b`` is one-hot within 1e-6
      (:func:`lightning_discrete.metrics.saturation`: no gradient passes there);
    * ``buried``: the share of ``(latent, code)`` pairs whose mean backward probability at
      ``tau_b`` over the images is below 1e-6 (:func:`lightning_discrete.metrics.buried_codes`:
      dead codes that get almost no gradient);
    * ``min_marginal_perplexity``: over the latents, the smallest ``exp(H)`` of the codes'
      marginal ``mean_x q(z|x)`` (``k``: every code used alike; 1: one code for every image);
    * ``recon_mode``: ``-log p(x|z)`` with each latent's most likely code under q.

    Args:
        model: a :class:`~lightning_discrete.models.CategoricalVAE`.
        x: ``(B, *)`` binarised images.
    """
    was_training = model.training
    model.eval()
    x = x.flatten(1).to(torch.get_default_dtype())
    logits = model.encode(x)
    q_logits = model.q_logits(logits, model.bottleneck)
    loss, terms = model.step(x)
    q = _backward_probs(q_logits, 1.0, model.bernoulli, -1)  # (B, L, k); a Bernoulli latent: (off, on)
    entropy = -(q * q.clamp_min(torch.finfo(q.dtype).tiny).log()).sum(-1)  # (B, L)
    saturated, logit_range = saturation(logits, float(model.bottleneck.tau_b), binary=model.bernoulli)
    marginal = q.mean(0)  # (L, k)
    marginal_entropy = -(marginal * marginal.clamp_min(torch.finfo(marginal.dtype).tiny).log()).sum(-1)
    mode = (q_logits > 0).to(x.dtype) if model.bernoulli else F.one_hot(q_logits.argmax(-1), q_logits.shape[-1]).to(x.dtype)
    recon_mode = F.binary_cross_entropy_with_logits(model.decode(mode), x, reduction="none").sum(-1)
    model.train(was_training)
    return {
        "loss": loss.mean().item(),
        "recon": float(terms["recon"]),
        "kl": float(terms["kl"]),
        "entropy": entropy.mean().item(),
        "logit_range": float(logit_range),
        "saturated": float(saturated),
        "buried": float(buried_codes(logits, float(model.bottleneck.tau_b), binary=model.bernoulli)),
        "min_marginal_perplexity": math.exp(marginal_entropy.min().item()),
        "recon_mode": recon_mode.mean().item(),
    }


def best_of_run(run_dir: Path) -> Optional[Path]:
    """The best ``best.ckpt`` of a run folder over its attempts, or None without one."""
    paths = [v / "checkpoints" / "best.ckpt" for v in run_versions(run_dir)]
    paths = [p for p in paths if p.is_file()]
    return best_checkpoint(paths) if paths else None


def validation_images(data_dir: str, images: int) -> Tensor:
    """The first ``images`` validation images of the recipes' binarised MNIST."""
    from lightning_discrete.data import MNISTDataModule

    dm = MNISTDataModule(data_dir=data_dir, batch_size=min(images, 1000), flatten=True, binarization="fixed",
                         binarization_seed=0, val_size=10000, split_seed=42)
    dm.prepare_data()
    dm.setup("fit")
    chunks: List[Tensor] = []
    for batch in dm.val_dataloader():
        chunks.append(batch[0] if isinstance(batch, (list, tuple)) else batch)
        if sum(len(c) for c in chunks) >= images:
            break
    return torch.cat(chunks)[:images]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders, or glob patterns under runs/benchmarks_vae/")
    parser.add_argument("--images", type=int, default=2000, help="validation images (default 2000)")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the one posterior sample per image")
    parser.add_argument("--plan", default=str(ROOT / "docs" / "benchmarks_vae" / "plan.yaml"),
                        help="the plan whose stored runs are finished (others are marked: still training or stopped)")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error(f"--images must be >= 1, got {args.images}")
    dirs: List[Path] = []
    for pattern in args.runs:
        path = Path(pattern)
        matches = glob.glob(pattern if path.is_absolute() else str(ROOT / "runs" / "benchmarks_vae" / pattern))
        dirs += [path] if path.is_dir() else sorted(Path(p) for p in matches if Path(p).is_dir())
    if not dirs:
        parser.error(f"no run folder matches {args.runs} (run folders are made by benchmarks/runplan.py run)")
    from lightning_discrete.models import CategoricalVAE

    finished = set(stored(load_plan(Path(args.plan))))
    torch.set_num_threads(1)
    x = validation_images(args.data_dir, args.images)
    print(f"{len(x)} validation images; one posterior sample each (seed {args.seed})\n")
    print("| run | " + " | ".join(COLUMNS.values()) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for run_dir in dirs:
        name = run_dir.name + ("" if run_dir.name in finished else " (not stored: training or stopped)")
        ckpt = best_of_run(run_dir)
        if ckpt is None:
            print(f"| {name}, no best.ckpt | " + " | ".join("-" for _ in COLUMNS) + " |")
            continue
        torch.manual_seed(args.seed)
        stats = posterior_stats(CategoricalVAE.load_from_checkpoint(ckpt, map_location="cpu"), x)
        print(f"| {name} | " + " | ".join(f"{stats[k]:.2f}" for k in COLUMNS) + " |")


if __name__ == "__main__":
    main()
