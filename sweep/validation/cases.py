"""The validation cases: ``published.yaml`` (what was published) joined with each case's sweep
file and its ``compare:`` block (how the model reproduces it).

A case is declared once: its published values only in ``published.yaml``, its
setup and comparison rules only in ``conf/validation/<case>.yaml``.  Loading a
case checks the two against each other and against the model (every published
condition and series has its rule, metrics exist, selecting keys are scenario
keys) and reports every problem of every case at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep import config as config_mod
from sweep import yamlsafe
from sweep.config import ConfigError, SweepConfig
from sweep.errors import UserError
from sweep.validation.spec import Compare, Series

REPO = Path(__file__).resolve().parents[2]
VALIDATION_DIR = REPO / "conf" / "validation"
PUBLISHED_FILE = VALIDATION_DIR / "published.yaml"
CI_SUFFIX = "_ci95_pct"  # the dataset's within-run uncertainty of a metric: <metric>_ci95_pct
WARMUP_BIAS = "warmup_bias_pct"  # the dataset's start-transient bias of the run's main metric (%)


class ValidationError(UserError):
    """Problems the user can fix (unknown case, inconsistent case file, stale output), one line each."""

    def __init__(self, lines: list[str]):
        super().__init__(lines, "sweep validate: nothing was run")

    @property
    def lines(self) -> list[str]:
        return self.problems


@dataclass(frozen=True)
class PublishedSeries:
    """A series' published values per condition, or (published in words) the ratios the words state."""

    values: Mapping[str, float] | None
    ratios: Mapping[str, float]
    note: str


@dataclass(frozen=True)
class Case:
    """A published case: its entry in published.yaml, its sweep config and its compare block."""

    id: str
    published: Mapping[str, Any]
    config: SweepConfig
    quick: bool = False  # loaded with the compare block's quick reductions (or other overrides)

    @property
    def compare(self) -> Compare:
        assert self.config.compare is not None
        return self.config.compare

    @property
    def conf(self) -> Path:
        return conf_path(self.id)

    @property
    def output(self) -> Path:
        return self.config.output

    def series_values(self, series: Series) -> PublishedSeries:
        return published_series(self.published, series, self.compare.baseline)

    def columns(self) -> list[str]:
        """The dataset columns the comparison reads."""
        keys = {k for s in self.compare.series for k in s.select}
        keys |= {k for c in self.compare.conditions.values() for k in c.select}
        metrics = [s.metric for s in self.compare.series if s.modelled]
        ci = (m + CI_SUFFIX for m in dict.fromkeys(metrics))
        return [*sorted(keys), *dict.fromkeys(metrics), *ci, WARMUP_BIAS]


def conf_path(case_id: str) -> Path:
    return VALIDATION_DIR / f"{case_id}.yaml"


def load_published(path: Path = PUBLISHED_FILE) -> dict[str, dict[str, Any]]:
    """``published.yaml`` as ``{case id: entry}``, in the file's order."""
    try:
        entries = yamlsafe.load_file(path)
    except yamlsafe.YamlError as err:
        raise ValidationError([str(err)]) from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
        raise ValidationError([f"{path}: must be a list of cases, each with an id"])
    return {str(e["id"]): e for e in entries}


