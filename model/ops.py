"""The ops a guest task yields: typed records that :func:`model.guest.advance` interprets.

A guest task (a workload thread) is a generator; each op it yields says what
the thread does next in the guest kernel's terms:

- :class:`Run`: execute ``ns`` of work at full speed, in kernel or user mode;
  with a ``batch``, a batch of syscalls that is told when its frame (re)starts
  and when TIF_NEED_RESCHED is set, so it can end at a syscall boundary
  (model.workloads.hackbench);
- :data:`BLOCK`: sleep (``schedule()`` with the task not runnable) until
  another task wakes it;
- :class:`Wake`: ``try_to_wake_up(task)`` (a RESCHEDULE IPI when it must);
- :data:`RETURN_TO_USER`: a syscall returns: ``exit_to_usermode_loop`` calls
  ``schedule()`` if TIF_NEED_RESCHED is set;
- :class:`Call`: ``fn(h, task, *args)`` takes over (a lock, a shootdown, an
  ICR write) and calls ``advance(h, task, value)`` when the task may go on.

Records, not tuples, so that a reader (and a type checker) sees what each
field is.  This module knows nothing of KVM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.vcpu import Task


@dataclass(slots=True)
class Run:
    """``ns`` of work at full speed; ``kernel``: in kernel mode (no user-mode preemption point)."""

    ns: float
    kernel: bool
    batch: Any = None  # a syscall batch with attach(h, vcpu, frame) (model.workloads.hackbench)


@dataclass(slots=True, frozen=True)
class Block:
    """Sleep until another task calls :func:`model.guest.wake_task`."""


@dataclass(slots=True)
class Wake:
    """Wake ``task`` (try_to_wake_up in the guest)."""

    task: Task


@dataclass(slots=True, frozen=True)
class ReturnToUser:
    """A syscall returns to user mode: schedule() if TIF_NEED_RESCHED is set."""


@dataclass(slots=True, init=False)
class Call:
    """``fn(h, task, *args)`` takes over; it resumes the task with ``advance``."""

    fn: Callable[..., None]
    args: tuple[Any, ...]

    def __init__(self, fn: Callable[..., None], *args: Any) -> None:
        self.fn = fn
        self.args = args


BLOCK = Block()
RETURN_TO_USER = ReturnToUser()

Op = Run | Block | Wake | ReturnToUser | Call
