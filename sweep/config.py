"""A sweep file: which scenarios to run, how often, and where the results go.

A sweep file is YAML with ``name``, ``description``, ``base`` (a scenario, the
same nested mapping ``sweep simulate`` takes), ``space`` (the design and its
parameters), ``replicates``, ``seed``, ``report`` and ``run``.  It is validated
in two steps, and every problem of both is reported at once as one
``key: what is wrong; allowed: ...`` line:

1. structure, by pydantic (``extra="forbid"``: unknown keys are named with the
   closest valid one);
2. meaning, against the model: the base scenario builds, every parameter is a
   scenario key, every value or range fits that key, the design has what it
   needs.

Whether every *combination* of values makes a valid scenario is checked by
:func:`sweep.points.check`, which walks the design.

The loaded config is *resolved*: ``base`` is the full scenario with every
default filled in, values carry the scenario's types, ranges know whether they
are integer, and ``run.output`` is set.  ``config_hash`` covers only what
decides the points and their results (name, base, space, replicates, seed), so
that changing ``run`` or ``report`` options does not block a resume.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from model.result import METRIC_NAMES
from model.scenario import Scenario, closest, describe_errors, flat_schema, set_dotted
from sweep import yamlsafe
from sweep.errors import UserError
from sweep.validation.spec import Compare

Design = Literal["grid", "factorial", "random", "lhs", "sobol", "morris"]
DESIGNS: tuple[str, ...] = get_args(Design)
SAMPLED_DESIGNS = frozenset({"random", "lhs", "sobol", "morris"})  # need ``samples``
SALIB_DESIGNS = frozenset({"sobol", "morris"})  # keep every sample row, in order
FACTORIAL_LEVELS = 2
DEFAULT_OUTPUT_ROOT = Path("results")
DEFAULT_MORRIS_LEVELS = 4
MAX_POINTS = 5_000_000  # a guard against a typo that asks for a year of simulation
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
CLOSE_MATCH_CUTOFF = 0.5
# Keys whose change does not change any point or result (so a resume is allowed).
UNHASHED_KEYS = ("description", "report", "run", "compare")
REPLICATES_ALIAS = "space.replicates"  # the spelling of the top-level ``replicates``


class ConfigError(UserError):
    """Every problem of a sweep config, one ``key: what is wrong; allowed: ...`` line each."""

    def __init__(self, problems: list[str], source: str = "sweep config"):
        self.source = source
        super().__init__(problems)

    def paragraph(self) -> str:
        """The one-paragraph form printed by the commands (no blank lines, no traceback)."""
        return f"sweep: invalid {self.source}; nothing was written:\n  - " + "\n  - ".join(self.problems)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Frozen):
    """A continuous (or integer) parameter range: ``{low, high, log, integer}``.

    ``levels`` turns a range into evenly spaced values for ``grid`` designs.
    ``integer`` defaults to the scenario key's type.
    """

    low: float
    high: float
    log: bool = False
    integer: bool | None = None
    levels: int | None = Field(None, ge=2)


def _param_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "range"
    if isinstance(value, list):
        return "values"
    if isinstance(value, Range):
        return "range"
    return None


ParamSpec = Annotated[
    Annotated[list[Any], Tag("values")] | Annotated[Range, Tag("range")],
    Discriminator(
        _param_kind,
        custom_error_type="param_spec",
        custom_error_message="must be a list of values or a range {low, high, log, integer}",
    ),
]


class Space(_Frozen):
    """The design, its parameters (dotted scenario keys) and the combinations to skip."""

    design: Design = "grid"
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    samples: int | None = Field(None, ge=1)
    calc_second_order: bool | None = None  # sobol only; default False
    num_levels: int | None = Field(None, ge=2)  # morris only; default 4


class Report(_Frozen):
    """What the report looks at: metrics of interest and parameters to split by."""

    metrics: list[str] | None = None
    by: list[str] | None = None


class Run(_Frozen):
    """How to run: none of these change a point or a result."""

    output: str | None = None  # default results/<name>
    max_retries: int = Field(3, ge=0, le=100)  # Ray retries of a batch whose worker died
    fail_fast: bool = False
    batch_seconds: float = Field(5.0, gt=0, le=3600)
    address: str | None = None  # "auto", HOST:PORT, ray://...; None: start Ray in-process
    num_cpus: int | None = Field(None, ge=1, le=100_000)


class SweepConfig(_Frozen):
    name: str = Field(pattern=NAME_PATTERN, max_length=100)
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    space: Space
    replicates: int = Field(1, ge=1, le=100_000)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    report: Report = Report()
    run: Run = Run()
    # Validation cases only (conf/validation/<case>.yaml): how the runs stand for the published
    # experiment; read by ``sweep validate`` (docs/validate.md), ignored by ``sweep launch``.
    compare: Compare | None = None

    # -- derived -------------------------------------------------------------

    def base_scenario(self) -> Scenario:
        return Scenario.build(self.base)

    @property
    def output(self) -> Path:
        return Path(self.run.output) if self.run.output else DEFAULT_OUTPUT_ROOT / self.name

    def to_json(self) -> dict[str, Any]:
        """The resolved config as plain JSON data (what the manifest records)."""
        return self.model_dump(mode="json")

    def hashed_part(self) -> dict[str, Any]:
        data = self.to_json()
        for key in UNHASHED_KEYS:
            data.pop(key, None)
        return data

    def config_hash(self) -> str:
        return hash_json(self.hashed_part())


def hash_json(data: Any) -> str:
    """A stable sha256 of JSON data (sorted keys, no whitespace)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


