"""Prefetch an iterator's next items in a background thread, in order.

With no DataLoader workers the next batch is otherwise made only after the step that needs it
asks; a thread makes it while the step runs. Items come out in the iterator's own order, so
training is unchanged.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetch(Iterator[T]):
    """Iterate `source` `depth` items ahead in a daemon thread; its exceptions re-raise here."""

    def __init__(self, source: Iterator[T], depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(source,), name="prefetch", daemon=True)
        self._thread.start()

    def _fill(self, source: Iterator[T]) -> None:
        import torch

        # One intra-op thread here (the setting is per thread): torch work in this thread must not
        # start a second team of compute threads on the cores the training step is using.
        torch.set_num_threads(1)
        try:
            for item in source:
                if not self._put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer, raised at the item that failed
            self._put((_DONE, error))
            return
        self._put((_DONE, None))

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> T:
        item, error = self._queue.get()
        if item is _DONE:
            self._queue.put((_DONE, error))  # later calls see the same end
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the thread (it finishes the item it is making) and drop what it made."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()
