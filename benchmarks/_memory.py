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

import contextlib
import os
import sys
from typing import Callable, Iterator

import torch


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Send the process's stdout / stderr (file descriptors 1 and 2) to /dev/null: the
    profiler's C++ side (kineto) prints trace lines there, below Python's ``sys.stdout``."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)


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

    with _quiet_fds():  # no profiler trace lines in the benchmark's output
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
