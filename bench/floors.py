"""Field-read floors the benchmarks print: protobuf reads alone, nothing built from them.

Reading a field of a upb message from Python costs a wrapper per sub-message
and a ``str`` per string; these helpers read each field once and drop it, so a
benchmark can show how much of a step is spent just getting at the data.
"""

from __future__ import annotations

from typing import Any

from oplog.v1 import oplog_pb2 as pb

__all__ = ["read_value", "read_spec", "read_printed_fields"]


def read_value(value: Any) -> None:
    """Read a ``google.protobuf.Value`` down to its leaves."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        fields = value.struct_value.fields
        for key in fields:
            read_value(fields[key])
    elif kind == "list_value":
        for item in value.list_value.values:
            read_value(item)
    elif kind is not None:
        getattr(value, kind)


def read_spec(spec: pb.BlockSpec) -> None:
    """Read a block spec's fields, attributes and children."""
    spec.id, spec.type, spec.subtype, spec.markdown  # noqa: B018
    for attr in spec.attrs:
        attr.name, attr.value  # noqa: B018
    for child in spec.children:
        read_spec(child)


def read_printed_fields(event: pb.Event) -> None:
    """Read, once each, every field ``dump --json`` prints of an event — and build nothing.

    The floor of any dump of protobuf events written in Python: whatever turns
    the event into text has to read at least these.
    """
    event.device_id, event.device_seq, event.hlc, event.time_ms, event.req_id  # noqa: B018
    event.app, event.session, event.tx_index, event.tx_count  # noqa: B018
    for op in event.transaction.do_operations:
        op.action, op.id, op.parent_id, op.previous_id, op.next_id, op.data_type, op.is_detached  # noqa: B018
        read_value(op.data)
        read_value(op.ret_data)
        for spec in op.blocks:
            read_spec(spec)
        for attr in op.attrs:
            attr.name, attr.value  # noqa: B018
        op.updated, op.text, op.box, op.parent_doc  # noqa: B018
