"""A scenario: one host, its VMs, their workloads and the features in force.

A scenario is plain, frozen, validated data (pydantic models with
``extra="forbid"``).  It is built once from a nested mapping, optionally with
dotted overrides (``vm.vcpus=96``), and never mutated.  Every key has a default
so that a scenario file only states what differs from a 5.13 host running a
5.8 guest (``guest.kernel``, ``host.kernel``).  Invalid input raises one
:class:`ScenarioError` that lists every bad key with what is allowed.

Keys whose default depends on the kernel versions or on the VM hints (every
``features.*`` key, ``vm.idle``, ``vm.cpu_pm``/``vm.hlt_passthrough``,
``vm.hv_timer``, ``vm.poll_control``, ``vm.steal_preempted_on_halt``) are
``None`` = "unset" in the input and are resolved once, before validation, from
the one table in :mod:`model.kernels`; a value given explicitly wins.  A
validated scenario therefore holds concrete values only.

``Scenario.flat()`` gives the fixed, flat parameter record that the sweep
stores as columns (resolved values); ``flat_schema()`` its column types.
"""

from __future__ import annotations

import difflib
import math
import types
from collections import abc
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    create_model,
    model_validator,
)

from model import kernels
from model.hardware import COST_FIELDS, PROFILES


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


ApicMode = Literal["xapic", "x2apic_phys", "x2apic_cluster"]
WorkloadKind = Literal["hackbench", "cyclictest", "cpu-bound", "ebizzy", "lockbench", "vmexit", "ipi_benchmark",
                       "pbzip2"]
CorunnerKind = Literal["same", "hackbench", "cyclictest", "cpu-bound", "ebizzy", "lockbench", "pbzip2"]


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
    # guest idle: HLT, idle=poll, or cpuidle-haltpoll (poll with TIF_POLLING_NRFLAG, then HLT);
    # unset: haltpoll with vm.hint_dedicated on a >= 5.4 guest, else hlt
    idle: Literal["hlt", "poll", "haltpoll"] | None = None
    # QEMU -overcommit cpu-pm=on: HLT, MWAIT and PAUSE do not exit (unset: false)
    cpu_pm: bool | None = None
    hlt_passthrough: bool | None = None  # the older name of cpu_pm, kept equal to it
    # QEMU kvm-hint-dedicated=on (KVM_HINTS_REALTIME): no PV spinlock / TLB flush / sched yield,
    # cpuidle-haltpoll in the guest, host halt-polling off through MSR_KVM_POLL_CONTROL
    hint_dedicated: bool = False
    # resolved: the guest disabled host halt-polling (MSR_KVM_POLL_CONTROL = 0, host >= 5.4)
    poll_control: bool | None = None
    # resolved: KVM runs the guest's LAPIC timer on the VMX preemption timer (kvm_can_use_hv_timer:
    # Intel with a preemption timer, MWAIT not passed through); false = kvm_intel.preemption_timer=N
    hv_timer: bool | None = None
    guest_halt_poll_ns: int = Field(200_000, ge=0, le=10_000_000)  # cpuidle-haltpoll guest_halt_poll_ns
    guest_llc_vcpus: int | None = Field(None, ge=1, le=1024)  # vCPUs per guest LLC (QEMU's CPUID cache topology); None: one
    halt_poll_ns: int = Field(200_000, ge=0, le=10_000_000)  # KVM halt_poll_ns default
    steal_preempted_on_halt: bool | None = None  # steal-time preempted bit on HLT block (host <= 5.18)
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
    # calibrated: 26efe2fd92e5 cyclictest average with the timer fastpath off, 5540.5 ns (skylake,
    # adaptive timer advance, HLT idle as published: no MWAIT exposed, no dedicated hint).  Refitted to
    # the same case when the idle exit's tick-restart write came in (3,106 with idle=poll before).
    wakeup_ns: int = Field(2_152, ge=0)  # guest wake-up path: hrtimer_wakeup, switch to the thread, clock read


class CpuBound(_Frozen):
    """Threads that never sleep; only the guest tick exits (``stress --cpu N``)."""

    chunk_us: int = Field(1000, ge=1)  # unit of accounted work
    # threads per VM, on vCPUs 0, 1, ... (round robin); None: one per vCPU.  The other vCPUs idle.
    threads: int | None = Field(None, ge=1, le=4096)


