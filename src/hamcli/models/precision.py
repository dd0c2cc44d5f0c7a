"""Device and numeric precision, by stated rules that never depend on how busy the machine is.

Inference (predict, evaluate, serve, gradcam, export's check, the Python API): fp32 with channels-last
memory on CPU, for every batch size, so that an image gets the same probabilities alone or among many
(channels-last keeps them within 1e-6 of each other and of contiguous memory, and runs 2x faster here).
bf16 or fp16 only when asked (`--precision`); the choice is said on stderr and recorded in the output.

Training on CPU with `--precision auto`: the architecture's row of the committed table
(`hamcli.models.precision_table`) for what this CPU can do in bf16 (`cpu_bf16_class`), measured once on
a quiet machine by `bench/precision_table.py`; fp32 + channels-last where the table has no row. A run
records its choice and the rule that made it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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


def _cpu_fields() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def cpu_name() -> str:
    """The processor's model name (what `lscpu` prints), recorded beside every measured figure."""
    import platform

    return _cpu_fields().get("model name") or platform.processor() or platform.machine()


def cpu_bf16_class() -> str:
    """What this CPU does with bf16: `amx` (AMX tiles), `avx512_bf16` (AVX-512 BF16 instructions only) or
    `none` (emulated: slower than fp32). Read from the CPU's flags, never from a timing."""
    flags = set(_cpu_fields().get("flags", "").split())
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return "none"


CPU_CANDIDATES = (Precision("cpu", "fp32", False), Precision("cpu", "fp32", True), Precision("cpu", "bf16", True))
INFERENCE = Precision("cpu", "fp32", True, "fp32 on CPU: the same probabilities for any batch size")


def describe(prec: Precision) -> str:
    """How a precision is written in records and messages, e.g. `fp32 + channels-last`."""
    return prec.dtype + (" + channels-last" if prec.channels_last else "")


def parse(text: str, device: str = "cpu", reason: str = "") -> Precision:
    """The inverse of `describe`."""
    dtype, _, rest = text.partition(" + ")
    return Precision(device, dtype, rest == "channels-last", reason)


def training_choice(arch: str, cpu_class: str | None = None) -> Precision:
    """The committed table's precision for training `arch` on a CPU of `cpu_class` (this one by default)."""
    from hamcli.models.precision_table import TRAIN

    cpu_class = cpu_class or cpu_bf16_class()
    row = TRAIN.get(cpu_class, {}).get(arch)
    if row is None:
        return Precision("cpu", "fp32", True, f"no row for {arch} on a CPU with bf16 {cpu_class!r} in the "
                                              "precision table: fp32 + channels-last")
    return parse(row, "cpu", f"the precision table's row for {arch} on a CPU with bf16 {cpu_class!r} "
                             "(bench/precision_table.py)")


def inference(device: str = "auto", precision: str = "fp32") -> Precision:
    """How predict, evaluate, serve and gradcam run: fp32 unless asked (`precision` bf16/fp16)."""
    device = resolve_device(device)
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = "fp32"
    if device == "cpu" and precision == "fp16":
        raise UsageError("--precision fp16 is for GPUs; on CPU use bf16 or fp32")
    if device == "mps":
        return Precision(device, precision, False, "MPS")
    if precision == "fp32":
        return Precision(device, "fp32", True, "fp32: the same probabilities for any batch size")
    return Precision(device, precision, True, f"{precision}, as asked: faster, and probabilities differ from "
                                              "fp32 in the second or third decimal")


def choose(arch: str, device: str = "auto", precision: str = "auto") -> Precision:
    """Device and precision for training `arch`: as asked, else by rule (never by a timing)."""
    import torch

    device = resolve_device(device)
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if device == "cuda":
        if precision == "auto":
            # bf16 where the GPU computes in it (Ampere, compute capability 8, and later); is_bf16_supported() also
            # counts emulated bf16, which is slow (V100, T4): fp16 with loss scaling there.
            dtype = "bf16" if torch.cuda.get_device_capability()[0] >= 8 else "fp16"
            return Precision(device, dtype, True, "mixed precision on CUDA")
        return Precision(device, precision, precision != "fp32", "as asked")
    if device == "mps":
        return Precision(device, "fp32" if precision == "auto" else precision, False, "MPS")
    if precision == "fp16":
        raise UsageError("--precision fp16 is for GPUs; on CPU use bf16 or fp32")
    if precision != "auto":
        return Precision("cpu", precision, True, "as asked")
    return training_choice(arch)
