"""A Markdown report as one self-contained HTML page, to open on a phone or a laptop.

The page is the Markdown rendered by markdown-it-py (CommonMark and tables): the same content,
with every picture embedded as a data: URI and the CSS inline, so the file can be mailed or
copied alone and loads nothing from anywhere (its Content-Security-Policy forbids it).
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from digitlab.files import write_text

# Narrow screens: text reflows and table cells wrap; a table too wide for a phone becomes one card
# a row, each value under its column's name, so no column hides off-screen; a plot fits the column
# and a tap shows it at full size, scrolling in its own box (CSS only: the page runs no script).
CSS = """
:root { color-scheme: light; --fg: #1d2939; --muted: #667085; --line: #e4e7ec; --soft: #f5f6f8; --accent: #3563e9; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin: 0; background: #fff; color: var(--fg);
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 64rem; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; }
h1 { font-size: 1.75rem; line-height: 1.25; margin: 0.25rem 0 1rem; overflow-wrap: break-word; }
h2 { font-size: 1.3rem; line-height: 1.3; margin: 2.5rem 0 0.75rem; padding-bottom: 0.35rem;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 1.1rem; margin: 1.75rem 0 0.5rem; }
p, li { overflow-wrap: break-word; }
a { color: var(--accent); }
strong { font-weight: 650; }
img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
details.plot { margin: 1rem 0; }
details.plot summary { display: block; cursor: zoom-in; list-style: none; }
details.plot summary::-webkit-details-marker { display: none; }
details.plot[open] { overflow-x: auto; }
details.plot[open] summary { cursor: zoom-out; }
details.plot[open] img { max-width: none; }
.table { width: fit-content; max-width: 100%; overflow-x: auto; margin: 1rem 0 1.5rem;
  border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; font-size: 0.92rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.45rem 0.8rem; text-align: left; border-bottom: 1px solid var(--line); vertical-align: top; }
td { white-space: nowrap; }
th { background: var(--soft); font-weight: 600; font-size: 0.85rem; color: #344054; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:last-child td { border-bottom: 0; }
code { font: 0.88em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--soft);
  padding: 0.1em 0.35em; border-radius: 4px; }
pre { overflow-x: auto; background: var(--soft); border: 1px solid var(--line); border-radius: 8px;
  padding: 0.8rem 1rem; }
pre code { background: none; padding: 0; white-space: pre; }
.missing { color: var(--muted); font-style: italic; }
@media (max-width: 640px) {
  body { font-size: 15px; }
  main { padding: 1rem 0.75rem 2rem; }
  h1 { font-size: 1.4rem; }
  h2 { font-size: 1.15rem; margin-top: 2rem; }
  th, td { padding: 0.35rem 0.55rem; }
  td { white-space: normal; }
  .stack { width: auto; border: 0; overflow: visible; }
  .stack table, .stack tbody { display: block; }
  .stack thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); }
  .stack tr { display: flex; flex-wrap: wrap; gap: 0.2rem 0.9rem; padding: 0.5rem 0.7rem; margin-bottom: 0.5rem;
    border: 1px solid var(--line); border-radius: 8px; }
  .stack tr:has(> .key)::before { content: ""; flex-basis: 100%; order: 1; }
  .stack td { order: 2; padding: 0; border: 0; }
  .stack td:empty { display: none; }
  .stack td::before { content: attr(data-label); display: block; font-size: 0.75rem; color: var(--muted); }
  .stack td.key { order: 0; font-weight: 600; }
  .stack td.key::before { display: none; }
  .stack td.key + td.key { margin-left: -0.6rem; }
  .stack td.key + td.key::before { display: inline; content: "· "; font-size: inherit; }
  details.plot summary::after { content: "Tap to enlarge"; display: block; margin-top: 0.2rem; text-align: center;
    font-size: 0.75rem; color: var(--muted); }
  details.plot[open] summary::after { content: "Tap to fit the screen"; text-align: left; }
}
@media print { .table, pre { overflow: visible; } td { white-space: normal; } }
"""

# A table whose widest cells add up to more characters than a phone's line holds is shown as cards
# there; narrower ones keep their columns and wrap.
PHONE_CHARACTERS = 44

# Pictures only as data: URIs, styles only inline: a page that cannot fetch anything.
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def write_html(markdown_path: str | Path) -> Path:
    """`<stem>.html` beside `markdown_path`, its pictures read relative to it; returns its path."""
    source = Path(markdown_path)
    return write_text(source.with_suffix(".html"), render(source.read_text(encoding="utf-8"), source.parent))


def render(text: str, folder: Path) -> str:
    """A whole HTML page from Markdown; images are read from `folder`."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML in the source is shown, not run
    md.add_render_rule("table_open", _table_open)
    md.add_render_rule("table_close", _table_close)
    md.add_render_rule("image", _plot)
    tokens = md.parse(text)
    title, ids = "", set[str]()
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            words = tokens[i + 1].content
            title = title or words
            token.attrSet("id", _anchor(words, ids))  # so that a section can be linked: report.html#calibration
        elif token.type == "table_open":
            _label_cells(tokens, i)
        elif token.type == "paragraph_open" and [c.type for c in tokens[i + 1].children or []] == ["image"]:
            token.hidden = tokens[i + 2].hidden = True  # a picture alone: its <details> box, no <p> round it
            tokens[i + 1].children[0].meta["plot"] = True
        for child in token.children or []:
            if child.type == "image":
                _embed(child, folder)
    body = md.renderer.render(tokens, md.options, {})
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n'
        f"<title>{html.escape(title or 'digitlab report')}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )


