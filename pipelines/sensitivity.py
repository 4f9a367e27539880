"""Variance-based sensitivity: Sobol indices (sobol designs) and Morris screening (morris designs).

The sweep stored SALib's sample: ``design_index`` is the row of ``sobol.sample``
(Saltelli order) or ``morris.sample``, the same for every replicate.  Each
metric is averaged over replicates per design row and handed to SALib's
``analyze`` with a fixed seed.  Both methods need every row of the sample:
a design with missing or failed points is refused, never patched.

A warning flags an index whose 95 % interval is wider than 10 % of the index
(the sample is too small to rank it) or a negative index (sampling noise
around zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines import exprs
from pipelines.dataset import ReportError

SEED = 20_240_605
RESAMPLES = 1000  # SALib's bootstrap resamples for the intervals
CONF_LEVEL = 0.95
WIDTH_LIMIT = 0.10  # an interval wider than this fraction of its index gets a warning
SALIB_KEYS = ("num_vars", "names", "bounds", "groups", "dists", "outputs")


class SensitivityRefused(ReportError):
    """The design cannot be analysed as it stands (missing points, a problem that does not fit)."""


def salib_problem(problem: dict[str, Any]) -> dict[str, Any]:
    """The SALib problem dict without the sweep's extra keys (N, calc_second_order, num_levels)."""
    missing = [k for k in ("names", "bounds") if k not in problem]
    if missing:
        raise SensitivityRefused(f"manifest problem lacks {', '.join(missing)}: cannot run SALib")
    clean = {k: problem[k] for k in SALIB_KEYS if k in problem}
    clean["num_vars"] = int(problem.get("num_vars", len(problem["names"])))
    return clean


def sobol_rows(problem: dict[str, Any]) -> int:
    """Rows of a Saltelli sample: N (D + 2), or N (2D + 2) with second-order indices."""
    if "N" not in problem:
        raise SensitivityRefused("manifest problem lacks N: cannot tell the size of the Sobol sample")
    d = int(problem.get("num_vars", len(problem["names"])))
    per_base = 2 * d + 2 if problem.get("calc_second_order", True) else d + 2
    return int(problem["N"]) * per_base


def design_means(runs: pl.LazyFrame, metrics: Sequence[str], inputs: Sequence[str] = ()) -> pl.LazyFrame:
    """Per design row: runs present, runs ok, each metric's mean over ok replicates, inputs as stored."""
    return (
        runs.group_by("design_index")
        .agg(
            pl.len().alias("present"),
            exprs.is_ok().sum().alias("ok"),
            *[pl.col(m).filter(exprs.is_ok()).mean().alias(m) for m in metrics],
            *[pl.col(c).first().cast(pl.Float64).alias(c) for c in inputs],
        )
        .sort("design_index")
    )


def check_complete(means: pl.DataFrame, rows: int, replicates: int, method: str) -> None:
    """Refuse unless design rows 0..rows-1 are all there, each with every replicate ok."""
    index = means["design_index"].to_numpy()
    outside = int(((index < 0) | (index >= rows)).sum())
    if outside:
        raise SensitivityRefused(
            f"{method} analysis refused: {outside} design rows lie outside the sample of {rows} rows "
            "in the manifest's problem; the dataset does not belong to this design"
        )
    ok = dict(zip(index.tolist(), means["ok"].to_list(), strict=True))
    short = [i for i in range(rows) if ok.get(i, 0) < replicates]
    if short:
        expected = rows * replicates
        lost = sum(replicates - ok.get(i, 0) for i in short)
        shown = ", ".join(str(i) for i in short[:10]) + (", ..." if len(short) > 10 else "")
        raise SensitivityRefused(
            f"{method} analysis refused: {lost} of {expected} points are missing or failed "
            f"(design_index {shown}); {method} indices need every point of the sample, "
            "re-run the missing points first"
        )


def interval_warning(index: float, conf: float, name: str) -> str:
    """The warning text for one index ('' when the index is usable)."""
    problems = []
    if np.isfinite(index) and index < 0:
        problems.append(f"{name} negative")
    if not np.isfinite(conf) or 2 * conf > WIDTH_LIMIT * abs(index):
        problems.append(f"{name} interval wider than {WIDTH_LIMIT:.0%} of the index")
    return "; ".join(problems)


