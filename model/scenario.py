"""A scenario: one host, its VMs, their workloads and the features in force.

A scenario is plain, frozen, validated data (pydantic models with
``extra="forbid"``).  It is built once from a nested mapping, optionally with
dotted overrides (``vm.vcpus=96``), and never mutated.  Every key has a default
so that a scenario file only states what differs from a stock 5.13 host and
guest.  Invalid input raises one :class:`ScenarioError` that lists every bad
key with what is allowed.

``Scenario.flat()`` gives the fixed, flat parameter record that the sweep
stores as columns; ``flat_schema()`` its column types.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from model.hardware import COST_FIELDS, PROFILES


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


ApicMode = Literal["xapic", "x2apic_phys", "x2apic_cluster"]
WorkloadKind = Literal["hackbench", "cyclictest", "cpu-bound", "ebizzy", "lockbench", "vmexit", "ipi_benchmark"]
CorunnerKind = Literal["same", "hackbench", "cyclictest", "cpu-bound", "ebizzy", "lockbench"]


class Topology(_Frozen):
    """``sockets x cores_per_socket x threads_per_core`` pCPUs, numbered as Linux does."""

    sockets: int = Field(2, ge=1, le=8)
    cores_per_socket: int = Field(24, ge=1, le=128)
    threads_per_core: int = Field(2, ge=1, le=2)

    @property
    def pcpus(self) -> int:
        return self.sockets * self.cores_per_socket * self.threads_per_core


class Vm(_Frozen):
    """The measured VM's shape and guest/KVM options (co-runner VMs share them)."""

    vcpus: int = Field(8, ge=1, le=1024)
    apic: ApicMode = "x2apic_cluster"
    avic: bool = False  # AMD AVIC (and x2AVIC where the hardware has it)
    apicv: bool = True  # Intel APICv posted interrupts (and IPIv where present)
    idle: Literal["hlt", "poll", "haltpoll"] = "hlt"  # haltpoll: cpuidle-haltpoll (guest polls, then HLT)
    guest_halt_poll_ns: int = Field(200_000, ge=0, le=10_000_000)  # cpuidle-haltpoll guest_halt_poll_ns
    guest_llc_vcpus: int | None = Field(None, ge=1, le=1024)  # vCPUs per guest LLC (QEMU's CPUID cache topology); None: one
    hlt_passthrough: bool = False  # cpu-pm=on: KVM_X86_DISABLE_EXITS_HLT
    halt_poll_ns: int = Field(200_000, ge=0, le=10_000_000)  # KVM halt_poll_ns default
    steal_preempted_on_halt: bool = True  # steal-time preempted bit on HLT block (<= 5.15)
    guest_hz: int = Field(250, ge=100, le=1000)  # guest CONFIG_HZ; drives the guest tick


class Hackbench(_Frozen):
    """rt-tests hackbench: groups of senders and receivers passing messages."""

    groups: int = Field(10, ge=1, le=100)
    senders: int = Field(20, ge=1, le=100)
    receivers: int = Field(20, ge=1, le=100)
    loops: int = Field(100, ge=1)  # messages per sender per receiver (for hackbench_time_s)
    message_bytes: int = Field(100, ge=1, le=4096)
    pipe: bool = False  # hackbench -p: pipes instead of AF_UNIX stream socketpairs
    sndbuf_bytes: int = Field(212_992, ge=4096)  # sk_sndbuf: net.core.wmem_default
    # Per-message guest costs, syscall entry/exit included (assumed: no published per-message
    # breakdown; the ROME case's published avic0_xapic run, 121.3 s for 4e9 messages on 180
    # vCPUs, bounds send + receive + scheduling at 5.46 vCPU-us a message, and the model lands
    # within ~2 % of that absolute time without fitting these).
    send_ns: int = Field(1_500, ge=1)  # write(): unix_stream_sendmsg / pipe_write of one message
    recv_ns: int = Field(1_200, ge=1)  # read(): unix_stream_read_generic / pipe_read of one message


class Cyclictest(_Frozen):
    """rt-tests cyclictest: one thread per vCPU, TSC-deadline timer every interval."""

    interval_us: int = Field(1000, ge=10, le=1_000_000)
    wakeup_ns: int = Field(2_622, ge=0)  # calibrated (26efe2fd92e5): hrtimer_interrupt, wake, switch, clock read


class CpuBound(_Frozen):
    """A thread per vCPU that never sleeps; only the guest tick exits."""

    chunk_us: int = Field(1000, ge=1)  # unit of accounted work