def _embed(image: Token, folder: Path) -> None:
    """The picture's bytes in its src; one that is not a readable local file becomes a note."""
    src = str(image.attrGet("src") or "")
    path = folder / src
    kind = mimetypes.guess_type(src)[0] or ""
    if "://" not in src and not src.startswith("data:") and kind.startswith("image/") and path.is_file():
        image.attrSet("src", f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}")
        size = _png_size(path) if kind == "image/png" else None
        if size:  # the browser reserves the space before decoding, and knows the natural size
            image.attrSet("width", str(size[0]))
            image.attrSet("height", str(size[1]))
        return
    image.type, image.tag, image.children = "html_inline", "", None
    image.content = f'<span class="missing">[figure not found: {html.escape(src)}]</span>'


def _png_size(path: Path) -> tuple[int, int] | None:
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _anchor(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    anchor, n = base, 1
    while anchor in taken:
        n += 1
        anchor = f"{base}-{n}"
    taken.add(anchor)
    return anchor


def _label_cells(tokens: list[Token], start: int) -> None:
    """Each body cell gets its column's name (shown beside the value on a card); a table too wide
    for a phone is marked to become cards there."""
    end = next(i for i in range(start, len(tokens)) if tokens[i].type == "table_close")
    rows: list[list[int]] = []
    for i in range(start, end):
        if tokens[i].type == "tr_open":
            rows.append([])
        elif tokens[i].type in ("th_open", "td_open"):
            rows[-1].append(i)
    header = [re.sub(r"[*`]", "", tokens[i + 1].content) for i in rows[0]]  # the text, not its Markdown
    # The leading columns of names (every cell has a letter: "MNIST-C", "shot_noise") title the card.
    keys = 0
    while keys < min(2, len(header)) and all(
        re.search("[a-zA-Z]", tokens[row[keys] + 1].content) for row in rows[1:] if keys < len(row)
    ):
        keys += 1
    for row in rows[1:]:
        for column, i in enumerate(row):
            tokens[i].attrSet("data-label", header[column] if column < len(header) else "")
            if column < keys:
                tokens[i].attrSet("class", "key")
    widest = [max(len(tokens[row[c] + 1].content) for row in rows if c < len(row)) for c in range(len(header))]
    if len(header) >= 4 and sum(widest) > PHONE_CHARACTERS:
        tokens[start].meta["stack"] = True


def _table_open(renderer, tokens: list[Token], idx: int, options, env) -> str:
    # tabindex: a keyboard user can focus the box and scroll a wide table sideways (a laptop's case).
    kind = "table stack" if tokens[idx].meta.get("stack") else "table"
    return f'<div class="{kind}" tabindex="0">' + renderer.renderToken(tokens, idx, options, env)


def _table_close(renderer, tokens: list[Token], idx: int, options, env) -> str:
    return renderer.renderToken(tokens, idx, options, env) + "</div>\n"


def _plot(renderer, tokens: list[Token], idx: int, options, env) -> str:
    # A tap (or Enter) opens the picture at its full size, so a plot's small print can be read on a phone.
    image = renderer.image(tokens, idx, options, env)
    if not tokens[idx].meta.get("plot"):
        return image  # a picture within text stays inline
    return f'<details class="plot"><summary title="Show at full size">{image}</summary></details>'
