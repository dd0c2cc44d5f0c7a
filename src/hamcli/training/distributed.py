"""Training on several processes with PyTorch's own engine: torch.distributed and DistributedDataParallel.

`torchrun --nproc-per-node N -m hamcli train ...` (or `hamcli train --devices N`, which starts the same
processes itself) sets RANK, WORLD_SIZE and LOCAL_RANK; each process then joins one group (gloo on CPU,
NCCL on CUDA), trains a DDP-wrapped copy of the model on its own shard of every epoch's rows, and the
validation logits of all shards are gathered, so every rank sees the same metrics and makes the same
decisions. Only rank 0 writes anything. `--batch-size` is per process: the global batch is N times it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hamcli.errors import HamcliError, UsageError


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def context() -> Context:
    """Where this process stands, from torchrun's environment (one process when there is none)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK {rank} does not fit WORLD_SIZE {world}")
    return Context(rank, world, local)


def setup(ctx: Context, device: str, train_rows: int) -> str:
    """Join the process group; returns the device this rank uses (cuda:LOCAL_RANK on GPUs)."""
    if not ctx.active:
        return device
    if ctx.world > train_rows:
        raise UsageError(f"{ctx.world} processes for {train_rows} training images: each needs at least one")
    import torch.distributed as dist

    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(ctx.local_rank)
        device = f"cuda:{ctx.local_rank}"
    else:  # the processes share the machine's cores
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        dist.init_process_group(backend, store=_rendezvous(ctx), rank=ctx.rank, world_size=ctx.world,
                                timeout=datetime.timedelta(minutes=10))
    return device


JOIN_TIMEOUT = 60.0  # seconds the processes wait for each other to start


