"""Sweep config: loading, overrides, resolution, and one clear error per malformed config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep import config as config_mod
from sweep import points, yamlsafe
from sweep.config import ConfigError
from tests.sweep.conftest import invoke, tiny_config


def _with(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """tiny_config with a dotted path set (``space.params`` keys are taken whole); DELETE removes it."""
    data = copy.deepcopy(base or tiny_config())
    node = data
    parts = path.split(".")
    if path.startswith("space.params.") and len(parts) > 3:
        parts = ["space", "params", ".".join(parts[2:])]
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if value is DELETE:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return data


DELETE = object()
GRID_PARAMS = {"workload.kind": ["cpu-bound"]}


def _space(**fields: Any) -> dict[str, Any]:
    return tiny_config(space={"design": "grid", "params": GRID_PARAMS, **fields})


# (case id, config dict or raw text, extra -s overrides, text the error must contain)
MALFORMED: list[tuple[str, Any, list[str], str]] = [
    ("unknown top key", _with("bse", {}), [], "bse: unknown key; did you mean 'base'"),
    (
        "unknown space key",
        _with("space.desgin", "grid"),
        [],
        "space.desgin: unknown key; did you mean 'space.design'? allowed: design, params",
    ),
    (
        "unknown design",
        _with("space.design", "halton"),
        [],
        "space.design: 'halton' is not allowed; allowed:",
    ),
    ("empty space", _space(params={}), [], "space.params: empty"),
    (
        "unknown param",
        _with("space.params.vm.vcpu", [2]),
        [],
        "space.params.vm.vcpu: unknown scenario key; did you mean 'vm.vcpus'",
    ),
    ("wrong value type", _with("space.params.vm.vcpus", ["two"]), [], "space.params.vm.vcpus[0]"),
    (
        "value out of bounds",
        _with("space.params.vm.vcpus", [0]),
        [],
        "space.params.vm.vcpus[0]: input should be greater than or equal to 1",
    ),
    (
        "literal not allowed",
        _with("space.params.workload.kind", ["fortnite"]),
        [],
        "space.params.workload.kind[0]: 'fortnite' is not allowed; allowed:",
    ),
    (
        "range low above high",
        _space(design="random", samples=4, params={"vm.halt_poll_ns": {"low": 10, "high": 2}}),
        [],
        "space.params.vm.halt_poll_ns: low (10) must be below high (2)",
    ),
    (
        "log range from zero",
        _space(design="lhs", samples=4, params={"vm.halt_poll_ns": {"low": 0, "high": 10, "log": True}}),
        [],
        "space.params.vm.halt_poll_ns.low: a log range needs low > 0",
    ),
    (
        "range on a bool",
        _space(design="random", samples=4, params={"features.ple": {"low": 0, "high": 1}}),
        [],
        "space.params.features.ple: a range needs a numeric key",
    ),
    (
        "grid range without levels",
        _space(params={"vm.halt_poll_ns": {"low": 0, "high": 1000}}),
        [],
        "space.params.vm.halt_poll_ns: grid needs a list of values, or a range with levels",
    ),
    (
        "scalar instead of list",
        _with("space.params.vm.vcpus", 4),
        [],
        "space.params.vm.vcpus: must be a list of values or a range",
    ),
    ("empty value list", _with("space.params.vm.vcpus", []), [], "space.params.vm.vcpus: empty list"),
    ("repeated values", _with("space.params.vm.vcpus", [2, 2]), [], "space.params.vm.vcpus: values repeat"),
    (
        "sobol without samples",
        _space(design="sobol", params={"features.ple": [True, False], "vm.guest_hz": [100, 1000]}),
        [],
        "space.samples: required by sobol",
    ),
    (
        "sobol samples not a power of 2",
        _space(design="sobol", samples=12, params={"features.ple": [True, False]}),
        [],
        "space.samples: sobol needs a power of 2",
    ),
    ("samples with grid", _space(samples=10), [], "space.samples: not used by grid"),
    (
        "factorial with 3 levels",
        _space(design="factorial", params={"vm.guest_hz": [100, 250, 1000]}),
        [],
        "space.params.vm.guest_hz: factorial needs exactly 2 levels",
    ),
    (
        "exclude with sobol",
        _space(
            design="sobol",
            samples=8,
            params={"features.ple": [True, False]},
            exclude=[{"features.ple": True}],
        ),
        [],
        "space.exclude: not allowed with sobol",
    ),
    (
        "exclude unknown key",
        _space(exclude=[{"hardwre": "rome"}]),
        [],
        "space.exclude[0].hardwre: unknown scenario key; did you mean 'hardware'",
    ),
    (
        "exclude everything",
        _space(exclude=[{"workload.kind": "cpu-bound"}]),
        [],
        "space.exclude: the rules exclude every point",
    ),
    ("base unknown key", _with("base.vm.vcpu", 4), [], "base.vm.vcpu: unknown key"),
    ("base impossible scenario", _with("base.vm.vcpus", 64), [], "base.overcommit"),
    (
        "impossible combination",
        _with("space.params.vm.vcpus", [2, 8]),
        [],
        "space.params: 6 combination(s) make an impossible scenario, e.g. workload.kind='cpu-bound', features.ipi_fastpath=True, vm.vcpus=8: overcommit",
    ),
    ("zero replicates", _with("replicates", 0), [], "replicates: input should be greater than or equal to 1"),
    ("negative seed", _with("seed", -1), [], "seed: input should be greater than or equal to 0"),
    ("missing name", _with("name", DELETE), [], "name: required"),
    ("name with a slash", _with("name", "a/b"), [], "name: string should match pattern"),
    ("missing space", _with("space", DELETE), [], "space: required"),
    (
        "unknown report metric",
        _with("report", {"metrics": ["exit_per_s"]}),
        [],
        "report.metrics[0]: unknown metric 'exit_per_s'; did you mean 'exits_per_s'",
    ),
    (
        "unknown report by",
        _with("report", {"by": ["features.ipi_fast"]}),
        [],
        "report.by[0]: unknown parameter 'features.ipi_fast'; did you mean 'features.ipi_fastpath'",
    ),
    (
        "zero batch seconds",
        _with("run", {"batch_seconds": 0}),
        [],
        "run.batch_seconds: input should be greater than 0",
    ),
    (
        "retries not a number",
        _with("run", {"max_retries": "lots"}),
        [],
        "run.max_retries: input should be a valid integer",
    ),
    (
        "unknown run key",
        _with("run", {"outptu": "x"}),
        [],
        "run.outptu: unknown key; did you mean 'run.output'? allowed: output,",
    ),
    (
        "unknown range key",
        _space(design="random", samples=4, params={"vm.halt_poll_ns": {"low": 1, "high": 2, "logg": True}}),
        [],
        "space.params.vm.halt_poll_ns.logg: unknown key; did you mean 'space.params.vm.halt_poll_ns.log'? allowed: low, high, log",
    ),
    (
        "fractional integer range",
        _space(design="random", samples=4, params={"vm.vcpus": {"low": 1.5, "high": 2}}),
        [],
        "space.params.vm.vcpus.low: vm.vcpus is an integer key",
    ),
    (
        "integer false on an int key",
        _space(design="random", samples=4, params={"vm.vcpus": {"low": 1, "high": 2, "integer": False}}),
        [],
        "space.params.vm.vcpus.integer",
    ),
    (
        "second order with morris",
        _space(
            design="morris",
            samples=4,
            calc_second_order=True,
            params={"features.ple": [True, False], "vm.guest_hz": [100, 1000]},
        ),
        [],
        "space.calc_second_order: only for sobol",
    ),
    ("levels with grid", _space(num_levels=4), [], "space.num_levels: only for morris"),
    ("replicates twice", _with("space.replicates", 3), [], "replicates: given twice"),
    (
        "override bad value",
        tiny_config(),
        ["space.replicates=0"],
        "replicates: input should be greater than or equal to 1",
    ),
    (
        "override unknown key",
        tiny_config(),
        ["spce.design=grid"],
        "spce: unknown key; did you mean 'space'? allowed: name, description, base, space",
    ),
    ("override without =", tiny_config(), ["space.replicates"], "expected KEY=VALUE"),
    ("override bad scenario key", tiny_config(), ["base.vm.vcpus=lots"], "base.vm.vcpus"),
    ("not a mapping", "- just\n- a list\n", [], "must be a mapping"),
    ("not YAML", "name: [unclosed\n", [], "not valid YAML"),
]


@pytest.mark.parametrize(
    ("data", "overrides", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_config_is_one_paragraph_exit_2_and_writes_nothing(
    cli: Any, write_conf: Any, tmp_path: Path, data: Any, overrides: list[str], expected: str
) -> None:
    conf = write_conf(data)
    output = tmp_path / "out"
    args = ["launch", str(conf), "-o", str(output), "--no-report", "-q"]
    for item in overrides:
        args += ["-s", item]
    result = invoke(cli, *args)
    assert result.exit_code == 2, result.output
    text = result.stderr
    assert expected in text, text
    assert "Traceback" not in result.output + text
    assert "\n\n" not in text.strip(), "one paragraph"
    assert "nothing was written" in text
    assert not output.exists()


def test_at_least_25_malformed_cases() -> None:
    assert len(MALFORMED) >= 25


def test_plan_refuses_bad_config_too(cli: Any, write_conf: Any) -> None:
    result = invoke(cli, "plan", str(write_conf(_with("space.design", "halton"))))
    assert result.exit_code == 2
    assert "space.design" in result.stderr


def test_missing_file(cli: Any, tmp_path: Path) -> None:
    result = invoke(cli, "plan", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_overrides_and_replicates_alias(write_conf: Any) -> None:
    conf = write_conf(tiny_config())
    cfg = config_mod.load(
        conf, ["space.replicates=5", "base.vm.vcpus=1", "space.params.vm.guest_hz=[100, 1000]"]
    )
    assert cfg.replicates == 5
    assert cfg.base["vm"]["vcpus"] == 1
    assert cfg.space.params["vm.guest_hz"] == [100, 1000]
    top = config_mod.load(conf, ["replicates=4"])
    assert top.replicates == 4


def test_resolution_fills_defaults_and_types(write_conf: Any) -> None:
    data = _space(
        design="random", samples=4, params={"vm.vcpus": {"low": 1, "high": 2}, "overcommit": [1, 2]}
    )
    cfg = config_mod.load(write_conf(data))
    assert cfg.space.params["vm.vcpus"].integer is True
    assert cfg.space.params["overcommit"] == [1.0, 2.0]
    assert cfg.base["vm"]["apic"] == "x2apic_cluster"  # the full scenario, defaults included
    assert cfg.output == Path("results/tiny")


def test_config_hash_ignores_run_and_report(write_conf: Any) -> None:
    conf = write_conf(tiny_config())
    a = config_mod.load(conf)
    b = config_mod.load(conf, ["run.batch_seconds=1", "run.output=elsewhere", "report.metrics=[exits_per_s]"])
    c = config_mod.load(conf, ["seed=8"])
    same_scenario = config_mod.load(conf, ["base.vm.apic=x2apic_cluster"])  # the default, spelled out
    assert a.config_hash() == b.config_hash() == same_scenario.config_hash()
    assert a.config_hash() != c.config_hash()
    assert config_mod.diff(a.hashed_part(), c.hashed_part()) == ["seed: 7 -> 8"]


def test_check_counts_points(write_conf: Any) -> None:
    cfg = config_mod.load(write_conf(tiny_config()))
    assert points.check(cfg) == 3 * 2 * 2


def test_config_error_lists_every_problem() -> None:
    data = tiny_config(replicates=0, seed=-1)
    with pytest.raises(ConfigError) as info:
        config_mod.from_dict(data)
    assert len(info.value.problems) == 2


def test_plan_counts_samples_and_estimates_without_writing(cli: Any, tmp_path: Path) -> None:
    import json

    from tests.sweep.conftest import REPO

    out = tmp_path / "never"
    result = invoke(cli, "plan", str(REPO / "conf" / "smoke.yaml"), "-s", f"run.output={out}", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert (plan["design_rows"], plan["kept_rows"], plan["replicates"], plan["total"]) == (24, 18, 2, 36)
    assert sum(p["points"] for p in plan["partitions"]) == 36
    assert len(plan["sample"]) == 5 and plan["estimate_s"] > 0
    assert not out.exists()
    text = invoke(cli, "plan", str(REPO / "conf" / "smoke.yaml"), "--time", "0")
    assert "36 points" in text.stdout and "sample of 5 points" in text.stdout


def test_plan_shows_the_salib_problem(cli: Any, write_conf: Any) -> None:
    import json

    data = _space(
        design="morris", samples=4, params={"features.ple": [True, False], "vm.guest_hz": [100, 1000]}
    )
    plan = json.loads(invoke(cli, "plan", str(write_conf(data)), "--json", "--time", "0").stdout)
    assert plan["total"] == 4 * 3 * 2
    assert plan["problem"]["names"] == ["features.ple", "vm.guest_hz"] and plan["problem"]["num_levels"] == 4


# -- fuzzing: any file and any -s is a config or one ConfigError, nothing else ----------------------

KNOWN_KEYS = [
    "name",
    "seed",
    "replicates",
    "space.design",
    "space.samples",
    "space.params.vm.vcpus",
    "space.params.workload.kind",
    "space.exclude",
    "base.vm.vcpus",
    "base.sim.duration_ms",
    "base.topology.sockets",
    "base.hardware",
    "run.batch_seconds",
    "run.output",
    "report.metrics",
    "compare.baseline",
    "space.params.overcommit",
    "base.features.ipi_fastpath",
    "foo.bar",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["grid", "sobol", "ebizzy", "rome", "1e400", ".nan", "-.inf", "0x10", "~"]),
)
TREES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(KNOWN_KEYS), children, max_size=4)
    ),
    max_leaves=20,
)
YAML_TEXT = st.sampled_from(
    [
        "a: &x [1, 2]\nb: *x\n",
        "base: &b {vm: {vcpus: 2}}\nother: *b\nname: x\n",
        "x: &a [*a]\n",
        "name: a\nname: b\n",
        "? [1, 2]\n: 3\n",
        "!!python/object:os.system {}\n",
        "space: {params: {vm.vcpus: [1, 2]}}\nname: t\n",
        "\ufeffname: bom\n",
        "{",
        "- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -\n",
    ]
)


def _mutated(path: str, value: Any) -> dict[str, Any]:
    return _with(path, value)


VALID_OVERRIDES = [
    "replicates=2",
    "seed=3",
    "base.vm.vcpus=2",
    "space.params.vm.halt_poll_ns=[0, 1000]",
    "run.batch_seconds=1",
]
CONFIGS = st.one_of(
    st.just(("tree", tiny_config())),
    st.builds(_mutated, st.sampled_from(KNOWN_KEYS), SCALARS).map(lambda t: ("tree", t)),
    TREES.map(lambda t: ("tree", t)),
    st.builds(_mutated, st.sampled_from(KNOWN_KEYS), TREES).map(lambda t: ("tree", t)),
    st.binary(max_size=200).map(lambda b: ("bytes", b)),
    YAML_TEXT.map(lambda t: ("text", t)),
)
OVERRIDES = st.lists(
    st.one_of(
        st.sampled_from(VALID_OVERRIDES),
        st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KNOWN_KEYS), st.text(max_size=20)),
        st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KNOWN_KEYS), SCALARS.map(str)),
        st.text(max_size=20),
    ),
    max_size=3,
)


def _write(tmp: Path, kind: str, payload: Any) -> Path:
    import yaml

    path = tmp / "fuzz.yaml"
    if kind == "bytes":
        path.write_bytes(payload)
    elif kind == "text":
        path.write_text(payload)
    else:
        path.write_text(yaml.safe_dump(payload, allow_unicode=True))
    return path


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=CONFIGS, overrides=OVERRIDES)
def test_fuzzed_configs_and_overrides_are_a_config_or_one_config_error(
    tmp_path: Path, config: Any, overrides: list[str]
) -> None:
    path = _write(tmp_path, *config)
    try:
        loaded = config_mod.load(path, overrides)
    except ConfigError as err:
        assert err.problems and all(isinstance(p, str) and p and "\n" not in p for p in err.problems)
        assert "Traceback" not in err.paragraph()
        return
    try:
        assert points.check(loaded) >= 1
    except ConfigError as err:
        assert err.problems


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=CONFIGS, overrides=OVERRIDES)
def test_fuzzed_command_line_exits_0_or_2_without_a_traceback(
    cli: Any, tmp_path: Path, config: Any, overrides: list[str]
) -> None:
    path = _write(tmp_path, *config)
    args = ["plan", str(path), "--time", "0", "--sample", "0"]
    for item in overrides:
        args += ["-s", item]
    result = invoke(cli, *args)
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_fuzzed_yaml_text_is_data_or_one_yaml_error(text: str) -> None:
    try:
        yamlsafe.loads(text, "t")
    except yamlsafe.YamlError as err:
        assert str(err).startswith("t: ") and "\n" not in str(err)


def test_a_key_with_a_line_break_is_reported_on_one_line(tmp_path: Path) -> None:
    """Found by the fuzz test: a key typed with a newline must not split the error paragraph."""
    path = _write(tmp_path, "tree", tiny_config())
    with pytest.raises(ConfigError) as info:
        config_mod.load(path, ["base.vm.\nvcpus=2", "\n=1"])
    assert info.value.problems and all("\n" not in p for p in info.value.problems)
    assert "\\n" in " ".join(info.value.problems)


SHIPPED = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize(
    "path", sorted(SHIPPED.glob("*.yaml")) + sorted((SHIPPED / "checks").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_sweep_file_loads_and_expands(path: Path) -> None:
    """conf/*.yaml and conf/checks/*.yaml are valid sweeps whose points all build as scenarios."""
    cfg = config_mod.load(path)
    expanded = list(points.iter_points(cfg))
    assert expanded and len({p.point_id for p in expanded}) == len(expanded)
