"""Choosing device and numeric precision, by measurement where it matters.

On CPU, channels-last memory and bf16 autocast (AMX / AVX-512-BF16) speed up large
convolutional networks several times, while small ones can be slower; `auto` times a few
training steps each way and keeps the faster, remembering the answer per machine and model.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

import torch

from hamcli import fsio, paths
from hamcli.errors import UsageError


@dataclass(frozen=True)
class Precision:
    device: str
    dtype: str  # "fp32", "bf16" or "fp16"
    channels_last: bool
    reason: str = ""

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == "fp32":
            return contextlib.nullcontext()
        kind = "cuda" if self.device.startswith("cuda") else self.device
        return torch.autocast(kind, dtype=torch.bfloat16 if self.dtype == "bf16" else torch.float16)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def resolve_device(device: str) -> str:
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


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX") or
                    torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _time_steps(model: torch.nn.Module, x: torch.Tensor, prec: Precision, steps: int = 3) -> float:
    model = model.to(memory_format=prec.memory_format)
    x = x.to(memory_format=prec.memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    best = float("inf")
    for i in range(steps + 1):
        start = time.perf_counter()
        with prec.autocast():
            loss = model(x).float().logsumexp(1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step pays for one-off setup
            best = min(best, time.perf_counter() - start)
    return best


def choose(arch: str, model_factory, size: int, batch: int, device: str = "auto",
           precision: str = "auto") -> Precision:
    """Pick device and precision; `model_factory()` builds a throwaway model for timing."""
    device = resolve_device(device)
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise UsageError(f"--precision {precision!r}: choose auto, fp32, bf16 or fp16")
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
    if not cpu_supports_bf16():
        return Precision("cpu", "fp32", False, "this CPU has no fast bf16")
    key = f"{arch}-{size}-{batch}-{torch.__version__}-{torch.get_num_threads()}t"
    memo_path = paths.cache_dir() / "precision.json"
    memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
    if key in memo:
        dtype = memo[key]["dtype"]
        return Precision("cpu", dtype, dtype == "bf16", f"measured earlier: {memo[key]['why']}")
    x = torch.randn(min(batch, 32), 3, size, size)
    t32 = _time_steps(model_factory().train(), x, Precision("cpu", "fp32", False))
    t16 = _time_steps(model_factory().train(), x, Precision("cpu", "bf16", True))
    dtype = "bf16" if t16 < t32 / 1.1 else "fp32"
    why = f"a training step took {t32 * 1000:.0f} ms in fp32, {t16 * 1000:.0f} ms in bf16 + channels-last"
    memo[key] = {"dtype": dtype, "why": why}
    fsio.write_json(memo_path, memo)
    return Precision("cpu", dtype, dtype == "bf16", f"measured: {why}")