class Ebizzy(_Frozen):
    """LTP ebizzy 0.3 -M: threads per vCPU, each copying and searching a chunk, then free().

    The per-operation costs come from the hardware profile (model/mm.py)."""

    threads_per_vcpu: int = Field(2, ge=1, le=8)  # ebizzy default: 2 x online CPUs
    chunk_kib: int = Field(512, ge=4, le=65536)  # ebizzy default chunk size (-s 524288)


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


class Pbzip2(_Frozen):
    """pbzip2 1.1.x compressing one file: a reader, ``threads`` compressors, a writer (model.workloads.pbzip2).

    ``compress_speed_mb`` None: derived, lzbench's published bzip2 -9 single-core 15 MB/s scaled by
    clock to the profile.  ``input_bytes`` is assumed (the commit does not give it; the on/off ratio
    does not depend on it).  The futex costs are assumed (no published per-call figure; each is
    < 0.01 % of a block's compression)."""

    threads: int | None = Field(None, ge=1, le=4096)  # pbzip2 -p compressor threads; None: one per vCPU
    block_bytes: int = Field(900_000, ge=100_000, le=900_000)  # pbzip2 -b9 / -9 block size (the default)
    queue_blocks: int | None = Field(None, ge=1, le=4096)  # FIFO slots; None: one per compressor (assumed)
    input_bytes: float = Field(4e9, gt=0)  # size of the file compressed (for pbzip2_wall_s)
    compress_speed_mb: float | None = Field(None, gt=0)  # bzip2 compression MB/s (10^6 B) of one core
    futex_wait_ns: int = Field(1_200, ge=0)  # futex(FUTEX_WAIT): syscall, hash bucket, schedule out
    futex_wake_ns: int = Field(1_500, ge=0)  # futex(FUTEX_WAKE) with a waiter: syscall, hash bucket, wake_up_q


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
    pbzip2: Pbzip2 = Pbzip2()


class Corunner(_Frozen):
    """The VMs that fill the host up to the overcommit ratio."""

    workload: CorunnerKind = "cpu-bound"
    vcpus: int | None = Field(None, ge=1, le=1024)  # None: as many as the measured VM


class Features(_Frozen):
    """The mechanisms.  Unset (None): from guest.kernel / host.kernel and the VM hints (model.kernels)."""

    ipi_fastpath: bool | None = None  # 1e9e2622a149, host 5.5
    timer_fastpath: bool | None = None  # 26efe2fd92e5, host 5.8
    boost_ready: bool | None = None  # d73eb57b80b9, host 5.3
    boost_user_irq: bool | None = None  # 52acd22faa1a, host 5.13
    boost_queue_head: bool | None = None  # 266e85a5ec91, host 5.3 (KICK_CPU -> kvm_sched_yield)
    pv_sched_yield: bool | None = None  # f85f6e7bd1d2 + 715062970f37, 5.3; off with hint_dedicated
    pv_sched_yield_skip_idle: bool | None = None  # guest 5.17: skip idle targets
    pv_tlb_flush: bool | None = None  # 858a43aae236, 4.16; off with hint_dedicated
    pv_send_ipi: bool | None = None  # aaffcfd1e82d + 4180bf1b655a, 4.19
    pv_spinlock: bool | None = None  # qspinlock_paravirt; off with hint_dedicated
    pv_wait_early: bool | None = None  # 75437bb304b2, guest 4.17-5.3 (preempted predecessor check)
    rwsem_reader_spin: bool | None = None  # cf69482d62d9, guest 5.3-5.10 (617f3ef95177 removed it)
    ple: bool | None = None  # Intel PLE / AMD pause filter; off with cpu_pm
    ipi_shorthand: bool | None = None  # 832df3d47bad, guest 5.4: call-function to all but self = one shorthand write
    call_single_if_polling: bool | None = None  # b2a02fc43a1f, guest 5.8: no call-function-single IPI to a polling CPU
    sched_yield_undercommit_bail: bool | None = None  # 72b268a8e930, host 5.13: no directed yield from a 1-task runqueue


