"""YAML front matter on Markdown input, read the way SiYuan's Markdown import reads it.

``exportMdContent`` starts a document with ``---`` / ``title:`` / ``date:`` /
``lastmod:`` / ``tags:`` / ``---``. The kernel's import (``normalizeTree`` in
kernel/model/box.go) turns those into document attributes: ``title``;
``lastmod`` → ``updated``; ``tags`` (a list or a string) → ``tags`` joined by
commas; any other key made of ASCII letters, digits and hyphens →
``custom-<key>``; ``date`` names the creation time, which oplog's document id
already carries, so it is not an attribute. A block-level insert has no front
matter (the kernel parses it with front matter off): only document input
(createDoc's Markdown) goes through here.

Only the flat subset the kernel writes is read — ``key: scalar`` and
``key:`` followed by ``- item`` lines, with plain, single- or double-quoted
scalars; anything else keeps its text as written. Times are taken as written
(the kernel writes local time with an offset and keeps local time), so
nothing here needs a clock or a time zone. No YAML library is needed for that.
"""

from __future__ import annotations

import re

__all__ = ["split_front_matter", "front_matter_attrs"]

_OPEN = re.compile(r"\A\ufeff?---[ \t]*\r?\n")
_CLOSE = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)
_KEY = re.compile(r"^([^\s:#][^:]*?):(?:[ \t]+(.*?))?[ \t]*$")
_ITEM = re.compile(r"^[ \t]+-[ \t]*(.*?)[ \t]*$")
_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?")
_KEY_NAME = re.compile(r"^[A-Za-z0-9-]+$")


def split_front_matter(text: str) -> tuple[dict[str, str | list[str]], str]:
    """The front matter's keys and the text after it; ``({}, text)`` when ``text`` opens with none."""
    opening = _OPEN.match(text)
    if opening is None:
        return {}, text
    closing = _CLOSE.search(text, opening.end())
    if closing is None:
        return {}, text  # an unclosed `---` is a thematic break, as in the kernel
    body = text[opening.end() : closing.start()]
    if not _is_yaml(body):
        # A thematic break, text, a thematic break: content (a body rendered with IAL lines is never YAML).
        return {}, text
    rest = text[closing.end() :].lstrip("\r\n")
    return _read(body), rest


def _is_yaml(body: str) -> bool:
    lines = body.splitlines()
    if not lines or not lines[0].strip():
        return False
    for line in lines:
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not (_KEY.match(line) or _ITEM.match(line)):
            return False
    return not lines[0].startswith("{:")


def _scalar(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1].replace("''", "'")
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return raw


def _read(body: str) -> dict[str, str | list[str]]:
    out: dict[str, str | list[str]] = {}
    key = ""
    for line in body.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = _ITEM.match(line)
        if item is not None and key:
            current = out.get(key)
            items = current if isinstance(current, list) else []
            items.append(_scalar(item.group(1)))
            out[key] = items
            continue
        match = _KEY.match(line)
        if match is None:
            continue
        key = match.group(1).strip()
        out[key] = _scalar(match.group(2) or "")
    return out


def _stamp(value: str) -> str:
    match = _TIME.match(value.strip())
    if match is None:
        return ""
    parts = [part or "00" for part in match.groups()]
    return "".join(parts)


def front_matter_attrs(keys: dict[str, str | list[str]]) -> dict[str, str]:
    """Document attributes from front matter keys, by the kernel's import rules (see the module docstring)."""
    attrs: dict[str, str] = {}
    for key in sorted(keys):
        value = keys[key]
        if key == "date":
            continue
        if key == "title":
            attrs["title"] = value if isinstance(value, str) else ", ".join(value)
        elif key == "lastmod":
            stamp = _stamp(value) if isinstance(value, str) else ""
            if stamp:
                attrs["updated"] = stamp
        elif key == "tags":
            tags = [value] if isinstance(value, str) else value
            joined = ",".join(t.strip("#,'\" ") for t in tags if t.strip("#,'\" "))
            if joined:
                attrs["tags"] = joined
        elif _KEY_NAME.match(key):
            text = value if isinstance(value, str) else ", ".join(value)
            attrs["custom-" + key.lower()] = text.replace("\x00", "")
    return attrs