class Ebizzy(_Frozen):
    """LTP ebizzy -M: 2 threads per vCPU, memcpy of a chunk, then free (heap trim)."""

    threads_per_vcpu: int = Field(2, ge=1, le=8)
    chunk_kib: int = Field(512, ge=4, le=65536)
    search_ns: int = Field(20_000, ge=0)  # search of the copied record
    fault_ns: int = Field(250, ge=0)  # one anonymous page fault, under mmap_sem read
    trim_ns: int = Field(4_000, ge=0)  # munmap/brk trim work under mmap_sem write
    zone_lock_ns: int = Field(1_000, ge=0)  # pages to/from the buddy allocator under zone->lock
    flush_ns: int = Field(600, ge=0)  # TLB flush handler on each target


class Lockbench(_Frozen):
    """Threads taking one shared queued spinlock."""

    threads_per_vcpu: int = Field(1, ge=1, le=8)
    cs_ns: int = Field(500, ge=1)  # critical section
    think_ns: int = Field(5_000, ge=0)  # non-critical work between acquisitions


class Vmexit(_Frozen):
    """kvm-unit-tests ``vmexit`` microbenchmarks on 2 vCPUs."""

    test: Literal["ipi", "tscdeadline_immed", "tscdeadline"] = "ipi"


class IpiBenchmark(_Frozen):
    """The ipi_benchmark kernel module (lkml 2017/12/19/141) on vCPU 0: call-function IPIs, wait=1.

    ``unicast``: smp_call_function_single to vCPU 1; ``broadcast``:
    smp_call_function_many to every other vCPU; ``multicast``: to vCPUs
    1..``targets``.  ``ops``: the module's NTIMES, for the ``*_total_ns`` metrics."""

    mode: Literal["unicast", "broadcast", "multicast"] = "broadcast"
    targets: int = Field(4, ge=1, le=1023)  # multicast: destinations (vCPUs 1..targets)
    ops: int = Field(100_000, ge=1)  # NTIMES of the module (bench_ipi loop count)


class Workload(_Frozen):
    """The measured VM's workload: ``kind`` selects, the blocks hold every kind's knobs."""

    kind: WorkloadKind = "hackbench"
    hackbench: Hackbench = Hackbench()
    cyclictest: Cyclictest = Cyclictest()
    cpu_bound: CpuBound = CpuBound()
    ebizzy: Ebizzy = Ebizzy()
    lockbench: Lockbench = Lockbench()
    vmexit: Vmexit = Vmexit()
    ipi_benchmark: IpiBenchmark = IpiBenchmark()


class Corunner(_Frozen):
    """The VMs that fill the host up to the overcommit ratio."""

    workload: CorunnerKind = "cpu-bound"
    vcpus: int | None = Field(None, ge=1, le=1024)  # None: as many as the measured VM


class Features(_Frozen):
    """The mechanisms.  Defaults: a 5.13 host and guest (queue-head boost is a patch)."""

    ipi_fastpath: bool = True  # 1e9e2622a149, 5.7
    timer_fastpath: bool = True  # 26efe2fd92e5, 5.7
    boost_ready: bool = True  # d73eb57b80b9, 5.4
    boost_user_irq: bool = True  # 52acd22faa1a, 5.13
    boost_queue_head: bool = False  # "Boost queue head vCPU" RFC, not merged
    pv_sched_yield: bool = True  # f85f6e7bd1d2, 5.3
    pv_sched_yield_skip_idle: bool = False  # guest 5.17: skip idle targets
    pv_tlb_flush: bool = True  # 858a43aae236, 4.16
    pv_send_ipi: bool = True  # aaffcfd1e82d, 4.19
    pv_spinlock: bool = True  # qspinlock_paravirt
    pv_wait_early: bool = False  # pv_wait_early() in qspinlock_paravirt.h
    ple: bool = True  # Intel PLE / AMD pause filter
    ipi_shorthand: bool = True  # guest 5.4: apic_use_ipi_shorthand, native_send_call_func_ipi -> allbutself
    call_single_if_polling: bool = True  # guest 5.8 (b2a02fc43a1f): no call-function-single IPI to a polling idle CPU


# One optional override per profile figure, generated from the profile's field list
# so that the two can never disagree.  ``None`` keeps the profile's figure.
Costs = create_model(
    "Costs",
    __base__=_Frozen,
    __doc__="Overrides of the hardware profile's figures; None keeps the profile's.",
    **{name: (float | None, Field(None, ge=0)) for name in COST_FIELDS},
)


class Sim(_Frozen):
    duration_ms: float = Field(200.0, gt=0, le=600_000)
    warmup_ms: float = Field(20.0, ge=0, le=600_000)


