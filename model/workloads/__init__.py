"""Guest workloads: each builds closed-loop guest tasks on a VM's vCPUs.

``build(h, vm, knobs, rng)`` creates the tasks (generators of guest ops, see
``model.guest``) and any VM-wide state.  Work done is counted with
``h.stats.add_work(vm.index, name, amount)``.
"""

from model.workloads import cpu_bound, cyclictest, ebizzy, hackbench, ipi_benchmark, lockbench, pbzip2, vmexit

BUILDERS = {
    "cpu-bound": cpu_bound.build,
    "cyclictest": cyclictest.build,
    "hackbench": hackbench.build,
    "ebizzy": ebizzy.build,
    "lockbench": lockbench.build,
    "vmexit": vmexit.build,
    "ipi_benchmark": ipi_benchmark.build,
    "pbzip2": pbzip2.build,
}


def knobs_of(workload, kind: str):
    """The knob block of ``kind`` inside the scenario's ``workload`` section."""
    return getattr(workload, kind.replace("-", "_"))