def _rendezvous(ctx: Context):  # noqa: ANN202 - a torch.distributed.TCPStore
    """The group's meeting point (MASTER_ADDR:MASTER_PORT), waited on for at most JOIN_TIMEOUT seconds: a
    group with a process missing fails in a minute with one line, not after the 10 minutes a step may take."""
    import torch.distributed as dist

    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise UsageError(f"WORLD_SIZE {ctx.world} without {' and '.join(missing)}: start the processes with torchrun "
                         "(or `hamcli train --devices N`), or unset WORLD_SIZE to train in one process")
    host, port = os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]
    try:
        return dist.TCPStore(host, int(port), ctx.world, is_master=ctx.main,
                             timeout=datetime.timedelta(seconds=float(os.environ.get("HAMCLI_JOIN_TIMEOUT",
                                                                                     JOIN_TIMEOUT))),
                             wait_for_workers=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise UsageError(f"process {ctx.rank} of {ctx.world}: the group did not gather at {host}:{port} "
                         f"({' '.join(str(exc).split())[:100]}); start all {ctx.world} processes (torchrun does), "
                         "or unset WORLD_SIZE") from None


class PeerFailed(HamcliError):
    """Another process of the group failed or left; its own message says why."""


@contextlib.contextmanager
def peers(ctx: Context) -> Iterator[None]:
    """Around a group's work: when another process fails, this one stops with one line, not a traceback."""
    try:
        yield
    except HamcliError:
        raise
    except RuntimeError as exc:
        lost = "Connection" in str(exc) or type(exc).__name__ in ("DistBackendError", "DistNetworkError")
        if not (ctx.active and lost):
            raise
        raise PeerFailed(f"process {ctx.rank} of {ctx.world} stopped: another process of the group failed or left "
                         "(its message says why)") from None


def shutdown(ctx: Context) -> None:
    if ctx.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def wrap(model: torch.nn.Module, ctx: Context, device: str) -> torch.nn.Module:
    """The module the training steps run: the model itself, or DDP around it (built for what is trainable
    now; call again when layers are frozen or unfrozen)."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def shard(order: np.ndarray, ctx: Context) -> np.ndarray:
    """This rank's part of an epoch's order: every world-th row from its rank, the order padded by wrapping
    so that every rank takes the same number of steps (DistributedSampler's rule)."""
    if not ctx.active:
        return order
    total = -(-len(order) // ctx.world) * ctx.world
    padded = np.concatenate([order, order[:total - len(order)]]) if total > len(order) else order
    return padded[ctx.rank::ctx.world]


def gather(rows: np.ndarray, values: torch.Tensor, ctx: Context, total: int) -> torch.Tensor:
    """Every rank's `values` for its `rows`, put back in row order: the same tensor on every rank."""
    if not ctx.active:
        return values
    import torch.distributed as dist

    parts: list = [None] * ctx.world
    dist.all_gather_object(parts, (rows, values.cpu()))
    out = torch.empty((total, *values.shape[1:]), dtype=values.dtype)
    for part_rows, part_values in parts:
        out[torch.from_numpy(part_rows)] = part_values
    return out


def broadcast(value: object, ctx: Context) -> object:
    """Rank 0's `value`, on every rank (a run name, say)."""
    if not ctx.active:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_sync_bn(sync_bn: bool, device: str) -> None:
    """`--sync-bn` on several processes: SyncBatchNorm reduces over NCCL, so GPUs only."""
    if sync_bn and not device.startswith("cuda"):
        raise UsageError("--sync-bn: SyncBatchNorm runs on GPUs (NCCL); on CPU each process keeps its own "
                         "batch-norm statistics, and validation and checkpoints use rank 0's")


def all_sum(values: list[float], ctx: Context) -> list[float]:
    """Each value summed over the processes (the values themselves for one process)."""
    if not ctx.active:
        return values
    import torch.distributed as dist

    # NCCL reduces CUDA tensors only; gloo, CPU ones.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def broadcast_buffers(model: torch.nn.Module, ctx: Context) -> None:
    """Rank 0's buffers (batch-norm statistics) on every process."""
    if not ctx.active:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def barrier(ctx: Context) -> None:
    if ctx.active:
        import torch.distributed as dist

        dist.barrier()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, job, notes: str) -> None:  # noqa: ANN001 - a callable from the caller
    """One process of `launch`: torchrun's environment, then the job; a failure leaves its one-line reason in
    `notes`/RANK for the parent to print, and an exit code."""
    import sys

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    try:
        job(rank)
    except HamcliError as exc:
        (Path(notes) / str(rank)).write_text(f"{type(exc).__name__}\n{exc}")
        sys.exit(exc.exit_code)


def launch(devices: int, job, report=None) -> None:  # noqa: ANN001
    """`hamcli train --devices N`: N processes on this machine, each running `job(rank)` with the environment
    torchrun would give it (the same code path as a torchrun launch). A process that fails stops the
    others at once, and its reason is raised here as one LaunchFailed line: process 0's where it failed too
    (an error in the options or the data is the same on every process), else the failing one's. `job` must be
    picklable; `report` is kept for callers of hamcli 0.1 and unused."""
    import logging
    import tempfile

    import torch.multiprocessing as mp

    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)  # the one line below says it
    if devices < 1:
        raise UsageError(f"--devices {devices}: at least 1")
    usable = torch.cuda.device_count() if torch.cuda.is_available() else os.cpu_count() or 1
    if devices > usable:
        what = "GPUs" if torch.cuda.is_available() else "CPU cores (and no GPU)"
        raise UsageError(f"--devices {devices}: this machine has {usable} {what}; give at most {usable}")
    with tempfile.TemporaryDirectory(prefix="hamcli-ranks-") as notes:
        try:
            mp.spawn(_worker, args=(devices, _free_port(), job, notes), nprocs=devices, join=True)
        except mp.ProcessExitedException as exc:
            reason = _reason(Path(notes), exc.error_index)
            if reason is not None:
                _, text, rank = reason
                raise LaunchFailed(f"{text} (process {rank} of {devices}; the others were stopped)",
                                   exc.exit_code) from None
            raise LaunchFailed(f"process {exc.error_index} of {devices} failed (exit code {exc.exit_code}); the "
                               "others were stopped", exc.exit_code) from None
        except mp.ProcessRaisedException as exc:
            last = str(exc).strip().splitlines()[-1]
            raise LaunchFailed(f"a training process failed ({last}); the others were stopped", 1) from None


def _reason(notes: Path, failed: int) -> tuple[str, str, int] | None:
    """(error kind, message, rank): process 0's reason if it left one, else the failed process's; a peer's
    note that another process failed is only used when nothing better was left."""
    import time

    time.sleep(0.2)  # process 0 may be a moment behind the process that failed first
    found = {}
    for path in notes.iterdir():
        kind, _, text = path.read_text().partition("\n")
        found[int(path.name)] = (kind, text, int(path.name))
    for rank in (0, failed, *sorted(found)):
        if rank in found and found[rank][0] != "PeerFailed":
            return found[rank]
    return found.get(failed) or next(iter(found.values()), None)


class LaunchFailed(HamcliError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
