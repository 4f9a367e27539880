"""Kernel versions as scenario axes: one table of every version-dependent rule.

A scenario names ``guest.kernel`` and ``host.kernel`` (mainline releases,
:data:`RELEASES`).  Each row of :data:`RULES` says which scenario key a rule
sets, which side's kernel decides it, the first and last release that behave
that way, and the commit(s) behind it (checked against the release that merged
them, see each row's note).  :func:`resolve` fills every key the user left
unset from the two versions and the VM hints; a key given explicitly wins
(its contradictions with a hint are errors, not silent fixes).

Defaults (:data:`DEFAULT_GUEST`, :data:`DEFAULT_HOST`): a 5.13 host and a 5.8
guest.  Together they give every feature the value it had before kernel
versions existed -- except ``boost_queue_head``, which was thought to be an
unmerged RFC: it is 266e85a5ec91, merged in 5.3-rc2, so a 5.13 host has it --
and ``sched_yield_undercommit_bail`` (72b268a8e930, 5.13-rc4), added later.
A 5.8 guest still has rwsem reader optimistic spinning (removed in 5.11).

VM hints (QEMU options), MODEL.md section 12b:

- ``vm.cpu_pm`` (``-overcommit cpu-pm=on``: KVM_X86_DISABLE_EXITS_HLT | MWAIT
  | PAUSE): HLT and PAUSE do not exit, so PLE is off (``kvm_pause_in_guest``
  clears PAUSE_LOOP_EXITING, so no ``kvm_vcpu_on_spin``); with MWAIT passed
  through, ``kvm_can_use_hv_timer()`` is false, so the VMX preemption timer is
  not used (``vm.hv_timer`` false).  ``vm.hlt_passthrough`` is the older name
  of the same option and is kept equal to it.
- ``vm.hint_dedicated`` (``kvm-hint-dedicated=on``, KVM_HINTS_REALTIME): the
  guest turns off PV spinlocks (``kvm_spinlock_init``), PV TLB flush
  (``pv_tlb_flush_supported``) and PV sched yield
  (``pv_sched_yield_supported``), and loads cpuidle-haltpoll (``idle:
  haltpoll``, guest >= 5.4), whose ``arch_haltpoll_enable`` writes
  MSR_KVM_POLL_CONTROL = 0 so the host does not halt-poll
  (``kvm_arch_no_poll``, host >= 5.4): ``vm.poll_control``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

# Mainline releases a scenario may name.  Every row below was checked up to 5.19.
RELEASES: tuple[str, ...] = (
    "4.15", "4.16", "4.17", "4.18", "4.19", "4.20",
    "5.0", "5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7", "5.8", "5.9",
    "5.10", "5.11", "5.12", "5.13", "5.14", "5.15", "5.16", "5.17", "5.18", "5.19",
)  # fmt: skip

DEFAULT_GUEST = "5.8"
DEFAULT_HOST = "5.13"

Side = Literal["guest", "host", "both"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One version-dependent rule: ``key`` is true from ``since`` to ``until`` (inclusive).

    ``side`` says whose kernel decides: ``both`` for a PV feature, which needs
    the guest to use it and the host to advertise it in KVM_CPUID_FEATURES.
    """

    key: str  # the dotted scenario key it sets
    side: Side
    since: str | None  # first release with the behaviour (None: before 4.15)
    until: str | None  # last release with it (None: still there)
    commit: str
    note: str