class GuestKernel(_Frozen):
    """A kernel release (model.kernels.RELEASES); numbers are accepted where unambiguous."""

    kernel: kernels.Release = kernels.DEFAULT_GUEST


class HostKernel(_Frozen):
    kernel: kernels.Release = kernels.DEFAULT_HOST
    # the module default -1 since "KVM: lapic: Allow user to disable adaptive tuning of timer
    # advancement" (5.2); kvm_create_lapic: -1 starts at LAPIC_TIMER_ADVANCE_NS_INIT and tunes
    lapic_timer_advance_ns: int = Field(-1, ge=-1, le=5_000)  # kvm.lapic_timer_advance_ns: -1 adaptive, 0 off, else fixed


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
    guest: GuestKernel = GuestKernel()
    host: HostKernel = HostKernel()
    topology: Topology = Topology()
    pinning: Literal["dedicated", "none"] = "dedicated"
    overcommit: float = Field(1.0, ge=0.01, le=8.0)
    vm: Vm = Vm()
    workload: Workload = Workload()
    corunner: Corunner = Corunner()
    features: Features = Features()
    costs: Costs = Costs()  # type: ignore[valid-type]
    sim: Sim = Sim()
    _filled: frozenset[str] = PrivateAttr(default=frozenset())  # keys kernels.resolve filled

    @model_validator(mode="wrap")
    @classmethod
    def _resolve(cls, data: Any, handler: Any, info: ValidationInfo) -> Scenario:
        """Fill the version- and hint-dependent keys (model.kernels.resolve) before validation.

        The keys filled are remembered, so that :meth:`given` can hand back the
        input form (a resolved key unset again) for a scenario derived from
        this one with other kernels or hints."""
        if not isinstance(data, dict) or not _resolving(info):
            return handler(data)
        name = data.get("hardware", "cascadelake")
        prof = PROFILES.get(name) if isinstance(name, str) else None
        intel_hv_timer = prof is not None and prof.vendor == "intel" and prof.has_preemption_timer
        resolved, problems, filled = kernels.resolve(data, intel_hv_timer)
        if problems:
            raise ValueError("\n".join(problems))
        scenario = handler(resolved)
        scenario._filled = frozenset(filled)
        return scenario

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Scenario:
        if not _resolving(info):
            return self
        flat = self.flat()
        unset = sorted(k for k in kernels.DERIVED if flat[k] is None)
        if unset:
            raise ValueError(f"unresolved keys (a bug in model.kernels.resolve): {', '.join(unset)}")
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
            problems += describe_errors(err, cls)
            try:  # the kernel/hint problems stop validation: list the field errors too
                cls.model_validate(merged, context={RESOLVE: False})
            except ValidationError as more:
                seen = {p.split(":")[0] for p in problems}
                problems += [p for p in describe_errors(more, cls) if p.split(":")[0] not in seen]
            raise ScenarioError(problems) from None
        if problems:
            raise ScenarioError(problems)
        return scenario

    def given(self) -> dict[str, Any]:
        """The scenario as input (JSON types): keys resolved from the kernels or hints are unset (None).

        Build derived scenarios from this, not from ``model_dump()``: there
        every resolved key looks explicit and would ignore a new kernel."""
        tree = self.model_dump(mode="json")
        for key in self._filled:
            section, name = key.split(".")
            tree[section][name] = None
        return tree

    def flat(self) -> dict[str, Any]:
        """Every parameter as ``dotted.key -> scalar`` (None for unset cost overrides)."""
        return _flatten(self.model_dump())


RESOLVE = "resolve"  # validation context key: False checks the fields only (Scenario.build's second pass)


def _resolving(info: ValidationInfo) -> bool:
    return not (isinstance(info.context, dict) and info.context.get(RESOLVE) is False)


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


def set_dotted(tree: dict[str, Any], key: str, value: Any, whole: tuple[str, ...] = ()) -> str | None:
    """Set ``a.b.c`` in a nested dict (creating or replacing what is in the way): the one dotted-key
    override parser of the project (``sweep simulate -s``, sweep configs, design points).

    Below a prefix of ``whole`` (e.g. ``space.params``) the rest of the key is one
    name (a dotted scenario key).  The key is not checked here: validating the tree
    names an unknown key with the allowed ones (:func:`describe_errors`).  Returns
    a problem line for a malformed key (an empty part).
    """
    parts = key.split(".")
    for prefix in whole:
        if key.startswith(prefix + ".") and len(key) > len(prefix) + 1:
            parts = [*prefix.split("."), key[len(prefix) + 1 :]]
            break
    if not key or any(not p.strip() for p in parts):
        return f"{key!r}: not a dotted key (e.g. vm.vcpus)"
    node = tree
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value
    return None


