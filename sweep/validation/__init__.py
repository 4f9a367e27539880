"""Validation against published results (``sweep validate``).

* :mod:`~sweep.validation.spec`: the ``compare:`` block of a case's sweep file;
* :mod:`~sweep.validation.cases`: the cases, published.yaml joined with their sweep files;
* :mod:`~sweep.validation.stats`: ratios of means and their bootstrap intervals;
* :mod:`~sweep.validation.compare`: one case's runs against its published values, a table
  of structured verdict columns;
* :mod:`~sweep.validation.run`: running (resuming) the cases' sweeps;
* :mod:`~sweep.validation.table`: the table written (Parquet, CSV, Markdown) and shown.
"""
