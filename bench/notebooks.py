"""What closing and opening a big notebook costs: the SQL view drops and restores its rows.

Usage: python bench/notebooks.py [--docs N] [--paragraphs P]

Builds a store whose one notebook holds N documents of P paragraphs, then
times ``closeNotebook`` and ``openNotebook`` through ``Store.apply`` (best of
three, each one logged transaction: the log append, the state hash and the
view rows), next to a plain ``setBlockAttrs`` on the same store.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

from oplog import notebooks as nb
from oplog.store import Store

BOX = "20240101000000-bigbook"


def _timed(store: Store, op: dict[str, object]) -> float:
    start = time.perf_counter()
    store.apply(nb.apply_request([op]))
    return time.perf_counter() - start


def _rows(store: Store) -> int:
    return int(store.query("SELECT count(*) FROM blocks WHERE box = ?", [BOX]).rows[0][0])


def main() -> None:
    """Run the measurement and print one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--paragraphs", type=int, default=100)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "data")
        try:
            store.apply(nb.apply_request([nb.create_notebook_op("Big", notebook_id=BOX)]))
            body = "\n\n".join(f"paragraph {i} with some words" for i in range(args.paragraphs))
            for d in range(args.docs):
                doc = {"action": "createDoc", "data": {"box": BOX, "title": f"D{d}", "markdown": body}}
                store.apply(nb.apply_request([doc]))
            first = min(store.ws.docs)
            plain = min(
                _timed(store, {"action": "setBlockAttrs", "id": first, "data": {"custom-x": str(i)}})
                for i in range(5)
            )
            closes, opens, hidden = [], [], []
            for _ in range(3):
                closes.append(_timed(store, nb.close_notebook_op(BOX)))
                hidden.append(_rows(store))
                opens.append(_timed(store, nb.open_notebook_op(BOX)))
            shown = _rows(store)
            blocks = len(store.ws.blocks)
        finally:
            store.close()
    print(
        f"{blocks} blocks: closeNotebook {min(closes) * 1000:.0f} ms (rows left {max(hidden)}), "
        f"openNotebook {min(opens) * 1000:.0f} ms (rows {shown}); setBlockAttrs {plain * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