RULES: tuple[Rule, ...] = (
    Rule("features.pv_tlb_flush", "both", "4.16", None, "858a43aae236",
         "KVM_FEATURE_PV_TLB_FLUSH: kvm_flush_tlb_others defers flushes of preempted vCPUs (4.16)"),
    Rule("vm.realtime_hint_available", "guest", "4.16", None, "a4429e53c9b3",
         "KVM_HINTS_DEDICATED (renamed KVM_HINTS_REALTIME in 4.17): a 4.15 guest ignores the hint"),
    Rule("features.pv_wait_early", "guest", "4.17", "5.3", "75437bb304b2, reverted by 89340d0935c9",
         "pv_wait_early() also stops spinning when vcpu_is_preempted(prev->cpu); the revert is in 5.4"),
    Rule("features.pv_send_ipi", "both", "4.19", None, "aaffcfd1e82d (guest), 4180bf1b655a (host)",
         "KVM_HC_SEND_IPI"),
    Rule("features.pv_sched_yield", "both", "5.3", None, "f85f6e7bd1d2 (guest), 715062970f37 (host)",
         "KVM_HC_SCHED_YIELD after call-function IPIs to a preempted target"),
    Rule("features.boost_ready", "host", "5.3", None, "d73eb57b80b9",
         "kvm_vcpu_on_spin candidates are vcpu->ready (set on preemption and on wake-up); in 5.3-rc1:"
         " 266e85a5ec91 (5.3-rc2) already reads target->ready"),
    Rule("features.boost_queue_head", "host", "5.3", None, "266e85a5ec91",
         "KVM_HC_KICK_CPU also calls kvm_sched_yield(target), which yields only to a ready target"
         " (the same commit adds that check); merged in 'KVM fixes for Linux 5.3-rc2'"),
    Rule("features.rwsem_reader_spin", "guest", "5.3", "5.10", "cf69482d62d9, removed by 617f3ef95177",
         "rwsem readers spin optimistically on a running writer owner (5.3 to 5.10)"),
    Rule("features.ipi_fastpath", "host", "5.5", None, "1e9e2622a149",
         "handle_fastpath_set_x2apic_icr_irqoff; re-entry inside the run loop (5.8) is part of the"
         " profile's fastpath cost, not a separate rule"),
    Rule("features.timer_fastpath", "host", "5.8", None, "26efe2fd92e5",
         "handle_fastpath_preemption_timer"),
    Rule("features.boost_user_irq", "host", "5.13", None, "52acd22faa1a",
         "a vCPU preempted in user mode is a candidate when it has a posted interrupt pending"),
    Rule("features.sched_yield_undercommit_bail", "host", "5.13", None,
         "72b268a8e930 'KVM: X86: Bail out of direct yield in case of under-committed scenarios'",
         "kvm_sched_yield: if (single_task_running()) goto no_yield; -- SCHED_YIELD and the queue-head"
         " boost of KICK_CPU yield nothing from a pCPU whose runqueue holds only the caller (posted"
         " 2021-05-17, merged in 5.13-rc4 with the KVM fixes pull of 2021-05-29)"),
    Rule("features.ipi_shorthand", "guest", "5.4", None,
         "832df3d47bad 'x86/smp: Enhance native_send_call_func_ipi()' (tglx's IPI shorthand series, 5.4)",
         "a call-function IPI to every online CPU but self is one send_IPI_allbutself when"
         " apic_use_ipi_shorthand is on (all present CPUs booted once; apic_smt_update)"),
    Rule("features.call_single_if_polling", "guest", "5.8", None,
         "b2a02fc43a1f 'smp: Optimize send_call_function_single_ipi()'",
         "send_call_function_single_ipi: set_nr_if_polling(rq->idle) instead of the IPI when the"
         " target's idle task polls; the call-function-many path has no such check in 5.x"),
    Rule("features.pv_sched_yield_skip_idle", "guest", "5.17", None,
         "'KVM: x86: Yield to IPI target vCPU only if it is busy' (Li RongQing, 2022-02)",
         "kvm_smp_send_call_func_ipi: !idle_cpu(cpu) && vcpu_is_preempted(cpu)"),
    Rule("vm.steal_preempted_on_halt", "host", None, "5.18", "54aa83c90198 (5.19)",
         "kvm_arch_vcpu_put sets st->preempted only if vcpu->preempted from 5.19 on (backported to"
         " some stable trees; MODEL.md says 5.15)"),
    Rule("vm.haltpoll_available", "guest", "5.4", None, "fa86ee90eb11 (cpuidle-haltpoll)",
         "cpuidle-haltpoll loads with KVM_HINTS_REALTIME (haltpoll_init)"),
    Rule("vm.poll_control_available", "host", "5.4", None, "'kvm: x86: add host poll control msrs' (5.4)",
         "MSR_KVM_POLL_CONTROL / KVM_FEATURE_POLL_CONTROL; kvm_arch_no_poll()"),
)  # fmt: skip

