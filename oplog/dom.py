"""SiYuan block DOM (what the editor sends in transactions) → block specs.

The DOM is read into raw Markdown per block, rendered with IALs and parsed
again by :mod:`oplog.kramdown` — the way SiYuan "spins" block DOM through
Markdown — so a block sent as DOM and the same block sent as Markdown yield
equal specs.
"""

from __future__ import annotations

import re
import warnings

from bs4 import BeautifulSoup, Comment, MarkupResemblesLocatorWarning, NavigableString, Tag

from oplog.errors import InvalidTransaction
from oplog.kramdown import (
    ATTR_NAME_RE,
    attribute_view_markdown,
    parse_markdown,
    query_embed_markdown,
    render_markdown,
)
from oplog.model import BlockSpec, is_block_id

__all__ = ["parse_dom", "NODE_TYPES"]

#: SiYuan DOM ``data-type`` → block type.
NODE_TYPES: dict[str, str] = {
    "NodeParagraph": "p",
    "NodeHeading": "h",
    "NodeList": "l",
    "NodeListItem": "i",
    "NodeBlockquote": "b",
    "NodeSuperBlock": "s",
    "NodeCodeBlock": "c",
    "NodeMathBlock": "m",
    "NodeTable": "t",
    "NodeThematicBreak": "tb",
    "NodeHTMLBlock": "html",
    "NodeAttributeView": "av",
    "NodeIFrame": "iframe",
    "NodeVideo": "video",
    "NodeAudio": "audio",
    "NodeWidget": "widget",
    "NodeBlockQueryEmbed": "query_embed",
}

_ZWSP = "\u200b"
# HTML attributes of a block div that are DOM plumbing, not block attributes.
_NOT_ATTRS = {"class", "contenteditable", "spellcheck", "draggable", "id"}
_HEADING_RE = re.compile(r"^h([1-6])$")
_BLANK_LINES_RE = re.compile(r"\n{2,}")
_ORDERED_MARKER_RE = re.compile(r"^(\d{1,9})[.)]$")

# Inline span types that wrap their content in a pair of Markdown delimiters.
_WRAPPERS: dict[str, tuple[str, str]] = {
    "strong": ("**", "**"),
    "b": ("**", "**"),
    "em": ("*", "*"),
    "i": ("*", "*"),
    "s": ("~~", "~~"),
    "del": ("~~", "~~"),
    "strike": ("~~", "~~"),
    "mark": ("==", "=="),
    "u": ("<u>", "</u>"),
    "kbd": ("<kbd>", "</kbd>"),
    "sup": ("^", "^"),
    "sub": ("~", "~"),
    "tag": ("#", "#"),
}

warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning)


def parse_dom(html: str) -> list[BlockSpec]:
    """Parse SiYuan block DOM (one or more sibling block ``div``s) into block specs."""
    if not isinstance(html, str):
        raise InvalidTransaction(f"DOM data must be a string, got {type(html).__name__}")
    if "<" not in html:
        raise InvalidTransaction("DOM data is not HTML: no block div with data-type")
    try:
        soup = BeautifulSoup(html.replace("<wbr>", "").replace("<wbr/>", ""), "html.parser")
    except Exception as exc:  # html.parser raises assorted errors on broken markup
        raise InvalidTransaction(f"DOM data cannot be parsed as HTML: {exc}") from exc
    try:
        raw = [_block(div) for div in _block_divs(soup)]
    except RecursionError as exc:
        raise InvalidTransaction("DOM data is nested too deeply") from exc
    if not raw:
        raise InvalidTransaction("DOM data holds no block div (a div with data-node-id and data-type)")
    return parse_markdown(render_markdown(raw, ial=True))


def _block_divs(root: Tag) -> list[Tag]:
    """The outermost elements carrying ``data-type`` below ``root`` (wrappers are looked through)."""
    found: list[Tag] = []
    for child in root.children:
        if not isinstance(child, Tag):
            continue
        if child.has_attr("data-type") and child.has_attr("data-node-id"):
            found.append(child)
        elif not _is_chrome(child):
            found.extend(_block_divs(child))
    return found


def _child_blocks(div: Tag) -> list[BlockSpec]:
    return [_block(child) for child in _block_divs(div)]


def _is_chrome(el: Tag) -> bool:
    return any(cls.startswith("protyle-") for cls in _classes(el))


def _classes(el: Tag) -> list[str]:
    value = el.get("class")
    if value is None:
        return []
    return value.split() if isinstance(value, str) else list(value)


def _attr(el: Tag, name: str) -> str:
    value = el.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else " ".join(value)


