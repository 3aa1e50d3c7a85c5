"""The report as a list of blocks, rendered once to markdown and once to self-contained HTML.

Building blocks instead of markdown text lets both outputs say exactly the same thing without a
markdown library: HTML gets real tables and the PNGs inline as base64.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class TableBlock:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Picture:
    path: str  # relative to the report folder
    alt: str


Block = Heading | Paragraph | Bullets | TableBlock | Picture

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; }
th { background: #eee; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, TableBlock):
            lines = ["| " + " | ".join(_md_cell(h) for h in block.headers) + " |"]
            lines.append("|" + "|".join("---" for _ in block.headers) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Picture):
            out.append(f"![{block.alt}]({block.path})")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """The markdown the blocks use inline, as HTML: `code` and **bold**."""
    return _BOLD.sub(r"<strong>\1</strong>", _CODE.sub(r"<code>\1</code>", html.escape(text)))


def to_html(blocks: list[Block], folder: Path, title: str) -> str:
    """Self-contained HTML: images read from ``folder`` and embedded."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, TableBlock):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.headers)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Picture):
            encoded = base64.b64encode((folder / block.path).read_bytes()).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(block.alt)}" src="data:image/png;base64,{encoded}"></figure>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"
