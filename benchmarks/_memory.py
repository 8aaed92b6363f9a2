"""Peak memory of one call, shared by the benchmark scripts.

On CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. On CPU,
PyTorch keeps no such counter, so the call is recorded under
``torch.profiler.profile(profile_memory=True)``: the profiler logs every allocation and
free of the CPU allocator (``[memory]`` events with signed sizes), and the peak is the
maximum of their running sum in time order. This counts exactly the tensor memory
PyTorch allocates during the call (intermediates, saved tensors, gradients) above what
was allocated before it, and is deterministic; process RSS would mix in page
granularity, code pages and malloc caching.
"""

from __future__ import annotations

from typing import Callable

import torch


def peak_allocated_bytes(fn: Callable[[], object], device: torch.device = torch.device("cpu")) -> int:
    """Peak bytes allocated by tensors during ``fn()``, above the level before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    )
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return peak