class Scenario(_Frozen):
    hardware: str = "cascadelake"
    topology: Topology = Topology()
    pinning: Literal["dedicated", "none"] = "dedicated"
    overcommit: float = Field(1.0, ge=0.01, le=8.0)
    vm: Vm = Vm()
    workload: Workload = Workload()
    corunner: Corunner = Corunner()
    features: Features = Features()
    costs: Costs = Costs()  # type: ignore[valid-type]
    sim: Sim = Sim()

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.hardware not in PROFILES:
            raise ValueError(f"hardware: unknown profile {self.hardware!r}; allowed: {', '.join(PROFILES)}")
        pcpus = self.topology.pcpus
        total = round(self.overcommit * pcpus)
        if total < self.vm.vcpus:
            raise ValueError(
                f"overcommit: {self.overcommit} x {pcpus} pCPUs = {total} vCPUs in all, fewer than "
                f"vm.vcpus={self.vm.vcpus}; raise overcommit to at least {self.vm.vcpus / pcpus:.3g}"
            )
        if self.workload.kind in ("vmexit", "ipi_benchmark") and self.vm.vcpus < 2:
            raise ValueError(f"vm.vcpus: the {self.workload.kind} microbenchmarks need at least 2 vCPUs")
        ib = self.workload.ipi_benchmark
        if self.workload.kind == "ipi_benchmark" and ib.mode == "multicast" and ib.targets >= self.vm.vcpus:
            raise ValueError(
                f"workload.ipi_benchmark.targets: {ib.targets} must be below vm.vcpus ({self.vm.vcpus}):"
                " the sender is vCPU 0"
            )
        if self.sim.warmup_ms >= self.sim.duration_ms:
            raise ValueError(
                f"sim.warmup_ms: {self.sim.warmup_ms} must be shorter than sim.duration_ms ({self.sim.duration_ms})"
            )
        return self

    # -- construction ---------------------------------------------------

    @classmethod
    def build(cls, data: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> Scenario:
        """Validate a nested mapping plus dotted overrides; raise :class:`ScenarioError`."""
        merged = _deep_copy(data or {})
        problems: list[str] = []
        for key, value in (overrides or {}).items():
            problem = set_dotted(merged, key, value)
            if problem:
                problems.append(problem)
        try:
            scenario = cls.model_validate(merged)
        except ValidationError as err:
            raise ScenarioError(problems + describe_errors(err, cls)) from None
        if problems:
            raise ScenarioError(problems)
        return scenario

    def flat(self) -> dict[str, Any]:
        """Every parameter as ``dotted.key -> scalar`` (None for unset cost overrides)."""
        return _flatten(self.model_dump())


class ScenarioError(ValueError):
    """Every problem of one scenario, one line each: ``key: what is wrong; allowed: ...``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid scenario:\n  " + "\n  ".join(problems))


def flat_schema() -> dict[str, type]:
    """Column type of every flat parameter key, in a fixed order."""
    return _schema_of(Scenario, "")


def valid_keys() -> list[str]:
    return list(flat_schema())


def _schema_of(model: type[BaseModel], prefix: str) -> dict[str, type]:
    out: dict[str, type] = {}
    for name, field in model.model_fields.items():
        key = prefix + name
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(_schema_of(ann, key + "."))
            continue
        args = [a for a in get_args(ann) if a is not type(None)]
        base = ann
        if args and all(isinstance(a, str) for a in args):
            base = str  # Literal[...]
        elif args:
            base = args[0]
        if base in (int, float, bool, str):
            out[key] = base
        else:
            out[key] = str
    return out


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _deep_copy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _deep_copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_deep_copy(v) for v in tree]
    return tree


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> str | None:
    """Set ``a.b.c`` in a nested dict; return a problem line if the key is unknown."""
    keys = valid_keys()
    prefixes = {k.rsplit(".", i)[0] for k in keys for i in range(k.count(".") + 1)}
    if key not in keys:
        if key in prefixes and isinstance(value, dict):
            pass
        else:
            return f"{key}: unknown key{_closest(key, keys)}"
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value
    return None


def _closest(key: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def describe_errors(err: ValidationError, root: type[BaseModel]) -> list[str]:
    """Turn pydantic's errors into ``key: problem; allowed: ...`` lines."""
    keys = valid_keys()
    lines: list[str] = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not isinstance(p, int))
        kind = e["type"]
        if kind == "extra_forbidden":
            lines.append(f"{loc}: unknown key{_closest(loc, keys)}")
        elif kind == "literal_error":
            allowed = e.get("ctx", {}).get("expected", "")
            lines.append(f"{loc}: {e['input']!r} is not allowed; allowed: {allowed}")
        elif kind == "value_error" and not loc:
            lines.append(str(e["ctx"]["error"]) if "ctx" in e else e["msg"])
        else:
            lines.append(f"{loc}: {e['msg']} (got {e['input']!r})")
    return lines
