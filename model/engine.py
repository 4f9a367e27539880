"""A small discrete-event loop.  It knows nothing about KVM.

Time is an integer count of nanoseconds.  Events live in a heap keyed by
``(time, seq)``; ``seq`` comes from one per-engine counter, so events at the
same instant run in the order they were scheduled (FIFO) and no second
ordering can disagree with the heap key.  A handler is a plain callable with
positional arguments; it schedules further events itself.  Cancelling marks
the entry dead (lazy deletion) instead of searching the heap.

A :class:`Timer` is a re-armable event for deadlines that are usually moved
or cancelled before they fire (the CFS slice end, the PLE exit).  It owns at
most one live heap entry.  Arming it takes a fresh ``seq`` from the engine's
counter, exactly as scheduling a new event would, and the timer fires with
the ``(deadline, seq)`` of its *latest* arm.  So a timer runs, among events at
the same instant, exactly where a cancel-and-reschedule would have put it,
and the results are identical to that (bit for bit: same order, same ``seq``
numbers for every other event).  What changes is the heap traffic:

- armed later than (or at the same time as) its live entry: no push; when the
  old entry pops, the timer re-files itself at ``(deadline, seq)`` (a key in
  the future, so the heap order is that of a push made at arm time);
- armed earlier: one push, and the old entry is marked dead;
- cancelled: O(1) (the deadline is cleared; the entry is dropped when it pops).

A timer therefore leaves at most one dead entry per "moved earlier" and never
one per cancel; re-filing and dropping are not counted as processed events.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import count
from typing import Any

# An event entry: [time_ns, seq, handler or None when cancelled, args].
Event = list

_push = heapq.heappush


class Engine:
    __slots__ = ("_heap", "_seq", "now", "processed", "timer_lazy", "timer_refiled")

    def __init__(self) -> None:
        self.now: int = 0
        self._heap: list[Event] = []
        self._seq = count()
        self.processed: int = 0
        self.timer_lazy: int = 0  # timer arms that pushed nothing
        self.timer_refiled: int = 0  # timer entries pushed again when a moved-later entry popped

    def at(self, time_ns: int, handler: Callable[..., Any], *args: Any) -> Event:
        """Schedule ``handler(*args)`` at absolute time ``time_ns`` (never in the past)."""
        if time_ns < self.now:
            raise ValueError(f"event scheduled in the past: {time_ns} < {self.now}")
        entry = [time_ns, next(self._seq), handler, args]
        _push(self._heap, entry)
        return entry

    def after(self, delay_ns: int, handler: Callable[..., Any], *args: Any) -> Event:
        """Schedule ``handler(*args)`` ``delay_ns`` from now."""
        entry = [self.now + delay_ns, next(self._seq), handler, args]
        _push(self._heap, entry)
        return entry

    def timer(self, handler: Callable[..., Any], *args: Any) -> Timer:
        """A disarmed re-armable timer that calls ``handler(*args)`` when it fires."""
        return Timer(self, handler, args)

    @staticmethod
    def cancel(entry: Event | Timer | None) -> None:
        """Cancel a scheduled event entry, or disarm a timer."""
        if entry is not None:
            if entry.__class__ is list:
                entry[2] = None
            else:
                entry.deadline = -1

    @property
    def scheduled(self) -> int:
        """Sequence numbers handed out: events scheduled plus timer arms."""
        return self._seq.__reduce__()[1][0]

    @property
    def pushes(self) -> int:
        """Heap entries pushed so far."""
        return self.scheduled - self.timer_lazy + self.timer_refiled

    def pending(self) -> list[Event]:
        """Live scheduled events, for inspection (invariant checks).

        A timer's entry is listed while the timer is armed (its args are the timer's)."""
        out = []
        for entry in self._heap:
            handler = entry[2]
            if handler is None:
                continue
            timer = getattr(handler, "__self__", None)
            if timer.__class__ is Timer:
                if timer.entry is entry and timer.deadline >= 0:
                    out.append([timer.deadline, timer.seq, timer.handler, timer.args])
                continue
            out.append(entry)
        return out

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


class Timer:
    """A re-armable event (see the module docstring for its ordering rule)."""

    __slots__ = ("_due_cb", "args", "deadline", "engine", "entry", "handler", "seq")

    def __init__(self, engine: Engine, handler: Callable[..., Any], args: tuple) -> None:
        self.engine = engine
        self.handler = handler
        self.args = args
        self.deadline: int = -1  # -1: disarmed
        self.seq: int = -1  # seq of the latest arm
        self.entry: Event | None = None  # the one heap entry that may fire it
        self._due_cb = self._due  # one bound method, shared by all its entries

    @property
    def armed(self) -> bool:
        return self.deadline >= 0

    def arm(self, time_ns: int) -> None:
        """(Re-)arm for absolute time ``time_ns`` (never in the past)."""
        eng = self.engine
        if time_ns < eng.now:
            raise ValueError(f"timer armed in the past: {time_ns} < {eng.now}")
        self.deadline = time_ns
        seq = self.seq = next(eng._seq)
        entry = self.entry
        if entry is not None:
            if entry[0] <= time_ns:
                eng.timer_lazy += 1  # _due re-files it when the old entry pops
                return
            entry[2] = None  # moved earlier: the old entry is dead
        entry = self.entry = [time_ns, seq, self._due_cb, ()]
        _push(eng._heap, entry)

    def cancel(self) -> None:
        self.deadline = -1

    def _due(self) -> None:
        """The timer's heap entry popped: fire, re-file at the latest arm's key, or drop."""
        eng = self.engine
        entry = self.entry
        deadline = self.deadline
        if deadline == entry[0] and self.seq == entry[1]:
            self.entry = None
            self.deadline = -1
            self.handler(*self.args)
            return
        eng.processed -= 1  # bookkeeping, not an event
        if deadline < 0:
            self.entry = None
            return
        eng.timer_refiled += 1
        entry = self.entry = [deadline, self.seq, self._due_cb, ()]
        _push(eng._heap, entry)
