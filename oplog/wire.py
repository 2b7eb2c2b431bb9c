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
    _fill_value(value, obj, where)
    return value


def _fill_value(value: struct_pb2.Value, obj: Any, where: str) -> None:
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
            _fill_value(value.list_value.values.add(), item, f"{where}[{i}]")
    elif isinstance(obj, dict):
        value.struct_value.SetInParent()
        for key, item in obj.items():
            if not isinstance(key, str):
                raise InvalidTransaction(f"{where}: object keys must be strings")
            _fill_value(value.struct_value.fields[key], item, f"{where}.{key}")
    else:
        raise InvalidTransaction(f"{where}: not a JSON value: {type(obj).__name__}")


def from_value(value: struct_pb2.Value) -> Any:
    """Convert ``google.protobuf.Value`` back to a JSON value; integral numbers come back as ``int``."""
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "string_value":
        return value.string_value
    if kind == "list_value":
        return [from_value(item) for item in value.list_value.values]
    return {key: from_value(item) for key, item in value.struct_value.fields.items()}


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
    out: dict[str, Any] = {"action": op.action}
    for key, field in _OP_STRING_FIELDS.items():
        if key != "action":
            value = getattr(op, field)
            if value:
                out[key] = value
    if op.HasField("data"):
        out["data"] = from_value(op.data)
    if op.is_detached:
        out["isDetached"] = True
    out["retData"] = from_value(op.ret_data) if op.HasField("ret_data") else None
    if resolved:
        if op.blocks:
            out["blocks"] = [_spec_to_json(block) for block in op.blocks]
        if op.attrs:
            out["attrs"] = {attr.name: attr.value for attr in op.attrs}
        for field in ("updated", "text", "box", "parent_doc"):
            value = getattr(op, field)
            if value:
                out[field] = value
    return out


def _spec_to_json(spec: pb.BlockSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"id": spec.id, "type": spec.type}
    if spec.subtype:
        out["subtype"] = spec.subtype
    if spec.markdown:
        out["markdown"] = spec.markdown
    if spec.attrs:
        out["attrs"] = {attr.name: attr.value for attr in spec.attrs}
    if spec.children:
        out["children"] = [_spec_to_json(child) for child in spec.children]
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
