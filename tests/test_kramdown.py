"""Markdown ⇄ blocks: each block type, kramdown IALs, plain text, round trips."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oplog.kramdown import (
    attribute_view_id,
    format_ial,
    parse_document_markdown,
    parse_ial,
    parse_import_markdown,
    parse_markdown,
    parsed_markdown,
    parsed_plain_text,
    plain_text,
    render_block,
    render_markdown,
)
from oplog.model import BlockSpec

A = "20240721100000-a1b2c3d"
B = "20240721100001-b1b2c3d"
C = "20240721100002-c1b2c3d"
D = "20240721100003-d1b2c3d"


def one(text: str) -> BlockSpec:
    blocks = parse_markdown(text)
    assert len(blocks) == 1, blocks
    return blocks[0]


# --- block types -------------------------------------------------------------


@pytest.mark.parametrize("level", range(1, 7))
def test_heading_levels(level: int) -> None:
    block = one("#" * level + " Section")
    assert (block.type, block.subtype, block.markdown) == ("h", f"h{level}", "#" * level + " Section")


def test_no_setext_headings_as_in_siyuan() -> None:
    # The kernel's Lute runs with SetSetext(false): `===` under text is text, `---` a thematic break.
    assert one("Title\n=====") == BlockSpec("p", markdown="Title\n=====")
    assert parse_markdown("Sub\n---") == [BlockSpec("p", markdown="Sub"), BlockSpec("tb", markdown="---")]


def test_paragraph_keeps_inline_source_without_trailing_newline() -> None:
    assert one("Hello **world**\nnext line\n") == BlockSpec("p", markdown="Hello **world**\nnext line")


def test_paragraphs_split_on_blank_lines() -> None:
    assert [b.markdown for b in parse_markdown("a\n\nb\n\n\nc")] == ["a", "b", "c"]


def test_unordered_list_items_hold_their_blocks() -> None:
    block = one("- one\n- two\n\n  more")
    assert (block.type, block.subtype) == ("l", "u")
    assert [(i.type, i.subtype, i.markdown) for i in block.children] == [("i", "u", "-")] * 2
    assert [c.markdown for c in block.children[1].children] == ["two", "more"]


def test_star_and_plus_bullets_become_dash() -> None:
    assert [i.markdown for i in one("* a\n* b").children] == ["-", "-"]
    assert [i.markdown for i in one("+ a").children] == ["-"]


def test_ordered_list_keeps_item_numbers() -> None:
    block = one("3. c\n4. d")
    assert block.subtype == "o"
    assert [i.markdown for i in block.children] == ["3.", "4."]
    assert all(i.subtype == "o" for i in block.children)


def test_task_list() -> None:
    block = one("- [ ] todo\n- [x] done\n- [X] also")
    assert block.subtype == "t"
    assert [i.markdown for i in block.children] == ["- [ ]", "- [x]", "- [x]"]
    assert [i.children[0].markdown for i in block.children] == ["todo", "done", "also"]
    assert {i.subtype for i in block.children} == {"t"}


def test_empty_task_item_keeps_an_empty_paragraph() -> None:
    item = one("- [ ]").children[0]
    assert item.markdown == "- [ ]"
    assert item.children == [BlockSpec("p")]


def test_empty_list_item_gets_an_empty_paragraph() -> None:
    assert one("-").children[0].children == [BlockSpec("p")]


def test_nested_lists() -> None:
    block = one("- a\n  1. b\n  2. c\n- d")
    inner = block.children[0].children[1]
    assert (inner.type, inner.subtype) == ("l", "o")
    assert [i.children[0].markdown for i in inner.children] == ["b", "c"]


def test_blockquote_holds_blocks() -> None:
    block = one("> # T\n> text\n>\n> - x")
    assert block.type == "b"
    assert [c.type for c in block.children] == ["h", "p", "l"]


def test_lazy_blockquote_continuation() -> None:
    assert one("> a\nb").children == [BlockSpec("p", markdown="a\nb")]


def test_code_fence_canonical() -> None:
    assert one("```python\nprint(1)\n```").markdown == "```python\nprint(1)\n```"
    assert one("~~~\nx\n~~~").markdown == "```\nx\n```"
    assert one("````\n```\n````").markdown == "````\n```\n````"
    assert one("```\n```") == BlockSpec("c", markdown="```\n```")


def test_no_indented_code_blocks_as_in_siyuan() -> None:
    # SetIndentCodeBlock(false): an indented line is a paragraph, never code.
    assert one("    indented\n") == BlockSpec("p", markdown="indented")
    assert parse_markdown("text\n\n    more") == [
        BlockSpec("p", markdown="text"),
        BlockSpec("p", markdown="more"),
    ]


def test_math_block() -> None:
    assert one("$$\na^2 + b^2\n$$") == BlockSpec("m", markdown="$$\na^2 + b^2\n$$")
    assert one("$$ x $$") == BlockSpec("m", markdown="$$\nx\n$$")
    assert one("$$\n$$") == BlockSpec("m", markdown="$$\n$$")


def test_table_canonical() -> None:
    block = one("a|b|c\n:-|:-:|-:\n1|2\n")
    assert block.type == "t"
    assert block.markdown == "| a | b | c |\n| :--- | :---: | ---: |\n| 1 | 2 |  |"


def test_table_pipe_escape_round_trips() -> None:
    block = one("| a \\| b |\n| --- |\n| c |")
    assert block.markdown == "| a \\| b |\n| --- |\n| c |"
    assert one(block.markdown) == block


@pytest.mark.parametrize("text", ["---", "***", "___", "- - -"])
def test_thematic_break(text: str) -> None:
    assert one(text) == BlockSpec("tb", markdown="---")


def test_html_block() -> None:
    assert one("<div>\n<b>x</b>\n</div>") == BlockSpec("html", markdown="<div>\n<b>x</b>\n</div>")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('<iframe src="https://x.y/"></iframe>', "iframe"),
        ('<video controls="controls" src="assets/a.mp4"></video>', "video"),
        ('<audio controls="controls" src="assets/a.mp3"></audio>', "audio"),
        ('<iframe src="/widgets/w/" data-src="/widgets/w/" data-subtype="widget"></iframe>', "widget"),
    ],
)
def test_media_blocks(text: str, kind: str) -> None:
    assert one(text) == BlockSpec(kind, markdown=text)


def test_query_embed() -> None:
    assert one("{{ SELECT * FROM blocks }}") == BlockSpec("query_embed", markdown="{{SELECT * FROM blocks}}")


def test_attribute_view() -> None:
    text = (
        '<div data-type="NodeAttributeView" data-av-id="20240721100000-avavava" data-av-type="table"></div>'
    )
    block = one(text)
    assert block == BlockSpec("av", markdown=text)
    assert attribute_view_id(block.markdown) == "20240721100000-avavava"
    assert attribute_view_id("<div></div>") == ""


def test_super_block() -> None:
    block = one("{{{row\nleft\n\n{{{col\na\n\nb\n}}}\n}}}")
    assert (block.type, block.subtype) == ("s", "row")
    assert [c.type for c in block.children] == ["p", "s"]
    assert block.children[1].subtype == "col"
    assert [c.markdown for c in block.children[1].children] == ["a", "b"]


def test_reference_definitions_stay_text() -> None:
    assert one("[x]: /url").markdown == "[x]: /url"


# --- IAL -------------------------------------------------------------------------


def test_ial_sets_id_and_attrs() -> None:
    block = one(f'## Section\n{{: id="{A}" updated="20240721100501" custom-x="y"}}')
    assert block.id == A
    assert block.attrs == {"updated": "20240721100501", "custom-x": "y"}


def test_ial_after_paragraph_is_not_glued_as_lazy_line() -> None:
    assert one(f'Hello\n{{: id="{A}"}}') == BlockSpec("p", markdown="Hello", id=A)


def test_ial_binds_to_fence_table_math_html() -> None:
    for text in ["```\nx\n```", "| a |\n| --- |", "$$\nx\n$$", "<div>\nx\n</div>", "---"]:
        block = one(f'{text}\n{{: id="{A}"}}')
        assert block.id == A, text


def test_invalid_id_is_ignored_and_bad_names_dropped() -> None:
    block = one('p\n{: id="nope" Bad="1" custom-ok="2" 9x="3"}')
    assert block.id == ""
    assert block.attrs == {"custom-ok": "2"}


def test_attr_values_are_unescaped() -> None:
    block = one('p\n{: custom-x="a &quot;q&quot; &amp; &lt;b&gt;_esc_newline_next"}')
    assert block.attrs == {"custom-x": 'a "q" & <b>\nnext'}


def test_format_and_parse_ial_round_trip() -> None:
    attrs = {"custom-x": 'a "q" & <b>\nnext', "updated": "20240721100501"}
    line = format_ial(A, attrs)
    assert line.startswith(f'{{: id="{A}" custom-x=')
    assert "\n" not in line
    assert parse_ial(line) == {"id": A, **attrs}
    assert parse_ial("not an ial") is None
    assert format_ial("", {}) == "{:}"


def test_siyuan_list_form() -> None:
    text = (
        f'* {{: id="{A}"}}one\n  {{: id="{B}"}}\n* {{: id="{C}"}}[x] two\n  {{: id="{D}"}}\n'
        '{: id="20240721100004-e1b2c3d" updated="20240721100501"}'
    )
    block = one(text)
    assert block.id == "20240721100004-e1b2c3d"
    assert block.attrs == {"updated": "20240721100501"}
    first, second = block.children
    assert (first.id, first.children[0].id, first.children[0].markdown) == (A, B, "one")
    assert (second.id, second.markdown, second.children[0].id) == (C, "- [x]", D)
    assert second.children[0].markdown == "two"


def test_siyuan_blockquote_form() -> None:
    block = one(f'> quote\n> {{: id="{A}"}}\n{{: id="{B}"}}')
    assert block.id == B
    assert block.children == [BlockSpec("p", markdown="quote", id=A)]


def test_lone_ial_is_an_empty_paragraph() -> None:
    blocks = parse_markdown(f'a\n{{: id="{A}"}}\n\n{{: id="{B}"}}\n\nb')
    assert [(b.type, b.markdown, b.id) for b in blocks] == [("p", "a", A), ("p", "", B), ("p", "b", "")]


def test_ial_after_blank_line_does_not_bind() -> None:
    blocks = parse_markdown(f'a\n\n{{: id="{A}"}}')
    assert [(b.markdown, b.id) for b in blocks] == [("a", ""), ("", A)]


def test_document_ial() -> None:
    text = f'a\n{{: id="{A}"}}\n\n{{: id="20240720090000-rootdoc" title="Example" type="doc"}}\n'
    blocks, doc = parse_document_markdown(text)
    assert blocks == [BlockSpec("p", markdown="a", id=A)]
    assert doc == {"id": "20240720090000-rootdoc", "title": "Example", "type": "doc"}
    assert parse_document_markdown(f'a\n{{: id="{A}"}}') == ([BlockSpec("p", markdown="a", id=A)], {})
    assert parse_document_markdown('{: title="t"}') == ([], {"title": "t"})


# --- rendering -------------------------------------------------------------------


def test_render_without_ial() -> None:
    blocks = parse_markdown("# T\n\n- a\n- [x] b\n\n> q\n\n1. x\n   ```\n   c\n   ```")
    assert render_markdown(blocks) == "# T\n\n- a\n- [x] b\n\n> q\n\n1. x\n\n   ```\n   c\n   ```"


def test_render_task_list_and_item_ids() -> None:
    block = BlockSpec(
        "l",
        "t",
        id=A,
        children=[BlockSpec("i", "t", "- [x]", id=B, children=[BlockSpec("p", markdown="done", id=C)])],
    )
    text = render_block(block, ial=True)
    assert text == f'- {{: id="{B}"}}[x] done\n  {{: id="{C}"}}\n{{: id="{A}"}}'
    assert parse_markdown(text) == [block]


def test_render_accepts_any_block_like() -> None:
    class Node:
        def __init__(self, type: str, markdown: str = "", children: list[Node] | None = None) -> None:
            self.type, self.subtype, self.markdown = type, "", markdown
            self.attrs: dict[str, str] = {}
            self.children = children or []
            self.id = A

    text = render_markdown([Node("b", children=[Node("p", "x")])], ial=True)
    assert parse_markdown(text) == [BlockSpec("b", id=A, children=[BlockSpec("p", markdown="x", id=A)])]


def test_adjacent_lists_stay_apart_with_ial() -> None:
    blocks = [
        BlockSpec("l", "u", children=[BlockSpec("i", "u", "-", children=[BlockSpec("p", markdown="a")])]),
        BlockSpec("l", "u", children=[BlockSpec("i", "u", "-", children=[BlockSpec("p", markdown="b")])]),
    ]
    assert parse_markdown(render_markdown(blocks, ial=True)) == blocks


def test_empty_paragraphs_survive_with_ial() -> None:
    blocks = [
        BlockSpec("p", id=A),
        BlockSpec("b", children=[BlockSpec("p")]),
        BlockSpec("l", "u", children=[BlockSpec("i", "u", "-", id=B, children=[BlockSpec("p", id=C)])]),
        BlockSpec("l", "t", children=[BlockSpec("i", "t", "- [ ]", children=[BlockSpec("p", id=D)])]),
    ]
    assert parse_markdown(render_markdown(blocks, ial=True)) == blocks


# --- plain text ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "text"),
    [
        ("**Updated**", "Updated"),
        ("a *b* ~~c~~ `d` [e](http://x) ![f](g.png)", "a b c d e f"),
        ("## Section", "Section"),
        ("- [ ] todo", "todo"),
        (f'- {{: id="{A}"}}[x] done', "done"),
        ("1. one\n2. two", "one\ntwo"),
        ("> quoted", "quoted"),
        ("```python\nprint(1)\n```", "print(1)"),
        ("$$\na^2\n$$", "a^2"),
        ("inline $x^2$ math", "inline x^2 math"),
        ("==mark== and #tag#", "mark and tag"),
        (f'see (({A} "Hello"))', "see Hello"),
        ("<u>under</u>", "under"),
        ("| a | b |\n| --- | --- |\n| 1 | 2 |", "a b\n1 2"),
        ("a &amp; b", "a & b"),
        ("", ""),
    ],
)
def test_plain_text(markdown: str, text: str) -> None:
    assert plain_text(markdown) == text


# --- round trips -----------------------------------------------------------------

_words = st.lists(
    st.sampled_from(["alpha", "beta", "gamma", "**b**", "*i*", "`c`", "[l](http://x.y)", "~~s~~", "x"]),
    min_size=1,
    max_size=4,
).map(" ".join)
_text = st.lists(_words, min_size=1, max_size=3).map("\n".join)
_ids = st.one_of(
    st.just(""),
    st.builds(
        lambda n, s: f"2024072110{n:04d}-{s}",
        st.integers(0, 9999),
        st.text("0123456789abcdefghijklmnopqrstuvwxyz", min_size=7, max_size=7),
    ),
)
_attrs = st.dictionaries(
    st.sampled_from(["updated", "fold", "name", "memo", "custom-x", "custom-long-name", "style"]),
    st.text(
        st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]) | st.sampled_from('"&<>\n'), max_size=8
    ),
    max_size=3,
)


def _leaf(kind: str, markdown: st.SearchStrategy[str], subtype: str = "") -> st.SearchStrategy[BlockSpec]:
    return st.builds(lambda md, a, i: BlockSpec(kind, subtype, md, a, [], i), markdown, _attrs, _ids)


_paragraph = _leaf("p", st.one_of(_text, st.just("")))
_leaves = st.one_of(
    _paragraph,
    st.integers(1, 6).flatmap(lambda n: _leaf("h", _words.map(lambda w: "#" * n + " " + w), f"h{n}")),
    _leaf(
        "c",
        st.builds(
            lambda lang, code: f"```{lang}\n{code}\n```",
            st.sampled_from(["", "python", "go"]),
            _text,
        ),
    ),
    _leaf("m", _words.map(lambda w: f"$$\n{w}\n$$")),
    _leaf(
        "t",
        st.builds(
            lambda head, row, align: f"| {head} | b |\n| {align} | --- |\n| {row} |  |",
            _words,
            _words,
            st.sampled_from(["---", ":---", "---:", ":---:"]),
        ),
    ),
    _leaf("tb", st.just("---")),
    _leaf("html", _words.map(lambda w: f"<div>\n{w}\n</div>")),
)


def _item(
    subtype: str, index: int, children: st.SearchStrategy[list[BlockSpec]]
) -> st.SearchStrategy[BlockSpec]:
    marker = st.just(f"{index + 1}." if subtype == "o" else "-")
    if subtype == "t":
        marker = st.sampled_from(["- [ ]", "- [x]"])
    first = _paragraph if subtype == "t" else st.one_of(_paragraph, _leaves)
    return st.builds(
        lambda mk, head, rest, a, i: BlockSpec("i", subtype, mk, a, [head, *rest], i),
        marker,
        first,
        children,
        _attrs,
        _ids,
    )


def _containers(children: st.SearchStrategy[list[BlockSpec]]) -> st.SearchStrategy[BlockSpec]:
    def list_of(subtype: str) -> st.SearchStrategy[BlockSpec]:
        items = st.integers(1, 3).flatmap(
            lambda n: st.tuples(*[_item(subtype, k, children) for k in range(n)]).map(list)
        )
        return st.builds(lambda its, a, i: BlockSpec("l", subtype, "", a, its, i), items, _attrs, _ids)

    nonempty = st.lists(_blocks_inner, min_size=1, max_size=3)
    return st.one_of(
        st.sampled_from(["u", "o", "t"]).flatmap(list_of),
        st.builds(lambda ch, a, i: BlockSpec("b", "", "", a, ch, i), nonempty, _attrs, _ids),
        st.builds(
            lambda lay, ch, a, i: BlockSpec("s", lay, "", a, ch, i),
            st.sampled_from(["row", "col"]),
            nonempty,
            _attrs,
            _ids,
        ),
    )


_blocks_inner: st.SearchStrategy[BlockSpec] = st.deferred(
    lambda: st.one_of(_leaves, _leaves, _containers(st.lists(_blocks_inner, max_size=2)))
)
_trees = st.lists(_blocks_inner, min_size=1, max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_trees)
def test_generated_trees_round_trip_with_ial(blocks: list[BlockSpec]) -> None:
    text = render_markdown(blocks, ial=True)
    assert parse_markdown(text) == blocks, text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_trees)
def test_parse_render_parse_is_stable(blocks: list[BlockSpec]) -> None:
    first = parse_markdown(render_markdown(blocks, ial=True))
    again = parse_markdown(render_markdown(first, ial=True))
    assert again == first
    # Without IALs ids and attrs are gone but every non-empty leaf keeps its Markdown.
    plain = parse_markdown(render_markdown(first))
    assert _leaf_markdown(plain) == _leaf_markdown(first)


def _leaf_markdown(blocks: list[BlockSpec]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if block.children:
            out.extend(_leaf_markdown(block.children))
        elif block.type not in ("l", "i", "b", "s") and block.markdown:
            out.append(block.markdown)
    return out


_SAFE_TOKENS = ["word", "Zé", "中文", "7", " ", "  ", ",", ".", ";", ":", "?", "!", "'", '"', "/", "%", "@"]
_SAFE_TOKENS += ["(", ")", "+", "-"]
_RISKY_TOKENS = ["((", "- ", "1.", "_", "*", "#", "=", "==", "[", "]", "{:", "}", "|", "<", ">", "`", "$"]
_RISKY_TOKENS += [
    "&",
    "~",
    "\\",
    "\n",
    "\t",
    "  \n",
    " _x_",
    " *x*",
    " #x#",
    " ==x==",
    " ~~x~~",
    " $x$",
    "&amp;",
]


@st.composite
def _mostly_plain_lines(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(_SAFE_TOKENS), max_size=12))
    for _ in range(draw(st.integers(0, 2))):
        parts.insert(draw(st.integers(0, len(parts))), draw(st.sampled_from(_RISKY_TOKENS)))
    return "".join([draw(st.sampled_from(["Word", "x", "中"])), *parts])


@settings(max_examples=1000, deadline=None)
@given(_mostly_plain_lines())
def test_plain_text_shortcut_agrees_with_the_parser(markdown: str) -> None:
    """The no-markup shortcuts give exactly what markdown-it gives, whatever the text."""
    assert plain_text(markdown) == parsed_plain_text(markdown)
    assert parse_markdown(markdown) == parsed_markdown(markdown)


# --- SiYuan's dialect on document input: front matter, the title heading, a round trip -------------

_BODY = """## Section

