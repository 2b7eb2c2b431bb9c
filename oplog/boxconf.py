"""A notebook's configuration: SiYuan's ``BoxConf`` fields, their defaults, checks and JSON types.

Notebooks are state (``Workspace.notebooks``: notebook id -> conf). A conf is
kept as a flat ``{field: str}`` dict — the shape an operation's resolved
``attrs`` already has — so events carry it without new wire fields, the
state hash and checkpoints encode it like attributes, and replay copies
strings. ``typed`` turns it into the kernel's JSON (``sort`` an int,
``closed`` a bool). The fields are those of the kernel's
``kernel/conf/box.go`` that describe a notebook; ``encrypted``/``boxCrypt``
are left out: oplog has no per-notebook encryption.

Everything here is pure: checks raise ``InvalidTransaction`` and never read
the clock, so resolution at the edge can call them and replay never needs to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oplog.errors import InvalidTransaction

__all__ = [
    "FIELDS",
    "BOOL_FIELDS",
    "INT_FIELDS",
    "DEFAULT_NAME",
    "default_conf",
    "normalize_name",
    "normalize_fields",
    "typed",
    "is_closed",
]

#: SiYuan's default notebook name (``Conf.language(105)`` in English).
DEFAULT_NAME = "Untitled"
#: ``util.SortModeFileTree``: the notebook follows the file tree's sort rule.
_SORT_MODE_FILE_TREE = 15
_DAILY_NOTE = '/daily note/{{now | date "2006/01"}}/{{now | date "2006-01-02"}}'
#: The kernel caps notebook and document names at 512 characters (siyuan#6299).
_NAME_MAX = 512

BOOL_FIELDS = frozenset({"closed"})
INT_FIELDS = frozenset({"sort", "sortMode"})
#: Every conf field, in the kernel's order.
FIELDS = (
    "name", "sort", "icon", "closed", "refCreateSaveBox", "refCreateSavePath", "docCreateSaveBox",
    "docCreateSavePath", "dailyNoteSavePath", "dailyNoteTemplatePath", "sortMode",
)  # fmt: skip
_PATH_FIELDS = frozenset(
    {"refCreateSavePath", "docCreateSavePath", "dailyNoteSavePath", "dailyNoteTemplatePath"}
)


def default_conf(name: str = DEFAULT_NAME) -> dict[str, str]:
    """The conf of a new, open notebook (the kernel's ``NewBoxConf`` after a mount)."""
    conf = {field: "" for field in FIELDS}
    conf.update(
        name=name,
        sort="0",
        closed="false",
        dailyNoteSavePath=_DAILY_NOTE,
        sortMode=str(_SORT_MODE_FILE_TREE),
    )
    return conf


def normalize_name(value: Any, action: str) -> str:
    """A notebook name as the kernel keeps it: one trimmed line, ``Untitled`` when empty, at most 512 characters."""
    value = _string(value, action, "name")
    name = value.replace("\r", " ").replace("\n", " ").replace("\t", " ").strip()
    if len(name) > _NAME_MAX:
        raise InvalidTransaction(f"{action}: a notebook name is at most {_NAME_MAX} characters")
    return name or DEFAULT_NAME


def _string(value: Any, action: str, what: str) -> str:
    """``value`` as text (None is ""); refused when it is not a string or holds NUL."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidTransaction(f"{action}: {what} must be a string")
    if "\x00" in value:
        raise InvalidTransaction(f"{action}: {what} must not contain NUL characters")
    return value


def _path(value: str) -> str:
    # The kernel trims spaces around each path segment (util.TrimSpaceInPath).
    return "/".join(part.strip() for part in value.split("/"))


def _normalize(field: str, value: Any, action: str) -> str:
    if field == "name":
        return normalize_name(value, action)
    if field in BOOL_FIELDS:
        if not isinstance(value, bool):
            raise InvalidTransaction(f"{action}: conf.{field} must be true or false")
        return "true" if value else "false"
    if field in INT_FIELDS:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON numbers arrive as floats through protobuf's Value
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidTransaction(f"{action}: conf.{field} must be an integer")
        if abs(value) > 2**31 - 1:
            raise InvalidTransaction(f"{action}: conf.{field} is out of range")
        return str(value)
    value = _string(value, action, f"conf.{field}")
    if field not in _PATH_FIELDS:
        return value
    value = _path(value)
    if field == "dailyNoteSavePath" and value:
        if not value.startswith("/"):
            value = "/" + value
        if value == "/":
            # The kernel's message (Conf.Language(49)).
            raise InvalidTransaction(f"{action}: the daily note save path cannot be the notebook root")
    if field == "dailyNoteTemplatePath" and value:
        if not value.endswith(".md"):
            value += ".md"
        if not value.startswith("/"):
            value = "/" + value
    return value


def normalize_fields(data: Mapping[str, Any], action: str) -> dict[str, str]:
    """The conf fields ``data`` sets, checked and as stored; unknown fields are refused, not ignored."""
    out: dict[str, str] = {}
    for field in sorted(data):
        if field in ("encrypted", "boxCrypt"):
            raise InvalidTransaction(f"{action}: oplog has no encrypted notebooks (conf.{field})")
        if field not in FIELDS:
            raise InvalidTransaction(f"{action}: unknown notebook conf field {field!r}")
        out[field] = _normalize(field, data[field], action)
    return out


def typed(conf: Mapping[str, str]) -> dict[str, Any]:
    """The conf as the kernel's JSON: every field, in the kernel's order, ints and bools typed."""
    full = default_conf()
    full.update(conf)
    out: dict[str, Any] = {}
    for field in FIELDS:
        value = full[field]
        if field in BOOL_FIELDS:
            out[field] = value == "true"
        elif field in INT_FIELDS:
            out[field] = int(value) if value.lstrip("-").isdigit() else 0
        else:
            out[field] = value
    return out


def is_closed(conf: Mapping[str, str]) -> bool:
    """Whether this conf says the notebook is closed."""
    return conf.get("closed") == "true"
