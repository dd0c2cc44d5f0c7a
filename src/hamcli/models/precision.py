"""Choosing device and numeric precision, by measurement where it matters.

On CPU, channels-last memory and bf16 autocast (AMX / AVX-512-BF16) speed up large convolutional
networks several times, while small ones, depthwise convolutions and CPUs that only emulate bf16 can
be slower; `auto` times a few steps of each candidate (fp32, fp32 + channels-last, bf16 +
channels-last) and keeps the fastest, remembering the answer per processor, model and size.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import hamcli.fsio as fsio
import hamcli.paths as paths
from hamcli.errors import UsageError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class Precision:
    device: str
    dtype: str  # "fp32", "bf16" or "fp16"
    channels_last: bool
    reason: str = ""

    def autocast(self) -> contextlib.AbstractContextManager:
        import torch

        if self.dtype == "fp32":
            return contextlib.nullcontext()
        kind = "cuda" if self.device.startswith("cuda") else self.device
        return torch.autocast(kind, dtype=torch.bfloat16 if self.dtype == "bf16" else torch.float16)

    @property
    def memory_format(self) -> torch.memory_format:
        import torch

        return torch.channels_last if self.channels_last else torch.contiguous_format


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible to torch; use --device auto or cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: Apple's MPS backend is not available here; use --device auto or cpu")
    if device not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {device!r}: choose auto, cpu, cuda or mps")
    return device


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks instead of handing each back to the kernel.

    A training step allocates and frees tens of megabytes of activations; by default glibc maps and
    unmaps each large block, and every step then pays for hundreds of thousands of page faults.
    Measured on a 2-core AMD EPYC VM (EfficientNet-Lite0, 200x150, batch 32): 180,000 faults and
    23 img/s per step before, none and 36 img/s after. Only the process's own allocator changes;
    elsewhere than glibc this does nothing. Returns whether it took effect.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # musl and others: no mallopt
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20) and mallopt(m_trim_threshold, 1 << 30)
                and mallopt(m_top_pad, 64 << 20))


def cpu_supports_bf16() -> bool:
    import torch

    try:
        return bool(torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX") or
                    torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_name() -> str:
    """The processor's model name (what `lscpu` prints), recorded beside every measured choice."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _time(model: torch.nn.Module, x: torch.Tensor, prec: Precision, train: bool, steps: int = 3) -> float:
    import torch

    model = model.to(memory_format=prec.memory_format).train(train)
    x = x.contiguous(memory_format=prec.memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6) if train else None
    best = float("inf")
    for i in range(steps + 1):
        start = time.perf_counter()
        with prec.autocast(), torch.inference_mode(not train):
            out = model(x).float()
        if opt is not None:
            out.logsumexp(1).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        if i:  # the first step pays for one-off setup
            best = min(best, time.perf_counter() - start)
    return best


CPU_CANDIDATES = (Precision("cpu", "fp32", False), Precision("cpu", "fp32", True), Precision("cpu", "bf16", True))


def describe(prec: Precision) -> str:
    """How a precision is written in records and messages, e.g. `fp32 + channels-last`."""
    return prec.dtype + (" + channels-last" if prec.channels_last else "")


def measure_cpu(key: str, model_factory, size: tuple[int, int], batch: int, train: bool) -> Precision:
    """Time each CPU candidate on this machine; keep the fastest (a rival must win by 10 %), remembered by key.

    Depthwise convolutions, for one, can be faster in fp32 than in emulated bf16: only a measurement knows.
    """
    import torch

    memo_path = paths.cache_dir() / "precision.json"
    try:
        memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
    except (OSError, ValueError):
        memo = {}  # a damaged memo is only a cache: measure again
    key = f"{key}-{'train' if train else 'infer'}-{torch.__version__}-{torch.get_num_threads()}t-{cpu_name()}"
    if isinstance(memo.get(key), dict) and memo[key].get("choice") in [describe(c) for c in CPU_CANDIDATES]:
        chosen = next(c for c in CPU_CANDIDATES if describe(c) == memo[key]["choice"])
        return Precision("cpu", chosen.dtype, chosen.channels_last, f"measured earlier: {memo[key]['why']}")
    candidates = [c for c in CPU_CANDIDATES if c.dtype == "fp32" or cpu_supports_bf16()]
    x = torch.randn(min(batch, 16), 3, *size)
    times = {c: _time(model_factory(), x, c, train) for c in candidates}
    best = candidates[0]
    for cand in candidates[1:]:
        if times[cand] < times[best] / 1.1:
            best = cand
    what = "a training step" if train else "a forward pass"
    why = f"{what} took " + ", ".join(f"{t * 1000:.0f} ms in {describe(c)}" for c, t in times.items())
    why += f" on {cpu_name()}"
    memo[key] = {"choice": describe(best), "why": why}
    fsio.write_json(memo_path, memo)
    return Precision("cpu", best.dtype, best.channels_last, f"measured: {why}")


def choose(arch: str, model_factory, size: tuple[int, int], batch: int, device: str = "auto",
           precision: str = "auto", train: bool = True) -> Precision:
    """Pick device and precision; `model_factory()` builds a throwaway model for timing."""
    import torch

    device = resolve_device(device)
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if device == "cuda":
        if precision == "auto":
            dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            return Precision(device, dtype, True, "mixed precision on CUDA")
        return Precision(device, precision, precision != "fp32", "as asked")
    if device == "mps":
        return Precision(device, "fp32" if precision == "auto" else precision, False, "MPS")
    if precision == "fp16":
        raise UsageError("--precision fp16 is for GPUs; on CPU use bf16 or fp32")
    if precision != "auto":
        return Precision("cpu", precision, precision == "bf16", "as asked")
    return measure_cpu(f"{arch}-{size[1]}x{size[0]}-{batch}", model_factory, size, batch, train)