# -- loading -------------------------------------------------------------------


def load(
    path: Path | str, overrides: list[str] | None = None, settings: dict[str, Any] | None = None
) -> SweepConfig:
    """Read, override, validate and resolve a sweep file; raise :class:`ConfigError`.

    ``overrides``: ``-s KEY=VALUE`` strings (VALUE is YAML); ``settings``: typed
    values by dotted key (the command-line options, e.g. ``{"run.num_cpus": 4}``),
    applied after them.
    """
    path = Path(path)
    source = f"sweep config {path}"
    try:
        raw = yamlsafe.load_file(path)
    except yamlsafe.YamlError as err:
        raise ConfigError([str(err)], source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            [f"{path}: must be a mapping of keys ({', '.join(SweepConfig.model_fields)})"], source
        )
    return from_dict(raw, overrides, source, settings)


def parse_assignment(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` (VALUE is YAML; empty is null) as ``(key, value)``; raise ``ValueError`` with the problem."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"-s {item!r}: expected KEY=VALUE, e.g. vm.vcpus=96")
    try:
        return key, yamlsafe.loads(text, f"-s {key}") if text.strip() else None
    except yamlsafe.YamlError as err:
        raise ValueError(str(err)) from None


def plain_copy(tree: Any) -> Any:
    """A private copy of YAML/JSON data; shared (aliased) parts become separate copies."""
    if isinstance(tree, dict):
        return {k: plain_copy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [plain_copy(v) for v in tree]
    return tree


def from_dict(
    raw: dict[str, Any],
    overrides: list[str] | None = None,
    source: str = "sweep config",
    settings: dict[str, Any] | None = None,
) -> SweepConfig:
    """Validate and resolve a sweep config given as a mapping plus overrides (see :func:`load`).

    Every problem is reported at once: the structure's (pydantic), and the
    meaning of every section that has a valid structure.
    """
    raw = plain_copy(raw)
    problems: list[str] = []
    raw = _normalise_aliases(raw, problems)
    assignments: list[tuple[str, Any]] = []
    for item in overrides or []:
        try:
            assignments.append(parse_assignment(item))
        except ValueError as err:
            problems.append(str(err))
    assignments += list((settings or {}).items())
    for key, value in assignments:
        key = "replicates" if key == REPLICATES_ALIAS else key
        problem = set_dotted(raw, key, value, whole=("space.params",))
        if problem:
            problems.append(f"-s {problem}")
    if problems:
        raise ConfigError(problems, source)
    try:
        config = SweepConfig.model_validate(raw)
    except ValidationError as err:
        problems = describe_errors(err, SweepConfig) + _section_problems(raw)
        raise ConfigError(list(dict.fromkeys(problems)), source) from None
    problems = check(config)
    if problems:
        raise ConfigError(problems, source)
    return resolve(config)


def _section_problems(raw: dict[str, Any]) -> list[str]:
    """The meaning problems of the sections whose structure is valid (when the whole is not)."""
    problems: list[str] = []
    if isinstance(raw.get("base"), dict):
        problems += _scenario_problems(raw["base"])
    for name, model, checker in (("space", Space, _check_space), ("report", Report, _check_report)):
        try:
            part = model.model_validate(raw.get(name, {}))
        except ValidationError:
            continue  # its structure's problems are reported already
        problems += checker(part)
    return problems


def _normalise_aliases(raw: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """Accept ``space.replicates`` (the issue's spelling) for the top-level ``replicates``."""
    space = raw.get("space")
    if isinstance(space, dict) and "replicates" in space:
        value = space.pop("replicates")
        if "replicates" in raw and raw["replicates"] != value:
            problems.append("replicates: given twice (top level and space.replicates) with different values")
        raw["replicates"] = value
    return raw


# -- checks against the model -------------------------------------------------------


def _scenario_problems(base: dict[str, Any]) -> list[str]:
    try:
        Scenario.model_validate(base)
    except ValidationError as err:
        return describe_errors(err, Scenario, prefix="base.")
    return []


def _field_adapters() -> dict[str, TypeAdapter[Any]]:
    """A validator per flat scenario key: the field's type and bounds, no cross-field rules."""
    out: dict[str, TypeAdapter[Any]] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            else:
                typ = Annotated[ann, *field.metadata] if field.metadata else ann  # type: ignore[valid-type]
                out[prefix + name] = TypeAdapter(typ)

    walk(Scenario, "")
    return out


_ADAPTERS: dict[str, TypeAdapter[Any]] | None = None


def coerce_value(key: str, value: Any) -> tuple[Any, str | None]:
    """``value`` converted to the scenario key's type, or a problem (type, bounds, allowed)."""
    global _ADAPTERS
    if _ADAPTERS is None:
        _ADAPTERS = _field_adapters()
    if isinstance(value, (dict, list)):
        return None, f"must be a single value, not {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return None, f"must be a finite number (got {value})"
    try:
        coerced = _ADAPTERS[key].validate_python(value)
    except ValidationError as err:
        return None, "; ".join(describe_errors(err, None))
    if isinstance(coerced, float) and not math.isfinite(coerced):
        return None, f"must be a finite number (got {value!r})"
    return coerced, None


def check(config: SweepConfig) -> list[str]:
    """Problems of meaning: base scenario, parameters, design rules, exclusions, report, run."""
    problems = _scenario_problems(config.base) + _check_space(config.space) + _check_report(config.report)
    if config.run.address is not None and not config.run.address.strip():
        problems.append("run.address: empty; allowed: auto, HOST:PORT, ray://HOST:PORT, or leave it out")
    return problems


def unknown_scenario_key(key: str) -> str:
    """The problem of an unknown dotted scenario key: the closest one, and the keys allowed
    (those of the same group, ``vm.*``, or the groups)."""
    keys = list(flat_schema())
    group = key.split(".")[0]
    same = [k for k in keys if k.startswith(group + ".")]
    allowed = same or list(dict.fromkeys(k.split(".")[0] + (".*" if "." in k else "") for k in keys))
    return f"unknown scenario key{closest(key, keys)}; allowed: {', '.join(allowed)}"


def _check_space(space: Space) -> list[str]:
    schema = flat_schema()
    keys = list(schema)
    prefix = "space.params"
    problems: list[str] = []
    if not space.params:
        problems.append(
            f"{prefix}: empty; give at least one parameter (dotted scenario key: values or range)"
        )
    for key, spec in space.params.items():
        where = f"{prefix}.{key}"
        if key not in schema:
            problems.append(f"{where}: {unknown_scenario_key(key)}")
        elif isinstance(spec, Range):
            problems += _check_range(where, key, schema[key], spec, space.design)
        else:
            problems += _check_values(where, key, spec, space.design)
    return problems + _check_design(space) + _check_exclude(space, keys)


def _check_report(report: Report) -> list[str]:
    problems: list[str] = []
    for i, metric in enumerate(report.metrics or []):
        if metric not in METRIC_NAMES:
            problems.append(
                f"report.metrics[{i}]: unknown metric {metric!r}{closest(metric, list(METRIC_NAMES))}"
            )
    allowed_by = [*flat_schema(), "workload"]
    for i, key in enumerate(report.by or []):
        if key not in allowed_by:
            problems.append(f"report.by[{i}]: unknown parameter {key!r}{closest(key, allowed_by)}")
    return problems


def _check_values(where: str, key: str, values: list[Any], design: str) -> list[str]:
    problems: list[str] = []
    if not values:
        return [f"{where}: empty list; give at least one value"]
    coerced = []
    for i, value in enumerate(values):
        fixed, problem = coerce_value(key, value)
        if problem:
            problems.append(f"{where}[{i}]: {problem}")
        else:
            coerced.append(fixed)
    if problems:
        return problems
    if len(set(map(repr, coerced))) != len(coerced):
        problems.append(f"{where}: values repeat ({values!r}); give each value once")
    if design == "factorial" and len(values) != FACTORIAL_LEVELS:
        problems.append(f"{where}: factorial needs exactly {FACTORIAL_LEVELS} levels (got {len(values)})")
    if design in SALIB_DESIGNS and len(values) < 2:
        problems.append(f"{where}: {design} needs at least 2 values (a constant belongs in base)")
    return problems


def _check_range(where: str, key: str, kind: type, spec: Range, design: str) -> list[str]:
    if kind not in (int, float):
        return [f"{where}: a range needs a numeric key, and {key} is {kind.__name__}; give a list of values"]
    problems: list[str] = []
    for bound in ("low", "high"):
        value = getattr(spec, bound)
        if kind is int and value != int(value):
            problems.append(f"{where}.{bound}: {key} is an integer key (got {value!r})")
            continue
        _, problem = coerce_value(key, int(value) if kind is int else value)
        if problem:
            problems.append(f"{where}.{bound}: {problem}")
    if not spec.low < spec.high:
        problems.append(f"{where}: low ({spec.low:g}) must be below high ({spec.high:g})")
    if spec.log and spec.low <= 0:
        problems.append(f"{where}.low: a log range needs low > 0 (got {spec.low:g})")
    if kind is int and spec.integer is False:
        problems.append(f"{where}.integer: {key} is an integer key; integer cannot be false")
    if design == "grid" and spec.levels is None:
        problems.append(f"{where}: grid needs a list of values, or a range with levels (e.g. levels: 5)")
    if design != "grid" and spec.levels is not None:
        problems.append(f"{where}.levels: only for grid designs ({design} samples the range itself)")
    return problems


def _check_design(space: Space) -> list[str]:
    problems: list[str] = []
    design = space.design
    if design in SAMPLED_DESIGNS and space.samples is None:
        hint = {"sobol": "base samples N, a power of 2", "morris": "trajectories"}.get(design, "points")
        problems.append(f"space.samples: required by {design} ({hint})")
    if design not in SAMPLED_DESIGNS and space.samples is not None:
        problems.append(
            f"space.samples: not used by {design}; allowed with: {', '.join(sorted(SAMPLED_DESIGNS))}"
        )
    if design == "sobol" and space.samples is not None and space.samples & (space.samples - 1):
        problems.append(
            f"space.samples: sobol needs a power of 2 (got {space.samples}; e.g. {_pow2(space.samples)})"
        )
    if space.calc_second_order is not None and design != "sobol":
        problems.append(f"space.calc_second_order: only for sobol (design is {design})")
    if space.calc_second_order and len(space.params) < 2:
        problems.append("space.calc_second_order: needs at least 2 parameters")
    if space.num_levels is not None and design != "morris":
        problems.append(f"space.num_levels: only for morris (design is {design})")
    if design in SALIB_DESIGNS and space.exclude:
        problems.append(f"space.exclude: not allowed with {design}: its analysis needs every sample row")
    return problems


def _pow2(n: int) -> int:
    return 1 << max(1, round(math.log2(n)))


def _check_exclude(space: Space, keys: list[str]) -> list[str]:
    problems: list[str] = []
    for i, rule in enumerate(space.exclude):
        where = f"space.exclude[{i}]"
        if not rule:
            problems.append(f"{where}: empty rule (it would exclude every point)")
        for key, value in rule.items():
            if key not in keys:
                problems.append(f"{where}.{key}: {unknown_scenario_key(key)}")
                continue
            for item in value if isinstance(value, list) else [value]:
                _, problem = coerce_value(key, item)
                if problem:
                    problems.append(f"{where}.{key}: {problem}")
    return problems


# -- resolution -------------------------------------------------------------------------


def resolve(config: SweepConfig) -> SweepConfig:
    """The config with defaults made explicit and values in the scenario's types."""
    schema = flat_schema()
    params: dict[str, Any] = {}
    for key, spec in config.space.params.items():
        if isinstance(spec, Range):
            integer = schema[key] is int or bool(spec.integer)
            low, high = (int(spec.low), int(spec.high)) if integer else (spec.low, spec.high)
            params[key] = spec.model_copy(update={"integer": integer, "low": low, "high": high})
        else:
            params[key] = [coerce_value(key, v)[0] for v in spec]
    exclude = [
        {
            k: [coerce_value(k, x)[0] for x in v] if isinstance(v, list) else coerce_value(k, v)[0]
            for k, v in r.items()
        }
        for r in config.space.exclude
    ]
    space = config.space
    updates: dict[str, Any] = {"params": params, "exclude": exclude}
    if space.design == "sobol" and space.calc_second_order is None:
        updates["calc_second_order"] = False
    if space.design == "morris" and space.num_levels is None:
        updates["num_levels"] = DEFAULT_MORRIS_LEVELS
    run = config.run
    if run.output is None:
        run = run.model_copy(update={"output": str(DEFAULT_OUTPUT_ROOT / config.name)})
    return config.model_copy(
        update={
            "base": config.base_scenario().given(),  # resolved keys stay unset: kernels and hints may vary
            "space": space.model_copy(update=updates),
            "run": run,
        }
    )


def diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """What changed between two JSON configs, one ``key: old -> new`` line each."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                lines.append(f"{where}: added ({_short(new[key])})")
            elif key not in new:
                lines.append(f"{where}: removed (was {_short(old[key])})")
            else:
                lines += diff(old[key], new[key], where)
        return lines
    if old != new:
        return [f"{prefix or 'config'}: {_short(old)} -> {_short(new)}"]
    return []


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."