Text with **bold** and a line
that continues.

Not a heading
===

- one
- two
  - nested

```python
print(1)
```

    not code

> quoted

| a | b |
| --- | --- |
| 1 | 2 |
"""


def _exported(title: str, body: str, *, tags: str = "") -> str:
    """What the kernel's exportMdContent returns: yfm() front matter, a title heading, the body."""
    front = f"---\ntitle: {title}\ndate: 2024-07-21T10:00:00+08:00\nlastmod: 2024-07-22T11:12:13+08:00\n"
    if tags:
        front += "tags:\n" + "".join(f"  - '{t}'\n" for t in tags.split(","))
    return f"{front}---\n\n# {title}\n\n{body}"


def _shape(blocks: list[BlockSpec]) -> list[tuple[str, str, str, object]]:
    return [(b.type, b.subtype, b.markdown, _shape(b.children)) for b in blocks]


def test_front_matter_becomes_document_attributes() -> None:
    attrs, blocks = parse_import_markdown(_exported("My Doc", "Hello\n", tags="a,it''s") + "\n---\n\nafter")
    assert attrs == {"title": "My Doc", "updated": "20240722111213", "tags": "a,it's"}
    # The title heading the export added is the title, not content; a later `---` is a thematic break.
    assert _shape(blocks) == [("p", "", "Hello", []), ("tb", "", "---", []), ("p", "", "after", [])]


