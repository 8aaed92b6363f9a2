"""Benchmark: logic-gate layers (training) and hard-network inference (packed torch, compiled C).

Run: ``python benchmarks/logic_gates.py [--quick]``

Training (forward + backward, float32, ``torch.set_num_threads(1)``), for one layer
(batch 100, 12,000 -> 12,000 neurons, 16 gates) and a 4-layer network
(784 -> 4 x 12,000, GroupSum 10, cross-entropy):

* ``naive``: the 16-term softmax mixture ``sum_i softmax(w)_i g_i(a, b)`` in plain
  PyTorch (difflogic's reference formulation, written below);
* ``torchlogix``: ``torchlogix.layers.LogicDense`` (raw parametrisation, soft
  sampling) if the package is installed (it is loaded without its top-level
  ``__init__``, which needs Python >= 3.12 syntax);
* ``ours (softmax)``: :func:`lightning_discrete.nn.logic.logic_gate` with the same
  softmax-mixture coefficients (identical maths to ``naive``);
* ``ours (decoupled)``: :class:`LogicGateLayer` with its default hard estimator.

Time: median of several steps after a warm-up.  Peak memory: the peak tensor memory
allocated during one (warmed-up) forward + backward above what was allocated before it
(activations, saved tensors, gradients, temporaries), from the profiler's allocation
events (``benchmarks/_memory.py``).

Inference (``torch.set_num_threads(1)``: images per second per CPU core) of a hard
4 x 12,000 network on 784-bit inputs with random (gaussian-initialised) gates:
the float network in eval mode, :class:`PackedLogicNetwork` (64 examples per int64
word) and the C export compiled with ``cc -O3 -march=native`` (256 examples per step),
simplified and not.  Random gates simplify far more than trained ones, so the
``simplify=False`` row is the conservative figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import types

import torch
import torch.nn.functional as F

from lightning_discrete.nn.logic import GATE_COEFFICIENTS, NUM_GATES, GroupSum, LogicGateLayer, logic_gate

from _memory import peak_allocated_bytes  # benchmarks/_memory.py

B, N, IN, LAYERS, CLASSES = 100, 12000, 784, 4, 10


# --------------------------------------------------------------------------- #
# reference implementations
# --------------------------------------------------------------------------- #


def bin_op(a, b, i):
    return [
        lambda: torch.zeros_like(a), lambda: a * b, lambda: a - a * b, lambda: a, lambda: b - a * b,
        lambda: b, lambda: a + b - 2 * a * b, lambda: a + b - a * b, lambda: 1 - (a + b - a * b),
        lambda: 1 - (a + b - 2 * a * b), lambda: 1 - b, lambda: 1 - b + a * b, lambda: 1 - a,
        lambda: 1 - a + a * b, lambda: 1 - a * b, lambda: torch.ones_like(a),
    ][i]()


def naive_layer(x, idx_a, idx_b, logits):
    """The 16-term softmax mixture, as in difflogic's pure-PyTorch path."""
    a, b = x[:, idx_a], x[:, idx_b]
    w = torch.softmax(logits, -1)
    r = torch.zeros_like(a)
    for i in range(NUM_GATES):
        r = r + w[:, i] * bin_op(a, b, i)
    return r


def ours_softmax_layer(x, idx_a, idx_b, logits):
    return logic_gate(x, idx_a, idx_b, torch.softmax(logits, -1) @ GATE_COEFFICIENTS.to(logits.dtype))


def load_torchlogix():
    if "torchlogix" not in sys.modules:
        spec = importlib.util.find_spec("torchlogix")
        if spec is None:
            return None
        pkg = types.ModuleType("torchlogix")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["torchlogix"] = pkg
    from torchlogix.layers.dense import LogicDense

    return LogicDense


# --------------------------------------------------------------------------- #
# one training case: build, then run steps
# --------------------------------------------------------------------------- #


def build(impl: str, layers: int):
    torch.manual_seed(0)
    widths = [N] * (layers + 1) if layers == 1 else [IN] + [N] * layers
    x = torch.randint(0, 2, (B, widths[0])).float()
    y = torch.randint(0, CLASSES, (B,))
    mods = []
    if impl == "torchlogix":
        LogicDense = load_torchlogix()
        mods = [LogicDense(widths[i], widths[i + 1]) for i in range(layers)]
        params = [p for m in mods for p in m.parameters()]
        fwd = lambda h: [h := m(h) for m in mods][-1]  # noqa: E731
    elif impl == "ours (decoupled)":
        mods = [LogicGateLayer(widths[i], widths[i + 1], init="gaussian") for i in range(layers)]
        params = [m.gate_logits for m in mods]
        fwd = lambda h: [h := m(h) for m in mods][-1]  # noqa: E731
    else:
        fn = naive_layer if impl == "naive" else ours_softmax_layer
        ref = [LogicGateLayer(widths[i], widths[i + 1], init="gaussian") for i in range(layers)]
        params = [m.gate_logits for m in ref]
        wiring = [(m.idx_a, m.idx_b) for m in ref]

        def fwd(h):
            for (ia, ib), p in zip(wiring, params):
                h = fn(h, ia, ib, p)
            return h

    def step():
        h = fwd(x)
        loss = h.mean() if layers == 1 else F.cross_entropy(GroupSum(CLASSES, 30.0)(h), y)
        loss.backward()
        for p in params:
            p.grad = None

    return step


