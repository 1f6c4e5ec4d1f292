"""report.html: the report's blocks (`verdict.blocks`) as one self-contained page. The pictures are embedded as
base64 data URIs and the style and the table sorting are inline, so the file opens anywhere without network access
or the folder beside it."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from lightning_adapt.verdict.blocks import Block, Heading, Items, Paragraph, Picture, Table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 78rem;
       padding: 0 1.5rem; color: #1f2328; line-height: 1.5; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.2rem; }
code { background: #f0f2f4; padding: .1rem .3rem; border-radius: 4px; font-size: 90%; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: 90%; }
.scroll { overflow-x: auto; margin: .5rem 0 1.2rem; }
table { border-collapse: collapse; font-size: 88%; }
th, td { border: 1px solid #d0d7de; padding: .3rem .55rem; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; position: sticky; top: 0; }
table.sortable thead th { cursor: pointer; } table.sortable thead th::after { content: " \\2195"; color: #8c959f; }
tbody tr:nth-child(even) { background: #fafbfc; } tbody th { background: #f6f8fa; font-weight: 600; }
.caption { font-weight: 600; margin-bottom: .2rem; }
li .note { display: block; color: #57606a; font-size: 92%; }
"""
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], up = th.dataset.order !== "up";
      th.dataset.order = up ? "up" : "down";
      var key = function (row) {
        var text = row.cells[column].textContent.trim(), number = parseFloat(text.replace(/,/g, ""));
        return isNaN(number) ? text : number;
      };
      Array.from(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b), order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0)
          : (typeof x === "number" ? -1 : 1);
        return up ? order : -order;
      }).forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""
"""Clicking a column's header sorts the table's rows by it (numbers as numbers), a second click the other way."""


def inline(text: str) -> str:
    """Text as HTML: escaped, with its `code` and **bold** marks as elements."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


def picture_uri(path: Path) -> str:
    """A PNG as a data URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def table_html(table: Table) -> str:
    """A table, sortable by its columns unless its first column names the rows (then each row's first cell is a
    row header)."""
    head = "".join(f"<th>{inline(cell)}</th>" for cell in table.header)
    first = "th" if table.row_headers else "td"
    rows = "".join(
        "<tr>" + "".join(f"<{first if i == 0 else 'td'}>{inline(cell)}</{first if i == 0 else 'td'}>"
                         for i, cell in enumerate(row)) + "</tr>"
        for row in table.rows)
    sortable = "" if table.row_headers else ' class="sortable"'
    caption = f'<div class="caption">{inline(table.caption)}</div>' if table.caption else ""
    return f'{caption}<div class="scroll"><table{sortable}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>' \
           f"</table></div>"


def block_html(block: Block, folder: Path) -> str:
    """One block as HTML; a picture is read from `folder` and embedded."""
    if isinstance(block, Heading):
        return f"<h{block.level}>{inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{inline(block.text)}</p>"
    if isinstance(block, Items):
        notes = block.notes or [""] * len(block.items)
        return "<ul>" + "".join(f"<li>{inline(item)}" + (f'<span class="note">{inline(note)}</span>' if note else "")
                                + "</li>" for item, note in zip(block.items, notes)) + "</ul>"
    if isinstance(block, Table):
        return table_html(block)
    return (f'<figure><img src="{picture_uri(folder / block.file)}" alt="{html.escape(block.text)}">'
            f"<figcaption>{inline(block.text)} ({html.escape(block.file)})</figcaption></figure>")


def page(blocks: list[Block], folder: Path) -> str:
    """report.html's text: the blocks (pictures read from `folder` and embedded), titled by the first heading."""
    title = next((block.text for block in blocks if isinstance(block, Heading)), "Adaptation report").replace("`", "")
    body = "\n".join(block_html(block, folder) for block in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n")
