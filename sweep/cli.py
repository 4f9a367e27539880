"""The ``sweep`` command: a thin typer shell over plain functions.

Each group of commands lives in its own module and registers itself here.
"""

from __future__ import annotations

import typer

from sweep import commands_report, commands_simulate, commands_sweep, commands_validate

app = typer.Typer(
    name="sweep",
    help="Simulate KVM hosts, sweep parameter spaces with Ray into Parquet, and report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (commands_simulate, commands_sweep, commands_report, commands_validate):
    module.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
