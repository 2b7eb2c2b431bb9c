"""SiYuan's JSON request and reply shapes ⇄ the protobuf messages.

SiYuan spells ``parentID``/``previousID``/``nextID``/``reqId``; protobuf's own
JSON mapping would say ``parentId``, so the mapping is written out here once.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import struct_pb2

from oplog.errors import InvalidTransaction
from oplog.v1 import oplog_pb2 as pb

__all__ = [
    "request_from_json",
    "request_to_json",
    "operation_from_json",
    "operation_to_json",
    "transaction_to_json",
    "to_value",
    "fill_value",
    "from_value",
]

# SiYuan JSON key -> Operation field, for the string fields.
_OP_STRING_FIELDS = {
    "action": "action",
    "id": "id",
    "parentID": "parent_id",
    "previousID": "previous_id",
    "nextID": "next_id",
    "dataType": "data_type",
}
# Spellings SiYuan's own kernel and plugins also send.
_OP_ALIASES = {"parentId": "parentID", "previousId": "previousID", "nextId": "nextID"}


def to_value(obj: Any, where: str = "data") -> struct_pb2.Value:
    """Convert a JSON value (as ``json.loads`` returns it) to ``google.protobuf.Value``."""
    value = struct_pb2.Value()
    fill_value(value, obj, where)
    return value


def fill_value(value: struct_pb2.Value, obj: Any, where: str = "data") -> None:
    """Set ``value`` (a message's field, say) to the JSON value ``obj`` in place, with no copy."""
    if obj is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(obj, bool):
        value.bool_value = obj
    elif isinstance(obj, int | float):
        if isinstance(obj, float) and not math.isfinite(obj):
            raise InvalidTransaction(f"{where}: numbers must be finite")
        value.number_value = obj
    elif isinstance(obj, str):
        value.string_value = obj
    elif isinstance(obj, list | tuple):
        value.list_value.SetInParent()
        for i, item in enumerate(obj):
            fill_value(value.list_value.values.add(), item, f"{where}[{i}]")
    elif isinstance(obj, dict):
        value.struct_value.SetInParent()
        for key, item in obj.items():
            if not isinstance(key, str):
                raise InvalidTransaction(f"{where}: object keys must be strings")
            fill_value(value.struct_value.fields[key], item, f"{where}.{key}")
    else:
        raise InvalidTransaction(f"{where}: not a JSON value: {type(obj).__name__}")


def from_value(value: struct_pb2.Value) -> Any:
    """Convert ``google.protobuf.Value`` back to a JSON value; integral numbers come back as ``int``."""
    # Kinds tested most common first, and a struct's map read by key rather than through the
    # ``Mapping.items()`` mixin: ≈ 12 % less time per value (measured on ``oplog dump``'s values).
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        fields = value.struct_value.fields
        # upb's map iterates in no fixed order (it changes between processes): keys are
        # sorted so the same value always gives the same JSON text.
        return {key: from_value(fields[key]) for key in sorted(fields)}
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "list_value":
        return [from_value(item) for item in value.list_value.values]
    if kind == "bool_value":
        return value.bool_value
    return None  # null_value, or no kind set


def _int_field(obj: dict[str, Any], key: str, where: str, *, required: bool) -> int:
    raw = obj.get(key)
    if raw is None:
        if required:
            raise InvalidTransaction(f"{key} is required", location=where)
        return 0
    if isinstance(raw, bool):
        raise InvalidTransaction(f"{key} must be a number", location=where)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        return int(raw.strip())
    raise InvalidTransaction(f"{key} must be an integer, got {raw!r}", location=where)


def operation_from_json(obj: Any, where: str) -> pb.Operation:
    """Convert one SiYuan operation object to an ``Operation``."""
    if not isinstance(obj, dict):
        raise InvalidTransaction("an operation must be a JSON object", location=where)
    op = pb.Operation()
    for key, raw in obj.items():
        key = _OP_ALIASES.get(key, key)
        if key == "avID" and not obj.get("id"):
            # Attribute-view actions name their target avID; it is the op's id.
            key = "id"
        field = _OP_STRING_FIELDS.get(key)
        if field is not None:
            if raw is None:
                continue
            if not isinstance(raw, str):
                raise InvalidTransaction(f"{key} must be a string, got {raw!r}", location=where)
            setattr(op, field, raw)
        elif key == "data":
            if raw is not None:
                op.data.CopyFrom(to_value(raw, f"{where}.data"))
        elif key == "retData":
            if raw is not None:
                op.ret_data.CopyFrom(to_value(raw, f"{where}.retData"))
        elif key == "isDetached":
            op.is_detached = bool(raw)
    if not op.action:
        raise InvalidTransaction("action is required", location=where)
    return op


def request_from_json(obj: Any) -> pb.ApplyRequest:
    """Convert a performTransactions JSON body to an ``ApplyRequest``, checking its shape."""
    if not isinstance(obj, dict):
        raise InvalidTransaction("the request body must be a JSON object")
    request = pb.ApplyRequest()
    request.req_id = _int_field(obj, "reqId", "request", required=False)
    for key in ("app", "session"):
        raw = obj.get(key, "")
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            raise InvalidTransaction(f"{key} must be a string", location="request")
        setattr(request, key, raw)
    transactions = obj.get("transactions")
    if not isinstance(transactions, list):
        raise InvalidTransaction("transactions must be a list", location="request")
    if not transactions:
        # Refused like the Apply RPC refuses it: a request that carries nothing is a client's mistake.
        raise InvalidTransaction("at least one transaction is required", location="request.transactions")
    for i, tx_obj in enumerate(transactions):
        where = f"transactions[{i}]"
        if not isinstance(tx_obj, dict):
            raise InvalidTransaction("a transaction must be a JSON object", location=where)
        tx = request.transactions.add()
        tx.timestamp = _int_field(tx_obj, "timestamp", where, required=False)
        for list_key, target in (("doOperations", tx.do_operations), ("undoOperations", tx.undo_operations)):
            ops = tx_obj.get(list_key) or []
            if not isinstance(ops, list):
                raise InvalidTransaction(f"{list_key} must be a list", location=where)
            for j, op_obj in enumerate(ops):
                target.append(operation_from_json(op_obj, f"{where}.{list_key}[{j}]"))
    return request


def operation_to_json(op: pb.Operation, *, resolved: bool = False) -> dict[str, Any]:
    """Convert an ``Operation`` to SiYuan's JSON shape (resolved fields only if asked)."""
    # Every field is read once, by name, into a local (no getattr loop over a field table), and the
    # Values take the shortcuts below: 10-20 % faster than the table-driven version (measured; the
    # rest is the protobuf reads themselves, ≈ 0.1 µs each). Runs once per operation in ``oplog dump``.
    out: dict[str, Any] = {"action": op.action}
    value = op.id
    if value:
        out["id"] = value
    value = op.parent_id
    if value:
        out["parentID"] = value
    value = op.previous_id
    if value:
        out["previousID"] = value
    value = op.next_id
    if value:
        out["nextID"] = value
    value = op.data_type
    if value:
        out["dataType"] = value
    data = op.data
    kind = data.WhichOneof("kind")
    if kind == "string_value":  # most operations carry Markdown: no from_value call
        out["data"] = data.string_value
    elif kind is not None or op.HasField("data"):
        out["data"] = from_value(data)
    if op.is_detached:
        out["isDetached"] = True
    # An unset ret_data reads as an empty Value, which from_value turns into None: no HasField needed.
    out["retData"] = from_value(op.ret_data)
    if resolved:
        blocks = op.blocks
        if blocks:
            out["blocks"] = [_spec_to_json(block) for block in blocks]
        attrs = op.attrs
        if attrs:
            out["attrs"] = {attr.name: attr.value for attr in attrs}
        value = op.updated
        if value:
            out["updated"] = value
        value = op.text
        if value:
            out["text"] = value
        value = op.box
        if value:
            out["box"] = value
        value = op.parent_doc
        if value:
            out["parent_doc"] = value
    return out


def _spec_to_json(spec: pb.BlockSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"id": spec.id, "type": spec.type}
    value = spec.subtype
    if value:
        out["subtype"] = value
    value = spec.markdown
    if value:
        out["markdown"] = value
    attrs = spec.attrs
    if attrs:
        out["attrs"] = {attr.name: attr.value for attr in attrs}
    children = spec.children
    if children:
        out["children"] = [_spec_to_json(child) for child in children]
    return out


def transaction_to_json(tx: pb.Transaction, *, resolved: bool = False) -> dict[str, Any]:
    """Convert a ``Transaction`` to SiYuan's JSON shape."""
    return {
        "timestamp": tx.timestamp,
        "doOperations": [operation_to_json(op, resolved=resolved) for op in tx.do_operations],
        "undoOperations": [operation_to_json(op, resolved=resolved) for op in tx.undo_operations],
    }


def request_to_json(request: pb.ApplyRequest) -> dict[str, Any]:
    """Convert an ``ApplyRequest`` back to the performTransactions JSON body."""
    return {
        "transactions": [transaction_to_json(tx) for tx in request.transactions],
        "reqId": request.req_id,
        "app": request.app,
        "session": request.session,
    }
