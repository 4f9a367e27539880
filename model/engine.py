"""A small discrete-event loop.  It knows nothing about KVM.

Time is an integer count of nanoseconds.  Events live in a heap keyed by
``(time, seq)``; ``seq`` comes from one per-engine counter, so events at the
same instant run in the order they were scheduled (FIFO) and no second
ordering can disagree with the heap key.  A handler is a plain callable with
positional arguments; it schedules further events itself.  Cancelling marks
the entry dead (lazy deletion) instead of searching the heap.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import count
from typing import Any

# An event entry: [time_ns, seq, handler or None when cancelled, args].
Event = list


class Engine:
    __slots__ = ("_heap", "_seq", "now", "processed")

    def __init__(self) -> None:
        self.now: int = 0
        self._heap: list[Event] = []
        self._seq = count()
        self.processed: int = 0

    def at(self, time_ns: int, handler: Callable[..., Any], *args: Any) -> Event:
        """Schedule ``handler(*args)`` at absolute time ``time_ns`` (never in the past)."""
        if time_ns < self.now:
            raise ValueError(f"event scheduled in the past: {time_ns} < {self.now}")
        entry = [time_ns, next(self._seq), handler, args]
        heapq.heappush(self._heap, entry)
        return entry

    def after(self, delay_ns: int, handler: Callable[..., Any], *args: Any) -> Event:
        """Schedule ``handler(*args)`` ``delay_ns`` from now."""
        entry = [self.now + delay_ns, next(self._seq), handler, args]
        heapq.heappush(self._heap, entry)
        return entry

    @staticmethod
    def cancel(entry: Event | None) -> None:
        if entry is not None:
            entry[2] = None

    @property
    def scheduled(self) -> int:
        """Events scheduled so far (heap pushes)."""
        return self._seq.__reduce__()[1][0]

    def pending(self) -> list[Event]:
        """Live scheduled events, for inspection (invariant checks)."""
        return [entry for entry in self._heap if entry[2] is not None]

    def run(self, until_ns: int) -> None:
        """Process events up to and including ``until_ns``; leave the clock there."""
        heap = self._heap
        pop = heapq.heappop
        processed = 0
        while heap and heap[0][0] <= until_ns:
            time_ns, _, handler, args = pop(heap)
            if handler is None:
                continue
            self.now = time_ns
            handler(*args)
            processed += 1
        self.processed += processed
        self.now = until_ns
