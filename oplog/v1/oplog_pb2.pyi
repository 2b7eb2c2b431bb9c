from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Attr(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class BlockSpec(_message.Message):
    __slots__ = ("id", "type", "subtype", "markdown", "attrs", "children")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBTYPE_FIELD_NUMBER: _ClassVar[int]
    MARKDOWN_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    subtype: str
    markdown: str
    attrs: _containers.RepeatedCompositeFieldContainer[Attr]
    children: _containers.RepeatedCompositeFieldContainer[BlockSpec]
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., subtype: _Optional[str] = ..., markdown: _Optional[str] = ..., attrs: _Optional[_Iterable[_Union[Attr, _Mapping]]] = ..., children: _Optional[_Iterable[_Union[BlockSpec, _Mapping]]] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("action", "id", "parent_id", "previous_id", "next_id", "data", "data_type", "is_detached", "ret_data", "resolved", "blocks", "attrs", "updated", "text", "box", "parent_doc")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    IS_DETACHED_FIELD_NUMBER: _ClassVar[int]
    RET_DATA_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    PARENT_DOC_FIELD_NUMBER: _ClassVar[int]
    action: str
    id: str
    parent_id: str
    previous_id: str
    next_id: str
    data: _struct_pb2.Value
    data_type: str
    is_detached: bool
    ret_data: _struct_pb2.Value
    resolved: bool
    blocks: _containers.RepeatedCompositeFieldContainer[BlockSpec]
    attrs: _containers.RepeatedCompositeFieldContainer[Attr]
    updated: str
    text: str
    box: str
    parent_doc: str
    def __init__(self, action: _Optional[str] = ..., id: _Optional[str] = ..., parent_id: _Optional[str] = ..., previous_id: _Optional[str] = ..., next_id: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., data_type: _Optional[str] = ..., is_detached: _Optional[bool] = ..., ret_data: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., resolved: _Optional[bool] = ..., blocks: _Optional[_Iterable[_Union[BlockSpec, _Mapping]]] = ..., attrs: _Optional[_Iterable[_Union[Attr, _Mapping]]] = ..., updated: _Optional[str] = ..., text: _Optional[str] = ..., box: _Optional[str] = ..., parent_doc: _Optional[str] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("timestamp", "do_operations", "undo_operations")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DO_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    UNDO_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    timestamp: int
    do_operations: _containers.RepeatedCompositeFieldContainer[Operation]
    undo_operations: _containers.RepeatedCompositeFieldContainer[Operation]
    def __init__(self, timestamp: _Optional[int] = ..., do_operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ..., undo_operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("device_id", "device_seq", "hlc", "req_id", "app", "session", "tx_index", "tx_count", "time_ms", "transaction", "request_digest")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_SEQ_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    REQ_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    TX_INDEX_FIELD_NUMBER: _ClassVar[int]
    TX_COUNT_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    device_seq: int
    hlc: int
    req_id: int
    app: str
    session: str
    tx_index: int
    tx_count: int
    time_ms: int
    transaction: Transaction
    request_digest: bytes
    def __init__(self, device_id: _Optional[str] = ..., device_seq: _Optional[int] = ..., hlc: _Optional[int] = ..., req_id: _Optional[int] = ..., app: _Optional[str] = ..., session: _Optional[str] = ..., tx_index: _Optional[int] = ..., tx_count: _Optional[int] = ..., time_ms: _Optional[int] = ..., transaction: _Optional[_Union[Transaction, _Mapping]] = ..., request_digest: _Optional[bytes] = ...) -> None: ...

class ApplyRequest(_message.Message):
    __slots__ = ("transactions", "req_id", "app", "session")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    REQ_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    req_id: int
    app: str
    session: str
    def __init__(self, transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ..., req_id: _Optional[int] = ..., app: _Optional[str] = ..., session: _Optional[str] = ...) -> None: ...

class LogPosition(_message.Message):
    __slots__ = ("device_id", "device_seq", "hlc")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_SEQ_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    device_seq: int
    hlc: int
    def __init__(self, device_id: _Optional[str] = ..., device_seq: _Optional[int] = ..., hlc: _Optional[int] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("transactions", "positions")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    positions: _containers.RepeatedCompositeFieldContainer[LogPosition]
    def __init__(self, transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ..., positions: _Optional[_Iterable[_Union[LogPosition, _Mapping]]] = ...) -> None: ...

class PerformSyncRequest(_message.Message):
    __slots__ = ("app", "force", "push_mode", "push_only", "cloud_name")
    APP_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    PUSH_MODE_FIELD_NUMBER: _ClassVar[int]
    PUSH_ONLY_FIELD_NUMBER: _ClassVar[int]
    CLOUD_NAME_FIELD_NUMBER: _ClassVar[int]
    app: str
    force: bool
    push_mode: str
    push_only: bool
    cloud_name: str
    def __init__(self, app: _Optional[str] = ..., force: _Optional[bool] = ..., push_mode: _Optional[str] = ..., push_only: _Optional[bool] = ..., cloud_name: _Optional[str] = ...) -> None: ...

class SyncProgress(_message.Message):
    __slots__ = ("current", "total", "info", "msg")
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    current: int
    total: int
    info: str
    msg: str
    def __init__(self, current: _Optional[int] = ..., total: _Optional[int] = ..., info: _Optional[str] = ..., msg: _Optional[str] = ...) -> None: ...

class GetSyncInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SyncInfo(_message.Message):
    __slots__ = ("last_sync_time", "status", "in_progress", "cloud_name", "epoch", "device_id", "pending_local_events", "device_cursors", "last_error", "snapshot_check")
    class DeviceCursorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    LAST_SYNC_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CLOUD_NAME_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PENDING_LOCAL_EVENTS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CURSORS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_CHECK_FIELD_NUMBER: _ClassVar[int]
    last_sync_time: int
    status: str
    in_progress: bool
    cloud_name: str
    epoch: str
    device_id: str
    pending_local_events: int
    device_cursors: _containers.ScalarMap[str, int]
    last_error: str
    snapshot_check: str
    def __init__(self, last_sync_time: _Optional[int] = ..., status: _Optional[str] = ..., in_progress: _Optional[bool] = ..., cloud_name: _Optional[str] = ..., epoch: _Optional[str] = ..., device_id: _Optional[str] = ..., pending_local_events: _Optional[int] = ..., device_cursors: _Optional[_Mapping[str, int]] = ..., last_error: _Optional[str] = ..., snapshot_check: _Optional[str] = ...) -> None: ...

class WatchSyncRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SyncEvent(_message.Message):
    __slots__ = ("cmd", "progress", "message", "time_ms")
    CMD_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    cmd: str
    progress: SyncProgress
    message: str
    time_ms: int
    def __init__(self, cmd: _Optional[str] = ..., progress: _Optional[_Union[SyncProgress, _Mapping]] = ..., message: _Optional[str] = ..., time_ms: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("from_position",)
    FROM_POSITION_FIELD_NUMBER: _ClassVar[int]
    from_position: int
    def __init__(self, from_position: _Optional[int] = ...) -> None: ...

class CommittedEvent(_message.Message):
    __slots__ = ("position", "event")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    position: int
    event: Event
    def __init__(self, position: _Optional[int] = ..., event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class Block(_message.Message):
    __slots__ = ("id", "parent_id", "root_id", "box", "path", "type", "subtype", "markdown", "content", "attrs", "child_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_ID_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBTYPE_FIELD_NUMBER: _ClassVar[int]
    MARKDOWN_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    CHILD_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    parent_id: str
    root_id: str
    box: str
    path: str
    type: str
    subtype: str
    markdown: str
    content: str
    attrs: _containers.RepeatedCompositeFieldContainer[Attr]
    child_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., parent_id: _Optional[str] = ..., root_id: _Optional[str] = ..., box: _Optional[str] = ..., path: _Optional[str] = ..., type: _Optional[str] = ..., subtype: _Optional[str] = ..., markdown: _Optional[str] = ..., content: _Optional[str] = ..., attrs: _Optional[_Iterable[_Union[Attr, _Mapping]]] = ..., child_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetBlockRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetDocumentRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetDocumentResponse(_message.Message):
    __slots__ = ("blocks",)
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.RepeatedCompositeFieldContainer[Block]
    def __init__(self, blocks: _Optional[_Iterable[_Union[Block, _Mapping]]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("sql", "args")
    SQL_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    sql: str
    args: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    def __init__(self, sql: _Optional[str] = ..., args: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("columns", "rows", "truncated")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[_struct_pb2.ListValue]
    truncated: bool
    def __init__(self, columns: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[_struct_pb2.ListValue, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("state_hash", "block_count", "device_heads", "position")
    class DeviceHeadsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STATE_HASH_FIELD_NUMBER: _ClassVar[int]
    BLOCK_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_HEADS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    state_hash: str
    block_count: int
    device_heads: _containers.ScalarMap[str, int]
    position: int
    def __init__(self, state_hash: _Optional[str] = ..., block_count: _Optional[int] = ..., device_heads: _Optional[_Mapping[str, int]] = ..., position: _Optional[int] = ...) -> None: ...