RULE_BY_KEY: dict[str, Rule] = {r.key: r for r in RULES}


def version(release: str) -> tuple[int, int]:
    major, minor = release.split(".")
    return int(major), int(minor)


def holds(rule: Rule, guest: str, host: str) -> bool:
    """Whether ``rule`` is in force for this pair of kernels."""
    sides = {"guest": (guest,), "host": (host,), "both": (guest, host)}[rule.side]
    return all(_in_range(v, rule.since, rule.until) for v in sides)


def _in_range(release: str, since: str | None, until: str | None) -> bool:
    v = version(release)
    return (since is None or v >= version(since)) and (until is None or v <= version(until))


def defaults(guest: str, host: str) -> dict[str, bool]:
    """Every rule's value for a guest and a host kernel."""
    return {r.key: holds(r, guest, host) for r in RULES}


def normalise_release(value: Any) -> tuple[str | None, str | None]:
    """A release string from YAML input, or a problem line.

    YAML reads ``5.10`` as the number 5.1: a number is accepted only where it
    names one release unambiguously (``5.8``), else it must be quoted."""
    if isinstance(value, str):
        if value in RELEASES:
            return value, None
        return None, f"{value!r} is not a release the model knows; allowed: {', '.join(RELEASES)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"{value!r} is not a kernel release; allowed: {', '.join(RELEASES)}"
    text = repr(float(value))
    matches = [r for r in RELEASES if r == text or r == text + "0"]
    if len(matches) == 1:
        return matches[0], None
    if len(matches) > 1:
        return None, f"{value!r} is ambiguous ({' or '.join(matches)}); quote it, e.g. '{matches[-1]}'"
    return None, f"{value!r} is not a release the model knows; allowed: {', '.join(RELEASES)}"


def _release_in(value: Any) -> Any:
    release, problem = normalise_release(value)
    if problem:
        raise ValueError(problem)
    return release


# The scenario field type: a release string; unambiguous YAML numbers (5.8) are accepted.
Release = Annotated[Literal[RELEASES], BeforeValidator(_release_in)]  # type: ignore[valid-type]


# Keys that resolve() fills; everything else of the scenario is plain data.
FEATURE_KEYS = (
    "ipi_fastpath", "timer_fastpath", "boost_ready", "boost_user_irq", "boost_queue_head",
    "pv_sched_yield", "pv_sched_yield_skip_idle", "pv_tlb_flush", "pv_send_ipi", "pv_spinlock",
    "pv_wait_early", "rwsem_reader_spin", "ple", "ipi_shorthand", "call_single_if_polling",
    "sched_yield_undercommit_bail",
)  # fmt: skip
HINT_OFF = ("pv_spinlock", "pv_tlb_flush", "pv_sched_yield")  # what KVM_HINTS_REALTIME turns off


