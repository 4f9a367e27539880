"""Errors a user can cause, and how every ``sweep`` command reports them.

A :class:`UserError` carries its problems (one ``key: what is wrong; allowed:
...`` line each) and an exit status: :data:`EXIT_USAGE` (2) for bad input,
:data:`EXIT_IO` (3) for a file system that refuses (read-only, full, not a
directory).  :func:`reported` wraps a command so that such an error is one
paragraph on stderr and that exit status, never a traceback.  Nothing is
written before the checks that raise them (the commands check first).
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from typing import Any, TypeVar

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_IO = 3
EXIT_CLUSTER = 4
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """Something the user can fix; :meth:`paragraph` is what the command prints."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str] | str, what: str = "", hint: str = ""):
        given = [problems] if isinstance(problems, str) else list(problems)
        # one line per problem, whatever the user typed: a key or value with a line break or a
        # control character is shown escaped, so the paragraph keeps its shape
        self.problems = [_one_line(p) for p in given]
        self.what = what
        self.hint = hint
        super().__init__(self.paragraph())

    def paragraph(self) -> str:
        """One paragraph: a headline and, when there are several problems, one indented line each."""
        head = self.what or "sweep"
        if len(self.problems) == 1:
            text = f"{head}: {self.problems[0]}"
        else:
            text = f"{head}:\n  - " + "\n  - ".join(self.problems)
        return f"{text}\n  {self.hint}" if self.hint else text


def _one_line(problem: str) -> str:
    """``problem`` with line breaks and other non-printable characters escaped (``\\n``)."""
    if problem.isprintable():
        return problem
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in problem)


class OutputError(UserError):
    """The output location cannot be used (not a directory, read-only, full, a device)."""

    exit_code = EXIT_IO


def os_problem(path: Any, err: OSError) -> str:
    """An OSError as ``PATH: reason`` in words."""
    reasons = {
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.ENOTDIR: "a file is in the way (not a directory)",
        errno.EEXIST: "exists and is not a directory",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EISDIR: "is a directory",
    }
    reason = reasons.get(err.errno or 0, err.strerror or str(err))
    where = err.filename if err.filename is not None else path
    return f"{where}: {reason}"


def say(message: str) -> None:
    """A plain paragraph on stderr (no wrapping, no markup: messages quote user text)."""
    from rich.console import Console

    Console(stderr=True).print(message, markup=False, highlight=False, soft_wrap=True)


def reported(command: F) -> F:
    """Run a CLI command; a :class:`UserError` is its paragraph on stderr and its exit status."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import typer

        try:
            return command(*args, **kwargs)
        except UserError as error:
            say(error.paragraph())
            raise typer.Exit(error.exit_code) from None
        except OSError as error:  # the file system refused (read-only, full, ...): not a bug of ours
            say(f"sweep: {os_problem('', error)}; what finished is kept")
            raise typer.Exit(EXIT_IO) from None
        except KeyboardInterrupt:
            say("sweep: aborted; what finished is kept, run again to resume")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]
