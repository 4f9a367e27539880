"""The report as a document: sections of text, tables and images, written as Markdown and HTML.

Every piece of text that can come from a sweep (its name, parameter values,
error messages) is escaped: HTML-escaped in the HTML page, and in the Markdown
file both HTML-escaped (Markdown passes raw HTML through) and with Markdown's
table and emphasis characters backslashed.  The HTML page is self-contained:
its images are base64 data URIs and its policy forbids scripts and remote loads.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

DOC_ROWS = 60  # rows of a table shown in the documents; the files under tables/ hold all


@dataclass
class Table:
    """A table: ``frame`` is written whole to tables/NAME.parquet and .csv; ``shown`` (default:
    ``frame``) is what the documents print, cut at :data:`DOC_ROWS` rows."""

    name: str
    title: str
    frame: pl.DataFrame
    shown: pl.DataFrame | None = None
    note: str = ""
    write: bool = True  # False: a view printed in the documents only (its data is in another table)
    show: bool = True  # False: written under tables/ only

    @property
    def display(self) -> pl.DataFrame:
        return self.frame if self.shown is None else self.shown


@dataclass
class Image:
    """A PNG under the report directory, by its relative path."""

    file: str
    caption: str


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]
    intro: list[str] = field(default_factory=list)  # paragraphs under the title (the description)
    facts: list[tuple[str, str]] = field(default_factory=list)  # the header: name, version, counts, time

    @property
    def tables(self) -> list[Table]:
        return [t for s in self.sections for t in s.tables]

    @property
    def warnings(self) -> list[tuple[str, str]]:
        return [(s.title, w) for s in self.sections for w in s.warnings]


def anchor(title: str) -> str:
    """A section's anchor: lower case, words joined by ``-`` (as GitHub makes them)."""
    kept = "".join(c if c.isalnum() or c in " -" else "" for c in title.lower())
    return "-".join(kept.split())


SIGNIFICANT = 4  # significant digits of every float the documents print
PLAIN_RANGE = (1e-6, 1e12)  # outside it, floats print in scientific form


def format_number(value: float, significant: int = SIGNIFICANT) -> str:
    """A float as the documents print it, the same way everywhere: 4 significant digits, thousands
    grouped, no exponent between 10^-6 and 10^12 (``15,610``, ``4,802``, ``4.600``, ``0.9350``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    rounded = float(f"{value:.{significant - 1}e}")  # rounding first: 9.99996 has 2 integer digits
    size = abs(rounded)
    if not PLAIN_RANGE[0] <= size < PLAIN_RANGE[1]:
        return f"{value:.{significant - 1}e}"
    decimals = max(significant - 1 - math.floor(math.log10(size)), 0)
    return f"{rounded:,.{decimals}f}"


def format_cell(value: object) -> str:
    """A cell as text: floats by :func:`format_number`, integers grouped, booleans as yes/no, null empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*[]|#"})


def md_escape(text: str) -> str:
    """Text safe inside Markdown (and its table cells): HTML-escaped, specials backslashed, one line."""
    return html.escape(" ".join(str(text).split()), quote=False).translate(_MD_SPECIAL)


def _rows(table: Table) -> tuple[list[str], list[list[str]], int]:
    frame = table.display
    rows = [[format_cell(v) for v in row] for row in frame.head(DOC_ROWS).iter_rows()]
    return frame.columns, rows, max(frame.height - DOC_ROWS, 0)


def _more(table: Table, left: int) -> str:
    return f"{left} more rows in tables/{table.name}.csv" if left else ""


