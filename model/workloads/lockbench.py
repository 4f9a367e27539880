"""Placeholder until part 2 lands."""


def build(h, vm, knobs, rng) -> None:
    raise NotImplementedError("workload not yet implemented")