def run_case(impl: str, layers: int, reps: int):
    torch.set_num_threads(1)
    step = build(impl, layers)
    step()  # warm-up
    peak = peak_allocated_bytes(step) / 2**20
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    return {"peak_mib": peak, "ms": 1e3 * times[len(times) // 2]}


# --------------------------------------------------------------------------- #
# inference throughput
# --------------------------------------------------------------------------- #


def inference(batch: int, reps: int, compile_c_net: bool = True) -> None:
    from lightning_discrete.nn.logic_c import compile_c, export_c, find_c_compiler
    from lightning_discrete.nn.logic_packed import PackedLogicNetwork, pack_bits

    torch.set_num_threads(1)
    torch.manual_seed(0)
    layers = [LogicGateLayer(IN if i == 0 else N, N, init="gaussian").eval() for i in range(LAYERS)]
    readout = GroupSum(CLASSES, 30.0)
    net = torch.nn.Sequential(*layers, readout).eval()
    x = torch.randint(0, 2, (batch, IN)).float()

    def rate(fn, n=reps):
        fn()
        best = float("inf")
        for _ in range(n):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return batch / best

    rows = []
    with torch.no_grad():
        ref = net(x)
        rows.append(("float hard network (eval)", rate(lambda: net(x), 2), ""))
        packed = PackedLogicNetwork.from_layers(layers, readout)
        assert torch.equal(packed(x), ref)
        words = pack_bits(x)
        rows.append(("packed torch (words in)", rate(lambda: packed.forward_words(words, batch)), ""))
    if not compile_c_net:
        print("--no-c: compiled C path skipped (export + compile of 48,000 gates takes 1-2 min)")
    elif find_c_compiler() is None:
        print("no C compiler: compiled C path skipped")
    else:
        with tempfile.TemporaryDirectory() as d:
            for simplify in (False, True):
                t = time.perf_counter()
                rep = export_c(layers, readout, os.path.join(d, f"net{simplify}.c"), simplify=simplify)
                lib = compile_c(rep)
                build_s = time.perf_counter() - t
                assert torch.equal(lib(x), ref)
                note = f"{rep.num_gates} of {rep.num_neurons} gates kept, export+compile {build_s:.0f} s"
                name = f"compiled C, simplify={simplify} (words in)"
                rows.append((name, rate(lambda: lib.forward_words(words, batch)), note))
    print(f"\nInference, 4 x {N} gates, {IN}-bit inputs, batch {batch}, 1 thread (images/s per core)")
    print(f"| {'path':<40} | {'images/s/core':>14} | notes |")
    print(f"|{'-' * 42}|{'-' * 16}|-------|")
    for name, r, note in rows:
        print(f"| {name:<40} | {r:>14,.0f} | {note} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--no-c", action="store_true", help="skip the (slow to compile) C inference rows")
    args = ap.parse_args()
    reps = 3 if args.quick else 7
    impls = ["naive", "torchlogix", "ours (softmax)", "ours (decoupled)"]
    if load_torchlogix() is None:
        print("torchlogix is not installed (pip install torchlogix): its rows are skipped")
        impls.remove("torchlogix")
    print(f"torch {torch.__version__}, 1 thread, float32, batch {B}")
    for layers in (1, LAYERS):
        what = f"one layer {N} -> {N}" if layers == 1 else f"{LAYERS} layers {IN} -> {LAYERS} x {N}, GroupSum"
        res = {impl: run_case(impl, layers, reps) for impl in impls}
        base = res["naive"]
        print(f"\nTraining step (forward + backward), {what}")
        print(f"| {'implementation':<18} | {'time ms':>8} | {'speed-up vs naive':>17} | {'peak MiB':>8} | "
              f"{'memory vs naive':>15} |")
        print(f"|{'-' * 20}|{'-' * 10}|{'-' * 19}|{'-' * 10}|{'-' * 17}|")
        for impl, r in res.items():
            print(f"| {impl:<18} | {r['ms']:>8.1f} | {base['ms'] / r['ms']:>16.2f}x | {r['peak_mib']:>8.1f} | "
                  f"{r['peak_mib'] / base['peak_mib']:>15.3f} |")
        if "torchlogix" in res:
            for impl in ("ours (softmax)", "ours (decoupled)"):
                print(f"{impl} vs torchlogix: {res['torchlogix']['ms'] / res[impl]['ms']:.2f}x faster, "
                      f"{res[impl]['peak_mib'] / res['torchlogix']['peak_mib']:.3f}x the peak memory")
    inference(batch=4096 if args.quick else 16384, reps=reps, compile_c_net=not args.no_c)


if __name__ == "__main__":
    main()
