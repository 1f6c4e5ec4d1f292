"""report.md: the report's blocks (`verdict.blocks`) written as Markdown, pictures linked beside it."""

from __future__ import annotations

from lightning_adapt.verdict.blocks import Block, Heading, Items, Paragraph, Picture, Table


def table_text(table: Table) -> str:
    """A Markdown table ("|" inside a cell escaped), its caption on the line above."""
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [row(table.header), "|" + "---|" * len(table.header), *map(row, table.rows)]
    return "\n".join(([table.caption, ""] if table.caption else []) + lines)


def block_text(block: Block) -> str:
    """One block as Markdown."""
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Items):
        notes = block.notes or [""] * len(block.items)
        return "\n".join(f"- {item}" + (f"\n  {note}" if note else "") for item, note in zip(block.items, notes))
    if isinstance(block, Table):
        return table_text(block)
    return f"![{block.text}]({block.file})"


def markdown(blocks: list[Block]) -> str:
    """report.md's text: the blocks, a blank line apart."""
    return "\n\n".join(block_text(block) for block in blocks) + "\n"
