"""kvm-unit-tests ``vmexit`` microbenchmarks, on vCPUs 0 and 1 of the VM.

- ``ipi``: vCPU 0 sends a unicast IPI to vCPU 1 and waits until its handler
  ran; cycles per round trip (the IPI fastpath cover letter's measurement).
- ``tscdeadline_immed``: write a TSC deadline that has already passed; cycles
  from the write to the handler having run (26efe2fd92e5).
- ``tscdeadline``: arm a deadline just after the write returns, then wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model import apic, guest, timer
from model.ops import Call
from model.vcpu import SPIN, Frame, Irq, Task

if TYPE_CHECKING:
    from model.host import Host

# "tscdeadline": kvm-unit-tests x86/vmexit.c tscdeadline() writes rdtsc() + 3000 and spins until
# the handler ran, so a write that returns before the deadline leaves the guest waiting for the expiry.
TSCDEADLINE_DELTA_CYCLES = 3000


def build(h: Host, vm, knobs, rng) -> None:
    task = Task("vmexit", None, vm.vcpus[0])
    task.gen = _loop(h, task, knobs.test, vm.vcpus[1])
    guest.start_task(h, task)


def _loop(h: Host, task: Task, test: str, target):
    v = task.vcpu
    while True:
        t0 = h.engine.now
        if test == "ipi":
            yield Call(_ipi_and_wait, target)
        elif test == "tscdeadline_immed":
            yield Call(_tsc_write, t0 - 1)
        else:
            yield Call(_tsc_write, t0 + round(h.prof.cyc_to_ns(TSCDEADLINE_DELTA_CYCLES)))
        h.stats.sample(v, "vmexit_ops", h.engine.now - t0)


def _ipi_and_wait(h: Host, task: Task, target) -> None:
    v = task.vcpu
    wait = Frame(SPIN, kernel=True, spin_kind="ipi")
    irq = Irq("ipi", h.prof.guest_irq_ns, lambda: guest.release_spin(h, v, wait, lambda: guest.advance(h, task)))
    v.frames.append(wait)
    apic.send(h, v, [target], [irq], None, multicast=False, direct=True)  # apic_icr_write


def _tsc_write(h: Host, task: Task, deadline: int) -> None:
    v = task.vcpu
    wait = Frame(SPIN, kernel=True, spin_kind="timer")
    v.frames.append(wait)
    timer.arm(h, v, deadline, lambda: guest.release_spin(h, v, wait, lambda: guest.advance(h, task)), None)
