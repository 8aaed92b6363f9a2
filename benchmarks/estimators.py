"""Forward+backward time and peak memory of every estimator, as ratios to
``torch.nn.functional.gumbel_softmax(hard=True)`` and to the floor, measured in the same run.

Usage::

    python benchmarks/estimators.py                # all estimators, SHAPES, 1 thread
    python benchmarks/estimators.py --quick        # the 3 target estimators, QUICK_SHAPES, 1 and 2 threads (~1 min)
    python benchmarks/estimators.py --threads 1 2  # one table per thread count
    python benchmarks/estimators.py --device cuda  # the default when CUDA is available
    python benchmarks/estimators.py --names gumbel_rao --shapes 3000x10  # some estimators, some shapes

What one measurement is: ``est(logits).backward(target)`` with ``logits`` (float32,
``requires_grad``) and ``target`` (the upstream gradient) created beforehand; the
logits' ``.grad`` is reset to ``None`` between runs.  On CUDA the device is
synchronised before and after each run.

References, timed the same way on the same tensors:

* ``vs ST-GS``: ``F.gumbel_softmax(l, tau=1, hard=True)``;
* ``vs floor``: ``torch.softmax(l / 0.5, -1)`` -- one softmax forward and backward at a
  temperature, the reads, writes and exps any softmax-based estimator needs.  Binary
  estimators run on the logits flattened to one unit per element (same element count);
  their floor is ``torch.sigmoid(l / 0.7)`` and ``vs softmax floor`` compares them with
  the categorical floor of the 2-D shape.

Time: median wall time of ``--repeats`` runs after one warm-up run.  All
contenders of a shape are run alternately (ST-GS, floor, estimator 1, estimator 2, ...,
then again) so that load from other processes on a shared machine hits them alike;
a ratio is ``median(estimator) / median(reference)``.  On a CPU shared with other jobs,
timings with several threads jump by whole scheduler time slices: compare ratios, not
absolute times, and prefer the 1-thread table.

Peak memory: the highest amount of tensor memory allocated during one run *above
what was allocated before it* (inputs excluded, the returned gradient included);
see ``benchmarks/_memory.py`` for how it is read on CPU and CUDA.  It does not depend
on the thread count and is measured at the first one only.
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

SHAPES: List[Tuple[int, int]] = [(800, 8), (4096, 8), (131072, 8), (2048, 512), (1200000, 16)]
QUICK_SHAPES: List[Tuple[int, int]] = [(4096, 8), (131072, 8), (2048, 512), (1200000, 16)]
FLOOR_TAU = 0.5
BINARY_FLOOR_TAU = 0.7


def reference(logits):
    return F.gumbel_softmax(logits, tau=1.0, hard=True)


def floor(logits):
    return torch.softmax(logits / FLOOR_TAU, -1)


def binary_floor(logits):
    return torch.sigmoid(logits / BINARY_FLOOR_TAU)


def _categorical() -> Dict[str, Callable]:
    est = {
        "decoupled_st (tau_f=1, tau_b=1)": lambda l: LF.decoupled_st(l, 1.0, 1.0),
        "decoupled_st (tau_f=2, tau_b=0.5)": lambda l: LF.decoupled_st(l, 2.0, 0.5),
        "decoupled_st (tau_f=0, tau_b=0.5)": lambda l: LF.decoupled_st(l, 0.0, 0.5),
        "softmax_st (tau=0.5)": lambda l: LF.softmax_st(l, 0.5),
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


def _binary() -> Dict[str, Callable]:
    return {
        "bernoulli_decoupled_st (tau_f=0.1, tau_b=0.7)": lambda l: LF.bernoulli_decoupled_st(l, 0.1, 0.7),
        "bernoulli_decoupled_st (tau_f=0, tau_b=0.7)": lambda l: LF.bernoulli_decoupled_st(l, 0.0, 0.7),
        "bernoulli_gumbel_softmax_st": lambda l: LF.bernoulli_gumbel_softmax_st(l, 0.7),
    }


QUICK = (
    "decoupled_st (tau_f=2, tau_b=0.5)",
    "softmax_st (tau=0.5)",
    "bernoulli_decoupled_st (tau_f=0.1, tau_b=0.7)",
)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(fn, logits, target):
    logits.grad = None
    fn(logits).backward(target)


def _time_once(fn, logits, target, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    _run(fn, logits, target)
    _sync(device)
    return time.perf_counter() - t0


def _peak_bytes(fn, logits, target, device) -> int:
    logits.grad = None
    return peak_allocated_bytes(lambda: _run(fn, logits, target), device)


def _default_repeats(shape, quick: bool) -> int:
    numel = shape[0] * shape[1]
    return max(5 if quick else 7, min(21 if quick else 51, int(3e7 / numel)))


def bench(shape, names, repeats, device, memory=True, seed=0):
    """Rows ``(name, binary, median s, vs ST-GS, vs floor, vs softmax floor, peak, mem ratio)``."""
    torch.manual_seed(seed)
    logits = torch.randn(shape, device=device).mul_(2.0).requires_grad_()
    target = torch.rand(shape, device=device)
    flat = logits.detach().reshape(-1).clone().requires_grad_()
    flat_target = target.reshape(-1).clone()
    cat, bino = _categorical(), _binary()
    # every contender: name -> (fn, logits, target); run round-robin
    contenders = {"__ref": (reference, logits, target), "__floor": (floor, logits, target)}
    if any(n in bino for n in names):
        contenders["__bfloor"] = (binary_floor, flat, flat_target)
    for name in names:
        contenders[name] = (cat[name], logits, target) if name in cat else (bino[name], flat, flat_target)
    for fn, x, t in contenders.values():  # warm-up
        _run(fn, x, t)
    times: Dict[str, List[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for key, (fn, x, t) in contenders.items():
            times[key].append(_time_once(fn, x, t, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    ref_peak = _peak_bytes(reference, logits, target, device) if memory else 0
    rows = []
    for name in names:
        fn, x, t = contenders[name]
        binary = name in bino
        own_floor = med["__bfloor"] if binary else med["__floor"]
        peak = _peak_bytes(fn, x, t, device) if memory else 0
        rows.append((
            name, binary, med[name], med[name] / med["__ref"], med[name] / own_floor,
            med[name] / med["__floor"], peak, peak / max(ref_peak, 1),
        ))
    return rows, med


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true",
        help="only decoupled_st (2, 0.5), softmax_st (0.5) and bernoulli_decoupled_st (0.1, 0.7) "
        "on QUICK_SHAPES, at 1 and 2 threads unless --threads is given",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="default: by shape, 5 to 51")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None,
        help="torch CPU thread counts, one table each (default: 1; --quick: 1 2)",
    )
    parser.add_argument("--shapes", default=None, help="e.g. '800x8,131072x8'")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory column")
    parser.add_argument("--names", nargs="+", default=None,
                        help="only the estimators whose name contains one of these, e.g. 'gumbel_rao'")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    names = list(QUICK) if args.quick else list(_categorical()) + list(_binary())
    if args.names:
        names = [n for n in names if any(part in n for part in args.names)]
        if not names:
            parser.error(f"no estimator name contains any of {args.names}")
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    threads = args.threads or ([1, 2] if args.quick else [1])
    if device.type != "cpu" and args.threads is None:
        threads = [torch.get_num_threads()]  # host threads barely matter off the CPU
    peaks: Dict[Tuple[Tuple[int, int], str], Tuple[int, float]] = {}
    for i, nthreads in enumerate(threads):
        torch.set_num_threads(nthreads)
        print(
            f"\ntorch {torch.__version__}, device {device}, threads {torch.get_num_threads()}; "
            f"vs ST-GS: F.gumbel_softmax(hard=True); vs floor: torch.softmax(l / {FLOOR_TAU}) "
            f"(binary: torch.sigmoid(l / {BINARY_FLOOR_TAU}) on the same elements); "
            "memory: peak bytes allocated above the inputs during forward+backward\n"
        )
        print(
            "| shape | estimator | time (ms) | vs ST-GS | vs floor | vs softmax floor "
            "| peak mem (MiB) | mem ratio |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for shape in shapes:
            repeats = args.repeats or _default_repeats(shape, args.quick)
            memory = not args.no_memory and i == 0
            rows, med = bench(shape, names, repeats, device, memory=memory)
            print(
                f"| {shape[0]}x{shape[1]} | (floor: softmax {med['__floor'] * 1e3:.2f} ms"
                + (f", sigmoid {med['__bfloor'] * 1e3:.2f} ms" if "__bfloor" in med else "")
                + f"; ST-GS {med['__ref'] * 1e3:.2f} ms; {repeats} repeats) | | | | | | |"
            )
            for name, binary, me, r_ref, r_floor, r_sm, pk, mratio in rows:
                if memory:
                    peaks[(shape, name)] = (pk, mratio)
                pk, mratio = peaks.get((shape, name), (None, None))
                mem = f"{pk / 2**20:.1f} | {mratio:.2f}" if pk is not None else "- | -"
                shown = f"{shape[0] * shape[1]}" if binary else f"{shape[0]}x{shape[1]}"
                print(
                    f"| {shown} | {name} | {me * 1e3:.2f} | {r_ref:.2f} | {r_floor:.2f} | "
                    f"{r_sm:.2f} | {mem} |"
                )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
