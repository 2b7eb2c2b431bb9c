"""SiYuan block DOM → blocks: the editor's examples, every span and block type, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oplog.dom import parse_dom
from oplog.errors import InvalidTransaction
from oplog.kramdown import parse_markdown
from oplog.model import BlockSpec
from tests import fixtures

A = "20240721100000-a1b2c3d"
B = "20240721100001-b1b2c3d"
C = "20240721100002-c1b2c3d"
ATTR = '<div class="protyle-attr" contenteditable="false">\u200b</div>'


def block(node_type: str, inner: str, node_id: str = A, extra: str = "") -> str:
    """A block div the way the editor writes it."""
    return f'<div data-node-id="{node_id}" data-node-index="1" data-type="{node_type}" {extra}>{inner}{ATTR}</div>'


def para(text: str, node_id: str = A, extra: str = 'class="p"') -> str:
    return block(
        "NodeParagraph", f'<div contenteditable="true" spellcheck="false">{text}</div>', node_id, extra
    )


def same(dom: str, markdown: str) -> None:
    assert parse_dom(dom) == parse_markdown(markdown)


# --- the editor's own requests -----------------------------------------------------


def _dom_ops(examples_dir: Path) -> list[tuple[str, dict[str, object]]]:
    ops = []
    for path in sorted(examples_dir.glob("0[1-5]-*.json")):
        body = json.loads(path.read_text())
        for tx in body["transactions"]:
            for op in tx["doOperations"] + tx["undoOperations"]:
                if isinstance(op.get("data"), str) and op["data"].startswith("<div"):
                    ops.append((path.name, op))
    return ops


def test_examples_parse_to_paragraphs(examples_dir: Path) -> None:
    ops = _dom_ops(examples_dir)
    assert len(ops) == 6
    for name, op in ops:
        (spec,) = parse_dom(str(op["data"]))
        assert spec.type == "p" and spec.id == op["id"], name
        assert "<wbr>" not in spec.markdown and "\u200b" not in spec.markdown
        assert set(spec.attrs) == {"updated"}


def test_typing_example(examples_dir: Path) -> None:
    body = json.loads((examples_dir / "01-typing.json").read_text())
    data = body["transactions"][0]["doOperations"][0]["data"]
    assert parse_dom(data) == [
        BlockSpec("p", markdown="Saw two herons", attrs={"updated": fixtures.TYPED_STAMP}, id=fixtures.A)
    ]


def test_enter_example_makes_an_empty_paragraph(examples_dir: Path) -> None:
    body = json.loads((examples_dir / "02-enter.json").read_text())
    data = body["transactions"][0]["doOperations"][1]["data"]
    assert parse_dom(data) == [BlockSpec("p", attrs={"updated": fixtures.ENTER_STAMP}, id=fixtures.Q)]


# --- inline spans -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inner", "markdown"),
    [
        ('a <span data-type="strong">b</span> c', "a **b** c"),
        ('<span data-type="em">b</span>', "*b*"),
        ('<span data-type="code">x`y</span>', "``x`y``"),
        ('<span data-type="a" data-href="https://x.y/">link</span>', "[link](https://x.y/)"),
        ('<span data-type="a" data-href="u" data-title="t">l</span>', '[l](u "t")'),
        ('<span data-type="s">gone</span>', "~~gone~~"),
        ('<span data-type="mark">hi</span>', "==hi=="),
        ('<span data-type="u">under</span>', "<u>under</u>"),
        ('<span data-type="tag">topic</span>', "#topic#"),
        ('<span data-type="kbd">Ctrl</span>', "<kbd>Ctrl</kbd>"),
        ('x<span data-type="sup">2</span>', "x^2^"),
        ('H<span data-type="sub">2</span>O', "H~2~O"),
        (
            '<span data-type="inline-math" data-subtype="math" data-content="a^2" class="render-node"></span>',
            "$a^2$",
        ),
        (f'<span data-type="block-ref" data-subtype="s" data-id="{B}">Hi</span>', f'(({B} "Hi"))'),
        (f'<span data-type="block-ref" data-subtype="d" data-id="{B}">Hi</span>', f"(({B} 'Hi'))"),
        (
            '<span data-type="file-annotation-ref" data-id="assets/a.pdf/x">p1</span>',
            '<<assets/a.pdf/x "p1">>',
        ),
        ('<span data-type="strong em">both</span>', "***both***"),
        ('<span data-type="strong">bold </span>x', "**bold** x"),
        ("<strong>b</strong> <em>i</em> <code>c</code> <s>s</s>", "**b** *i* `c` ~~s~~"),
        ("a &amp; b &lt;c&gt;", "a & b <c>"),
        ("line<br>next", "line\nnext"),
        ("caret<wbr> here", "caret here"),
        ("zero\u200bwidth", "zerowidth"),
        (
            '<span data-type="img" class="img"><span> </span><span><img src="assets/a.png" data-src="assets/a.png" alt="pic"></span></span>',
            "![pic](assets/a.png)",
        ),
    ],
)
def test_inline_span_matches_markdown(inner: str, markdown: str) -> None:
    same(para(inner), f'{markdown}\n{{: id="{A}" class="ignored"}}'.replace(' class="ignored"', ""))


def test_block_attributes_are_kept_and_plumbing_dropped() -> None:
    extra = (
        'class="p" updated="20240721100501" fold="1" heading-fold="1" style="color: red" name="n" '
        'alias="a" memo="m" bookmark="b" custom-x="y" contenteditable="true" spellcheck="false" '
        'draggable="true" data-anything="z" Bad_Name="q"'
    )
    (spec,) = parse_dom(para("x", extra=extra))
    assert spec.attrs == {
        "updated": "20240721100501",
        "fold": "1",
        "heading-fold": "1",
        "style": "color: red",
        "name": "n",
        "alias": "a",
        "memo": "m",
        "bookmark": "b",
        "custom-x": "y",
    }


def test_attribute_newlines_match_kramdown() -> None:
    (spec,) = parse_dom(para("x", extra='memo="two&#10;lines"'))
    assert spec == parse_markdown(f'x\n{{: id="{A}" memo="two_esc_newline_lines"}}')[0]


def test_invalid_node_id_is_dropped() -> None:
    (spec,) = parse_dom(para("x", node_id="bogus"))
    assert spec.id == ""


def test_sibling_divs_make_several_blocks() -> None:
    specs = parse_dom(para("one", A) + "\n" + para("two", B))
    assert [(s.markdown, s.id) for s in specs] == [("one", A), ("two", B)]


# --- block types --------------------------------------------------------------------


def test_heading() -> None:
    dom = block(
        "NodeHeading", '<div contenteditable="true">Section</div>', extra='data-subtype="h2" class="h2"'
    )
    same(dom, f'## Section\n{{: id="{A}"}}')


def _item(marker: str, subtype: str, text: str, node_id: str, cls: str = "li") -> str:
    action = '<div class="protyle-action" draggable="true"><svg><use xlink:href="#iconDot"></use></svg></div>'
    if subtype == "t":
        action = '<div class="protyle-action protyle-action--task"><svg><use xlink:href="#iconUncheck"></use></svg></div>'
    return block(
        "NodeListItem",
        action + para(text, C if node_id == A else node_id[:-1] + "p"),
        node_id,
        f'data-marker="{marker}" data-subtype="{subtype}" class="{cls}"',
    )


def test_unordered_list() -> None:
    dom = block("NodeList", _item("*", "u", "one", B), extra='data-subtype="u" class="list"')
    same(dom, f'- {{: id="{B}"}}one\n  {{: id="{B[:-1]}p"}}\n{{: id="{A}"}}')


def test_ordered_list() -> None:
    items = _item("1.", "o", "one", B) + _item("2.", "o", "two", C)
    dom = block("NodeList", items, extra='data-subtype="o" class="list"')
    (spec,) = parse_dom(dom)
    assert spec.subtype == "o"
    assert [i.markdown for i in spec.children] == ["1.", "2."]
    same(
        dom,
        f'1. {{: id="{B}"}}one\n   {{: id="{B[:-1]}p"}}\n2. {{: id="{C}"}}two\n   {{: id="{C[:-1]}p"}}\n{{: id="{A}"}}',
    )


def test_task_list() -> None:
    items = _item("*", "t", "todo", B) + _item("*", "t", "done", C, cls="li protyle-task--done")
    dom = block("NodeList", items, extra='data-subtype="t" class="list"')
    (spec,) = parse_dom(dom)
    assert spec.subtype == "t"
    assert [(i.subtype, i.markdown, i.children[0].markdown) for i in spec.children] == [
        ("t", "- [ ]", "todo"),
        ("t", "- [x]", "done"),
    ]


def test_nested_list_in_item() -> None:
    inner = block(
        "NodeList",
        _item("*", "u", "deep", "20240721100009-n1n1n1n"),
        "20240721100008-n0n0n0n",
        'data-subtype="u"',
    )
    item = block("NodeListItem", para("top", C) + inner, B, 'data-marker="*" data-subtype="u"')
    (spec,) = parse_dom(block("NodeList", item, extra='data-subtype="u"'))
    nested = spec.children[0].children[1]
    assert (nested.type, nested.id) == ("l", "20240721100008-n0n0n0n")
    assert nested.children[0].children[0].markdown == "deep"


def test_blockquote() -> None:
    dom = block("NodeBlockquote", para("a quote", B), extra='class="bq"')
    same(dom, f'> a quote\n> {{: id="{B}"}}\n{{: id="{A}"}}')


def test_super_block() -> None:
    dom = block("NodeSuperBlock", para("l", B) + para("r", C), extra='class="sb" data-sb-layout="col"')
    (spec,) = parse_dom(dom)
    assert (spec.type, spec.subtype, [c.markdown for c in spec.children]) == ("s", "col", ["l", "r"])
    same(dom, f'{{{{{{col\nl\n{{: id="{B}"}}\n\nr\n{{: id="{C}"}}\n}}}}}}\n{{: id="{A}"}}')


def test_code_block() -> None:
    inner = (
        '<div class="protyle-action"><span class="protyle-action--first protyle-action__language" '
        'contenteditable="false">python</span><span class="protyle-action__copy"></span></div>'
        '<div class="hljs"><div class="protyle-linenumber__rows"></div>'
        '<div contenteditable="true" spellcheck="false">if a &lt; b:\n    print("x")\n</div></div>'
    )
    dom = block("NodeCodeBlock", inner, extra='class="code-block"')
    same(dom, f'```python\nif a < b:\n    print("x")\n```\n{{: id="{A}"}}')


def test_math_block() -> None:
    dom = block("NodeMathBlock", '<div spin="1"></div>', extra='data-content="a &lt; b" data-subtype="math"')
    same(dom, f'$$\na < b\n$$\n{{: id="{A}"}}')


def test_table() -> None:
    inner = (
        '<div contenteditable="false"><table contenteditable="true" spellcheck="false">'
        '<colgroup><col><col></colgroup><thead><tr><th align="left">h1</th><th>h <span data-type="strong">2</span></th></tr></thead>'
        "<tbody><tr><td>a|b</td><td>c<br>d</td></tr></tbody></table>"
        '<div class="protyle-action__table"></div></div>'
    )
    dom = block("NodeTable", inner, extra='class="table"')
    same(dom, f'| h1 | h **2** |\n| :--- | --- |\n| a\\|b | c<br />d |\n{{: id="{A}"}}')


def test_thematic_break() -> None:
    same(block("NodeThematicBreak", "<div></div>", extra='class="hr"'), f'---\n{{: id="{A}"}}')


def test_html_block() -> None:
    inner = '<div><protyle-html data-content="&lt;div&gt;\n&lt;b&gt;x&lt;/b&gt;\n&lt;/div&gt;"></protyle-html></div>'
    same(
        block("NodeHTMLBlock", inner, extra='data-subtype="block"'),
        f'<div>\n<b>x</b>\n</div>\n{{: id="{A}"}}',
    )


def test_attribute_view() -> None:
    dom = block("NodeAttributeView", "", extra='data-av-id="20240721100000-avavava" data-av-type="table"')
    md = '<div data-type="NodeAttributeView" data-av-id="20240721100000-avavava" data-av-type="table"></div>'
    same(dom, f'{md}\n{{: id="{A}"}}')
    assert parse_dom(dom)[0].type == "av"


@pytest.mark.parametrize(
    ("node_type", "tag", "markdown", "kind"),
    [
        (
            "NodeIFrame",
            '<iframe src="https://x.y/" data-src="https://x.y/"></iframe>',
            '<iframe src="https://x.y/" data-src="https://x.y/"></iframe>',
            "iframe",
        ),
        (
            "NodeVideo",
            '<video controls="controls" src="/assets/a.mp4" data-src="assets/a.mp4"></video>',
            '<video controls="controls" src="assets/a.mp4"></video>',
            "video",
        ),
        (
            "NodeAudio",
            '<audio controls="controls" src="assets/a.mp3"></audio>',
            '<audio controls="controls" src="assets/a.mp3"></audio>',
            "audio",
        ),
        (
            "NodeWidget",
            '<iframe src="/widgets/w/" data-src="/widgets/w/" data-subtype="widget"></iframe>',
            '<iframe src="/widgets/w/" data-src="/widgets/w/" data-subtype="widget"></iframe>',
            "widget",
        ),
    ],
)
def test_media_blocks(node_type: str, tag: str, markdown: str, kind: str) -> None:
    dom = block(node_type, f'<div class="iframe-content">\u200b{tag}</div>', extra='class="iframe"')
    same(dom, f'{markdown}\n{{: id="{A}"}}')
    assert parse_dom(dom)[0].type == kind


def test_query_embed() -> None:
    dom = block(
        "NodeBlockQueryEmbed",
        '<div class="protyle-icons"></div>',
        extra='data-content="SELECT * FROM blocks" class="render-node"',
    )
    same(dom, f'{{{{SELECT * FROM blocks}}}}\n{{: id="{A}"}}')


# --- malformed input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        "",
        "just text",
        "<p>no block div</p>",
        f'<div data-node-id="{A}" data-type="NodeBogus"></div>',
        block("NodeHeading", '<div contenteditable="true">x</div>'),
        block("NodeTable", "<div></div>"),
        block("NodeParagraph", "<span>no editable</span>"),
        block("NodeVideo", '<div class="iframe-content"></div>'),
        "<div<<>>",
    ],
)
def test_malformed_dom_is_an_invalid_transaction(data: str) -> None:
    with pytest.raises(InvalidTransaction):
        parse_dom(data)


def test_non_string_is_an_invalid_transaction() -> None:
    with pytest.raises(InvalidTransaction):
        parse_dom(123)  # type: ignore[arg-type]
