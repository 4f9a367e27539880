"""ebizzy -M as the kernel and glibc run it (MODEL.md section 11; model/mm.py, model/workloads/ebizzy.py)."""

import pytest

from model import guest, locks, mm
from model.metrics import compute
from model.simulate import build
from model.simulate import run as run_host
from tests.model.conftest import run, scenario

EBIZZY = {"workload.kind": "ebizzy", "vm.vcpus": 8, "sim.duration_ms": 40, "sim.warmup_ms": 10}


def _host(seed: int = 1, **kw):
    h = build(scenario(**{**EBIZZY, **kw}), seed)
    vcpu, pcpu = run_host(h)
    return h, compute(h, vcpu, pcpu, 0.0)


def test_on_a_dedicated_host_the_vcpus_are_not_halted():
    m = run(**EBIZZY).metrics
    assert m["records_per_s"] > 0
    assert m["halted_pct"] <= 10.0  # >= 90 % not halted: the threads never sleep
    assert m["steal_pct"] == 0.0
    assert m["guest_pct"] > 95.0


def test_beside_cpu_bound_corunners_at_2x_steal_is_tens_of_percent():
    m = run(**{**EBIZZY, "overcommit": 2.0, "corunner.workload": "cpu-bound"}).metrics
    assert 20.0 <= m["steal_pct"] <= 90.0
    assert m["halted_pct"] <= 10.0
    assert m["records_per_s"] > 0


@pytest.mark.parametrize("overcommit", [1.0, 2.0])
def test_no_ebizzy_thread_sleeps_on_mmap_sem_or_write_locks_it(monkeypatch, overcommit):
    blocked, writes = [], []
    real_block, real_down_write = guest.block, locks.down_write
    monkeypatch.setattr(guest, "block", lambda h, task: (blocked.append(task.name), real_block(h, task)))
    monkeypatch.setattr(locks, "down_write",
                        lambda h, task, sem: (writes.append(task.name), real_down_write(h, task, sem)))
    h, m = _host(overcommit=overcommit, **{"corunner.workload": "same"})
    assert m["records_per_s"] > 0
    assert blocked == [] and writes == []
    for vm in h.vms:
        sem = vm.mm.mmap_sem
        assert not sem.queue and sem.owner is None


def test_the_lru_lock_is_taken_once_per_pagevec_and_per_release_batch():
    h, _ = _host()
    records = h.stats.work[0]["records"]
    pages = 512 * 1024 // mm.PAGE_SIZE
    # faults: one __pagevec_lru_add per PAGEVEC_SIZE pages; release_pages: one per SWAP_CLUSTER_MAX pages
    per_record = pages / mm.PAGEVEC_SIZE + pages / mm.SWAP_CLUSTER_MAX
    got = h.stats.counters["lru_lock_acquisitions"] / records
    assert got == pytest.approx(per_record, rel=0.15)


def test_zone_lock_is_taken_per_pcp_batch_not_per_page():
    h, _ = _host()
    records = h.stats.work[0]["records"]
    pages = 512 * 1024 // mm.PAGE_SIZE
    # each CPU frees what it allocates, so its pcp list stays between empty and pcp->high:
    # rmqueue_bulk / free_pcppages_bulk move PCP_BATCH pages, and only when a bound is crossed
    assert h.stats.counters["zone_lock_acquisitions"] * mm.PCP_BATCH < 2 * pages * records / 10
    for vm in h.vms:
        assert all(0 <= n < mm.PCP_HIGH for n in vm.mm.pcp)
        assert all(0 <= n < mm.PAGEVEC_SIZE for n in vm.mm.pagevec)


def test_concurrent_zaps_of_the_mm_force_freed_tables_and_a_lone_zapper_never_does():
    h, _ = _host()
    assert h.stats.counters["tlb_flushes_nested"] > 0
    lone, _ = _host(**{"vm.vcpus": 1, "workload.ebizzy.threads_per_vcpu": 1})
    assert lone.stats.work[0]["records"] > 0
    assert lone.stats.counters["tlb_flushes_nested"] == 0


def test_the_lru_lock_bounds_throughput():
    h, m = _host(**{"vm.vcpus": 8})
    prof = h.prof
    pages = 512 * 1024 // mm.PAGE_SIZE
    adds, dels = pages / mm.PAGEVEC_SIZE, pages / mm.SWAP_CLUSTER_MAX  # acquisitions per record
    misses = (adds + dels) * mm.LOCK_MISSES + adds * mm.LRU_ADD_MISSES + adds * mm.LRU_RUN_MISSES
    hold_ns = misses * prof.cacheline_miss_ns + 2 * pages * mm.LRU_PAGE_HITS * prof.cache_hit_ns
    capacity = 1e9 / hold_ns  # records/s with the LRU lock always held
    assert m["records_per_s"] <= capacity * 1.02
