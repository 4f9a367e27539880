"""The README's dataset snippets (Polars, DuckDB, pandas) run verbatim against a real sweep output
and give finite numbers for the workloads they select."""

from __future__ import annotations

import math
import re
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pytest

from tests.pipelines.conftest import REPO

BEGIN, END = "<!-- dataset-snippets:begin -->", "<!-- dataset-snippets:end -->"


def snippets() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    region = text[text.index(BEGIN) : text.index(END)]
    return re.findall(r"```(python|sql)\n(.*?)```", region, flags=re.DOTALL)


def test_readme_has_the_three_readers() -> None:
    blocks = snippets()
    assert [lang for lang, _ in blocks] == ["python", "sql", "python"]
    code = "\n".join(body for _, body in blocks)
    for reader in ("pl.scan_parquet(", "hive_partitioning=True", "read_parquet(", "hive_partitioning = 1"):
        assert reader in code
    assert "pd.read_parquet(" in code


def finite_numbers(values: list[object]) -> list[float]:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    assert numbers, "no numbers in the result"
    assert all(math.isfinite(x) for x in numbers), numbers
    return numbers


@pytest.fixture
def in_results(smoke_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory where ``results/smoke`` is the real sweep's output."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "smoke").symlink_to(smoke_sweep)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("index", [0, 1, 2])
def test_snippet_runs_verbatim(in_results: Path, index: int, capsys: pytest.CaptureFixture[str]) -> None:
    lang, body = snippets()[index]
    if lang == "sql":
        rows = duckdb.sql(body).fetchall()
        assert rows and {r[0] for r in rows} == {"cascadelake", "rome"}
        finite_numbers([v for r in rows for v in r[2:]])
        return
    namespace: dict[str, object] = {}
    exec(compile(body, f"README.md snippet {index}", "exec"), namespace)  # noqa: S102 - the README's code
    printed = re.findall(r"print\((\w+)\)", body)
    assert printed, "the snippet prints its result"
    result = namespace[printed[-1]]
    if isinstance(result, pl.DataFrame):
        assert result.height and set(result["hardware"]) == {"cascadelake", "rome"}
        finite_numbers(result.select(pl.selectors.float()).to_series().to_list())
    else:
        assert isinstance(result, pd.Series | pd.DataFrame)
        assert len(result) == 2
        finite_numbers(pd.Series(result).tolist())
    assert capsys.readouterr().out.strip()
