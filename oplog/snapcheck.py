"""A device's own check of the remote snapshot its state started from: fold the history itself, compare.

A remote snapshot (``oplog.remotesnap``) lets a device that was empty or far
behind skip folding most of the history, but it is another device's claim. So
after the sync that started from one, this device folds the first ``position``
events of its logs from nothing, off the write path (``Store.fold_prefix``),
and compares:

* same state hash at the same last event: ``verified``;
* a different hash: ``mismatch`` — reported by ``oplog verify`` (a problem),
  ``GetSyncInfo``/``getSyncInfo`` and ``oplog stats``, and the device drops
  every checkpoint built on the snapshot and switches to its own fold
  (``Store.refold_own``);
* the prefix is no longer the one the snapshot covers (events that sort
  inside it arrived since): ``superseded`` — the store already refolded when
  they arrived; it refolds once more to be sure.

The check is recorded as ``pending`` in ``sync.json`` by the sync itself, so a
process that stops before it ran runs it on its next sync.
"""

from __future__ import annotations

from collections.abc import Callable

from oplog.store import Store
from oplog.syncstate import load_state, save_state

__all__ = ["check_pending", "PENDING", "VERIFIED", "MISMATCH", "SUPERSEDED"]

PENDING = "pending"
VERIFIED = "verified"
MISMATCH = "mismatch"
SUPERSEDED = "superseded"


def check_pending(store: Store, log: Callable[[str], None] | None = None) -> str:
    """Run the check ``sync.json`` says is pending; its outcome (``verified``, ...), or "" if none was pending."""
    say = log or (lambda message: None)
    check = load_state(store.data_dir).snapshot_check
    if check.get("status") != PENDING:
        return ""
    name = str(check.get("name", ""))
    position = int(check.get("position", 0))
    expected = str(check.get("state_hash", ""))
    raw_key = check.get("last_key")
    last_key = (int(raw_key[0]), str(raw_key[1]), int(raw_key[2])) if raw_key else None
    say(f"checking snapshot {name}: folding the first {position} events of this device's logs")
    result = store.fold_prefix(position)
    got = result.state_hash.hexdigest()
    if result.position != position or result.last_key != last_key:
        status = SUPERSEDED
        detail = "the logs' history up to it changed since (events that sort inside it arrived); refolded"
    elif got == expected:
        status, detail = VERIFIED, ""
    else:
        status = MISMATCH
        detail = (
            f"it says state {expected[:16]}, this device's own fold of the same {position} events gives "
            f"{got[:16]}; switched to this device's own fold"
        )
    if status != VERIFIED:
        store.refold_own(position)
    state = load_state(store.data_dir)
    if state.snapshot_check.get("name") == name:
        state.snapshot_check.update(status=status, detail=detail)
        save_state(store.data_dir, state)
    say(f"snapshot {name}: {status}" + (f" ({detail})" if detail else ""))
    return status