def _block(div: Tag) -> BlockSpec:
    node_type = _attr(div, "data-type")
    kind = NODE_TYPES.get(node_type)
    if kind is None:
        raise InvalidTransaction(f"unknown block data-type {node_type!r}")
    node_id = _attr(div, "data-node-id")
    attrs = {
        name: _attr(div, name)
        for name in div.attrs
        if name not in _NOT_ATTRS and not name.startswith("data-") and ATTR_NAME_RE.match(name)
    }
    spec = BlockSpec(kind, attrs=attrs, id=node_id if is_block_id(node_id) else "")
    subtype = _attr(div, "data-subtype")
    if kind == "p":
        spec.markdown = _paragraph_text(_editable(div))
    elif kind == "h":
        level = _HEADING_RE.match(subtype) or next(
            (m for m in map(_HEADING_RE.match, _classes(div)) if m), None
        )
        if level is None:
            raise InvalidTransaction("NodeHeading without a heading level (data-subtype h1…h6)")
        spec.subtype = f"h{level.group(1)}"
        text = _inline(_editable(div)).replace("\n", " ").strip()
        spec.markdown = "#" * int(level.group(1)) + (" " + text if text else "")
    elif kind == "l":
        spec.subtype = subtype if subtype in ("u", "o", "t") else "u"
        spec.children = _child_blocks(div)
        for item in spec.children:
            item.subtype = spec.subtype
    elif kind == "i":
        spec.subtype = subtype if subtype in ("u", "o", "t") else "u"
        marker = _ORDERED_MARKER_RE.match(_attr(div, "data-marker"))
        spec.markdown = f"{marker.group(1)}." if spec.subtype == "o" and marker else "-"
        if spec.subtype == "o" and marker is None:
            spec.markdown = "1."
        if spec.subtype == "t":
            spec.markdown += " [x]" if "protyle-task--done" in _classes(div) else " [ ]"
        spec.children = _child_blocks(div)
    elif kind in ("b", "s"):
        if kind == "s":
            layout = _attr(div, "data-sb-layout")
            spec.subtype = layout if layout in ("row", "col") else "row"
        spec.children = _child_blocks(div)
    elif kind == "c":
        spec.markdown = _code(div)
    elif kind == "m":
        content = _attr(div, "data-content").strip("\n")
        spec.markdown = f"$$\n{content}\n$$" if content else "$$\n$$"
    elif kind == "t":
        spec.markdown = _table(div)
    elif kind == "tb":
        spec.markdown = "---"
    elif kind == "html":
        holder = div.find("protyle-html")
        content = _attr(holder, "data-content") if isinstance(holder, Tag) else _attr(div, "data-content")
        spec.markdown = content.strip("\n")
    elif kind == "av":
        spec.markdown = attribute_view_markdown(_attr(div, "data-av-id"), _attr(div, "data-av-type"))
    elif kind in ("iframe", "video", "audio", "widget"):
        spec.markdown = _media(div, "iframe" if kind == "widget" else kind)
    elif kind == "query_embed":
        spec.markdown = query_embed_markdown(_attr(div, "data-content"))
    return spec


def _editable(div: Tag) -> Tag:
    """The block's text holder: its ``contenteditable`` child that is not editor chrome."""
    for child in div.children:
        if isinstance(child, Tag) and child.has_attr("contenteditable") and not _is_chrome(child):
            return child
    raise InvalidTransaction(
        f"{_attr(div, 'data-type')} {_attr(div, 'data-node-id')!r} has no contenteditable text"
    )


def _paragraph_text(holder: Tag) -> str:
    # A blank line would split the paragraph in two when parsed back.
    return _BLANK_LINES_RE.sub("\n", _inline(holder)).strip()


def _inline(el: Tag, *, in_cell: bool = False) -> str:
    """Inline DOM → Markdown (SiYuan's span types and plain HTML inline tags)."""
    out: list[str] = []
    for node in el.children:
        if isinstance(node, Comment):
            continue
        if isinstance(node, NavigableString):
            out.append(str(node).replace(_ZWSP, ""))
            continue
        if not isinstance(node, Tag) or _is_chrome(node):
            continue
        out.append(_inline_tag(node, in_cell))
    return "".join(out)


