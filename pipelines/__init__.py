"""Sensitivity reports of sweep outputs: Parquet + manifest in, tables, plots, Markdown and HTML out.

Each pipeline is a function of Polars LazyFrames; nothing here runs a simulation
or imports ``sweep`` or ``ray``.  Entry points:

- :func:`write_report` writes ``OUTPUT/report/`` (what ``sweep report`` runs);
- :func:`open_dataset` opens ``OUTPUT`` lazily for a notebook, where
  :mod:`pipelines.effects`, :mod:`pipelines.main_effects`,
  :mod:`pipelines.sensitivity`, :mod:`pipelines.exits` and
  :mod:`pipelines.overview` are the steps.
"""

from pipelines.dataset import Dataset, ReportError, open_dataset
from pipelines.report import build_report, print_summary, summary_table, write_report

__all__ = [
    "Dataset",
    "ReportError",
    "build_report",
    "open_dataset",
    "print_summary",
    "summary_table",
    "write_report",
]
