"""The ``blocks`` view: the state as SiYuan's SQLite tables, for ``sqlite3``, sqlite-utils and Datasette.

``<data>/blocks.db`` holds

* ``blocks`` — SiYuan's columns with SiYuan's meanings (kernel/sql/database.go):
  ``parent_id`` of a block inside a heading's section is that heading;
  ``sort`` is the per-type weight (d 0, h 5, p/c/m/t/html 10, l/i/b 20, s 30,
  others 100); ``created`` comes from the id; ``ial`` is ``{: id="…" name="value" …}``
  (id first, then by name); ``content`` is plain text (a container's: its
  leaves' text joined by spaces; a document's: its title); ``fcontent`` is the
  first leaf's text for containers and the title for documents; ``markdown``
  is a block's own Markdown, a container's rendered subtree, empty for
  documents; ``length`` counts the characters of ``fcontent`` (containers,
  documents) or ``content`` (leaves); ``hash`` is the first 7 hex characters of
  sha256(box + path + hpath + sorted IAL + markdown + parent_id); ``hpath`` is
  the documents' titles along ``path``.
* ``attributes`` — one row per indexed IAL attribute (``custom-*``, name,
  alias, memo, bookmark, fold, heading-fold, style); ``id`` is
  ``<block_id>/<name>`` (SiYuan draws a random id; ours must be deterministic).
* ``conflicts`` — operations replay could not apply as recorded.
* ``meta`` — the merged position and state hash the view reflects, and
  ``edited`` when someone else changed the file (below).

Edits by hand are noticed. Triggers on ``blocks``, ``attributes`` and
``conflicts`` set ``meta.edited`` (naming the table) for any change made
outside oplog's own transactions, which carry a ``meta.writer`` row that they
delete again before committing. The store checks the flag at open (and
``oplog verify`` reports it) and rebuilds the view with a warning. A content
hash of the whole file was measured instead: ≈ 0.75 s per 100,000 rows at
every open and close, for what the triggers tell in one lookup; they add one
meta lookup per row the store writes.

The view is derived and rebuildable: WAL mode, ``synchronous=OFF`` (never an
fsync on the write path); each call is one transaction, so readers see whole
requests. ``apply`` costs the rows an event touched plus their ancestors
(whose rendered Markdown and text changed), plus every block of a document
whose ``hpath`` changed. ``defer`` collects changes and ``flush`` writes them
all in one ``apply``: a block touched by many requests between two flushes
(or a parent shared by many) is computed and written once.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from hashlib import sha256
from itertools import islice
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import sqlite_utils

from oplog.checkpoint import ConflictRecord
from oplog.errors import StorageError
from oplog.fsutil import full_disk_hint
from oplog.kramdown import attribute_view_id, format_ial, plain_text, render_markdown
from oplog.model import CONTAINER_TYPES
from oplog.sqlite_readonly import connect_readonly
from oplog.tree import Node, Workspace, descendant_docs, iter_blocks, section_parent

__all__ = [
    "BlocksView",
    "edited_outside",
    "VIEW_FILE",
    "BLOCK_COLUMNS",
    "block_row",
    "sort_weight",
    "is_indexed_attr",
    "hpath_of",
    "view_rows",
    "sql_parents",
]

VIEW_FILE = "blocks.db"

BLOCK_COLUMNS = (
    "id", "parent_id", "root_id", "hash", "box", "path", "hpath", "name", "alias", "memo", "tag", "content",
    "fcontent", "markdown", "length", "type", "subtype", "ial", "sort", "created", "updated",
)  # fmt: skip
ATTRIBUTE_COLUMNS = ("id", "name", "value", "type", "block_id", "root_id", "box", "path")
CONFLICT_COLUMNS = ("device_id", "device_seq", "op_index", "action", "block_id", "reason")

_SORT = {"d": 0, "h": 5, "p": 10, "c": 10, "m": 10, "t": 10, "html": 10, "l": 20, "i": 20, "b": 20, "s": 30}
_node_type = attrgetter("type")
_TAG_RE = re.compile(r"#([^#\s][^#\n]*?)#")
_HEADING_PREFIX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+|$)")
# Text with no Markdown syntax at all is its own plain text; markdown-it is not needed for it.
_PLAIN_RE = re.compile(r"^[^\W\d_](?:[^\W_]|[ ,;'\"?])*$")

_INSERT_BLOCK = f"INSERT OR REPLACE INTO blocks ({', '.join(BLOCK_COLUMNS)}) VALUES ({', '.join('?' * len(BLOCK_COLUMNS))})"
# Columns a row's indexes do not cover: a block that stays where it was is rewritten with an
# UPDATE of these, which leaves the id, root_id and parent_id indexes untouched (fewer pages).
_UPDATED_COLUMNS = tuple(c for c in BLOCK_COLUMNS if c not in ("id", "parent_id", "root_id"))
_UPDATED_AT = itemgetter(*(BLOCK_COLUMNS.index(c) for c in _UPDATED_COLUMNS))
_HPATH_AT = BLOCK_COLUMNS.index("hpath")
_TYPE_AT = BLOCK_COLUMNS.index("type")
_UPDATE_BLOCK = f"UPDATE blocks SET {', '.join(f'{c} = ?' for c in _UPDATED_COLUMNS)} WHERE id = ?"
_UPSERT_META = "INSERT INTO meta (key, value) VALUES ('position', ?)"
_ON_META_CONFLICT = " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
_INSERT_ATTR = f"INSERT OR REPLACE INTO attributes ({', '.join(ATTRIBUTE_COLUMNS)}) VALUES ({', '.join('?' * len(ATTRIBUTE_COLUMNS))})"
#: Marks oplog's own write transactions: the edit triggers fire only outside them.
_BEGIN_OWN = "INSERT OR REPLACE INTO meta (key, value) VALUES ('writer', 'oplog')"
_END_OWN = "DELETE FROM meta WHERE key = 'writer'"
_EDIT_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS oplog_edited_{table}_{event} AFTER {event} ON {table} "
    "WHEN NOT EXISTS (SELECT 1 FROM meta WHERE key = 'writer') "
    "BEGIN INSERT OR REPLACE INTO meta (key, value) VALUES ('edited', '{table}'); END"
)
_INSERT_CONFLICT = f"INSERT OR IGNORE INTO conflicts ({', '.join(CONFLICT_COLUMNS)}) VALUES ({', '.join('?' * len(CONFLICT_COLUMNS))})"


def sort_weight(block_type: str) -> int:
    """SiYuan's ``sort`` weight of a block type."""
    return _SORT.get(block_type, 100)


