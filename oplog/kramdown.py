"""SiYuan-flavoured Markdown (CommonMark, GFM tables, task lists, ``$$`` math, kramdown IAL) ⇄ blocks.

Parsing runs markdown-it's block phase only (inline content is kept as source
text) and builds :class:`~oplog.model.BlockSpec` trees whose leaf ``markdown``
is canonical: rendering it and parsing again yields the same spec. The
canonical forms are documented in ``docs/content.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_block.html_block import html_block as _md_html_block
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin

from oplog.frontmatter import front_matter_attrs, split_front_matter
from oplog.model import BlockSpec, is_block_id

__all__ = [
    "BlockLike",
    "parse_markdown",
    "parse_document_markdown",
    "parse_import_markdown",
    "render_markdown",
    "render_block",
    "plain_text",
    "parse_ial",
    "format_ial",
    "attribute_view_id",
    "attribute_view_markdown",
    "query_embed_markdown",
    "ATTR_NAME_RE",
]

#: Attribute names an IAL may carry; others are dropped.
ATTR_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")

# A whole IAL line: ``{: name="value" …}`` (values are HTML-escaped, so no raw quote).
_IAL_LINE_RE = re.compile(r'^\{:((?:\s+[^\s="{}]+="[^"]*")*)\s*\}$')
# An IAL at the very start of a list item's text: SiYuan's ``* {: id="…"}text``.
_IAL_PREFIX_RE = re.compile(r'^\{:((?:\s+[^\s="{}]+="[^"]*")*)\s*\}')
_IAL_PAIR_RE = re.compile(r'([^\s="{}]+)="([^"]*)"')
_TASK_RE = re.compile(r"^\[([ xX])\](?:[ \t]+|\n|$)")
_SUPER_OPEN_RE = re.compile(r"^\{\{\{(row|col)\s*$")
_QUERY_EMBED_RE = re.compile(r"^\{\{(?!\{)[\s\S]*\}\}$")
_MEDIA_RE = re.compile(r"^<(iframe|video|audio)\b[\s\S]*</\1>$", re.IGNORECASE)
_WIDGET_RE = re.compile(r"""\bdata-subtype\s*=\s*["']widget["']""")
_AV_RE = re.compile(r"""^<div\b[^>]*\bdata-type\s*=\s*["']NodeAttributeView["']""")
_AV_ID_RE = re.compile(r"""\bdata-av-id\s*=\s*["']([^"']*)["']""")
_AV_TYPE_RE = re.compile(r"""\bdata-av-type\s*=\s*["']([^"']*)["']""")
_ORDERED_MARK_RE = re.compile(r"^(\d{1,9})[.)]")

#: One line of words and punctuation that no Markdown rule (commonmark, tables,
#: strikethrough, math, IAL, SiYuan marks, tags and refs) gives a meaning to: it
#: starts with a letter (no list marker, heading, indent or block quote) and holds
#: none of ``\\ ` * _ ~ = # $ & < > [ ] { } |`` nor a line break. Such text is its
#: own plain text and a single paragraph: skipping markdown-it for it makes
#: ``plain_text`` ~40x and ``parse_markdown`` ~20x cheaper on ordinary paragraphs.
_PLAIN_LINE_RE = re.compile(r"[^\W\d_][^\W_]*(?:[ ,.;:?!'\"/%@()+\-]+[^\W_]*)*")


# SiYuan writes a newline inside an attribute value as this token.
_ESC_NEWLINE = "_esc_newline_"

_CONTAINER_CLOSE = {
    "bullet_list_close",
    "ordered_list_close",
    "list_item_close",
    "blockquote_close",
    "superblock_close",
}


class BlockLike(Protocol):
    """Anything renderable as a block: ``BlockSpec`` or the engine's tree nodes."""

    @property
    def type(self) -> str: ...
    @property
    def subtype(self) -> str: ...
    @property
    def markdown(self) -> str: ...
    @property
    def attrs(self) -> Mapping[str, str]: ...
    @property
    def children(self) -> Sequence[BlockLike]: ...
    @property
    def id(self) -> str: ...


# ---------------------------------------------------------------------------
# IAL text


def parse_ial(text: str) -> dict[str, str] | None:
    """Parse one ``{: name="value" …}`` line into its attributes (``id`` included); None if it is not one."""
    match = _IAL_LINE_RE.match(text.strip())
    if match is None:
        return None
    return _ial_pairs(match.group(1))


def _ial_pairs(body: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for name, value in _IAL_PAIR_RE.findall(body):
        if ATTR_NAME_RE.match(name):
            attrs[name] = _unescape_attr(value)
    return attrs


def _unescape_attr(value: str) -> str:
    import html

    return html.unescape(value).replace(_ESC_NEWLINE, "\n")


def _escape_attr(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace('"', "&quot;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        # A pipe would let GFM read an IAL line over a ``---`` as a table header.
        .replace("|", "&#124;")
        .replace("\n", _ESC_NEWLINE)
    )


def format_ial(block_id: str, attrs: Mapping[str, str]) -> str:
    """Format an IAL line: ``id`` first (when given), then ``attrs`` in their order."""
    parts = [f'id="{_escape_attr(block_id)}"'] if block_id else []
    parts.extend(f'{name}="{_escape_attr(value)}"' for name, value in attrs.items() if name != "id")
    return "{: " + " ".join(parts) + "}" if parts else "{:}"


def _apply_ial(spec: BlockSpec, attrs: Mapping[str, str]) -> None:
    for name, value in attrs.items():
        if name == "id":
            # An invalid id is dropped rather than stored: ids are validated everywhere else.
            if is_block_id(value):
                spec.id = value
        else:
            spec.attrs[name] = value


def attribute_view_markdown(av_id: str, av_type: str = "table") -> str:
    """The canonical Markdown of an attribute view block."""
    return (
        f'<div data-type="NodeAttributeView" data-av-id="{_escape_attr(av_id)}" '
        f'data-av-type="{_escape_attr(av_type or "table")}"></div>'
    )


def _av_type(markdown: str) -> str:
    match = _AV_TYPE_RE.search(markdown)
    return match.group(1) if match else "table"


def query_embed_markdown(script: str) -> str:
    """The canonical Markdown of an embed block: ``{{`` script ``}}``."""
    return "{{" + script.strip() + "}}"


def attribute_view_id(markdown: str) -> str:
    """The ``data-av-id`` of an attribute view block's Markdown, or ``""``."""
    match = _AV_ID_RE.search(markdown)
    return match.group(1) if match else ""


# ---------------------------------------------------------------------------
# markdown-it rules for SiYuan's block syntax


def _line_text(state: StateBlock, line: int) -> str:
    return state.src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]]


def _ial_rule(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    if state.sCount[start] - state.blkIndent >= 4:
        return False
    text = _line_text(state, start)
    if not text.startswith("{:"):
        return False
    match = _IAL_LINE_RE.match(text.rstrip())
    if match is None:
        return False
    if silent:
        return True
    token = state.push("ial", "", 0)
    token.map = [start, start + 1]
    token.meta = {
        "attrs": _ial_pairs(match.group(1)),
        # kramdown: an IAL only binds to the block it directly follows.
        "after_blank": start == 0 or state.isEmpty(start - 1),
    }
    state.line = start + 1
    return True


def _superblock_rule(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    if state.sCount[start] - state.blkIndent >= 4:
        return False
    match = _SUPER_OPEN_RE.match(_line_text(state, start))
    if match is None:
        return False
    depth = 1
    line = start + 1
    while line < end:
        text = _line_text(state, line).rstrip()
        if state.sCount[line] < state.blkIndent and not state.isEmpty(line):
            break
        if _SUPER_OPEN_RE.match(text):
            depth += 1
        elif text == "}}}":
            depth -= 1
            if depth == 0:
                break
        line += 1
    closed = depth == 0
    if silent:
        return True
    old_parent, old_max = state.parentType, state.lineMax
    state.parentType = "superblock"  # type: ignore[assignment]
    state.lineMax = line
    token = state.push("superblock_open", "div", 1)
    token.info = match.group(1)
    token.map = [start, line]
    state.md.block.tokenize(state, start + 1, line)
    state.push("superblock_close", "div", -1)
    state.parentType, state.lineMax = old_parent, old_max
    state.line = line + 1 if closed else line
    return True


def _math_rule(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    if state.sCount[start] - state.blkIndent >= 4:
        return False
    first = _line_text(state, start).rstrip()
    if not first.startswith("$$"):
        return False
    if first != "$$":
        # ``$$ x $$`` on one line.
        if len(first) < 4 or not first.endswith("$$"):
            return False
        if silent:
            return True
        token = state.push("math_block", "math", 0)
        token.content = first[2:-2].strip()
        token.map = [start, start + 1]
        state.line = start + 1
        return True
    line = start + 1
    while line < end:
        if state.sCount[line] < state.blkIndent and not state.isEmpty(line):
            return False
        if _line_text(state, line).rstrip() == "$$":
            break
        line += 1
    else:
        return False
    if silent:
        return True
    token = state.push("math_block", "math", 0)
    token.content = state.getLines(start + 1, line, state.sCount[start], False)
    token.map = [start, line + 1]
    state.line = line + 1
    return True


def _html_block_rule(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    # CommonMark html blocks run to a blank line; SiYuan puts the IAL right
    # under the html, so cut the block there.
    if not _md_html_block(state, start, end, silent):
        return False
    if silent:
        return True
    token = state.tokens[-1]
    for line in range(start + 1, state.line):
        if _IAL_LINE_RE.match(_line_text(state, line).rstrip()):
            token.content = state.getLines(start, line, state.blkIndent, True)
            token.map = [start, line]
            state.line = line
            break
    return True


_TERMINATES = ["paragraph", "reference", "blockquote", "list"]


#: The kernel's Lute options (kernel/util/lute.go NewLute): no setext headings (``---`` under text
#: is a thematic break, ``===`` stays text) and no indented code blocks (indented lines are text).
_LUTE_OFF = ["lheading", "code"]


def _make_block_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True})
    md.enable(["table", "strikethrough"])
    md.disable(_LUTE_OFF)
    # Reference definitions would vanish from the block list; keep them as text.
    md.disable("reference")
    # Block structure only: inline content stays source text (the block's Markdown).
    md.core.ruler.disable(["inline", "text_join"])
    md.block.ruler.before("table", "ial", _ial_rule, {"alt": _TERMINATES})
    md.block.ruler.before("table", "superblock", _superblock_rule, {"alt": _TERMINATES})
    md.block.ruler.before("fence", "math_block", _math_rule, {"alt": _TERMINATES})
    md.block.ruler.at("html_block", _html_block_rule, {"alt": ["paragraph", "reference", "blockquote"]})
    return md


def _make_text_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True})
    md.enable(["table", "strikethrough"])
    md.disable(_LUTE_OFF)
    md.block.ruler.before("table", "ial", _ial_rule, {"alt": _TERMINATES})
    md.block.ruler.before("fence", "math_block_siyuan", _math_rule, {"alt": _TERMINATES})
    md.use(dollarmath_plugin, allow_labels=False, allow_space=True, allow_digits=False)
    md.block.ruler.disable("math_block")
    return md


_BLOCK_MD = _make_block_parser()
_TEXT_MD = _make_text_parser()


# ---------------------------------------------------------------------------
# Tokens -> blocks


@dataclass(slots=True)
class _Entry:
    """A parsed child: a block, or an IAL line waiting to be bound."""

    spec: BlockSpec | None
    attrs: dict[str, str] = field(default_factory=dict)
    line: int = 0
    after_blank: bool = False


@dataclass(slots=True)
class _Frame:
    spec: BlockSpec
    entries: list[_Entry]
    line: int
    ordered: bool = False


def _leaf_type(text: str, *, html: bool) -> str:
    """Classify a paragraph's or html block's text into a SiYuan leaf type."""
    media = _MEDIA_RE.match(text)
    if media is not None:
        tag = media.group(1).lower()
        if tag == "iframe" and _WIDGET_RE.search(text):
            return "widget"
        return tag
    if html:
        return "av" if _AV_RE.match(text) else "html"
    if _QUERY_EMBED_RE.match(text):
        return "query_embed"
    return "p"


def _fence(code: str, info: str) -> str:
    char = "~" if "`" in info else "`"
    longest = max((len(run) for run in re.findall(re.escape(char) + "+", code)), default=0)
    marker = char * max(3, longest + 1)
    if code and not code.endswith("\n"):
        code += "\n"
    head = f"{marker}{info}" if info else marker
    return f"{head}\n{code}{marker}"


def _math(content: str) -> str:
    content = content.strip("\n")
    return f"$$\n{content}\n$$" if content else "$$\n$$"


def _table(tokens: list[Token], start: int) -> tuple[str, int]:
    """Render the table starting at ``tokens[start]`` canonically; return it and the index after it."""
    rows: list[list[str]] = []
    aligns: list[str] = []
    i = start + 1
    while tokens[i].type != "table_close":
        tok = tokens[i]
        if tok.type == "tr_open":
            rows.append([])
        elif tok.type in ("th_open", "td_open"):
            if tok.type == "th_open":
                style = str(tok.attrs.get("style", ""))
                aligns.append(style.removeprefix("text-align:"))
            rows[-1].append(tokens[i + 1].content.replace("|", "\\|"))
        i += 1
    delims = {"left": ":---", "right": "---:", "center": ":---:"}
    lines = [
        "| " + " | ".join(rows[0]) + " |",
        "| " + " | ".join(delims.get(a, "---") for a in aligns) + " |",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows[1:])
    return "\n".join(lines), i + 1


def _tokens_to_entries(tokens: list[Token]) -> list[_Entry]:
    root: list[_Entry] = []
    stack: list[_Frame] = []
    current = root
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        kind = tok.type
        line = tok.map[0] if tok.map else 0
        if kind == "paragraph_open":
            text = tokens[i + 1].content
            ptype = _leaf_type(text, html=False)
            if ptype == "query_embed":
                text = query_embed_markdown(text[2:-2])
            current.append(_Entry(BlockSpec(ptype, markdown=text), line=line))
            i += 3
            continue
        if kind == "heading_open":
            text = tokens[i + 1].content.replace("\n", " ").strip()
            level = int(tok.tag[1])
            md = "#" * level + (" " + text if text else "")
            current.append(_Entry(BlockSpec("h", tok.tag, md), line=line))
            i += 3
            continue
        if kind == "ial":
            meta = tok.meta
            current.append(_Entry(None, meta["attrs"], line, meta["after_blank"]))
        elif kind in ("fence", "code_block"):
            info = tok.info.strip() if kind == "fence" else ""
            current.append(_Entry(BlockSpec("c", markdown=_fence(tok.content, info)), line=line))
        elif kind == "math_block":
            current.append(_Entry(BlockSpec("m", markdown=_math(tok.content)), line=line))
        elif kind == "hr":
            current.append(_Entry(BlockSpec("tb", markdown="---"), line=line))
        elif kind == "html_block":
            text = tok.content.rstrip("\n")
            htype = _leaf_type(text, html=True)
            if htype == "av":
                text = attribute_view_markdown(attribute_view_id(text), _av_type(text))
            current.append(_Entry(BlockSpec(htype, markdown=text), line=line))
        elif kind == "table_open":
            text, i = _table(tokens, i)
            current.append(_Entry(BlockSpec("t", markdown=text), line=line))
            continue
        elif kind in ("bullet_list_open", "ordered_list_open"):
            frame = _Frame(BlockSpec("l", "o" if kind == "ordered_list_open" else "u"), [], line)
            frame.ordered = kind == "ordered_list_open"
            stack.append(frame)
            current = frame.entries
        elif kind == "list_item_open":
            marker = f"{tok.info}." if stack[-1].ordered else "-"
            frame = _Frame(BlockSpec("i", markdown=marker), [], line)
            stack.append(frame)
            current = frame.entries
        elif kind == "blockquote_open":
            stack.append(_Frame(BlockSpec("b"), [], line))
            current = stack[-1].entries
        elif kind == "superblock_open":
            stack.append(_Frame(BlockSpec("s", tok.info), [], line))
            current = stack[-1].entries
        elif kind in _CONTAINER_CLOSE:
            frame = stack.pop()
            current = stack[-1].entries if stack else root
            _close(frame)
            current.append(_Entry(frame.spec, line=frame.line))
        i += 1
    return root


def _close(frame: _Frame) -> None:
    spec = frame.spec
    spec.children = _bind(frame.entries, spec, frame.line)
    if spec.type == "i":
        _finish_item(spec)
    elif spec.type == "l":
        items = spec.children
        if items and items[0].markdown.endswith("]"):
            spec.subtype = "t"
        for item in items:
            item.subtype = spec.subtype


def _finish_item(item: BlockSpec) -> None:
    if not item.children:
        # SiYuan's list items always hold a paragraph.
        item.children.append(BlockSpec("p"))
    first = item.children[0]
    if first.type != "p":
        return
    text = first.markdown
    match = _IAL_PREFIX_RE.match(text)
    if match is not None:
        _apply_ial(item, _ial_pairs(match.group(1)))
        text = text[match.end() :]
    task = _TASK_RE.match(text)
    if task is not None:
        item.markdown += " [x]" if task.group(1) in "xX" else " [ ]"
        text = text[task.end() :].lstrip()
    first.markdown = text


def _bind(entries: list[_Entry], container: BlockSpec | None, start_line: int) -> list[BlockSpec]:
    """Bind IAL entries to the block they follow; a free-standing IAL is an empty paragraph."""
    out: list[BlockSpec] = []
    prev: BlockSpec | None = None
    prev_bound = False
    for entry in entries:
        if entry.spec is not None:
            out.append(entry.spec)
            prev, prev_bound = entry.spec, False
            continue
        if container is not None and container.type == "i" and not out and entry.line == start_line:
            _apply_ial(container, entry.attrs)
            continue
        if prev is not None and not prev_bound and not entry.after_blank:
            _apply_ial(prev, entry.attrs)
            prev_bound = True
            continue
        # kramdown: an IAL on its own (SiYuan writes empty paragraphs so).
        spec = BlockSpec("p")
        _apply_ial(spec, entry.attrs)
        out.append(spec)
        prev, prev_bound = spec, True
    return out


def _document_ial(entries: list[_Entry]) -> dict[str, str]:
    """Pop a trailing free-standing IAL off the top level: the document's own."""
    if not entries or entries[-1].spec is not None:
        return {}
    last = entries[-1]
    if len(entries) >= 2:
        before = entries[-2]
        # An IAL that directly follows a block without its own IAL binds to that block.
        if before.spec is not None and not last.after_blank:
            return {}
    entries.pop()
    return last.attrs


def parse_document_markdown(text: str) -> tuple[list[BlockSpec], dict[str, str]]:
    """Parse a whole document: its blocks and its trailing document-level IAL (``id`` included)."""
    entries = _tokens_to_entries(_BLOCK_MD.parse(text))
    doc_attrs = _document_ial(entries)
    return _bind(entries, None, 0), doc_attrs


def parse_markdown(text: str) -> list[BlockSpec]:
    """Parse Markdown into top-level block specs (children nested); a lone IAL is an empty paragraph."""
    if _PLAIN_LINE_RE.fullmatch(text) is not None:
        # One line with no Markdown syntax is one paragraph of itself: ~1 µs instead of ~22 µs.
        return [BlockSpec(type="p", markdown=text.rstrip())]
    return parsed_markdown(text)


def parse_import_markdown(text: str) -> tuple[dict[str, str], list[BlockSpec]]:
    """Parse a whole document given as Markdown (createDoc): its front matter's attributes and its blocks.

    Front matter becomes document attributes as SiYuan's import makes them
    (``oplog.frontmatter``). When it names a title and the body opens with a
    heading of exactly that text — the title heading ``exportMdContent``
    adds — that heading is the title, not content, and is not kept: a
    document exported and imported again keeps its shape.
    """
    keys, body = split_front_matter(text)
    attrs = front_matter_attrs(keys) if keys else {}
    specs = parse_markdown(body) if body.strip() else []
    title = attrs.get("title", "")
    if keys and title and specs:
        first = specs[0]
        if (
            first.type == "h"
            and not first.attrs
            and not first.id
            and plain_text(first.markdown) == title.strip()
        ):
            specs = specs[1:]
    return attrs, specs


def parsed_markdown(text: str) -> list[BlockSpec]:
    """``parse_markdown`` through the Markdown parser, with no shortcut."""
    return _bind(_tokens_to_entries(_BLOCK_MD.parse(text)), None, 0)


# ---------------------------------------------------------------------------
# Blocks -> Markdown


def _ial_lines(block: BlockLike) -> list[str]:
    """The block's IAL line; ``{:}`` only where an empty paragraph needs it to exist at all."""
    # An empty paragraph exists only through its IAL; a list needs one to end
    # before a following list of the same kind.
    if block.id or block.attrs or block.type == "l" or (block.type == "p" and not block.markdown):
        return [format_ial(block.id, block.attrs)]
    return []


def _ial_prefix(block: BlockLike) -> str:
    return format_ial(block.id, block.attrs) if block.id or block.attrs else ""


def _item_marker(item: BlockLike, parent: BlockLike, index: int) -> tuple[str, str]:
    """The bullet (``-`` / ``3.``) and task box (``[ ] `` / ``[x] `` / ``""``) of a list item."""
    mark = item.markdown.strip()
    if parent.subtype == "o":
        found = _ORDERED_MARK_RE.match(mark)
        bullet = f"{found.group(1)}." if found else f"{index + 1}."
    else:
        found = _ORDERED_MARK_RE.match(mark)
        bullet = f"{found.group(1)}." if found and parent.subtype == "t" else "-"
    box = ""
    if mark.endswith("]"):
        box = "[x] " if mark.endswith("[x]") or mark.endswith("[X]") else "[ ] "
    elif parent.subtype == "t" and item.subtype == "t" and not mark:
        box = "[ ] "
    return bullet, box


def _indent(lines: list[str], pad: str) -> list[str]:
    return [pad + line if line else "" for line in lines]


def _render_seq(blocks: Iterable[BlockLike], ial: bool) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        own = _render_lines(block, ial)
        if not own:
            continue
        if lines:
            lines.append("")
        lines.extend(own)
    return lines


def _render_item(item: BlockLike, parent: BlockLike, index: int, ial: bool) -> list[str]:
    bullet, box = _item_marker(item, parent, index)
    pad = " " * (len(bullet) + 1)
    head = bullet + " " + (_ial_prefix(item) if ial else "") + box
    children = list(item.children)
    rest: list[str] = []
    took_first = False
    if children and children[0].type == "p":
        first = children.pop(0)
        took_first = bool(first.markdown or box) or ial
        if first.markdown:
            text_lines = first.markdown.split("\n")
            head += text_lines[0]
            rest.extend(text_lines[1:])
            if ial:
                rest.extend(_ial_lines(first))
        elif ial:
            rest.extend(_ial_lines(first))
    body = _render_seq(children, ial)
    if took_first and body:
        rest.append("")
    rest.extend(body)
    return [head.rstrip(), *_indent(rest, pad)]


def _render_lines(block: BlockLike, ial: bool) -> list[str]:
    kind = block.type
    if kind == "l":
        lines: list[str] = []
        for index, item in enumerate(block.children):
            lines.extend(_render_item(item, block, index, ial))
    elif kind == "i":
        # An item on its own renders as a one-item list of its kind.
        return _render_lines(_Standalone("l", block.subtype, [block]), ial)
    elif kind == "b":
        inner = _render_seq(block.children, ial)
        lines = [f"> {line}" if line else ">" for line in inner] or [">"]
    elif kind == "s":
        layout = block.subtype if block.subtype in ("row", "col") else "row"
        lines = ["{{{" + layout, *_render_seq(block.children, ial), "}}}"]
    elif kind == "d":
        return _render_seq(block.children, ial)
    else:
        lines = block.markdown.split("\n") if block.markdown else []
    if ial and kind != "d":
        lines.extend(_ial_lines(block))
    return lines


@dataclass(slots=True)
class _Standalone:
    type: str
    subtype: str
    children: list[BlockLike]
    markdown: str = ""
    id: str = ""
    attrs: dict[str, str] = field(default_factory=dict)


def render_block(block: BlockLike, *, ial: bool = False) -> str:
    """Render one block (with its subtree) to Markdown."""
    return "\n".join(_render_lines(block, ial))


def render_markdown(blocks: Iterable[BlockLike], *, ial: bool = False) -> str:
    """Render blocks to Markdown; with ``ial`` every block carries its IAL line (``id`` first)."""
    return "\n".join(_render_seq(blocks, ial))


# ---------------------------------------------------------------------------
# Plain text

_MARK_RE = re.compile(r"==(?=\S)(.+?)(?<=\S)==")
_REF_RE = re.compile(r"""\(\(\d{14}-[0-9a-z]{7}(?:\s+(?:"([^"]*)"|'([^']*)'))?\)\)""")
_TAG_RE = re.compile(r"#([^#\s][^#\n]*?)#")


def _inline_text(token: Token) -> str:
    out: list[str] = []
    for child in token.children or ():
        kind = child.type
        if kind in ("text", "code_inline", "math_inline"):
            out.append(child.content)
        elif kind in ("softbreak", "hardbreak"):
            out.append("\n")
        elif kind == "image":
            out.append(child.content)
    text = "".join(out)
    text = _REF_RE.sub(lambda m: m.group(1) or m.group(2) or "", text)
    return _TAG_RE.sub(r"\1", _MARK_RE.sub(r"\1", text))


def plain_text(markdown: str) -> str:
    """The plain text of a block's Markdown (SiYuan's ``content`` column): markup, markers and IALs removed."""
    if _PLAIN_LINE_RE.fullmatch(markdown) is not None and "((" not in markdown:
        return markdown.rstrip()
    return parsed_plain_text(markdown)


def parsed_plain_text(markdown: str) -> str:
    """``plain_text`` through the Markdown parser, with no shortcut."""
    parts: list[str] = []
    row: list[str] | None = None
    in_item = False
    for tok in _TEXT_MD.parse(markdown):
        kind = tok.type
        if kind != "paragraph_open":
            in_item = kind == "list_item_open" or (in_item and kind == "inline")
        if kind == "inline":
            text = _inline_text(tok)
            if in_item:
                text = _TASK_RE.sub("", _IAL_PREFIX_RE.sub("", text), count=1)
            (parts if row is None else row).append(text)
        elif kind in ("fence", "code_block", "math_block", "html_block"):
            parts.append(tok.content.rstrip("\n"))
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close" and row is not None:
            parts.append(" ".join(cell for cell in row if cell))
            row = None
    return "\n".join(part for part in parts if part).strip()
