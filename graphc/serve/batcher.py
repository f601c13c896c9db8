"""Dynamic batching: rows of concurrent requests run together, in calls of the export's batch.

A request of any number of rows is cut into chunks of at most the batch size. One worker
thread runs the model: it takes the oldest chunk, adds the chunks already waiting while
they fit, and, while requests are still being received (`expecting()`), those arriving
within `max_delay` of the first; then it pads the batch with zero rows, runs one call and
hands each chunk its rows of the outputs. A lone request runs at once: nothing is waited
for that is not on its way. Without
batching, every chunk is a call of its own. An export without a batch axis runs each
request as one call. The device runs one call at a time anyway, so the worker is the
only caller.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Chunk:
    """Rows of one request waiting for a call; `future` gets their outputs."""

    arrays: list[np.ndarray]
    rows: int
    future: Future = field(default_factory=Future)


class Batcher:
    """Runs `model` (a graphc.runtime.LoadedFunction) on chunks submitted from any thread."""

    def __init__(self, model, batch_size: int | None, batching: bool = True,
                 max_delay: float = 0.002, expecting: Callable[[], int] = lambda: 0) -> None:
        self.model, self.batch_size, self.expecting = model, batch_size, expecting
        self.batching, self.max_delay = batching and batch_size is not None, max_delay
        self.calls = 0
        self.rows = 0
        self._pending: deque[Chunk] = deque()
        self._ready = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="graphc-batcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, arrays: list[np.ndarray], rows: int) -> list[Future]:
        """Queue a request's rows (one array per input); one future per chunk, in order."""
        size = self.batch_size or rows
        chunks = [Chunk([a[start:start + size] for a in arrays], min(size, rows - start))
                  for start in range(0, rows, size)] if self.batch_size else \
            [Chunk(arrays, rows)]
        with self._ready:
            if self._closing:
                raise RuntimeError("the server is shutting down")
            self._pending.extend(chunks)
            self._ready.notify()
        return [c.future for c in chunks]

    def close(self) -> None:
        """Run what is queued, then stop the worker."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                return
            self._run(batch)

    def _next_batch(self) -> list[Chunk]:
        """The chunks of the next call: [] once closing and drained."""
        with self._ready:
            while not self._pending:
                if self._closing:
                    return []
                self._ready.wait()
            batch = [self._pending.popleft()]
            if not self.batching:
                return batch
            rows = batch[0].rows
            deadline = time.monotonic() + self.max_delay
            while rows < self.batch_size:
                if not self._pending:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closing or not self.expecting():
                        break
                    self._ready.wait(left)
                    continue
                if rows + self._pending[0].rows > self.batch_size:
                    break
                chunk = self._pending.popleft()
                batch.append(chunk)
                rows += chunk.rows
            return batch

    def _run(self, batch: list[Chunk]) -> None:
        """One call for the batch; each chunk's future gets its rows (or the error)."""
        try:
            outputs = self.model.run(self._feeds(batch))
        except BaseException as err:        # the worker goes on with the next batch
            for chunk in batch:
                chunk.future.set_exception(err)
            return
        self.calls += 1
        start = 0
        for chunk in batch:
            self.rows += chunk.rows
            if self.batch_size is None:
                chunk.future.set_result(outputs)
            else:
                chunk.future.set_result([o[start:start + chunk.rows] for o in outputs])
            start += chunk.rows

    def _feeds(self, batch: list[Chunk]) -> list[np.ndarray]:
        """One array per input: the chunks' rows, padded with zeros to the batch size."""
        if self.batch_size is None:
            return batch[0].arrays
        padding = self.batch_size - sum(c.rows for c in batch)
        feeds = []
        for index, spec in enumerate(self.model.inputs):
            parts = [c.arrays[index] for c in batch]
            if padding:
                parts.append(np.zeros((padding,) + spec.shape[1:], spec.dtype))
            feeds.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
        return feeds
