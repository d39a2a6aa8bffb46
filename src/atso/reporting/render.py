"""What a report holds (headings, texts, tables, figures) and how it is rendered as HTML and Markdown."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Union


# ----- blocks: what a report holds, independent of HTML or Markdown ---------------------------------------
@dataclass
class Figure:
    """A PNG; ``name`` is its file in ``report/`` (Markdown) and it is inlined in HTML."""

    name: str
    png: bytes
    alt: str
    caption: str = ""


@dataclass
class Link:
    """A table cell that links to a file; ``href`` is relative to ``report/``."""

    text: str
    href: str


Cell = Union[str, Figure, Link]


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str
    note: bool = False  # drawn as a highlighted note


@dataclass
class Table:
    """Rows of cells, header first; ``groups`` spans header cells (label, width) in an HTML row above it."""

    rows: list[list[Cell]]
    css: str
    caption: str = ""
    groups: list[tuple[str, int]] = field(default_factory=list)
    text_columns: int = 1  # leading columns of text (left-aligned); the rest are numbers


@dataclass
class Details:
    """Collapsible preformatted text (the config)."""

    summary: str
    text: str
    language: str = ""


Block = Union[Heading, Text, Table, Figure, Details]



def figures_of(blocks: list[Block]) -> list[Figure]:
    """Every figure of a report, in tables too: each is written as a file beside the Markdown."""
    found = []
    for block in blocks:
        if isinstance(block, Figure):
            found.append(block)
        elif isinstance(block, Table):
            found += [cell for row in block.rows for cell in row if isinstance(cell, Figure)]
    return found


# ----- rendering -----------------------------------------------------------------------------------------
CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1.5em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #2ca02c; padding-bottom: .2em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: .15em; }
h3 { font-size: 1.1em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: .92em; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: .9em; padding-top: .4em; max-width: 60em; }
th, td { border: 1px solid #d8d8d8; padding: .3em .6em; }
th { background: #f3f5f7; font-weight: 600; }
td { text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td:first-child, th:first-child { text-align: left; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafafa; }
table.vertical th { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap; padding: .5em .3em; }
table.vertical th:first-child, table.vertical th:last-child { writing-mode: horizontal-tb; transform: none; }
table.classwise td:last-child, table.generation td:nth-child(odd):not(:first-child) { font-weight: 600; }
table.cases td { text-align: center; vertical-align: top; }
table.cases td:first-child { text-align: left; white-space: normal; max-width: 14em; }
table.cases img { display: block; width: 300px; }
table.cases.wide td { padding: .3em .25em; } table.cases.wide img { width: 160px; }
table.time-jobs { font-size: .85em; }
.figcap { color: #444; font-size: .9em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .5em .8em; }
details { margin: .6em 0; } summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .85em; }
figure { margin: .6em 0 1.2em; } figure img { max-width: 100%; }
"""


def _data_uri(figure: Figure) -> str:
    return "data:image/png;base64," + base64.b64encode(figure.png).decode("ascii")


def _html_cell(cell: Cell, tag: str, number: bool = False) -> str:
    opening = f'{tag} class="num"' if number else tag
    if isinstance(cell, Figure):
        caption = f'<div class="figcap">{html.escape(cell.caption)}</div>' if cell.caption else ""
        inner = f'<img src="{_data_uri(cell)}" alt="{html.escape(cell.alt)}">{caption}'
    elif isinstance(cell, Link):
        inner = f'<a href="{html.escape(cell.href)}">{html.escape(cell.text)}</a>'
    else:
        inner = html.escape(cell)
    return f"<{opening}>{inner}</{tag}>"


def _html_table(table: Table) -> str:
    parts = [f'<table class="{table.css}">']
    if table.caption:
        parts.append(f"<caption>{html.escape(table.caption)}</caption>")
    parts.append("<thead>")
    header = list(table.rows[0])
    if table.groups:
        parts.append("<tr>" + "".join(f'<th colspan="{w}">{html.escape(t)}</th>' for t, w in table.groups) + "</tr>")
        column = 0
        for group, width in table.groups:  # under a group's name, its columns need only what differs
            for index in range(column, column + width):
                if group and str(header[index]).startswith(group + " "):
                    header[index] = str(header[index])[len(group) + 1 :]
            column += width
    parts.append("<tr>" + "".join(_html_cell(cell, "th") for cell in header) + "</tr></thead><tbody>")
    for row in table.rows[1:]:
        cells = [_html_cell(cell, "td", number=i >= table.text_columns) for i, cell in enumerate(row)]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def render_html(title: str, blocks: list[Block]) -> str:
    """One self-contained page: inline CSS, images as data URIs, no script."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            css = ' class="note"' if block.note else ""
            body.append(f"<p{css}>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, Figure):
            caption = f"<figcaption class='figcap'>{html.escape(block.caption)}</figcaption>" if block.caption else ""
            body.append(f'<figure><img src="{_data_uri(block)}" alt="{html.escape(block.alt)}">{caption}</figure>')
        elif isinstance(block, Details):
            body.append(
                f"<details><summary>{html.escape(block.summary)}</summary><pre>{html.escape(block.text)}</pre></details>"
            )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _md_cell(cell: Cell) -> str:
    if isinstance(cell, Figure):
        text = f"![{cell.alt}]({cell.name})"
        return f"{text}<br>{cell.caption}" if cell.caption else text
    if isinstance(cell, Link):
        return f"[{cell.text}]({cell.href})"
    return cell.replace("|", "\\|")


def render_markdown(title: str, blocks: list[Block]) -> str:
    """The same blocks as Markdown; images are files beside ``summary.md``."""
    lines = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            lines += [f"> {block.text}" if block.note else block.text, ""]
        elif isinstance(block, Table):
            header, *rows = block.rows
            lines.append("| " + " | ".join(_md_cell(c) for c in header) + " |")
            lines.append("|" + "|".join(":--" if i < block.text_columns else "--:" for i in range(len(header))) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines += ["", f"*{block.caption}*", ""] if block.caption else [""]
        elif isinstance(block, Figure):
            lines += [f"![{block.alt}]({block.name})", ""] + ([f"*{block.caption}*", ""] if block.caption else [])
        elif isinstance(block, Details):
            lines += [f"<details><summary>{block.summary}</summary>", "", f"```{block.language}", block.text.rstrip(),
                      "```", "", "</details>", ""]
    return "\n".join(lines)
