"""The mmap_sem cache line (model.mm.SharedLine): serialised locked RMWs at the published HITM cost."""

from types import SimpleNamespace

import pytest

from model import mm
from model.hardware import SKYLAKE
from model.host import Pcpu
from model.simulate import build
from model.simulate import run as run_host
from tests.model.conftest import scenario

# 2 sockets x 2 cores x 2 threads, numbered as Linux does: 0,1 socket 0; 2,3 socket 1; 4-7 their siblings
P = [Pcpu(id=i, socket=(i % 4) // 2, sibling=(i + 4) % 8) for i in range(8)]


def _h(now: int = 0):
    return SimpleNamespace(engine=SimpleNamespace(now=now), prof=SKYLAKE)


def _v(cpu: int):
    return SimpleNamespace(pcpu=P[cpu])


def test_rmws_issued_together_are_served_one_after_another_at_the_hitm_cost():
    line, h = mm.SharedLine(), _h()
    assert line.rmw(h, _v(0)) == pytest.approx(SKYLAKE.cache_hit_ns)  # first touch: nobody had it
    # socket 0 -> the other core of socket 0: a local HITM, queued behind nothing
    assert line.rmw(h, _v(1)) == pytest.approx(SKYLAKE.cache_hit_ns + SKYLAKE.c2c_local_ns)
    # -> socket 1, issued at the same instant: waits for both, then a cross-socket transfer
    assert line.rmw(h, _v(2)) == pytest.approx(
        SKYLAKE.cache_hit_ns + SKYLAKE.c2c_local_ns + SKYLAKE.c2c_remote_ns)
    # -> cpu 6, cpu 2's SMT sibling: the line is already in the core
    t = SKYLAKE.cache_hit_ns + SKYLAKE.c2c_local_ns + SKYLAKE.c2c_remote_ns
    assert line.rmw(h, _v(6)) == pytest.approx(t + SKYLAKE.cache_hit_ns)
    assert line.transfers == 2
    assert line.busy_ns == pytest.approx(t + SKYLAKE.cache_hit_ns)


def test_an_rmw_after_the_line_went_idle_does_not_wait():
    line = mm.SharedLine()
    line.rmw(_h(0), _v(0))
    assert not line.busy(1_000)
    assert line.rmw(_h(1_000), _v(2)) == pytest.approx(SKYLAKE.c2c_remote_ns)  # only its transfer


def test_a_retried_cmpxchg_pays_the_transfer_again():
    line = mm.SharedLine()
    line.rmw(_h(0), _v(0))
    assert line.rmw(_h(1_000), _v(1), count=2) == pytest.approx(2 * SKYLAKE.c2c_local_ns)
    assert line.transfers == 2


def test_published_figures_are_ordered():
    assert SKYLAKE.cache_hit_ns < SKYLAKE.c2c_local_ns < SKYLAKE.c2c_remote_ns


def _ebizzy(**kw):
    sc = scenario(**{"workload.kind": "ebizzy", "vm.vcpus": 8, "sim.duration_ms": 30, "sim.warmup_ms": 0, **kw})
    h = build(sc, 1)
    run_host(h)
    return h, sc


def test_every_fault_books_the_mmap_sem_line_and_it_is_never_over_booked():
    h, sc = _ebizzy()
    line = h.vms[0].mm.mmap_sem_line
    records = h.stats.work[0]["records"]
    pages = 512 * 1024 // mm.PAGE_SIZE
    assert records > 0
    # down_read_trylock + up_read per fault, down_read + up_read per madvise: >= 2 RMWs a page
    # (the 1 x 4 x 2 host has one socket: every transfer is a local HITM or a hit in the core)
    assert line.busy_ns >= records * (2 * pages + 2) * SKYLAKE.cache_hit_ns
    assert line.transfers >= records * pages  # 8 vCPUs on 4 cores: most RMWs move the line
    # a FIFO server: booked time never exceeds the time that passed (+ what is queued at the end)
    assert line.busy_ns <= sc.sim.duration_ms * 1e6 + (line.free_at - h.engine.now)