def closest(key: str, candidates: Sequence[str]) -> str:
    """``; did you mean 'x'?`` for the closest candidate, or nothing."""
    match = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def _unwrap(ann: Any) -> list[Any]:
    """The types an annotation stands for (Annotated, Optional and unions opened)."""
    origin = get_origin(ann)
    if origin is Annotated:
        return _unwrap(get_args(ann)[0])
    if origin is Union or origin is types.UnionType:
        return [t for a in get_args(ann) if a is not type(None) for t in _unwrap(a)]
    return [ann]


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _children(t: Any, part: Any) -> list[Any]:
    """What ``part`` of a value of type ``t`` is (a model's field, a mapping's value, a list's item)."""
    if t is Any:
        return [Any]
    if _is_model(t):
        field = t.model_fields.get(part) if isinstance(part, str) else None
        return _unwrap(field.annotation) if field is not None else []
    origin, args = get_origin(t), get_args(t)
    if origin in (dict, Mapping, abc.Mapping) and isinstance(part, str):
        return _unwrap(args[1]) if len(args) == 2 else [Any]
    if origin in (list, tuple, abc.Sequence) and isinstance(part, int):
        return _unwrap(args[0]) if args else [Any]
    return []


def _locate(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, list[str]]:
    """``loc`` as a dotted key (union tags left out) and the keys allowed beside its last part."""
    current: list[Any] = [root]
    text, allowed = "", []
    for i, part in enumerate(loc):
        nxt = [c for t in current for c in _children(t, part)]
        if i == len(loc) - 1:
            allowed = [f for t in current if _is_model(t) for f in t.model_fields]
        elif not nxt:
            continue  # a discriminated union's tag, not a key
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + str(part)
        current = nxt
    return text, list(dict.fromkeys(allowed))


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_errors(err: ValidationError, root: type[BaseModel] | None, prefix: str = "") -> list[str]:
    """pydantic's errors as ``key: problem; allowed: ...`` lines, every one of them: the one error
    formatter of the project (scenarios, sweep configs, validation cases).

    ``prefix`` is put before every key (``base.`` for a sweep config's scenario);
    ``root`` None: the error of a single value (a ``TypeAdapter``), without a key.
    An unknown key is named with the closest allowed one and all the allowed
    keys beside it; a value not allowed with the allowed values; NaN and
    infinities as "must be a finite number".
    """
    lines: list[str] = []
    for e in err.errors():
        where, allowed = _locate(root, tuple(e["loc"])) if root is not None else ("", [])
        key = prefix + where if where else prefix.rstrip(".")
        kind, value = e["type"], e.get("input")
        error = e.get("ctx", {}).get("error")
        if kind == "extra_forbidden":
            parent = key.rpartition(".")[0] + "." if "." in key else ""
            near = difflib.get_close_matches(str(e["loc"][-1]), allowed, n=1, cutoff=0.5)
            hint = f"; did you mean {parent + near[0]!r}?" if near else ";"
            text = f"unknown key{hint} allowed: {', '.join(allowed) or 'none'}"
        elif kind == "literal_error":
            text = f"{_show(value)} is not allowed; allowed: {e['ctx']['expected']}"
        elif kind == "missing":
            text = "required"
        elif isinstance(value, float) and not math.isfinite(value):
            text = f"must be a finite number (got {value})"
        elif kind in ("value_error", "assertion_error") and error is not None:
            text = str(error)
            if not where:  # a model-wide rule: its message names its keys (one line each)
                lines.extend(prefix + line for line in text.split("\n"))
                continue
        else:
            text = f"{e['msg'][:1].lower() + e['msg'][1:]} (got {_show(value)})"
        lines.append(f"{key}: {text}" if key else text)
    return list(dict.fromkeys(lines))