def resolve(data: dict[str, Any], intel_hv_timer: bool) -> tuple[dict[str, Any], list[str], list[str]]:
    """Fill every unset version- or hint-dependent key of a raw scenario mapping.

    ``intel_hv_timer``: the hardware has a VMX preemption timer.  Returns the
    new mapping (the input is not mutated), the problems found (bad releases,
    explicit values that contradict a hint) and the dotted keys it filled."""
    problems: list[str] = []
    unset = {f"{section}.{key}" for section in ("vm", "features") if isinstance(data.get(section), dict)
             for key, value in data[section].items() if value is None}
    explicit = {f"{section}.{key}" for section in ("vm", "features") if isinstance(data.get(section), dict)
                for key in data[section]} - unset
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    releases = {}
    for side, default in (("guest", DEFAULT_GUEST), ("host", DEFAULT_HOST)):
        section = out.setdefault(side, {})
        if not isinstance(section, dict):
            return out, problems, []  # pydantic reports the wrong type
        release, problem = normalise_release(section.get("kernel", default))
        if problem:
            problems.append(f"{side}.kernel: {problem}")
            continue
        section["kernel"] = releases[side] = release
    if problems:
        return out, problems, []
    rules = defaults(releases["guest"], releases["host"])
    vm = out.setdefault("vm", {})
    features = out.setdefault("features", {})
    if not isinstance(vm, dict) or not isinstance(features, dict):
        return out, problems, []
    _resolve_vm(vm, rules, intel_hv_timer, problems)
    hint = vm.get("hint_dedicated") is True and rules["vm.realtime_hint_available"]
    cpu_pm = vm.get("cpu_pm") is True
    derived = {
        "pv_spinlock": not hint,
        "ple": not cpu_pm,
        **{name: rules[f"features.{name}"] for name in FEATURE_KEYS if f"features.{name}" in rules},
    }
    for name in HINT_OFF:
        derived[name] = derived[name] and not hint
    for name in FEATURE_KEYS:
        given = features.get(name)
        if given is None:
            features[name] = derived[name]
        elif given is True and hint and name in HINT_OFF:
            problems.append(
                f"features.{name}: true contradicts vm.hint_dedicated (KVM_HINTS_REALTIME turns it off"
                " in the guest); drop one of them"
            )
        elif given is True and cpu_pm and name == "ple":
            problems.append("features.ple: true contradicts vm.cpu_pm (PAUSE does not exit); drop one of them")
    filled = [f"{section}.{key}" for section in ("vm", "features") for key in out[section]
              if f"{section}.{key}" in DERIVED and f"{section}.{key}" not in explicit]
    return out, problems, filled


# Every key resolve() may fill (the rest of the scenario is plain data with fixed defaults).
DERIVED = frozenset(
    [f"features.{k}" for k in FEATURE_KEYS]
    + ["vm.idle", "vm.cpu_pm", "vm.hlt_passthrough", "vm.poll_control", "vm.hv_timer", "vm.steal_preempted_on_halt"]
)


def _resolve_vm(vm: dict[str, Any], rules: dict[str, bool], intel_hv_timer: bool, problems: list[str]) -> None:
    cpu_pm, alias = vm.get("cpu_pm"), vm.get("hlt_passthrough")
    if cpu_pm is not None and alias is not None and cpu_pm != alias:
        problems.append(
            f"vm.hlt_passthrough: {alias!r} contradicts vm.cpu_pm={cpu_pm!r}; hlt_passthrough is the"
            " older name of cpu_pm, give only vm.cpu_pm"
        )
    cpu_pm = bool(cpu_pm if cpu_pm is not None else alias)
    vm["cpu_pm"] = vm["hlt_passthrough"] = cpu_pm
    hint = vm.get("hint_dedicated") is True and rules["vm.realtime_hint_available"]
    if vm.get("idle") is None:
        vm["idle"] = "haltpoll" if hint and rules["vm.haltpoll_available"] else "hlt"
    if vm.get("poll_control") is None:
        vm["poll_control"] = vm["idle"] == "haltpoll" and rules["vm.poll_control_available"]
    elif vm["poll_control"] is True and not rules["vm.poll_control_available"]:
        problems.append("vm.poll_control: true needs host.kernel >= 5.4 (MSR_KVM_POLL_CONTROL)")
    usable = intel_hv_timer and not cpu_pm  # kvm_can_use_hv_timer(): !kvm_mwait_in_guest()
    if vm.get("hv_timer") is None:
        vm["hv_timer"] = usable
    elif vm["hv_timer"] is True and not usable:
        why = "vm.cpu_pm passes MWAIT through" if intel_hv_timer else "the hardware has no VMX preemption timer"
        problems.append(f"vm.hv_timer: true is impossible here: {why} (kvm_can_use_hv_timer)")
    if vm.get("steal_preempted_on_halt") is None:
        vm["steal_preempted_on_halt"] = rules["vm.steal_preempted_on_halt"]