def _inline_tag(node: Tag, in_cell: bool) -> str:
    name = node.name
    if name == "br":
        return "<br />" if in_cell else "\n"
    if name == "wbr":
        return ""
    if name == "img":
        return _image(node)
    types = _attr(node, "data-type").split() if name == "span" else [name]
    if "img" in types:
        img = node.find("img")
        return _image(img) if isinstance(img, Tag) else ""
    if "inline-math" in types:
        return "$" + _attr(node, "data-content") + "$"
    if "block-ref" in types:
        text = node.get_text().replace(_ZWSP, "")
        quote = "'" if _attr(node, "data-subtype") == "d" else '"'
        return (
            f"(({_attr(node, 'data-id')} {quote}{text}{quote}))" if text else f"(({_attr(node, 'data-id')}))"
        )
    if "file-annotation-ref" in types:
        text = node.get_text().replace(_ZWSP, "")
        return f'<<{_attr(node, "data-id")} "{text}">>'
    if "code" in types:
        text = _code_span(node.get_text().replace(_ZWSP, ""))
    else:
        text = _inline(node, in_cell=in_cell)
    if "a" in types:
        href = _attr(node, "data-href") or _attr(node, "href")
        title = _attr(node, "data-title") or _attr(node, "title")
        text = f'[{text}]({href} "{title}")' if title else f"[{text}]({href})"
    for kind in types:
        wrap = _WRAPPERS.get(kind)
        if wrap is not None and text.strip():
            # Delimiters must hug the text: move outer spaces outside them.
            core = text.strip()
            lead = text[: len(text) - len(text.lstrip())]
            trail = text[len(text.rstrip()) :]
            text = f"{lead}{wrap[0]}{core}{wrap[1]}{trail}"
    return text


def _code_span(code: str) -> str:
    longest = max((len(run) for run in re.findall("`+", code)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if code.startswith("`") or code.endswith("`") else ""
    return f"{ticks}{pad}{code}{pad}{ticks}"


def _image(img: Tag) -> str:
    src = _attr(img, "data-src") or _attr(img, "src")
    alt = _attr(img, "alt")
    title = _attr(img, "title")
    return f'![{alt}]({src} "{title}")' if title else f"![{alt}]({src})"


def _code(div: Tag) -> str:
    language = ""
    label = div.find(class_="protyle-action__language")
    if isinstance(label, Tag):
        language = label.get_text().strip()
    if div.has_attr("data-content"):
        # Diagram languages (mermaid, …) render without an editable code div.
        code = _attr(div, "data-content")
        language = language or _attr(div, "data-subtype")
    else:
        holder = None
        for el in div.find_all(True):
            if el.has_attr("contenteditable") and not _is_chrome(el):
                holder = el
        code = holder.get_text() if holder is not None else ""
    code = code.replace(_ZWSP, "")
    char = "~" if "`" in language else "`"
    longest = max((len(run) for run in re.findall(re.escape(char) + "+", code)), default=0)
    fence = char * max(3, longest + 1)
    if code and not code.endswith("\n"):
        code += "\n"
    return f"{fence}{language}\n{code}{fence}"


def _table(div: Tag) -> str:
    table = div.find("table")
    if not isinstance(table, Tag):
        raise InvalidTransaction(f"NodeTable {_attr(div, 'data-node-id')!r} has no <table>")
    rows: list[list[str]] = []
    aligns: list[str] = []
    for tr in table.find_all("tr"):
        cells = [c for c in tr.children if isinstance(c, Tag) and c.name in ("th", "td")]
        if not rows:
            for cell in cells:
                align = _attr(cell, "align")
                if not align:
                    found = re.search(r"text-align:\s*(left|right|center)", _attr(cell, "style"))
                    align = found.group(1) if found else ""
                aligns.append(align)
        rows.append([_inline(c, in_cell=True).replace("\n", " ").strip().replace("|", "\\|") for c in cells])
    if not rows or not rows[0]:
        raise InvalidTransaction(f"NodeTable {_attr(div, 'data-node-id')!r} has no header row")
    width = len(rows[0])
    delims = {"left": ":---", "right": "---:", "center": ":---:"}
    lines = [
        "| " + " | ".join(rows[0]) + " |",
        "| " + " | ".join(delims.get(a, "---") for a in aligns) + " |",
    ]
    for row in rows[1:]:
        row = (row + [""] * width)[:width]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _media(div: Tag, tag: str) -> str:
    el = div.find(tag)
    if not isinstance(el, Tag):
        raise InvalidTransaction(f"{_attr(div, 'data-type')} {_attr(div, 'data-node-id')!r} has no <{tag}>")
    # The editor points src at a served path and keeps the stored one in data-src;
    # iframes (and widgets) keep data-src in their stored Markdown too.
    stored = _attr(el, "data-src")
    if stored:
        el.attrs = {
            name: (stored if name == "src" else value)
            for name, value in el.attrs.items()
            if name != "data-src" or tag == "iframe"
        }
    # bs4 sorts attributes when serialising; keep the editor's order instead.
    attrs = "".join(
        f' {name}="{_attr(el, name).replace("&", "&amp;").replace(chr(34), "&quot;")}"' for name in el.attrs
    )
    return f"<{tag}{attrs}>{el.decode_contents()}</{tag}>".replace(_ZWSP, "")
