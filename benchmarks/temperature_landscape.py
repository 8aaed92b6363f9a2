"""Exact bias / variance landscape of decoupled ST over (tau_f, tau_b) for the MNIST
categorical autoencoder (4 x 8 latents) at several points of training.

For each model (``init``: a fresh model built as the recipe builds it, seed 0; then every
``--checkpoint NAME=PATH``) the script takes ``--num_examples`` validation images, runs
``analysis.temperature_landscape`` (every one of the 8^4 = 4,096 codes of every image
through the decoder, ``--chunk_size`` codes at a time), prints the table and draws four
heatmaps (bias, std, MSE, cosine) of the batch-summed logit gradient, with the grid-search
optima marked: the reproduction's tuning (tau_f = 2, tau_b = 1 at lr 7e-4) and the
paper's (2, 0.5). See ``docs/temperature_landscape.md``.

Checkpoints used for the docs (recipe, 8 epochs, one checkpoint per epoch):

    python -m lightning_discrete fit --config recipes/autoencoder_mnist.yaml \\
        --data.init_args.data_dir=/work/main/data --trainer.max_epochs=8 \\
        --trainer.default_root_dir=/work/scratch/landscape/ae \\
        --trainer.callbacks+='{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
          "init_args": {"every_n_epochs": 1, "save_top_k": -1, "filename": "epoch{epoch:02d}",
          "auto_insert_metric_name": false}}'
    python benchmarks/temperature_landscape.py --data_dir /work/main/data \\
        --checkpoint early=/work/scratch/landscape/ae/lightning_logs/version_0/checkpoints/epoch00.ckpt \\
        --checkpoint late=/work/scratch/landscape/ae/lightning_logs/version_0/checkpoints/epoch07.ckpt
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Dict, List, Optional, Tuple

import torch

from lightning_discrete import analysis
from lightning_discrete.models import CategoricalAutoencoder

MARKS = {"tuning (lr 7e-4)": (2.0, 1.0), "paper": (2.0, 0.5)}
PANELS = (("bias", "bias  ||E g - g*||", True), ("std", "std  sqrt(E||g - E g||^2)", True),
          ("mse", "MSE  E||g - g*||^2", True), ("cosine", "cosine  E cos(g, g*)", False))


def load(path: Optional[str]) -> CategoricalAutoencoder:
    """The recipe's model: from a checkpoint, or freshly initialised (seed 0) for ``None``."""
    if path is None:
        torch.manual_seed(0)
        model = CategoricalAutoencoder(784, 4, 8, (512, 256), estimator="decoupled_st", tau_f=2.0, tau_b=0.5)
    else:
        model = CategoricalAutoencoder.load_from_checkpoint(path, map_location="cpu")
    return model.eval()


def images(data_dir: str, num: int) -> torch.Tensor:
    """The first ``num`` validation images of the recipe's split, ``(num, 784)``."""
    from lightning_discrete.data import MNISTDataModule

    dm = MNISTDataModule(data_dir=data_dir, batch_size=num, flatten=True, val_size=5000, split_seed=42)
    dm.prepare_data()
    dm.setup("fit")
    x, _ = next(iter(dm.val_dataloader()))
    return x


def grids(land: analysis.TemperatureLandscape) -> Dict[str, torch.Tensor]:
    return {"bias": land.dst["bias"], "std": land.dst["variance"].sqrt(), "mse": land.dst["mse"],
            "cosine": land.dst["cosine"]}


def plot(land: analysis.TemperatureLandscape, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    values = grids(land)
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.4))
    xs, ys = list(range(len(land.tau_b))), list(range(len(land.tau_f)))
    for ax, (key, label, log) in zip(axes, PANELS):
        v = values[key].numpy()
        im = ax.imshow(v, origin="lower", cmap="viridis" if key == "cosine" else "magma_r",
                       norm=LogNorm(vmin=v.min(), vmax=v.max()) if log else None, aspect="auto")
        for i in ys:
            for j in xs:
                ax.text(j, i, f"{v[i, j]:.3g}", ha="center", va="center", fontsize=7, color="black",
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", alpha=0.5, lw=0))
        for (name, (tf, tb)), marker in zip(MARKS.items(), ("s", "o")):
            if tf in land.tau_f and tb in land.tau_b:
                ax.scatter([land.tau_b.index(tb)], [land.tau_f.index(tf)], s=420, facecolors="none",
                           edgecolors="cyan" if marker == "s" else "red", linewidths=2, marker=marker, label=name)
        best = divmod(int(v.argmax() if key == "cosine" else v.argmin()), v.shape[1])
        ax.scatter([best[1]], [best[0]], marker="*", s=120, color="white", edgecolors="black", label="best cell")
        ax.set_xticks(xs, [f"{t:g}" for t in land.tau_b])
        ax.set_yticks(ys, [f"{t:g}" for t in land.tau_f])
        ax.set_xlabel("tau_b")
        ax.set_ylabel("tau_f")
        ax.set_title(label, fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, markerscale=0.5)
    gs = ", ".join(f"tau {t:g}: MSE {float(m):.3g}" for t, m in zip(land.tau_gs, land.st_gs["mse"]))
    fig.suptitle(f"{title}: decoupled ST, batch-summed logit gradient vs d/dl E_(p(tau_f))[L]; ST-GS (vs tau 1) {gs}",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="a training point to map (repeat); 'init' (fresh model) is always mapped first")
    parser.add_argument("--num_examples", type=int, default=64)
    parser.add_argument("--tau_f", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 3.0, 4.0])
    parser.add_argument("--tau_b", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--num_samples", type=int, default=512, help="Monte-Carlo draws (cosine, ST-GS)")
    parser.add_argument("--chunk_size", type=int, default=256, help="codes per decoder call")
    parser.add_argument("--out", default="docs/temperature_landscape")
    args = parser.parse_args(argv)
    points: List[Tuple[str, Optional[str]]] = [("init", None)]
    for spec in args.checkpoint:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            parser.error(f"--checkpoint takes NAME=PATH, got {spec!r}")
        points.append((name, path))
    os.makedirs(args.out, exist_ok=True)
    x = images(args.data_dir, args.num_examples)
    for name, path in points:
        model = load(path)
        with torch.no_grad():
            logits = model.encode(x)
            val = float(model.code_loss(model.bottleneck(logits), x).mean())
        start = time.perf_counter()
        land = analysis.temperature_landscape(
            logits, lambda z: model.code_loss(z, x), args.tau_f, args.tau_b, num_samples=args.num_samples,
            chunk_size=args.chunk_size, generator=torch.Generator().manual_seed(0),
        )
        seconds = time.perf_counter() - start
        p1 = torch.softmax(logits.double(), -1)
        header = (
            f"== {name} ({path or 'fresh model, seed 0'}): {args.num_examples} validation images, "
            f"loss of the eval-mode code {val:.1f}, mean max p(tau=1) {float(p1.amax(-1).mean()):.3f}, "
            f"|g*| at tau_f=1 {float(land.exact[land.tau_f.index(1.0)].norm()) if 1.0 in land.tau_f else float('nan'):.3g}, "
            f"|g*(tau 1)| {float(land.exact_tau1.norm()):.3g}; {seconds:.0f} s (shared 2-core machine)"
        )
        text = header + "\n" + land.table()
        print(text, flush=True)
        with open(os.path.join(args.out, f"{name}.txt"), "w") as fh:
            fh.write(text + "\n")
        plot(land, name, os.path.join(args.out, f"{name}.png"))


if __name__ == "__main__":
    main()
