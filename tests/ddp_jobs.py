"""Jobs for the two-process tests: importable by the spawned processes (spawn pickles them by name)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from hamcli.errors import DataError
from hamcli.training.engine import TrainEvents


class Recorder(TrainEvents):
    """Writes the rows each rank trains on, per epoch."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def shard(self, epoch: int, rank: int, rows: list[int]) -> None:
        (self.folder / f"rows-{epoch}-{rank}.json").write_text(json.dumps(rows))
        # what dropout would draw next on this rank (the global generator, seeded per epoch and rank)
        state = torch.get_rng_state()
        (self.folder / f"draw-{epoch}-{rank}.json").write_text(json.dumps(torch.rand(4).tolist()))
        torch.set_rng_state(state)
        self.rank = rank

    def epoch_end(self, record: dict) -> None:
        keep = {k: v for k, v in record.items() if k.startswith(("train_loss", "train_acc", "val_"))}
        (self.folder / f"record-{record['epoch']}-{self.rank}.json").write_text(json.dumps(keep))


def train_and_record(home: str, folder: str, cfg, rank: int) -> None:  # noqa: ANN001 - a TrainConfig
    from hamcli.training import distributed
    from hamcli.training.engine import Trainer
    from hamcli.training.runner import run_claimed

    os.environ["HAMCLI_HOME"] = home
    trainer = Trainer(cfg, Recorder(Path(folder)))
    try:
        run_claimed(trainer)
        torch.save(trainer.model.state_dict(), Path(folder) / f"model-{rank}.pt")
        (Path(folder) / f"run-{rank}.txt").write_text(str(trainer.run_dir))
    finally:
        distributed.shutdown(trainer.dist)


def fail_on_rank_one(home: str, rank: int) -> None:
    """Rank 1 fails after joining the group; rank 0 waits for it at a barrier, which must not hang."""
    import datetime

    import torch.distributed as dist

    os.environ["HAMCLI_HOME"] = home
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    if rank == 1:
        raise DataError("metadata.csv: rank 1 could not read its data")
    dist.barrier()
