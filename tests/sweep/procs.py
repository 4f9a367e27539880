"""Processes and sockets of a process tree, read from /proc (what ``ps`` and ``ss -ltunp`` show).

Tests use these to check what a launcher started: which addresses its
processes listen on, whether any of them outlives it, which Ray temp dirs it
used; and to end, by pid, only the processes that a test started.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

# /proc/net/{tcp,udp}[6] socket states: TCP_LISTEN, and TCP_CLOSE for a bound UDP socket.
LISTEN_STATES = {"tcp": "0A", "udp": "07"}
TEMP_DIR_FLAG = re.compile(r"--temp[_-]dir=(\S+)")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def describe(pid: int) -> str:
    """``PID STATE COMMAND``, for failure messages."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    return f"{pid} {state} {cmdline(pid)[:100]}"


def wait_dead(pids: set[int], timeout_s: float) -> set[int]:
    """Wait until none of ``pids`` is alive, at most ``timeout_s``; the ones still alive."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = {p for p in pids if alive(p)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def reap(pids: set[int], grace_s: float = 3.0) -> None:
    """SIGKILL what is left of ``pids`` after ``grace_s`` (only processes the test started)."""
    for pid in wait_dead(pids, grace_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class Listener:
    proto: str  # tcp | udp
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    pid: int
    name: str

    @property
    def loopback(self) -> bool:
        addr = self.address
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return addr.is_loopback

    def __str__(self) -> str:
        return f"{self.proto} {self.address}:{self.port} ({self.name}, pid {self.pid})"


def _address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net's address: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def listeners(pids: set[int]) -> list[Listener]:
    """TCP sockets in LISTEN and bound UDP sockets held by ``pids`` (as ``ss -ltunp`` lists them)."""
    owner: dict[int, int] = {}
    for pid in pids:
        for inode in _socket_inodes(pid):
            owner.setdefault(inode, pid)
    found = []
    for proto, state in LISTEN_STATES.items():
        for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    inode = int(fields[9])
                    if fields[3] != state or inode not in owner:
                        continue
                    hex_addr, hex_port = fields[1].split(":")
                    pid = owner[inode]
                    name = Path(f"/proc/{pid}/comm").read_text().strip() if alive(pid) else "?"
                    found.append(Listener(proto, _address(hex_addr), int(hex_port, 16), pid, name))
    return found


def ray_temp_dirs(pids: set[int]) -> set[Path]:
    """The Ray temp dirs named on the command lines of ``pids`` (raylet, GCS, agents)."""
    return {Path(m) for pid in pids for m in TEMP_DIR_FLAG.findall(cmdline(pid))}
