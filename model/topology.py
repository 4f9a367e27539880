"""CPU topology: sockets x cores x SMT threads, numbered as Linux numbers them.

Linux enumerates the first thread of every core first (socket 0's cores, then
socket 1's), then the second threads: on a 2 x 24 x 2 host CPU 0 and CPU 48
are SMT siblings, and CPUs 0-23 and 48-71 sit on socket 0.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CpuTopology:
    sockets: int
    cores_per_socket: int
    threads_per_core: int

    @property
    def pcpus(self) -> int:
        return self.sockets * self.cores_per_socket * self.threads_per_core

    @property
    def cores(self) -> int:
        return self.sockets * self.cores_per_socket

    def core_of(self, cpu: int) -> int:
        return cpu % self.cores

    def socket_of(self, cpu: int) -> int:
        return self.core_of(cpu) // self.cores_per_socket

    def sibling_of(self, cpu: int) -> int | None:
        """The other SMT thread of the core, or None without SMT."""
        if self.threads_per_core == 1:
            return None
        return (cpu + self.cores) % self.pcpus

    def cpus_of_socket(self, socket: int) -> list[int]:
        first = socket * self.cores_per_socket
        return [
            t * self.cores + first + c
            for t in range(self.threads_per_core)
            for c in range(self.cores_per_socket)
        ]
