"""GPU-readiness of the training steps, on a CUDA device: what the CPU test suite cannot see.

    python benchmarks/gpu_check.py                 # every model, at the recipes' sizes
    python benchmarks/gpu_check.py --json out.json --steps 50

For each model of the recipes (stochastic binary network, categorical autoencoder, logic-gate
network, categorical VAE, structured-output network), at the recipe's layer sizes and batch:

* **sync**: eager training steps (``compute_loss`` + ``backward`` + Adam) run under
  ``torch.cuda.set_sync_debug_mode("error")``, which raises on any host-device
  synchronisation; the first one found is reported (``none`` is the goal);
* **compile**: ``torch.compile(compute_loss, fullgraph=True)`` with inductor (Triton kernels),
  at four temperatures (one graph expected); at ``tau_f = 0`` (deterministic forward) the
  compiled loss and gradients are compared with eager ones (largest absolute difference);
* **bf16**: one step under ``torch.autocast("cuda", torch.bfloat16)``: finite loss and gradients;
* **ms/step**: median eager and compiled step times over ``--steps`` steps (after warm-up),
  with ``torch.cuda.synchronize()`` around each.

Exits 1 when a model fails a check (a sync, a graph break, more than one graph for the four
temperatures, a non-finite bf16 step or a compiled/eager gradient mismatch above 1e-3 of the
largest gradient entry: inductor reorders float32 sums, which the 4 x 12,000-gate network shows
at about 1e-4).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def models(device):
    from lightning_discrete.models import (
        CategoricalAutoencoder,
        CategoricalVAE,
        LogicGateNetwork,
        StochasticBinaryNetwork,
        StructuredOutputNetwork,
    )

    g = torch.Generator().manual_seed(0)

    def img(n, d):
        return torch.rand(n, d, generator=g)

    def lab(n, k=10):
        return torch.randint(0, k, (n,), generator=g)

    specs = {
        "binary 784-200-200-10, batch 128": (
            lambda: StochasticBinaryNetwork(input_dim=784, hidden_dims=(200, 200), num_classes=10),
            (img(128, 784), lab(128))),
        "autoencoder 4 x 8, batch 200": (
            lambda: CategoricalAutoencoder(input_dim=784, num_latents=4, num_categories=8, hidden_dims=[512, 256]),
            (img(200, 784), lab(200))),
        "logic gates 4 x 12,000, batch 100": (
            lambda: LogicGateNetwork(in_features=2352, num_neurons=12000, num_layers=4, num_classes=10,
                                     group_sum_tau=100.0, init="residual"),
            (img(100, 2352).round(), lab(100))),
        "VAE 20 x 10, batch 100": (
            lambda: CategoricalVAE(input_dim=784, num_latents=20, num_categories=10, hidden_dims=[512, 256],
                                   estimator="decoupled_st"),
            (img(100, 784).round(), lab(100))),
        "structured output 392-200-200-392, batch 100": (
            lambda: StructuredOutputNetwork(input_dim=392, output_dim=392, hidden_dims=(200, 200),
                                            estimator="decoupled_st"),
            (img(100, 784).round(), lab(100))),
    }
    for name, (make, batch) in specs.items():
        torch.manual_seed(0)
        yield name, make().to(device), tuple(t.to(device) for t in batch)


def step(model, opt, batch, fn=None):
    opt.zero_grad(set_to_none=True)
    loss = (fn or (lambda b: model.compute_loss(b)[0]))(batch)
    loss.backward()
    opt.step()
    return loss


def timed(model, opt, batch, fn, steps):
    for _ in range(5):
        step(model, opt, batch, fn)
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(model, opt, batch, fn)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


class _Counting:
    def __init__(self):
        from torch._inductor.compile_fx import compile_fx

        self.graphs, self._fx = 0, compile_fx

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return self._fx(gm, example_inputs)


def check(name, model, batch, steps):
    out = {"model": name}
    model.train()
    model.set_temperature(tau_f=0.5, tau_b=0.7)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    step(model, opt, batch)  # allocations and lazy init outside the sync check
    torch.cuda.synchronize()
    try:
        torch.cuda.set_sync_debug_mode("error")
        for _ in range(3):
            loss = step(model, opt, batch)
        out["sync"] = "none"
    except RuntimeError as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if "lightning_discrete" in f.filename]
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].line}" if frames else "outside"
        out["sync"] = f"{str(e).splitlines()[0]} at {where}"
    finally:
        torch.cuda.set_sync_debug_mode(0)
    out["eager_ms"] = timed(model, opt, batch, None, steps)

    torch._dynamo.reset()
    backend = _Counting()
    try:
        compiled = torch.compile(lambda b: model.compute_loss(b)[0], fullgraph=True, backend=backend)
        for tf, tb in [(0.5, 0.7), (1.3, 0.7), (0.0, 2.0), (0.2, 0.3)]:
            model.set_temperature(tau_f=tf, tau_b=tb)
            loss = compiled(batch)
            loss.backward()
        out["graphs_for_4_temperatures"] = backend.graphs
        model.set_temperature(tau_f=0.0, tau_b=0.6)
        model.zero_grad()
        lc = compiled(batch)
        lc.backward()
        gc = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        le = model.compute_loss(batch)[0]
        le.backward()
        rel = max(((gc[n] - p.grad).abs().max() / p.grad.abs().max().clamp_min(1e-12)).item()
                  for n, p in model.named_parameters() if n in gc)
        out["compiled_vs_eager_loss"] = abs(lc.item() - le.item())
        out["compiled_vs_eager_grad_rel"] = rel
        model.set_temperature(tau_f=0.5, tau_b=0.7)
        out["compiled_ms"] = timed(model, opt, batch, compiled, steps)
        out["compile"] = "ok"
    except Exception as e:  # noqa: BLE001 - reported, the script goes on with the next model
        out["compile"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

    model.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model.compute_loss(batch)[0]
    loss.backward()
    finite = torch.isfinite(loss) & torch.stack([torch.isfinite(p.grad).all() for p in model.parameters()
                                                 if p.grad is not None]).all()
    out["bf16_finite"] = bool(finite)
    out["bf16_loss"] = loss.item()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50, help="timed steps per contender")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if not torch.cuda.is_available():
        p.error("needs a CUDA device")
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    rows, failed = [], False
    for name, model, batch in models(device):
        r = check(name, model, batch, args.steps)
        rows.append(r)
        bad = (r["sync"] != "none" or r["compile"] != "ok" or r.get("graphs_for_4_temperatures") != 1
               or not r["bf16_finite"] or r.get("compiled_vs_eager_grad_rel", 0) > 1e-3)
        failed |= bad
        print(json.dumps(r), flush=True)
    print("| model | host-device syncs | fullgraph compile (graphs for 4 temperatures) | compiled vs eager grad (rel) | bf16 step | eager ms/step | compiled ms/step |")
    print("|---|---|---|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['sync']} | {r['compile']} ({r.get('graphs_for_4_temperatures', '-')}) | "
              f"{r.get('compiled_vs_eager_grad_rel', float('nan')):.1e} | {'finite' if r['bf16_finite'] else 'NON-FINITE'} | "
              f"{r['eager_ms']:.2f} | {r.get('compiled_ms', float('nan')):.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
