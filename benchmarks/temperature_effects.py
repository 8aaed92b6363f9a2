"""Direction check of the Decoupled ST paper's temperature effects on a synthetic task.

A stochastic binary network (16-64-64-4, decoupled ST) is trained briefly at
``tau_f = tau_b = 1``; then, at those *fixed* parameters (SGD with lr 0), one epoch is
run per temperature setting with the monitors attached:

* ``LatentUtilizationMonitor`` — train perplexity of the binary units (max 2);
* ``GradientSNRMonitor`` (probe, K passes on a fixed batch) — mean gradient SNR and
  the norm of the mean gradient;
* ``ActiveUnitMonitor`` — % of (example, unit) logit gradients above a threshold.

Expected (paper): raising ``tau_f`` raises perplexity and lowers gradient SNR;
raising ``tau_b`` lowers the gradient norm and raises the active-unit percentage.
Ratios are printed against the reference ``tau_f = tau_b = 1`` measured in the same run.

Run: ``python benchmarks/temperature_effects.py [--samples 256] [--threshold 1e-3]``

With ``--checkpoint runs/.../checkpoints/best.ckpt`` the same measurements are taken
on a trained Fashion-MNIST binary network (e.g. one of ``benchmarks/reproduction.py``)
over ``--num_examples`` training images from ``--data_dir`` instead.
"""

from __future__ import annotations

import argparse
import warnings

import torch
from lightning.pytorch import Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

from lightning_discrete.callbacks import ActiveUnitMonitor, GradientSNRMonitor, LatentUtilizationMonitor
from lightning_discrete.models import StochasticBinaryNetwork


def data(n: int = 1024, d: int = 16, classes: int = 4, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, d, generator=g) * 1.5
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    return TensorDataset(x, y)


def _trainer(callbacks, epochs: int) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def frozen_sgd(params):
    return torch.optim.SGD(params, lr=0.0)


def measure(make_model, state, tau_f: float, tau_b: float, loader, samples: int, threshold: float):
    model = make_model()
    model.load_state_dict(state)
    model.set_temperature(tau_f=tau_f, tau_b=tau_b)
    util = LatentUtilizationMonitor(stages="train")
    snr = GradientSNRMonitor(every_n_steps=10**9, num_samples=samples, per_layer=False)
    act = ActiveUnitMonitor(threshold=threshold)
    _trainer([util, snr, act], 1).fit(model, loader)
    perp = [v for k, v in util.last_results.items() if k.startswith("train/perplexity/")]
    return {
        "perplexity": sum(perp) / len(perp),
        "snr": snr.last_results["mean"],
        "snr_median": snr.last_results["median"],
        "grad_norm": snr.last_results["grad_norm"],
        "active%": act.last_results["active_units/all"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256, help="probe passes K")
    parser.add_argument("--threshold", type=float, default=1e-3, help="active-unit threshold")
    parser.add_argument("--epochs", type=int, default=1, help="pre-training epochs")
    parser.add_argument("--checkpoint", default=None, help="trained Fashion-MNIST StochasticBinaryNetwork")
    parser.add_argument("--data_dir", default="data", help="Fashion-MNIST folder (with --checkpoint)")
    parser.add_argument("--num_examples", type=int, default=4096, help="training images used (with --checkpoint)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    seed_everything(0, verbose=False)
    if args.checkpoint:
        from lightning_discrete.data import FashionMNISTDataModule

        trained = StochasticBinaryNetwork.load_from_checkpoint(args.checkpoint, map_location="cpu")
        hp = {k: v for k, v in trained.hparams.items() if k in ("input_dim", "hidden_dims", "num_classes", "center")}
        dm = FashionMNISTDataModule(data_dir=args.data_dir, batch_size=128, flatten=True)
        dm.setup("fit")
        subset = torch.utils.data.Subset(dm.train_dataloader().dataset, range(args.num_examples))
        loader = DataLoader(subset, batch_size=128, shuffle=True, collate_fn=dm.train_dataloader().collate_fn)
        state = trained.state_dict()
    else:
        hp = dict(input_dim=16, hidden_dims=(64, 64), num_classes=4)
        loader = DataLoader(data(), batch_size=128, shuffle=True)
        model = StochasticBinaryNetwork(**hp, tau_f=1.0, tau_b=1.0)
        _trainer([], args.epochs).fit(model, loader)
        state = model.state_dict()

    def make_model():
        return StochasticBinaryNetwork(**hp, optimizer=frozen_sgd)

    settings = [(0.5, 1.0), (1.0, 1.0), (2.0, 1.0), (4.0, 1.0), (1.0, 0.5), (1.0, 2.0), (1.0, 4.0)]
    rows = {}
    for tf, tb in settings:
        seed_everything(1, verbose=False)
        rows[(tf, tb)] = measure(make_model, state, tf, tb, loader, args.samples, args.threshold)
    ref = rows[(1.0, 1.0)]
    keys = ["perplexity", "snr", "snr_median", "grad_norm", "active%"]
    print(f"{'tau_f':>6} {'tau_b':>6} " + " ".join(f"{k:>11} {'ratio':>6}" for k in keys))
    for (tf, tb), r in rows.items():
        print(f"{tf:6g} {tb:6g} " + " ".join(f"{r[k]:11.4g} {r[k] / ref[k] if ref[k] else float('nan'):6.3f}" for k in keys))

    f = [rows[(t, 1.0)] for t in (0.5, 1.0, 2.0, 4.0)]
    b = [rows[(1.0, t)] for t in (0.5, 1.0, 2.0, 4.0)]

    def inc(xs):
        return all(x < y for x, y in zip(xs, xs[1:]))

    checks = {
        "tau_f up -> perplexity up": inc([r["perplexity"] for r in f]),
        "tau_f up -> SNR (mean) down": inc([-r["snr"] for r in f]),
        "tau_f up -> SNR (median) down": inc([-r["snr_median"] for r in f]),
        "tau_b up -> grad norm down": inc([-r["grad_norm"] for r in b]),
        "tau_b up -> active units up": inc([r["active%"] for r in b]),
    }
    for name, ok in checks.items():
        print(f"{name:32s} {'OK' if ok else 'NOT REPRODUCED'}")


if __name__ == "__main__":
    main()
