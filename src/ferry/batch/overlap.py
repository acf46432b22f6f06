"""Work beside scoring, in other threads: read the next record batch ahead (:func:`prefetch`) and write the last one
behind (:class:`WriteBehind`), with a bounded queue each so memory stays bounded too.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["WriteBehind", "prefetch"]


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class WriteBehind:
    """Runs writes in one background thread, in the order they were submitted, at most ``depth`` behind.

    The caller's thread then scores the next record batch while the previous one is encoded and written (Parquet
    encoding and file writes release the GIL). A failed write is re-raised by the next :meth:`submit` or by
    :meth:`drain`. With ``threaded=False`` every write runs at once, in the caller's thread.
    """

    def __init__(self, *, depth: int = 2, threaded: bool = True) -> None:
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferry-write") if threaded else None
        self._pending: collections.deque[Future[None]] = collections.deque()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if self._pool is None:
            fn(*args)
            return
        self._pending.append(self._pool.submit(fn, *args))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def drain(self) -> None:
        """Wait for every submitted write; re-raise the first failure."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Drop writes not yet started and wait for the running one (after a failure elsewhere)."""
        for f in self._pending:
            f.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


T = TypeVar("T")


_DONE = object()


def prefetch(items: Iterator[T], *, depth: int = 2) -> Generator[T, None, None]:
    """Yield ``items`` while a background thread computes up to ``depth`` of them ahead.

    Work that releases the GIL in the consumer (onnxruntime, Parquet writes) then overlaps with the producer's.
    The producer's exceptions are re-raised here, in order; closing this generator stops the producer.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:
            put(_Raised(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="ferry-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()
