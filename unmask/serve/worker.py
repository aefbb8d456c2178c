"""Inference off the event loop, with a bounded number of requests admitted at once.

Why this shape: scoring a video is seconds of CPU (decode, HOG, the network, Grad-CAM); running it on the
event loop would stall every other request, and an unbounded backlog turns a burst into minutes of latency and
unbounded memory. A request takes a *slot* before its upload is read (``workers`` running + ``queue_size``
waiting); with none free it is answered 429 at once, with a ``Retry-After`` estimated from recent job times.
The slot is held until the job's thread really finishes: a request that timed out (the client got 504) keeps
its slot until the worker thread is done with it, so timeouts can never let more work pile up than the bound.
A job whose request timed out before it started is skipped.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable


class Slot:
    """One admitted request. Released when both the request and (if started) its job are done with it."""

    def __init__(self, pool: "InferencePool") -> None:
        self._pool = pool
        self._holders = 1  # the request
        self._lock = threading.Lock()
        self.cancelled = False  # set when the request gave up (time limit, client gone) before the job started

    def hold(self) -> None:
        with self._lock:
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            done = self._holders == 0
        if done:
            self._pool._free()


class JobSkipped(Exception):
    """The job's request had already given up when a worker got to it."""


class InferencePool:
    """``workers`` threads, at most ``workers + queue_size`` requests admitted; counters for ``/v1/health``."""

    def __init__(self, workers: int = 1, queue_size: int = 4) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if queue_size < 0:
            raise ValueError("queue_size must be >= 0")
        self.workers = int(workers)
        self.capacity = int(workers) + int(queue_size)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="unmask-serve")
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._recent = deque(maxlen=20)  # seconds of the last jobs (Retry-After)
        self.counts = {"completed": 0, "rejected": 0, "timed_out": 0, "failed": 0}

    def try_admit(self) -> Slot | None:
        """A slot, or None when ``capacity`` requests are already admitted (the caller answers 429)."""
        with self._lock:
            if self._admitted >= self.capacity:
                self.counts["rejected"] += 1
                return None
            self._admitted += 1
        return Slot(self)

    def _free(self) -> None:
        with self._lock:
            self._admitted -= 1

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the mean recent job time x admitted jobs per worker (1..120)."""
        with self._lock:
            mean = sum(self._recent) / len(self._recent) if self._recent else 2.0
            ahead = max(self._admitted - self.capacity + self.workers, 1) / self.workers
        return int(min(max(math.ceil(mean * ahead), 1), 120))

    async def run(self, slot: Slot, fn: Callable[[], Any], timeout: float) -> Any:
        """Run ``fn`` on a worker thread; ``asyncio.TimeoutError`` after ``timeout`` seconds (the thread keeps
        the slot until it returns)."""
        slot.hold()

        def job():
            try:
                if slot.cancelled:
                    raise JobSkipped()
                with self._lock:
                    self._running += 1
                t0 = time.perf_counter()
                try:
                    out = fn()
                finally:
                    dt = time.perf_counter() - t0
                    with self._lock:
                        self._running -= 1
                        self._recent.append(dt)
                return out
            finally:
                slot.release()

        fut = asyncio.get_running_loop().run_in_executor(self._executor, job)
        # a job whose request already timed out ends unobserved: read its outcome so it is not logged as lost
        fut.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        try:
            out = await asyncio.wait_for(asyncio.shield(fut), timeout=max(timeout, 0.001))
        except asyncio.TimeoutError:
            slot.cancelled = True
            with self._lock:
                self.counts["timed_out"] += 1
            raise
        except Exception:
            with self._lock:
                self.counts["failed"] += 1
            raise
        with self._lock:
            self.counts["completed"] += 1
        return out

    def stats(self) -> dict:
        with self._lock:
            return {"workers": self.workers, "capacity": self.capacity, "admitted": self._admitted,
                    "running": self._running, "waiting_or_uploading": self._admitted - self._running, **self.counts}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["InferencePool", "JobSkipped", "Slot"]
