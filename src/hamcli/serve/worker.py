"""The one thread that runs the model for `hamcli serve`, behind a bounded queue.

The event loop only parses requests and waits; decoding and the model run here, one job at a time, so
`/healthz` and new connections are answered at once however busy the model is. Prediction jobs that are
waiting together are run as one batch: hamcli's numerics are the same for every batch size, so batching
changes no answer, only the wait. A full queue refuses at once (the caller answers 503 with
Retry-After); a job whose caller gave up (timeout, closed connection) before it started is dropped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


class Busy(Exception):
    """The queue is full: come back later."""


@dataclass
class Job:
    kind: str  # "predict" (batched with other predict jobs) or "call" (run alone)
    payload: Any
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """The caller no longer waits: drop the job if it has not started."""
        self.cancelled.set()


class ModelWorker:
    """`predict_many(uploads) -> rows` for batched predict jobs; any callable for the others."""

    def __init__(self, predict_many: Callable[[list[Any]], list[Any]], max_queue: int = 16, max_batch: int = 16
                 ) -> None:
        self.predict_many = predict_many
        self.max_batch = max_batch
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.completed = 0
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="hamcli-model", daemon=True)
        self.thread.start()

    def submit(self, kind: str, payload: Any) -> Job:
        job = Job(kind, payload)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise Busy from None
        return job

    @property
    def waiting(self) -> int:
        return self.jobs.qsize()

    def close(self) -> None:
        self.jobs.put(None)

    def _next_live(self, block: bool) -> Job | None:
        while True:
            try:
                job = self.jobs.get(block=block)
            except queue.Empty:
                return None
            if job is None or not job.cancelled.is_set():
                return job
            self.dropped += 1
            job.future.cancel()

    def _run(self) -> None:
        held: Job | None = None
        while True:
            job = held or self._next_live(block=True)
            held = None
            if job is None:
                return
            if job.kind != "predict":
                self._finish([job], lambda jobs: [jobs[0].payload()])
                continue
            batch = [job]
            while len(batch) < self.max_batch:
                more = self._next_live(block=False)
                if more is None:
                    break
                if more.kind != "predict":  # keep the order: run it after this batch
                    held = more
                    break
                batch.append(more)
            self._finish(batch, lambda jobs: self.predict_many([j.payload for j in jobs]))

    def _finish(self, batch: list[Job], work: Callable[[list[Job]], list[Any]]) -> None:
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]  # a cancelled future: dropped
        if not batch:
            return
        try:
            results = work(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request, which answers for it
            for job in batch:
                job.future.set_exception(exc)
            return
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)
        self.completed += len(batch)