def sobol_indices(
    runs: pl.LazyFrame, problem: dict[str, Any], metrics: Sequence[str], replicates: int
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """First-order and total Sobol indices with 95 % intervals per metric and parameter,
    the second-order table (when the sample has it) and warnings."""
    from SALib.analyze import sobol

    salib = salib_problem(problem)
    rows = sobol_rows(problem)
    second = bool(problem.get("calc_second_order", True))
    means = design_means(runs, metrics).collect()
    check_complete(means, rows, replicates, "Sobol")
    first_total: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    warnings: list[str] = []
    for metric in metrics:
        y = means[metric].to_numpy()
        if not np.all(np.isfinite(y)):
            warnings.append(f"Sobol: {metric} is NaN at {int((~np.isfinite(y)).sum())} design rows; skipped")
            continue
        res = sobol.analyze(
            salib, y, calc_second_order=second, num_resamples=RESAMPLES, conf_level=CONF_LEVEL, seed=SEED
        )
        first_total += _sobol_rows(metric, salib["names"], res)
        if second:
            pairs += _sobol_pairs(metric, salib["names"], res)
    return _frame(first_total, SOBOL_SCHEMA), _frame(pairs, SOBOL2_SCHEMA), warnings


SOBOL_SCHEMA = {
    "metric": pl.String,
    "parameter": pl.String,
    "S1": pl.Float64,
    "S1_low": pl.Float64,
    "S1_high": pl.Float64,
    "ST": pl.Float64,
    "ST_low": pl.Float64,
    "ST_high": pl.Float64,
    "warning": pl.String,
}
SOBOL2_SCHEMA = {
    "metric": pl.String,
    "parameter": pl.String,
    "other": pl.String,
    "S2": pl.Float64,
    "S2_low": pl.Float64,
    "S2_high": pl.Float64,
}
MORRIS_SCHEMA = {
    "metric": pl.String,
    "parameter": pl.String,
    "mu": pl.Float64,
    "mu_star": pl.Float64,
    "mu_star_low": pl.Float64,
    "mu_star_high": pl.Float64,
    "sigma": pl.Float64,
    "warning": pl.String,
}


def _frame(rows: list[dict[str, Any]], schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def _sobol_rows(metric: str, names: Sequence[str], res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per parameter: S1 and ST with their intervals and a warning."""
    out = []
    for i, name in enumerate(names):
        s1, c1, st, ct = (float(res[k][i]) for k in ("S1", "S1_conf", "ST", "ST_conf"))
        warning = "; ".join(w for w in (interval_warning(s1, c1, "S1"), interval_warning(st, ct, "ST")) if w)
        out.append(
            {
                "metric": metric,
                "parameter": name,
                "S1": s1,
                "S1_low": s1 - c1,
                "S1_high": s1 + c1,
                "ST": st,
                "ST_low": st - ct,
                "ST_high": st + ct,
                "warning": warning,
            }
        )
    return out


def _sobol_pairs(metric: str, names: Sequence[str], res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per parameter pair (i < j): S2 with its interval."""
    out = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            s2, c2 = float(res["S2"][i, j]), float(res["S2_conf"][i, j])
            out.append(
                {
                    "metric": metric,
                    "parameter": names[i],
                    "other": names[j],
                    "S2": s2,
                    "S2_low": s2 - c2,
                    "S2_high": s2 + c2,
                }
            )
    return out


def morris_rows(problem: dict[str, Any], planned_runs: int | None, replicates: int) -> int | None:
    """Rows of the Morris sample: trajectories x (inputs + 1) when the problem says, else the
    planned runs over the replicates, else unknown."""
    if problem.get("trajectories"):
        d = int(problem.get("num_vars", len(problem.get("names", []))))
        return int(problem["trajectories"]) * (d + 1)
    if planned_runs is None or replicates < 1 or planned_runs % replicates:
        return None
    return planned_runs // replicates


def design_inputs(design_file: Path, names: Sequence[str], rows: int) -> np.ndarray:
    """The sampler's rows in problem space, in design order, from the sweep's design file."""
    design = pl.read_parquet(design_file).sort("design_index")
    absent = [n for n in names if n not in design.columns]
    if absent or design.height != rows:
        raise SensitivityRefused(
            f"Morris analysis refused: {design_file.name} does not match the problem "
            f"({design.height} rows for {rows}; missing inputs: {', '.join(absent) or 'none'})"
        )
    return design.select(names).to_numpy()


def morris_indices(
    runs: pl.LazyFrame,
    problem: dict[str, Any],
    metrics: Sequence[str],
    replicates: int,
    columns: Sequence[str],
    rows: int | None,
    design_file: Path | None = None,
) -> tuple[pl.DataFrame, list[str]]:
    """Morris mu, mu* (with 95 % interval) and sigma per metric and parameter, and warnings.

    Morris needs the inputs, in the problem space SALib sampled, to know which
    input moved between trajectory steps: they come from the sweep's design file
    when there is one, else from the parameter columns (exact only for plain
    float ranges; a warning says so).
    """
    from SALib.analyze import morris

    salib = salib_problem(problem)
    names = list(salib["names"])
    warnings: list[str] = []
    if design_file is None:
        absent = [n for n in names if n not in columns]
        if absent:
            raise SensitivityRefused(
                f"Morris analysis refused: no design file and the runs lack the inputs {', '.join(absent)}"
            )
        warnings.append(
            "Morris: no design file; inputs read from the parameter columns (problem space assumed)"
        )
    means = design_means(runs, metrics, [] if design_file else names).collect()
    if rows is None:  # no count anywhere: trust the largest design row seen
        rows = int(means["design_index"].max()) + 1 if means.height else 0
    check_complete(means, rows, replicates, "Morris")
    x = design_inputs(design_file, names, rows) if design_file else means.select(names).to_numpy()
    levels = int(problem.get("num_levels") or 4)
    out: list[dict[str, Any]] = []
    for metric in metrics:
        y = means[metric].to_numpy()
        if not np.all(np.isfinite(y)):
            warnings.append(f"Morris: {metric} is NaN at {int((~np.isfinite(y)).sum())} design rows; skipped")
            continue
        res = morris.analyze(
            salib, x, y, num_resamples=RESAMPLES, conf_level=CONF_LEVEL, num_levels=levels, seed=SEED
        )
        out += _morris_rows(metric, names, res)
    return _frame(out, MORRIS_SCHEMA), warnings


def _morris_rows(metric: str, names: Sequence[str], res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for i, name in enumerate(names):
        mu_star, conf = float(res["mu_star"][i]), float(res["mu_star_conf"][i])
        out.append(
            {
                "metric": metric,
                "parameter": name,
                "mu": float(res["mu"][i]),
                "mu_star": mu_star,
                "mu_star_low": mu_star - conf,
                "mu_star_high": mu_star + conf,
                "sigma": float(res["sigma"][i]),
                "warning": interval_warning(mu_star, conf, "mu*"),
            }
        )
    return out
