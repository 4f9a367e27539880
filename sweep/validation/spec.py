"""The ``compare:`` block of a validation case (``conf/validation/<case>.yaml``): its schema.

A case's sweep file is an ordinary sweep config plus a ``compare:`` block that
says how the sweep's runs stand for the published experiment
(``conf/validation/published.yaml``):

* ``baseline``: the published condition every other condition is compared to;
* ``conditions``: per published condition, the scenario keys that select its
  runs (``select``), or ``not_modelled: <reason>``;
* ``series``: per published series (one metric measured under every
  condition), where its values are in the case's entry of ``published.yaml``
  (``published``: a dotted path, ``values``, ``metrics.ebizzy_records_per_s``,
  ``values.1vm``), the simulated metric that stands for it, whether higher or
  lower is better, the tolerance, extra scenario keys selecting the series'
  runs (``select``), or ``not_modelled: <reason>``;
* ``quick``: ``-s`` overrides of the reduced run (``sweep validate --quick``
  and the test suite).

This module holds only the structure (pydantic, checked with the rest of the
sweep file by :mod:`sweep.config`); what needs ``published.yaml`` or the
model's metric names is checked by :mod:`sweep.validation.cases`.
``docs/validate.md`` describes the format for the people who edit the cases.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_FACTOR = 2.0  # published.yaml's header: "within a factor of 2 of the published improvement"
EPS = 1e-12  # rounding slack at the tolerance bounds


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def improvement(ratio: float, higher_is_better: bool) -> float:
    """``ratio - 1`` where higher is better, ``1 - ratio`` where lower is."""
    return ratio - 1.0 if higher_is_better else 1.0 - ratio


class Tolerance(_Frozen):
    """Exactly one of ``factor`` (the simulated improvement has the published sign and lies within
    this factor of it) or ``ratio`` (the simulated ratio within this relative distance of the
    published ratio)."""

    factor: float | None = Field(None, gt=1.0, le=100.0)
    ratio: float | None = Field(None, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _one(self) -> Tolerance:
        if (self.factor is None) == (self.ratio is None):
            raise ValueError("give exactly one of factor (e.g. 2) or ratio (e.g. 0.10)")
        return self

    @property
    def kind(self) -> Literal["factor", "ratio"]:
        return "factor" if self.factor is not None else "ratio"

    @property
    def value(self) -> float:
        return float(self.factor if self.factor is not None else self.ratio)  # type: ignore[arg-type]

    def pass_range(self, pub_ratio: float, higher_is_better: bool) -> tuple[float, float]:
        """The simulated ratios that pass, ``[low, high]`` (improvement and ratio are monotone)."""
        if self.ratio is not None:
            return pub_ratio * (1.0 - self.ratio), pub_ratio * (1.0 + self.ratio)
        assert self.factor is not None
        pub = improvement(pub_ratio, higher_is_better)
        bounds = [pub / self.factor, pub * self.factor]  # same sign as pub, so the sign rule holds
        ratios = sorted(1.0 + b if higher_is_better else 1.0 - b for b in bounds)
        return ratios[0], ratios[1]

    def check(self, sim_ratio: float, pub_ratio: float, higher_is_better: bool) -> bool:
        if not (math.isfinite(sim_ratio) and math.isfinite(pub_ratio)):
            return False
        low, high = self.pass_range(pub_ratio, higher_is_better)
        return low - EPS <= sim_ratio <= high + EPS


FACTOR_2 = Tolerance(factor=DEFAULT_FACTOR)


class Condition(_Frozen):
    """One published condition: the scenario keys selecting its runs, or why it is not modelled."""

    select: dict[str, Any] = Field(default_factory=dict)
    not_modelled: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _either(self) -> Condition:
        if self.not_modelled is not None and self.select:
            raise ValueError("give select or not_modelled, not both")
        return self

    @property
    def modelled(self) -> bool:
        return self.not_modelled is None


class Series(_Frozen):
    """One published series: a metric measured under every condition of the case."""

    label: str = Field(min_length=1)
    published: str = "values"  # dotted path in the case's entry of published.yaml
    metric: str = Field(min_length=1)  # the simulated metric (model.result.METRICS)
    better: Literal["higher", "lower"]
    tolerance: Tolerance = FACTOR_2
    select: dict[str, Any] = Field(default_factory=dict)
    not_modelled: str | None = Field(None, min_length=1)
    # Published in words, not figures (published.yaml gives only a note): the ratio per
    # condition that the words state, e.g. "no regression" = 1.0.
    stated_ratios: dict[str, float] | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"

    @property
    def modelled(self) -> bool:
        return self.not_modelled is None


class Compare(_Frozen):
    """How a validation case's runs stand for its published experiment (see the module docstring)."""

    baseline: str = Field(min_length=1)
    conditions: dict[str, Condition] = Field(min_length=1)
    series: list[Series] = Field(min_length=1)
    quick: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Compare:
        problems = []
        if self.baseline not in self.conditions:
            problems.append(
                f"baseline {self.baseline!r} is not one of the conditions ({', '.join(self.conditions)})"
            )
        elif not self.conditions[self.baseline].modelled and any(
            c.modelled for c in self.conditions.values()
        ):
            problems.append("the baseline cannot be not_modelled while other conditions are modelled")
        labels = [s.label for s in self.series]
        if len(set(labels)) != len(labels):
            problems.append(f"series labels repeat ({', '.join(labels)})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def modelled(self) -> bool:
        """Whether anything of the case runs (else its sweep is not launched)."""
        return any(s.modelled for s in self.series) and any(c.modelled for c in self.conditions.values())