def is_indexed_attr(name: str) -> bool:
    """Whether SiYuan lists this IAL attribute in the ``attributes`` table."""
    return name.startswith("custom-") or name in (
        "name",
        "alias",
        "memo",
        "bookmark",
        "fold",
        "heading-fold",
        "style",
    )


@lru_cache(maxsize=1 << 16)
def _leaf_text(markdown: str) -> str:
    if not markdown:
        return ""
    if _PLAIN_RE.match(markdown):
        return markdown.rstrip()
    return plain_text(markdown)


def _tags(markdown: str, block_type: str) -> list[str]:
    if "#" not in markdown:
        return []
    if block_type == "h":
        markdown = _HEADING_PREFIX.sub("", markdown, count=1)
    return _TAG_RE.findall(markdown)


def hpath_of(ws: Workspace, doc: Node) -> str:
    """The human-readable path: the titles of the documents along ``doc.path``."""
    parts = []
    for segment in doc.path.strip("/").split("/"):
        doc_id = segment[:-3] if segment.endswith(".sy") else segment
        owner = ws.docs.get(doc_id)
        parts.append(owner.attrs.get("title", "") if owner is not None else doc_id)
    return "/" + "/".join(parts)


def _first_leaf(node: Node) -> Node:
    while node.children and node.type in CONTAINER_TYPES:
        node = node.children[0]
    return node


def _leaf_content(ws: Workspace, node: Node) -> str:
    if node.type == "av":
        return ws.avs.get(attribute_view_id(node.markdown), "")
    return _leaf_text(node.markdown)


