"""Progress of ``sweep launch`` and ``sweep validate``: done / total, simulations per second,
failures, ETA.

Rates and the ETA count only this launch's simulations (points done by an
earlier launch show in done / total but not in the rate).  On a terminal the
bar is drawn on stderr with rich (:class:`RichProgress`); otherwise (a batch
job's log, ``2> log``, ``ray job logs --follow``) :class:`LogProgress` writes
one plain line every :data:`LOG_INTERVAL_S` seconds and a last one at the end.
:func:`make_progress` picks one; :class:`NullProgress` is the silent stand-in.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any, Protocol

REFRESH_PER_SECOND = 4
LOG_INTERVAL_S = 30.0  # one progress line per this many seconds when stderr is not a terminal
LOG_INTERVAL_ENV = "KVMSWEEP_PROGRESS_S"  # overrides LOG_INTERVAL_S (seconds)


class ProgressReporter(Protocol):
    def start(self, total: int, already_done: int) -> None: ...
    def advance(self, n: int, failed: int) -> None: ...
    def refresh(self) -> None: ...
    def stopping(self) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    def start(self, total: int, already_done: int) -> None:
        return None

    def advance(self, n: int, failed: int) -> None:
        return None

    def refresh(self) -> None:
        return None

    def stopping(self) -> None:
        return None

    def close(self) -> None:
        return None


class _Counts:
    """What both reporters count: done before, done now, failed, started; the rate and the ETA."""

    def __init__(self) -> None:
        self.total = 0
        self.done_before = 0
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()

    def begin(self, total: int, already_done: int) -> None:
        self.total, self.done_before, self.started = total, already_done, time.monotonic()
        self.done = self.failed = 0

    def add(self, n: int, failed: int) -> None:
        self.done += n
        self.failed += failed

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> str:
        left = self.total - self.done_before - self.done
        return clock(left / self.rate) if self.rate > 0 else "-"


class LogProgress(_Counts):
    """One plain line per ``interval_s`` on a stream (no terminal codes), and one at the end:
    ``progress: 1200/5000 points (24.0 %), 3.1 sims/s, 2 failed, elapsed 0:06:27, ETA 0:20:25``."""

    def __init__(
        self, stream: IO[str] | None = None, interval_s: float | None = None, label: str = "progress"
    ) -> None:
        super().__init__()
        self.stream = stream
        env = os.environ.get(LOG_INTERVAL_ENV)
        self.interval_s = interval_s if interval_s is not None else float(env) if env else LOG_INTERVAL_S
        self.label = label
        self.last = 0.0

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(text + "\n")
        stream.flush()

    def line(self) -> str:
        done = self.done_before + self.done
        pct = 100.0 * done / self.total if self.total else 100.0
        elapsed = clock(time.monotonic() - self.started)
        return (
            f"{self.label}: {done}/{self.total} points ({pct:.1f} %), {self.rate:.1f} sims/s, "
            f"{self.failed} failed, elapsed {elapsed}, ETA {self.eta}"
        )

    def start(self, total: int, already_done: int) -> None:
        self.begin(total, already_done)
        self.last = time.monotonic()
        self._write(self.line())

    def advance(self, n: int, failed: int) -> None:
        self.add(n, failed)
        self.refresh()

    def refresh(self) -> None:
        if time.monotonic() - self.last >= self.interval_s:
            self.last = time.monotonic()
            self._write(self.line())

    def stopping(self) -> None:
        self._write(f"{self.label}: stopping, storing finished batches")

    def close(self) -> None:
        self._write(self.line())


class RichProgress(_Counts):
    """A rich progress bar; the rate and ETA are this launch's own."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        super().__init__()
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} sims/s"),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            console=self.console,
            refresh_per_second=REFRESH_PER_SECOND,
        )
        self.task: Any = None

    def start(self, total: int, already_done: int) -> None:
        self.begin(total, already_done)
        self.progress.start()
        self.task = self.progress.add_task(
            "sweep", total=total, completed=already_done, rate="-", failed=0, eta="-"
        )

    def advance(self, n: int, failed: int) -> None:
        self.add(n, failed)
        self.refresh()

    def refresh(self) -> None:
        if self.task is not None:
            self.progress.update(
                self.task,
                completed=self.done_before + self.done,
                rate=f"{self.rate:.1f}",
                failed=self.failed,
                eta=self.eta,
            )

    def stopping(self) -> None:
        self.console.print("[yellow]stopping: storing finished batches (press Ctrl-C again to abort)")

    def close(self) -> None:
        self.refresh()
        self.progress.stop()


def make_progress(quiet: bool = False, stream: IO[str] | None = None) -> ProgressReporter:
    """Nothing when ``quiet``; a rich bar when stderr is a terminal; else log lines."""
    if quiet:
        return NullProgress()
    stream = stream or sys.stderr
    if stream.isatty():
        from rich.console import Console

        return RichProgress(Console(file=stream))
    return LogProgress(stream)


def clock(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