def test_front_matter_only_at_the_start_of_a_document() -> None:
    # Block-level input has no front matter (the kernel parses it with front matter off).
    assert [b.type for b in parse_markdown("---\ntitle: x\n---\n")] == ["tb", "p", "tb"]
    # Content that merely opens with a thematic break is content.
    attrs, blocks = parse_import_markdown("---\n\nsome text\n\n---\n")
    assert attrs == {} and [b.type for b in blocks] == ["tb", "p", "tb"]
    # A heading that is not the front matter's title stays.
    attrs, blocks = parse_import_markdown("---\ntitle: T\nauthor: Ann\n---\n# Other\n")
    assert attrs == {"title": "T", "custom-author": "Ann"} and blocks[0].markdown == "# Other"


def test_exported_document_imported_again_keeps_its_shape() -> None:
    """createDoc(exportMdContent(doc)) holds the same blocks, and exporting it again gives the same text."""
    from tests.engine_helpers import BOX, new_engine, request

    engine = new_engine()
    first = _exported("Round", _BODY, tags="x,y")
    engine.apply_request(request({"action": "createDoc", "id": A, "data": {"box": BOX, "markdown": first}}))
    doc = engine.ws.docs[A]
    assert (
        doc.attrs["title"] == "Round"
        and doc.attrs["tags"] == "x,y"
        and doc.attrs["updated"] == "20240722111213"
    )
    assert [c.type for c in doc.children] == ["h", "p", "p", "l", "c", "p", "b", "t"]
    again = _exported(doc.attrs["title"], render_markdown(doc.children) + "\n", tags=doc.attrs["tags"])
    engine.apply_request(request({"action": "createDoc", "id": B, "data": {"box": BOX, "markdown": again}}))
    copy = engine.ws.docs[B]
    assert _shape(copy.children) == _shape(doc.children)  # type: ignore[arg-type]
    third = _exported(copy.attrs["title"], render_markdown(copy.children) + "\n", tags=copy.attrs["tags"])
    assert third == again
