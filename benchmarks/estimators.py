"""Forward+backward time and peak memory of every estimator, as ratios to
``torch.nn.functional.gumbel_softmax(hard=True)`` measured in the same run.

Usage::

    python benchmarks/estimators.py            # shapes (800, 8), (131072, 8), (1200000, 16)
    python benchmarks/estimators.py --quick    # decoupled ST and ST-GS only, fewer repeats
    python benchmarks/estimators.py --device cuda

What one measurement is: ``z = est(logits); (z * target).sum().backward()`` with
``logits`` (float32, ``requires_grad``) and ``target`` created beforehand; the
logits' ``.grad`` is reset to ``None`` between runs.

Time: median wall time of ``--repeats`` runs after one warm-up run. The
estimator and the reference are run alternately (reference, estimator,
reference, ...) so that load from other processes on a shared machine hits both
alike; the ratio is ``median(estimator) / median(reference)``. On CPU the
default is one thread (``--threads``): with several threads on a machine shared
with other jobs, every parallel op waits for its slowest thread and timings
jump by whole scheduler time slices.

Peak memory: the highest amount of tensor memory allocated during one run *above
what was allocated before it* (inputs excluded, the returned gradient included);
see ``benchmarks/_memory.py`` for how it is read on CPU and CUDA.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

from lightning_discrete import functional as LF

from _memory import peak_allocated_bytes  # benchmarks/_memory.py

SHAPES: List[Tuple[int, int]] = [(800, 8), (131072, 8), (1200000, 16)]


def reference(logits):
    return F.gumbel_softmax(logits, tau=1.0, hard=True)


def _estimators() -> Dict[str, Callable]:
    est = {
        "decoupled_st (tau_f=1, tau_b=1)": lambda l: LF.decoupled_st(l, 1.0, 1.0),
        "decoupled_st (tau_f=2, tau_b=0.5)": lambda l: LF.decoupled_st(l, 2.0, 0.5),
        "decoupled_st (tau_f=0, tau_b=0.5)": lambda l: LF.decoupled_st(l, 0.0, 0.5),
        "softmax_st": lambda l: LF.softmax_st(l, 1.0),
        "identity_st": lambda l: LF.identity_st(l),
        "gumbel_softmax_st": lambda l: LF.gumbel_softmax_st(l, 1.0),
        "gumbel_softmax (relaxed)": lambda l: LF.gumbel_softmax(l, 1.0),
        "spigot": lambda l: LF.spigot(l, 1.0),
        "reinmax": lambda l: LF.reinmax(l, 1.0),
        "gumbel_rao (K=4)": lambda l: LF.gumbel_rao(l, 1.0, num_samples=4),
    }
    try:  # the authors' package, as a peer reference (optional extra)
        import reinmax as reinmax_pkg

        est["reinmax (package)"] = lambda l: reinmax_pkg.reinmax(l, 1.0)[0]
    except ImportError:  # pragma: no cover
        pass
    return est


QUICK = ("decoupled_st (tau_f=1, tau_b=1)", "decoupled_st (tau_f=2, tau_b=0.5)")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(fn, logits, target):
    logits.grad = None
    (fn(logits) * target).sum().backward()


def _time_once(fn, logits, target, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    _run(fn, logits, target)
    _sync(device)
    return time.perf_counter() - t0


def _peak_bytes(fn, logits, target, device) -> int:
    logits.grad = None
    return peak_allocated_bytes(lambda: _run(fn, logits, target), device)


def bench(shape, names, repeats, device, seed=0):
    torch.manual_seed(seed)
    logits = torch.randn(shape, device=device).mul_(2.0).requires_grad_()
    target = torch.rand(shape, device=device)
    ests = _estimators()
    rows = []
    ref_peak = _peak_bytes(reference, logits, target, device)
    for name in names:
        fn = ests[name]
        _run(fn, logits, target)  # warm-up
        _run(reference, logits, target)
        t_ref, t_est = [], []
        for _ in range(repeats):
            t_ref.append(_time_once(reference, logits, target, device))
            t_est.append(_time_once(fn, logits, target, device))
        peak = _peak_bytes(fn, logits, target, device)
        mr, me = statistics.median(t_ref), statistics.median(t_est)
        rows.append((name, me, mr, me / mr, peak, ref_peak, peak / max(ref_peak, 1)))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="decoupled ST only, fewer repeats")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (default on CPU: 1, for stable timings on a shared machine)",
    )
    parser.add_argument("--shapes", default=None, help="e.g. '800x8,131072x8'")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif device.type == "cpu":
        torch.set_num_threads(1)
    names = list(QUICK) if args.quick else list(_estimators())
    repeats = args.repeats or (3 if args.quick else 5)
    shapes = SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"repeats {repeats}; reference: F.gumbel_softmax(hard=True); "
        "memory: peak bytes allocated above the inputs during forward+backward\n"
    )
    print("| shape | estimator | time (ms) | time ratio | peak mem (MiB) | mem ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for shape in shapes:
        for name, me, _mr, tr, pk, _rpk, mratio in bench(shape, names, repeats, device):
            print(
                f"| {shape[0]}x{shape[1]} | {name} | {me * 1e3:.2f} | {tr:.2f} | "
                f"{pk / 2**20:.1f} | {mratio:.2f} |"
            )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
