"""Exact bias / variance landscape of decoupled ST over (tau_f, tau_b) at several points of
training: the MNIST categorical autoencoder (4 x 8 latents, the default) or, with
``--model binary``, the Fashion-MNIST stochastic binary network (784-200-200-10).

For each model (``init``: a fresh model built as the recipe builds it, seed 0; then every
``--checkpoint NAME=PATH``) the script takes ``--num_examples`` validation images, runs
``analysis.temperature_landscape``, prints the table and draws four heatmaps (bias, std,
MSE, cosine) of the batch-summed logit gradient, with the grid-search optima marked. See
``docs/temperature_landscape.md``.

* Autoencoder: every one of the 8^4 = 4,096 codes of every image through the decoder
  (``--chunk_size`` codes at a time). Marks: the reproduction's tuning (tau_f = 2,
  tau_b = 1 at lr 7e-4) and the paper's (2, 0.5).
* Binary network (``--model binary``): a 200-unit layer has 2^200 states, so the map is
  conditional. The last binary layer's logits are computed with the first binary layer
  sampled as in training (seed ``--seed``); every unit of that layer is then drawn once
  at ``--context_tau`` (default: the model's own tau_f, the distribution training sees),
  and ``--units`` of its units (chosen at random, seed ``--seed``) are enumerated
  (2^units states per image) with the other units held at that draw. The loss of a state
  is the cross-entropy of the linear head, so it is exact. The marks: the paper's
  (0.1, 0.7) and the reproduction grid's best cell so far. A second table measures
  the paper's tau_b claim on the whole layer (every unit, at the context draw): per tau_b,
  the mean per-example |logit gradient|, its peak ``1 / (4 tau_b)`` and the share of
  (example, unit) entries above 1e-3 (``ActiveUnitMonitor``'s reading), and of units
  whose mean |gradient| is above 1e-3 (the paper's per-neuron reading).

Checkpoints used for the docs:

    # autoencoder (recipe, 8 epochs, one checkpoint per epoch)
    python -m lightning_discrete fit --config recipes/autoencoder_mnist.yaml \\
        --data.init_args.data_dir=data --trainer.max_epochs=8 \\
        --trainer.default_root_dir=runs/landscape/ae \\
        --trainer.callbacks+='{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
          "init_args": {"every_n_epochs": 1, "save_top_k": -1, "filename": "epoch{epoch:02d}",
          "auto_insert_metric_name": false}}'
    python benchmarks/temperature_landscape.py --data_dir data \\
        --checkpoint early=runs/landscape/ae/lightning_logs/version_0/checkpoints/epoch00.ckpt \\
        --checkpoint late=runs/landscape/ae/lightning_logs/version_0/checkpoints/epoch07.ckpt
    # binary network (recipe, 3 epochs)
    python -m lightning_discrete fit --config recipes/binary_fashion_mnist.yaml \\
        --data.init_args.data_dir=data --trainer.max_epochs=3 \\
        --trainer.default_root_dir=runs/landscape/binary
    python benchmarks/temperature_landscape.py --model binary --data_dir data \\
        --checkpoint trained=runs/landscape/binary/lightning_logs/version_0/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_discrete import analysis
from lightning_discrete.models import CategoricalAutoencoder, DiscreteModule, StochasticBinaryNetwork

# the cells marked on the maps (tau_f, tau_b): first a cyan square, then a red circle
MARKS = {
    "autoencoder": {"tuning (lr 7e-4)": (2.0, 1.0), "paper": (2.0, 0.5)},
    # the reproduction's 10-epoch grid (docs/reproduction.md), best val/loss of the cells stored so far
    "binary": {"grid best so far": (0.2, 0.3), "paper": (0.1, 0.7)},
}
TAUS = {  # default (tau_f rows, tau_b columns)
    "autoencoder": ([0.25, 0.5, 1.0, 2.0, 3.0, 4.0], [0.25, 0.5, 1.0, 2.0, 4.0]),
    "binary": ([0.05, 0.1, 0.2, 0.5, 1.0, 2.0], [0.1, 0.3, 0.5, 0.7, 1.1, 1.5, 1.9]),
}
PANELS = (("bias", "bias  ||E g - g*||", True), ("std", "std  sqrt(E||g - E g||^2)", True),
          ("mse", "MSE  E||g - g*||^2", True), ("cosine", "cosine  E cos(g, g*)", False))
ACTIVE = 1e-3  # ActiveUnitMonitor's default threshold on a per-example |logit gradient|


class Problem(NamedTuple):
    """What one map needs: the enumerated logits, the loss of a state, a summary line, and
    (binary network) the whole-layer spread table."""

    logits: Tensor
    loss_fn: Callable[[Tensor], Tensor]
    summary: str
    extra: str


def load(kind: str, path: Optional[str]) -> DiscreteModule:
    """The recipe's model: from a checkpoint, or freshly initialised (seed 0) for ``None``.

    Args:
        kind: ``"autoencoder"`` or ``"binary"``.
        path: a checkpoint of that model, or ``None``.
    """
    cls = CategoricalAutoencoder if kind == "autoencoder" else StochasticBinaryNetwork
    if path is not None:
        return cls.load_from_checkpoint(path, map_location="cpu").eval()
    torch.manual_seed(0)
    if kind == "autoencoder":
        return CategoricalAutoencoder(784, 4, 8, (512, 256), estimator="decoupled_st", tau_f=2.0, tau_b=0.5).eval()
    return StochasticBinaryNetwork(784, [200, 200], 10, estimator="decoupled_st", tau_f=0.1, tau_b=0.7).eval()


def images(kind: str, data_dir: str, num: int) -> Tuple[Tensor, Tensor]:
    """The first ``num`` validation images ``(num, 784)`` and labels ``(num,)`` of the recipe's split.

    Args:
        kind: ``"autoencoder"`` (MNIST) or ``"binary"`` (Fashion-MNIST).
        data_dir: the datasets' folder.
        num: images.
    """
    from lightning_discrete.data import FashionMNISTDataModule, MNISTDataModule

    cls = MNISTDataModule if kind == "autoencoder" else FashionMNISTDataModule
    dm = cls(data_dir=data_dir, batch_size=num, flatten=True, val_size=5000, split_seed=42)
    dm.prepare_data()
    dm.setup("fit")
    x, y = next(iter(dm.val_dataloader()))
    return x, y


def autoencoder_problem(model: CategoricalAutoencoder, x: Tensor) -> Problem:
    """Every code of every image: logits ``(B, 4, 8)``, loss = the decoder's reconstruction loss.

    Args:
        model: the autoencoder (eval mode).
        x: ``(B, 784)`` images.
    """
    with torch.no_grad():
        logits = model.encode(x)
        val = float(model.code_loss(model.bottleneck(logits), x).mean())
    p1 = torch.softmax(logits.double(), -1)
    summary = f"loss of the eval-mode code {val:.1f}, mean max p(tau=1) {float(p1.amax(-1).mean()):.3f}"
    return Problem(logits, lambda z: model.code_loss(z, x), summary, "")


def binary_problem(model: StochasticBinaryNetwork, x: Tensor, y: Tensor, units: int, context_tau: Optional[float],
                   seed: int, tau_b: Sequence[float]) -> Problem:
    """``units`` units of the last binary layer, the others held at one draw (module docstring).

    Args:
        model: the binary network.
        x: ``(B, 784)`` images.
        y: ``(B,)`` labels.
        units: units enumerated (``2^units`` states per image).
        context_tau: temperature of the held units' draw; ``None``: the model's tau_f (0: argmax).
        seed: seed of the first layer's sample, the held draw and the choice of units.
        tau_b: backward temperatures of the whole-layer table.
    """
    generator = torch.Generator().manual_seed(seed)
    tau_context = model.hidden[-1].temperatures()[0] if context_tau is None else context_tau
    with torch.no_grad():
        torch.manual_seed(seed)
        model.train()  # the first binary layer sampled at the model's tau_f, as in training
        layer = model.binary_layer_logits(x, -1)
        model.eval()
        p = torch.sigmoid(layer / tau_context) if tau_context > 0 else (layer > 0).to(layer.dtype)
        context = torch.bernoulli(p, generator=generator)
    if not 1 <= units <= layer.shape[1]:
        raise ValueError(f"`--units` must be in [1, {layer.shape[1]}], got {units}")
    chosen = torch.randperm(layer.shape[1], generator=generator)[:units].sort().values

    def loss_fn(z: Tensor) -> Tensor:
        state = context.expand(z.shape[0], -1, -1).clone()
        state[..., chosen] = z
        out = model.forward_from(state, -1)
        return F.cross_entropy(out.flatten(0, 1), y.repeat(z.shape[0]), reduction="none").view(z.shape[:2])

    with torch.no_grad():
        ce = F.cross_entropy(model.forward_from(context, -1), y)
        acc = (model.forward_from(context, -1).argmax(-1) == y).float().mean()
    sub = layer[:, chosen]
    summary = (f"last binary layer, units {chosen.tolist()} enumerated (2^{units} states per image), the other "
               f"{layer.shape[1] - units} held at one draw at tau {tau_context:g}; cross-entropy of that draw "
               f"{float(ce):.3f}, accuracy {float(acc):.3f}; mean |logit| {float(sub.abs().mean()):.2f} "
               f"(whole layer {float(layer.abs().mean()):.2f}), mean max p(tau=1) "
               f"{float(torch.sigmoid(sub.abs()).mean()):.3f}")
    return Problem(sub, loss_fn, summary, layer_spread(model, layer, context, y, tau_b))


def layer_spread(model: StochasticBinaryNetwork, layer: Tensor, context: Tensor, y: Tensor,
                 tau_b: Sequence[float]) -> str:
    """Magnitude and dispersion of decoupled ST's per-example logit gradient over every unit of
    the last binary layer at the state ``context``, one line per ``tau_b``.

    Args:
        model: the binary network.
        layer: ``(B, units)`` logits of its last binary layer.
        context: ``(B, units)`` a state of that layer in ``{0, 1}``.
        y: ``(B,)`` labels.
        tau_b: backward temperatures.
    """
    z = context.clone().requires_grad_(True)
    (dz,) = torch.autograd.grad(F.cross_entropy(model.forward_from(z, -1), y, reduction="sum"), z)
    lines = [f"whole layer ({layer.shape[1]} units x {layer.shape[0]} images) at the held draw: per-example logit "
             f"gradient sigmoid'(l / tau_b) / tau_b * dL/dz",
             f"{'tau_b':>6} {'mean |g|':>9} {'peak 1/(4 tau_b)':>16} {'|sum_b g|':>10} {'entries > 1e-3 %':>16} "
             f"{'units mean|g| > 1e-3 %':>22}"]
    for tb in tau_b:
        s = torch.sigmoid(layer.double() / tb)
        g = s * (1 - s) / tb * dz.double()
        lines.append(f"{tb:6g} {float(g.abs().mean()):9.3g} {1 / (4 * tb):16.3g} {float(g.sum(0).norm()):10.3g} "
                     f"{100 * float((g.abs() > ACTIVE).double().mean()):16.1f} "
                     f"{100 * float((g.abs().mean(0) > ACTIVE).double().mean()):22.1f}")
    return "\n".join(lines)


def grids(land: analysis.TemperatureLandscape) -> Dict[str, Tensor]:
    return {"bias": land.dst["bias"], "std": land.dst["variance"].sqrt(), "mse": land.dst["mse"],
            "cosine": land.dst["cosine"]}


def plot(land: analysis.TemperatureLandscape, title: str, path: str, marks: Dict[str, Tuple[float, float]]) -> None:
    """Four heatmaps (bias, std, MSE, cosine) of ``land`` with ``marks`` (name -> (tau_f, tau_b)) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    values = grids(land)
    fig, axes = plt.subplots(1, 4, figsize=(19 + 2 * max(len(land.tau_b) - 5, 0), 4.4))
    xs, ys = list(range(len(land.tau_b))), list(range(len(land.tau_f)))
    for ax, (key, label, log) in zip(axes, PANELS):
        v = values[key].numpy()
        im = ax.imshow(v, origin="lower", cmap="viridis" if key == "cosine" else "magma_r",
                       norm=LogNorm(vmin=v.min(), vmax=v.max()) if log else None, aspect="auto")
        for i in ys:
            for j in xs:
                ax.text(j, i, f"{v[i, j]:.3g}", ha="center", va="center", fontsize=7, color="black",
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", alpha=0.5, lw=0))
        for (name, (tf, tb)), marker in zip(marks.items(), ("s", "o")):
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
    parser.add_argument("--model", choices=sorted(MARKS), default="autoencoder")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="a training point to map (repeat); 'init' (fresh model) is always mapped first")
    parser.add_argument("--num_examples", type=int, default=64)
    parser.add_argument("--tau_f", type=float, nargs="+", help="rows (default: per model, see TAUS)")
    parser.add_argument("--tau_b", type=float, nargs="+", help="columns (default: per model, see TAUS)")
    parser.add_argument("--num_samples", type=int, default=512, help="Monte-Carlo draws (cosine, ST-GS)")
    parser.add_argument("--chunk_size", type=int, default=256, help="states per loss call")
    parser.add_argument("--units", type=int, default=12, help="binary network: units enumerated (2^units states)")
    parser.add_argument("--context_tau", type=float, default=None,
                        help="binary network: temperature of the held units' draw (default: the model's tau_f)")
    parser.add_argument("--seed", type=int, default=0, help="binary network: the enumerated units and the held draw")
    parser.add_argument("--prefix", default=None, help="file-name prefix (default: '' autoencoder, 'binary_' binary)")
    parser.add_argument("--out", default="docs/temperature_landscape")
    args = parser.parse_args(argv)
    tau_f = args.tau_f or TAUS[args.model][0]
    tau_b = args.tau_b or TAUS[args.model][1]
    prefix = args.prefix if args.prefix is not None else ("" if args.model == "autoencoder" else "binary_")
    points: List[Tuple[str, Optional[str]]] = [("init", None)]
    for spec in args.checkpoint:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            parser.error(f"--checkpoint takes NAME=PATH, got {spec!r}")
        points.append((name, path))
    os.makedirs(args.out, exist_ok=True)
    x, y = images(args.model, args.data_dir, args.num_examples)
    for name, path in points:
        model = load(args.model, path)
        problem = (autoencoder_problem(model, x) if args.model == "autoencoder" else
                   binary_problem(model, x, y, args.units, args.context_tau, args.seed, tau_b))
        start = time.perf_counter()
        land = analysis.temperature_landscape(
            problem.logits, problem.loss_fn, tau_f, tau_b, num_samples=args.num_samples,
            chunk_size=args.chunk_size, generator=torch.Generator().manual_seed(0),
        )
        seconds = time.perf_counter() - start
        norms = ", ".join(f"{t:g}: {float(g.norm()):.3g}" for t, g in zip(land.tau_f, land.exact))
        header = (
            f"== {name} ({path or 'fresh model, seed 0'}): {args.num_examples} validation images, {problem.summary}; "
            f"|g*| per tau_f {norms}; |g*(tau 1)| {float(land.exact_tau1.norm()):.3g}; {seconds:.0f} s "
            "(shared 2-core machine)"
        )
        text = "\n".join(t for t in (header, land.table(), problem.extra) if t)
        print(text, flush=True)
        with open(os.path.join(args.out, f"{prefix}{name}.txt"), "w") as fh:
            fh.write(text + "\n")
        plot(land, f"{args.model} {name}", os.path.join(args.out, f"{prefix}{name}.png"), MARKS[args.model])


if __name__ == "__main__":
    main()