def published_series(entry: Mapping[str, Any], series: Series, baseline: str) -> PublishedSeries:
    """The published values of ``series`` (path ``series.published`` in the case's entry).

    Raises ``KeyError``/``ValueError`` with a one-line reason when the path or the values are wrong.
    """
    node: Any = entry
    for part in series.published.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"published.yaml has no {series.published!r} in this case")
        node = node[part]
    if not isinstance(node, Mapping):
        raise TypeError(f"published {series.published!r} is not a mapping of condition: value")
    note = str(node.get("note", "")) if isinstance(node.get("note"), str) else ""
    values = {str(k): v for k, v in node.items() if k != "note"}
    if not values:
        if series.stated_ratios is None:
            raise ValueError(
                f"published {series.published!r} has no figures (only a note): give stated_ratios, "
                "the ratio per condition that the published words state"
            )
        ratios = {baseline: 1.0, **series.stated_ratios}
        return PublishedSeries(None, ratios, note)
    bad = [k for k, v in values.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise ValueError(f"published {series.published!r}: not numbers: {', '.join(bad)}")
    floats = {k: float(v) for k, v in values.items()}
    if baseline not in floats:
        raise ValueError(f"published {series.published!r} has no baseline {baseline!r}")
    base = floats[baseline]
    ratios = {k: (v / base if base else math.nan) for k, v in floats.items()}
    return PublishedSeries(floats, ratios, note)


def case_ids(published: Mapping[str, Any] | None = None) -> list[str]:
    return list(published if published is not None else load_published())


def _problems(case: Case) -> list[str]:
    """What does not fit between the compare block, published.yaml and the model."""
    from model.result import METRIC_NAMES
    from model.scenario import flat_schema

    compare = case.compare
    keys = flat_schema()
    problems: list[str] = []
    names = set(compare.conditions)
    for name, cond in compare.conditions.items():
        problems += _select_problems(f"compare.conditions.{name}.select", cond.select, list(keys))
    for i, series in enumerate(compare.series):
        where = f"compare.series[{i}] ({series.label})"
        try:
            pub = case.series_values(series)
        except (KeyError, TypeError, ValueError) as err:
            problems.append(f"{where}.published: {err.args[0]}")
            continue
        published_names = set(pub.values or pub.ratios)
        if published_names != names:
            missing = sorted(published_names - names)
            extra = sorted(names - published_names)
            text = []
            if missing:
                text.append(f"published conditions without a rule: {', '.join(missing)}")
            if extra:
                text.append(f"conditions not published for this series: {', '.join(extra)}")
            problems.append(f"{where}: {'; '.join(text)}")
        if series.modelled:
            if series.metric not in METRIC_NAMES:
                problems.append(
                    f"{where}.metric: unknown metric {series.metric!r}{config_mod.closest(series.metric, list(METRIC_NAMES))}"
                    " (a metric the model does not produce yet: mark the series not_modelled)"
                )
            problems += _select_problems(f"{where}.select", series.select, list(keys))
    return problems


def _select_problems(where: str, select: Mapping[str, Any], keys: list[str]) -> list[str]:
    problems = []
    for key, value in select.items():
        if key not in keys:
            problems.append(f"{where}.{key}: {config_mod.unknown_scenario_key(key)}")
            continue
        _, problem = config_mod.coerce_value(key, value)
        if problem:
            problems.append(f"{where}.{key}: {problem}")
    return problems


def load_case(
    case_id: str,
    output_root: Path,
    *,
    quick: bool = False,
    overrides: Sequence[str] = (),
    published: Mapping[str, Mapping[str, Any]] | None = None,
) -> Case:
    """One case, its output under ``output_root/<case id>``; raise :class:`ValidationError`."""
    published = published if published is not None else load_published()
    if case_id not in published:
        raise ValidationError([f"unknown case {case_id!r}; allowed: {', '.join(published)}"])
    path = conf_path(case_id)
    if not path.exists():
        raise ValidationError([f"{case_id}: no sweep file {path}"])
    output = [f"run.output={Path(output_root) / case_id}"]
    try:
        config = config_mod.load(path, [*overrides, *output])
        if quick and config.compare is not None and config.compare.quick:
            config = config_mod.load(path, [*config.compare.quick, *overrides, *output])
    except ConfigError as err:
        raise ValidationError([f"{case_id}: {p}" for p in err.problems]) from None
    if config.compare is None:
        raise ValidationError([f"{case_id}: {path} has no compare: block (see docs/validate.md)"])
    case = Case(
        case_id, published[case_id], config, quick=bool(quick and config.compare.quick) or bool(overrides)
    )
    problems = _problems(case)
    if problems:
        raise ValidationError([f"{case_id}: {p}" for p in problems])
    return case


def load_cases(
    ids: Sequence[str] | None,
    output_root: Path,
    *,
    quick: bool = False,
    overrides: Mapping[str, Sequence[str]] | None = None,
    published_file: Path = PUBLISHED_FILE,
) -> list[Case]:
    """The cases named (all of published.yaml when none), in published.yaml's order.

    Every problem of every case is collected into one :class:`ValidationError`.
    """
    published = load_published(published_file)
    wanted = list(dict.fromkeys(ids)) if ids else list(published)
    unknown = [c for c in wanted if c not in published]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        names = ", ".join(repr(u) for u in unknown)
        raise ValidationError([f"unknown case{plural} {names}; allowed: {', '.join(published)}"])
    cases: list[Case] = []
    problems: list[str] = []
    for case_id in (c for c in published if c in wanted):
        try:
            cases.append(
                load_case(
                    case_id,
                    output_root,
                    quick=quick,
                    overrides=(overrides or {}).get(case_id, ()),
                    published=published,
                )
            )
        except ValidationError as err:
            problems += err.lines
    if problems:
        raise ValidationError(problems)
    return cases
