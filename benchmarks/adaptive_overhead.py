"""Cost of ``AdaptiveTemperature`` on top of the monitors it reads, per training epoch.

The Fashion-MNIST binary network of ``recipes/binary_fashion_mnist.yaml`` (784-200-200-10,
decoupled ST at (0.1, 0.7), batch 128, Adam 1e-3) on generated data of the same shape, with
the recipe's monitors (active units with the per-neuron thresholds, saturation, utilisation,
gradient SNR over windows). Two contenders:

* ``monitors``: the monitors alone;
* ``adaptive``: the monitors and ``AdaptiveTemperature`` at its defaults (``warmup=0``, so
  it updates at the end of every timed epoch).

Each repeat runs one Trainer per contender, in alternating order (``monitors`` first on even
repeats), for ``--epochs`` epochs; the first epoch of every run is warm-up and is dropped. An
epoch is timed from ``on_train_epoch_start`` to the end of the last ``on_train_epoch_end`` (the
timer is the last callback, so the epoch-end work of the monitors and of the controller is
inside). Printed per thread count: the median epoch time of each contender, their ratio, and
the mean time spent inside the callback's epoch-end hook (its only work) per epoch.

Measured on a 2-core machine shared with two training runs (so the epoch medians are noisy;
the hook time is the direct reading), 12,800 examples, 5 repeats x 2 timed epochs: 1 thread,
0.950 s vs 0.988 s (ratio 1.04), hook 4 ms per epoch; 2 threads (oversubscribed), 7.39 s vs
6.72 s (ratio 0.91), hook 8 ms per epoch.

Run: ``python benchmarks/adaptive_overhead.py [--examples 12800] [--epochs 3] [--repeats 3] [--threads 1 2]``
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Dict, List, Optional

import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

from lightning_discrete.callbacks import (
    ActiveUnitMonitor,
    AdaptiveTemperature,
    GradientSNRMonitor,
    LatentUtilizationMonitor,
    SaturationMonitor,
)
from lightning_discrete.models import StochasticBinaryNetwork


class EpochTimer(Callback):
    """Wall time of every training epoch, from its start to the end of the last epoch-end hook."""

    def __init__(self) -> None:
        self.times: List[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.times.append(time.perf_counter() - self._start)


class TimedAdaptive(AdaptiveTemperature):
    """``AdaptiveTemperature`` that also sums the wall time spent in its own epoch-end hook
    (the only hook with work in it), a direct reading that the machine's load does not blur."""

    own_time = 0.0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        start = time.perf_counter()
        super().on_train_epoch_end(trainer, pl_module)
        TimedAdaptive.own_time += time.perf_counter() - start


def fashion_like(n: int, seed: int = 0) -> TensorDataset:
    """``n`` random 784-pixel images in ``[0, 1]`` with labels in ``0..9`` (learnable: class means differ)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    means = torch.rand(10, 784, generator=g)
    x = (means[y] + 0.3 * torch.randn(n, 784, generator=g)).clamp(0, 1)
    return TensorDataset(x, y)


def monitors() -> List[Callback]:
    """The monitors of ``recipes/binary_fashion_mnist.yaml``, in its order."""
    return [
        ActiveUnitMonitor(neuron_thresholds=[1e-4, 1e-3, 1e-2]),
        SaturationMonitor(),
        LatentUtilizationMonitor(),
        GradientSNRMonitor(mode="window", window=50, stride=5),
    ]


def run(contender: str, data: TensorDataset, epochs: int) -> List[float]:
    """Epoch times (s) of one Trainer run of ``contender`` (``"monitors"`` or ``"adaptive"``)."""
    seed_everything(0)
    model = StochasticBinaryNetwork(784, [200, 200], 10, estimator="decoupled_st", tau_f=0.1, tau_b=0.7)
    timer = EpochTimer()
    extra: List[Callback] = [TimedAdaptive(warmup=0)] if contender == "adaptive" else []
    trainer = Trainer(
        accelerator="cpu", devices=1, max_epochs=epochs, callbacks=[*monitors(), *extra, timer], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(model, DataLoader(data, batch_size=128, shuffle=True))
    return timer.times[1:]


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--examples", type=int, default=12800, help="training examples per epoch (100 batches of 128)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is dropped")
    p.add_argument("--repeats", type=int, default=3, help="runs per contender, alternating")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    data = fashion_like(args.examples)
    for threads in args.threads:
        torch.set_num_threads(threads)
        times: Dict[str, List[float]] = {"monitors": [], "adaptive": []}
        TimedAdaptive.own_time = 0.0
        for r in range(args.repeats):
            order = ("monitors", "adaptive") if r % 2 == 0 else ("adaptive", "monitors")
            for contender in order:
                times[contender] += run(contender, data, args.epochs)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"threads={threads}: epoch median monitors {med['monitors']:.3f} s, monitors + AdaptiveTemperature "
              f"{med['adaptive']:.3f} s, ratio {med['adaptive'] / med['monitors']:.3f} "
              f"({len(times['monitors'])} epochs each); the callback's own epoch-end hook: "
              f"{1e3 * TimedAdaptive.own_time / (args.repeats * args.epochs):.2f} ms per epoch", flush=True)


if __name__ == "__main__":
    main()
