"""The progress bar of ``sweep launch``: done / total, simulations per second, failures, ETA.

Rates and the ETA count only this launch's simulations (points done by an
earlier launch show in done / total but not in the rate).  The bar is drawn on
stderr with rich; :class:`NullProgress` is the silent stand-in.
"""

from __future__ import annotations

import time
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

REFRESH_PER_SECOND = 4


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


class RichProgress:
    """A rich progress bar; the rate and ETA are this launch's own."""

    def __init__(self, console: Console | None = None) -> None:
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
        self.task = None
        self.total = 0
        self.done_before = 0
        self.done = 0
        self.failed = 0
        self.started = time.perf_counter()

    def start(self, total: int, already_done: int) -> None:
        self.total, self.done_before, self.started = total, already_done, time.perf_counter()
        self.progress.start()
        self.task = self.progress.add_task(
            "sweep", total=total, completed=already_done, rate="-", failed=0, eta="-"
        )

    def advance(self, n: int, failed: int) -> None:
        self.done += n
        self.failed += failed
        self.refresh()

    def refresh(self) -> None:
        if self.task is None:
            return
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done_before - self.done
        eta = _clock(left / rate) if rate > 0 else "-"
        self.progress.update(
            self.task, completed=self.done_before + self.done, rate=f"{rate:.1f}", failed=self.failed, eta=eta
        )

    def stopping(self) -> None:
        self.console.print("[yellow]stopping: storing finished batches (press Ctrl-C again to abort)")

    def close(self) -> None:
        self.refresh()
        self.progress.stop()


def _clock(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