def sql_parents(parent: Node) -> dict[str, str]:
    """SiYuan's ``parent_id`` for each child of ``parent``: the nearest heading above it of a higher level, else ``parent``."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for child in parent.children:
        level = (
            int(child.subtype[1])
            if child.type == "h" and len(child.subtype) == 2
            else (1 if child.type == "h" else 7)
        )
        while stack and stack[-1][0] >= level:
            stack.pop()
        out[child.id] = stack[-1][1] if stack else parent.id
        if child.type == "h":
            stack.append((level, child.id))
    return out


def block_row(
    ws: Workspace, node: Node, hpaths: dict[str, str], parent_id: str | None = None
) -> tuple[Any, ...]:
    """The ``blocks`` row of one block (``hpaths``: a cache of document id -> hpath; ``parent_id``: its SQL parent if known)."""
    root = node.root if node.root is not None else node
    hpath = hpaths.get(root.id)
    if hpath is None:
        hpath = hpaths[root.id] = hpath_of(ws, root)
    attrs = node.attrs
    kind = node.type
    if kind == "d":
        title = attrs.get("title", "")
        markdown = ""
        content = fcontent = title
        length = len(title)
        parent_id = ""
        tags = [t.strip() for t in attrs.get("tags", "").split(",") if t.strip()]
    elif kind in CONTAINER_TYPES:
        markdown = render_markdown([node])
        leaves = [n for n in iter_blocks(node) if not n.children or n.type not in CONTAINER_TYPES]
        content = " ".join(t for t in (_leaf_content(ws, n) for n in leaves if n is not node) if t)
        fcontent = _leaf_content(ws, _first_leaf(node)) if node.children else ""
        length = len(fcontent)
        if parent_id is None:
            sql_parent = section_parent(node)
            parent_id = sql_parent.id if sql_parent is not None else ""
        tags = [t for n in leaves for t in _tags(n.markdown, n.type)]
    else:
        markdown = node.markdown
        content = _leaf_content(ws, node)
        fcontent = ""
        length = len(content)
        if parent_id is None:
            sql_parent = section_parent(node)
            parent_id = sql_parent.id if sql_parent is not None else ""
        tags = _tags(markdown, kind)
    ordered = {name: attrs[name] for name in sorted(attrs)}
    ial = format_ial(node.id, ordered)
    # SiYuan sorts the IAL (id included) for the hash; format_ial puts a given id first, so sort it in by hand.
    sorted_pairs = sorted([("id", node.id), *ordered.items()])
    hash_ial = "{: " + " ".join(f'{k}="{v}"' for k, v in sorted_pairs) + "}"
    digest = sha256(f"{root.box}{root.path}{hpath}{hash_ial}{markdown}{parent_id}".encode()).hexdigest()[:7]
    return (
        node.id,
        parent_id,
        root.id,
        digest,
        root.box,
        root.path,
        hpath,
        attrs.get("name", ""),
        attrs.get("alias", ""),
        attrs.get("memo", ""),
        " ".join(f"#{t}#" for t in tags),
        content,
        fcontent,
        markdown,
        length,
        kind,
        node.subtype,
        ial,
        sort_weight(kind),
        node.id[:14],
        attrs.get("updated", ""),
    )


def _attribute_rows(node: Node) -> Iterator[tuple[Any, ...]]:
    root = node.root if node.root is not None else node
    for name in sorted(node.attrs):
        if is_indexed_attr(name):
            yield (f"{node.id}/{name}", name, node.attrs[name], "b", node.id, root.id, root.box, root.path)


def view_rows(
    ws: Workspace, nodes: Iterable[Node], heading_free: set[str] | None = None
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """``blocks`` and ``attributes`` rows for these blocks.

    ``heading_free``, when given, holds ids of blocks known to have no heading
    child (their children's SQL parent is the block itself); parents found
    so are added to it.
    """
    hpaths: dict[str, str] = {}
    # Per structural parent: its children's SQL parents, or None when it has no heading child
    # (then every child's SQL parent is the parent itself).
    parents: dict[str, dict[str, str] | None] = {}
    blocks: list[tuple[Any, ...]] = []
    attributes: list[tuple[Any, ...]] = []
    for node in nodes:
        parent = node.parent
        parent_id = ""
        if parent is not None:
            if parent.id in parents:
                known = parents[parent.id]
            elif heading_free is not None and parent.id in heading_free:
                known = parents[parent.id] = None
            else:
                # The scan for a heading runs in C; the per-child loop only where there is one.
                has_heading = "h" in map(_node_type, parent.children)
                known = parents[parent.id] = sql_parents(parent) if has_heading else None
                if not has_heading and heading_free is not None:
                    heading_free.add(parent.id)
            parent_id = known[node.id] if known is not None else parent.id
        blocks.append(block_row(ws, node, hpaths, parent_id))
        attributes.extend(_attribute_rows(node))
    return blocks, attributes


#: What the view knows of a block's row: parent_id, root_id, hpath, type, and its attribute
#: rows (None when not known).
_Placed = tuple[str, str, str, str, "tuple[tuple[Any, ...], ...] | None"]
#: Blocks whose rows ``BlocksView`` remembers at most (a few MB).
_KNOWN_MAX = 1 << 14


def _root_box(node: Node) -> str:
    root = node.root
    return root.box if root is not None else node.box


def _chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class BlocksView:
    """The SQLite ``blocks`` view of a workspace, rebuilt whole or updated per event."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (creating) the view file in WAL mode with ``synchronous=OFF``."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Changes recorded by ``defer`` and not yet written; tickets count deferrals.
        self._touched: set[str] = set()
        self._removed: set[str] = set()
        self._conflicts: list[ConflictRecord] = []
        self._deferred = 0
        self._written = 0
        # Blocks known to have no heading child, so appending to a long document does not
        # scan all its children on every write; forgotten whenever a heading comes or goes.
        self._heading_free: set[str] = set()
        # Where the rows this view wrote last stand (parent_id, root_id, hpath, type) and their
        # attribute rows, so a write needs no SELECT to find them; this is the file's only
        # writer. Cleared when a write fails or the view is rebuilt.
        self._known: dict[str, _Placed] = {}
        try:
            self._db = self._connect()
        except sqlite3.OperationalError as exc:
            # A full disk or an I/O error says nothing about the file: keep it, report one line.
            raise StorageError(f"cannot open {self.path}: {exc}{full_disk_hint(self.path.parent)}") from exc
        except sqlite3.DatabaseError:
            # Derived data: a damaged view is thrown away and rebuilt.
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            self._db = self._connect()

    def _connect(self) -> sqlite_utils.Database:
        conn = sqlite3.connect(str(self.path), check_same_thread=False)
        db = sqlite_utils.Database(conn, execute_plugins=False)
        try:
            db.enable_wal()
            conn.execute("PRAGMA synchronous=OFF")
            self._create_schema(db)
        except BaseException:
            conn.close()
            raise
        return db

    @staticmethod
    def _create_schema(db: sqlite_utils.Database) -> None:
        tables = set(db.table_names())
        if "blocks" not in tables:
            columns: dict[str, Any] = {name: str for name in BLOCK_COLUMNS}
            columns["length"] = int
            columns["sort"] = int
            db.table("blocks").create(columns, pk="id")
            db.table("blocks").create_index(["root_id"], if_not_exists=True)
            db.table("blocks").create_index(["parent_id"], if_not_exists=True)
        if "attributes" not in tables:
            db.table("attributes").create({name: str for name in ATTRIBUTE_COLUMNS}, pk="id")
            db.table("attributes").create_index(["block_id"], if_not_exists=True)
        if "conflicts" not in tables:
            db.table("conflicts").create(
                {
                    "device_id": str,
                    "device_seq": int,
                    "op_index": int,
                    "action": str,
                    "block_id": str,
                    "reason": str,
                },
                pk=("device_id", "device_seq", "op_index", "action", "block_id", "reason"),
            )
        if "meta" not in tables:
            db.table("meta").create({"key": str, "value": str}, pk="key")
        for table in ("blocks", "attributes", "conflicts"):
            for event in ("INSERT", "UPDATE", "DELETE"):
                db.conn.execute(_EDIT_TRIGGER.format(table=table, event=event))

    @property
    def db(self) -> sqlite_utils.Database:
        """The sqlite-utils handle (for reads in tests and tools)."""
        return self._db

    def close(self) -> None:
        """Close the file."""
        self._db.conn.close()

    def __enter__(self) -> BlocksView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- meta

    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict (``position``, ``state_hash``)."""
        return {k: v for k, v in self._db.conn.execute("SELECT key, value FROM meta")}

    def edited(self) -> str | None:
        """The table someone changed outside oplog since the view was last rebuilt, or None."""
        row = self._db.conn.execute("SELECT value FROM meta WHERE key = 'edited'").fetchone()
        return None if row is None else str(row[0])

    def is_current(self, position: int, state_hash: str) -> bool:
        """Whether the view reflects this position and state hash (else rebuild it)."""
        meta = self.meta()
        return meta.get("position") == str(position) and meta.get("state_hash") == state_hash

    def _set_meta(self, position: int | None, state_hash: str | None) -> None:
        # An upsert rewrites the value in place; INSERT OR REPLACE would delete and re-insert
        # the row, rewriting the key's index too.
        conn = self._db.conn
        if position is not None and state_hash is not None:
            conn.execute(
                _UPSERT_META + ", ('state_hash', ?)" + _ON_META_CONFLICT, (str(position), state_hash)
            )
        elif position is not None:
            conn.execute(_UPSERT_META + _ON_META_CONFLICT, (str(position),))
        elif state_hash is not None:
            conn.execute(_UPSERT_META.replace("position", "state_hash") + _ON_META_CONFLICT, (state_hash,))

    # ---- writing

    def rebuild(
        self,
        ws: Workspace,
        *,
        conflicts: Iterable[ConflictRecord] = (),
        position: int | None = None,
        state_hash: str | None = None,
    ) -> None:
        """Replace the whole view with ``ws`` (and the conflict list) in one transaction."""
        conn = self._db.conn
        deferred = self._deferred
        self._heading_free = set()
        self._known.clear()
        with self._db.atomic():
            conn.execute(_BEGIN_OWN)
            conn.execute("DELETE FROM blocks")
            conn.execute("DELETE FROM attributes")
            conn.execute("DELETE FROM conflicts")
            conn.execute("DELETE FROM meta WHERE key != 'writer'")
            closed = ws.closed_boxes()
            for doc_id in sorted(ws.docs):
                if ws.docs[doc_id].box in closed:
                    continue  # a closed notebook's blocks are not in the view
                rows, attr_rows = view_rows(ws, iter_blocks(ws.docs[doc_id]))
                conn.executemany(_INSERT_BLOCK, rows)
                conn.executemany(_INSERT_ATTR, attr_rows)
            conn.executemany(_INSERT_CONFLICT, (tuple(c) for c in conflicts))
            self._set_meta(position, state_hash)
            conn.execute(_END_OWN)
        # The whole state is written: what was deferred until now is in it.
        self._clear_deferred(deferred)

    # ---- deferred writing

    def defer(
        self, touched: Iterable[str], removed: Iterable[str] = (), conflicts: Iterable[ConflictRecord] = ()
    ) -> int:
        """Record a change for the next ``flush`` instead of writing it now; returns its ticket."""
        self._touched.update(touched)
        self._removed.update(removed)
        self._conflicts.extend(conflicts)
        self._deferred += 1
        return self._deferred

    @property
    def pending(self) -> bool:
        """Whether deferred changes wait for a ``flush``."""
        return self._written < self._deferred

    def written(self, ticket: int) -> bool:
        """Whether the change that got ``ticket`` from ``defer`` is in the file."""
        return ticket <= self._written

    def flush(self, ws: Workspace, *, position: int | None = None, state_hash: str | None = None) -> bool:
        """Write every deferred change as of ``ws`` now, in one transaction; False if there was none.

        The caller keeps ``ws`` still meanwhile. If the write fails the changes
        stay deferred, for the next flush.
        """
        if not self.pending:
            return False
        deferred = self._deferred
        self.apply(
            ws,
            self._touched,
            self._removed,
            conflicts=self._conflicts,
            position=position,
            state_hash=state_hash,
        )
        self._clear_deferred(deferred)
        return True

    def _clear_deferred(self, upto: int) -> None:
        self._touched = set()
        self._removed = set()
        self._conflicts = []
        self._written = upto

    def apply(
        self,
        ws: Workspace,
        touched: Iterable[str],
        removed: Iterable[str] = (),
        *,
        conflicts: Iterable[ConflictRecord] = (),
        position: int | None = None,
        state_hash: str | None = None,
    ) -> None:
        """Bring the view up to date after a change that touched/removed these ids (one transaction)."""
        blocks = ws.blocks
        changed = set(touched)
        gone = set(removed)
        placed = self._placement(sorted(changed | gone))
        refresh = self._to_refresh(ws, changed, placed)
        missing = sorted(refresh.difference(placed))
        if missing:
            # Ancestors lifted in: knowing where they stand lets an unmoved one be UPDATEd.
            placed.update(self._placement(missing))
        closed = ws.closed_boxes()
        hidden = {i for i in refresh if _root_box(blocks[i]) in closed} if closed else set()
        nodes = [blocks[i] for i in sorted(refresh - hidden)]
        rows, attr_rows = view_rows(ws, nodes, self._heading_free)
        # A closed notebook's blocks leave the view, as in SiYuan; opening it touches them back in.
        dropped = sorted({i for i in gone if i not in blocks} | hidden)
        conn = self._db.conn
        # BEGIN/COMMIT by hand: sqlite-utils' atomic() costs a generator and a check per write.
        conn.execute("BEGIN")
        try:
            conn.execute(_BEGIN_OWN)
            self._write_rows(rows, attr_rows, placed, dropped)
            conflict_rows = [tuple(c) for c in conflicts]
            if conflict_rows:
                conn.executemany(_INSERT_CONFLICT, conflict_rows)
            self._set_meta(position, state_hash)
            conn.execute(_END_OWN)
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            # Rolled back: what was remembered about the rows may no longer hold.
            self._known.clear()
            raise

    def _placement(self, ids: Sequence[str]) -> dict[str, _Placed]:
        """Where these blocks' rows stand in the file (absent ids: no row), from memory or a SELECT."""
        known = self._known
        placed = {i: known[i] for i in ids if i in known}
        if len(placed) < len(ids):
            unknown = [i for i in ids if i not in placed]
            for chunk in _chunks(unknown):
                marks = ",".join("?" * len(chunk))
                for block_id, parent_id, root_id, hpath, kind in self._db.conn.execute(
                    f"SELECT id, parent_id, root_id, hpath, type FROM blocks WHERE id IN ({marks})",
                    tuple(chunk),
                ):
                    placed[block_id] = (parent_id, root_id, hpath, kind, None)
        return placed

    def _to_refresh(self, ws: Workspace, changed: set[str], placed: dict[str, _Placed]) -> set[str]:
        """The ids whose rows change: the changed blocks, the containers above them and above where
        they were, and every block of a document whose ``hpath`` changed."""
        blocks = ws.blocks
        refresh: set[str] = set()
        docs_moved: list[Node] = []
        old_parents: set[str] = set()
        # A heading that was, or is, among the changed blocks may have come to or left any parent.
        heading_moved = False
        for block_id, (parent_id, _root_id, hpath, kind, _attrs) in placed.items():
            if kind == "h":
                heading_moved = True
            if parent_id:
                old_parents.add(parent_id)
            doc = ws.docs.get(block_id)
            if doc is not None and block_id in changed and hpath != hpath_of(ws, doc):
                docs_moved.append(doc)

        def lift(node: Node | None) -> None:
            # Every container above a changed block renders it, so its row changes too.
            while node is not None and node.type != "d":
                if node.id in refresh and node.id not in changed:
                    return
                refresh.add(node.id)
                node = node.parent

        for block_id in changed:
            node = blocks.get(block_id)
            if node is not None:
                refresh.add(block_id)
                lift(node.parent)
                if node.type == "h":
                    heading_moved = True
        if heading_moved:
            self._heading_free.clear()
        for parent_id in old_parents:
            node = blocks.get(parent_id)
            if node is not None:
                lift(node if node.type in CONTAINER_TYPES else node.parent)
        for doc in docs_moved:
            for owner in (doc, *descendant_docs(ws, doc)):
                refresh.update(n.id for n in iter_blocks(owner))
        return refresh

    def _write_rows(
        self,
        rows: list[tuple[Any, ...]],
        attr_rows: list[tuple[Any, ...]],
        placed: dict[str, _Placed],
        dropped: list[str],
    ) -> None:
        """Write block and attribute rows and delete dropped blocks' (inside a transaction); remember them."""
        conn = self._db.conn
        attrs: dict[str, list[tuple[Any, ...]]] = {row[0]: [] for row in rows}
        for attr in attr_rows:
            attrs[attr[4]].append(attr)
        updates: list[tuple[Any, ...]] = []
        inserts: list[tuple[Any, ...]] = []
        stale: list[str] = []  # blocks whose attribute rows are rewritten
        fresh: list[tuple[Any, ...]] = []
        for row in rows:
            block_id = row[0]
            old = placed.get(block_id)
            if old is not None and old[0] == row[1] and old[1] == row[2]:
                updates.append((*_UPDATED_AT(row), block_id))
            else:
                inserts.append(row)
            new_attrs = tuple(attrs[block_id])
            if old is None or old[4] != new_attrs:
                if old is None or old[4] is None or old[4]:
                    stale.append(block_id)
                fresh.extend(new_attrs)
        # A dropped block with no row (not in ``placed``) has no attribute rows either.
        stale.extend(i for i in dropped if i in placed and placed[i][4] != ())
        for chunk in _chunks(dropped):
            marks = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM blocks WHERE id IN ({marks})", tuple(chunk))
        for chunk in _chunks(stale):
            marks = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM attributes WHERE block_id IN ({marks})", tuple(chunk))
        if updates:
            conn.executemany(_UPDATE_BLOCK, updates)
        if inserts:
            conn.executemany(_INSERT_BLOCK, inserts)
        if fresh:
            conn.executemany(_INSERT_ATTR, fresh)
        self._remember(rows, attrs, dropped)

    def _remember(
        self, rows: list[tuple[Any, ...]], attrs: dict[str, list[tuple[Any, ...]]], dropped: list[str]
    ) -> None:
        known = self._known
        for block_id in dropped:
            known.pop(block_id, None)
        for row in rows:
            block_id = row[0]
            # Re-inserted, so the dict's order is least recently written first.
            known.pop(block_id, None)
            known[block_id] = (row[1], row[2], row[_HPATH_AT], row[_TYPE_AT], tuple(attrs[block_id]))
        excess = len(known) - _KNOWN_MAX
        if excess > 0:
            for block_id in list(islice(known, excess + _KNOWN_MAX // 4)):
                del known[block_id]

    def record_conflicts(self, conflicts: Iterable[ConflictRecord]) -> None:
        """Add conflict rows (one transaction)."""
        with self._db.atomic():
            self._db.conn.execute(_BEGIN_OWN)
            self._db.conn.executemany(_INSERT_CONFLICT, (tuple(c) for c in conflicts))
            self._db.conn.execute(_END_OWN)

    def set_position(self, position: int, state_hash: str) -> None:
        """Record the position and state hash the view reflects."""
        with self._db.atomic():
            self._set_meta(position, state_hash)


def edited_outside(path: str | os.PathLike[str]) -> str | None:
    """Read-only: the table of the view file at ``path`` someone changed outside oplog, or None.

    For ``oplog verify``: the file is opened read-only and nothing is created;
    a missing or unreadable file (or one older than the edit triggers) is None.
    """
    target = Path(path)
    if not target.is_file():
        return None
    try:
        conn = connect_readonly(target)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'edited'").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])
