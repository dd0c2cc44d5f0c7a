"""The CPU precision table: one training step of each zoo architecture in each CPU precision, timed once.

    python bench/precision_table.py [--archs lenet efficientnet_lite0 ...]   # -> bench/results/precision_table.jsonl

`hamcli train --precision auto` on CPU does not time anything at run time (a timing on a machine that may
be busy would make one seed train differently from run to run). It looks the architecture up in
`hamcli.models.precision_table`, keyed by what the CPU can do in bf16 (`amx`: AMX tiles; `avx512_bf16`:
AVX-512 BF16 instructions only; `none`: bf16 emulated); this script makes the rows of the column for the
CPU it runs on. Run it alone on a quiet machine: the same warm-up (2 steps) and the same number of timed
steps (the median of 6) for every variant, batch 32, at the size the architecture's recipes use.
A variant replaces fp32 only if it is at least 1.25x faster.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _results import emit  # noqa: E402 - bench/ is on the path when a script runs

from hamcli.models.build import build_model
from hamcli.models.precision import CPU_CANDIDATES, cpu_bf16_class, describe
from hamcli.models.zoo import MODELS

SIZES = {"lenet": (64, 64), "cnn": (64, 64)}  # the rest: 150 x 150, the size the Lite recipes use
WIN = 1.25


def step_time(arch: str, size: tuple[int, int], prec, batch: int, warmup: int, steps: int) -> float:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model(arch)[0].train().to(memory_format=prec.memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, *size).contiguous(memory_format=prec.memory_format)
    y = torch.randint(0, 7, (batch,))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with prec.autocast():
            out = model(x)
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="*", default=list(MODELS))
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    column = cpu_bf16_class()
    for arch in args.archs:
        size = SIZES.get(arch, (150, 150))
        candidates = [c for c in CPU_CANDIDATES if c.dtype == "fp32" or column != "none"]
        times = {describe(c): step_time(arch, size, c, args.batch, 2, 6) for c in candidates}
        fp32 = min(v for k, v in times.items() if k.startswith("fp32"))
        best = min(times, key=times.get)
        choice = best if best.startswith("fp32") or times[best] * WIN <= fp32 else \
            min((k for k in times if k.startswith("fp32")), key=times.get)
        emit({"arch": arch, "size": list(size), "batch": args.batch, "cpu_class": column,
              "step_ms": {k: round(v * 1000, 1) for k, v in times.items()}, "choice": choice,
              "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