def markdown_table(table: Table) -> str:
    """One table as a GitHub-flavoured Markdown table, with its title and notes."""
    columns, rows, left = _rows(table)
    lines = [f"### {md_escape(table.title)}", ""]
    if table.note:
        lines += [md_escape(table.note), ""]
    if not rows:
        return "\n".join([*lines, "_(no rows)_", ""])
    lines.append("| " + " | ".join(md_escape(c) for c in columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(md_escape(v) for v in row) + " |" for row in rows]
    more = _more(table, left)
    lines += ["", f"_{more}_"] if more else []
    if table.write:
        lines.append(f"\nFull table: `tables/{table.name}.parquet`, `tables/{table.name}.csv`")
    return "\n".join(lines) + "\n"


def to_markdown(doc: Document) -> str:
    """The whole report as Markdown (images linked from plots/), with a table of contents."""
    out = [f"# {md_escape(doc.title)}", ""]
    out += [md_escape(p) + "\n" for p in doc.intro]
    if doc.facts:
        out += ["| | |", "|---|---|"]
        out += [f"| {md_escape(k)} | {md_escape(v)} |" for k, v in doc.facts]
        out.append("")
    out += ["**Contents**", ""]
    out += [f"{i}. [{md_escape(s.title)}](#{anchor(s.title)})" for i, s in enumerate(doc.sections, 1)]
    out.append("")
    for section in doc.sections:
        out += [f"## {md_escape(section.title)}", ""]
        out += [f"> **Warning:** {md_escape(w)}\n" for w in section.warnings]
        out += [md_escape(p) + "\n" for p in section.text]
        out += [markdown_table(t) for t in section.tables if t.show]
        out += [f"![{md_escape(i.caption)}]({i.file})\n" for i in section.images]
    return "\n".join(out) + "\n"


CSS = """
body { font-family: system-ui, sans-serif; font-size: 16px; line-height: 1.45; margin: 2em auto;
  max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.8em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
h3 { font-size: 1.1em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; white-space: nowrap; } th { background: #f4f4f4; text-align: left; }
td { max-width: 36em; overflow: hidden; text-overflow: ellipsis; }
table.facts td:first-child { font-weight: 600; background: #f8f8f8; }
.scroll { overflow-x: auto; max-width: 100%; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.warning { background: #fff4e5; border-left: 4px solid #f0a030; padding: 4px 10px; margin: 4px 0; }
.note, .more { color: #555; font-size: 0.9em; } img { max-width: 100%; }
nav.toc { background: #f7f7f9; border: 1px solid #e2e2e8; padding: 0.4em 1.2em; display: inline-block; }
nav.toc ol { margin: 0.3em 0; padding-left: 1.4em; } .description { font-size: 1.05em; color: #333; }
figure { margin: 1em 0; } figcaption { color: #444; font-size: 0.9em; }
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def html_table(table: Table) -> str:
    """One table as escaped HTML."""
    columns, rows, left = _rows(table)
    esc = html.escape
    parts = [f"<h3>{esc(table.title)}</h3>"]
    if table.note:
        parts.append(f'<p class="note">{esc(table.note)}</p>')
    if not rows:
        return "\n".join([*parts, '<p class="note">(no rows)</p>'])
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "\n".join(
        "<tr>"
        + "".join(f'<td class="num">{esc(v)}</td>' if _is_number(v) else f"<td>{esc(v)}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    parts.append(
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>'
    )
    more = _more(table, left)
    if more:
        parts.append(f'<p class="more">{esc(more)}</p>')
    return "\n".join(parts)


def html_image(image: Image, root: Path) -> str:
    """An image embedded as a base64 data URI."""
    data = base64.b64encode((root / image.file).read_bytes()).decode("ascii")
    caption = html.escape(image.caption)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def to_html(doc: Document, root: Path) -> str:
    """The whole report as one self-contained HTML page (images read from ``root``), with the
    header facts and a table of contents linking each section's anchor."""
    esc = html.escape
    body: list[str] = [f"<h1>{esc(doc.title)}</h1>"]
    body += [f'<p class="description">{esc(p)}</p>' for p in doc.intro]
    if doc.facts:
        rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in doc.facts)
        body.append(f'<table class="facts"><tbody>{rows}</tbody></table>')
    items = "".join(f'<li><a href="#{anchor(s.title)}">{esc(s.title)}</a></li>' for s in doc.sections)
    body.append(f'<nav class="toc"><strong>Contents</strong><ol>{items}</ol></nav>')
    for section in doc.sections:
        body.append(f'<section id="{anchor(section.title)}"><h2>{esc(section.title)}</h2>')
        body += [f'<p class="warning"><strong>Warning:</strong> {esc(w)}</p>' for w in section.warnings]
        body += [f"<p>{esc(p)}</p>" for p in section.text]
        body += [html_table(t) for t in section.tables if t.show]
        body += [html_image(i, root) for i in section.images]
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(doc.title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_tables(doc: Document, directory: Path) -> None:
    """Every table, whole, as Parquet and CSV under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for table in (t for t in doc.tables if t.write):
        table.frame.write_parquet(directory / f"{table.name}.parquet")
        table.frame.write_csv(directory / f"{table.name}.csv")
