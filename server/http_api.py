"""The seed endpoints and the small kernel ones: ``/api/transactions``, sync, system, notification.

``/api/transactions`` is the write path every other write endpoint also takes:
the body becomes one ``ApplyRequest`` (``oplog.wire``), ``Store.apply`` logs it
as events (undo, change feed, sync), and the reply's ``data`` is the processed
transactions with ``retData``. A refused request changes nothing (the store is
atomic per request) and its message names ``transactions[i].doOperations[j]``.
The ``transactions`` message on ``/ws`` after each applied request comes from
the change feed (:mod:`.http_feed`), so gRPC and synced requests send one too.
"""

from __future__ import annotations

from typing import Any

from oplog import wire
from oplog.server.http_envelope import arg, opt
from oplog.server.http_routes import OPEN, READ, SYNC, SYNC_INFO, WRITE, HttpContext, endpoint
from oplog.server.http_sync import get_sync_info, perform_sync
from oplog.server.http_ws import push_message

__all__ = ["KERNEL_VERSION", "apply_json"]

#: The kernel version oplog answers ``system/version`` with: the API generation its endpoints follow.
KERNEL_VERSION = "3.2.0"


# ---- system, notification ----


@endpoint("system/version", OPEN)
def _version(ctx: HttpContext, body: dict[str, Any]) -> str:
    return KERNEL_VERSION


@endpoint("system/currentTime", OPEN)
def _current_time(ctx: HttpContext, body: dict[str, Any]) -> int:
    return ctx.clock_ms()


@endpoint("system/getConf", READ)
def _get_conf(ctx: HttpContext, body: dict[str, Any]) -> dict[str, Any]:
    state = ctx.store.state()
    docs = ctx.store.query(
        "SELECT count(*) FROM blocks WHERE type = 'd'",
        (),
        max_rows=1,
        time_budget_s=ctx.limits.query_time_budget_s,
        runner=ctx.query_runner,
    )
    tree_count = int(docs.rows[0][0]) if docs.rows else 0
    # Only what oplog can honestly fill; never a token or a path of this machine.
    conf = {
        "system": {"kernelVersion": KERNEL_VERSION, "os": "", "container": "oplog", "id": ""},
        "stat": {
            "treeCount": tree_count,
            "cTreeCount": tree_count,
            "blockCount": int(state.block_count),
            "cBlockCount": int(state.block_count),
            "dataSize": 0,
            "cDataSize": 0,
            "assetsSize": 0,
            "cAssetsSize": 0,
        },
        "api": {"token": ""},
        "readonly": ctx.readonly,
        "sync": {"enabled": ctx.sync is not None, "stat": ""},
    }
    return {"conf": conf, "start": False, "isPublish": False}


def _notify(ctx: HttpContext, body: dict[str, Any], code: int) -> dict[str, Any]:
    msg = arg(body, "msg", str)
    timeout = opt(body, "timeout", float, 7000)
    msg_id = ctx.ids()[-7:]
    ctx.hub.publish(
        push_message("msg", code=code, msg=msg, data={"id": msg_id, "closeTimeout": int(timeout)}),
        type_="main",
    )
    return {"id": msg_id}


@endpoint("notification/pushMsg", WRITE)
def _push_msg(ctx: HttpContext, body: dict[str, Any]) -> dict[str, Any]:
    return _notify(ctx, body, 0)


@endpoint("notification/pushErrMsg", WRITE)
def _push_err_msg(ctx: HttpContext, body: dict[str, Any]) -> dict[str, Any]:
    return _notify(ctx, body, -1)


# ---- transactions ----


def apply_json(ctx: HttpContext, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Apply a performTransactions body through ``Store.apply``; the processed transactions, broadcast on /ws."""
    arg(body, "transactions", list)
    req_id = arg(body, "reqId", float)
    request = wire.request_from_json(body)
    request.req_id = int(req_id)
    for tx in request.transactions:
        # The kernel stamps each transaction with the request's reqId.
        tx.timestamp = request.req_id
    response = ctx.store.apply(request)
    # The /ws "transactions" message comes from the change feed (http_feed), for every protocol;
    # as the kernel does, it is queued before the reply goes out.
    ctx.published(ctx.store.journal_length())
    return [wire.transaction_to_json(tx) for tx in response.transactions]


@endpoint("transactions", WRITE)
def _transactions(ctx: HttpContext, body: dict[str, Any]) -> list[dict[str, Any]]:
    return apply_json(ctx, body)


# ---- sync ----


@endpoint("sync/performSync", SYNC)
def _perform_sync(ctx: HttpContext, body: dict[str, Any]) -> dict[str, Any]:
    return perform_sync(ctx.sync, body)


@endpoint("sync/getSyncInfo", SYNC_INFO)
def _get_sync_info(ctx: HttpContext, body: dict[str, Any]) -> dict[str, Any]:
    return get_sync_info(ctx.sync, body)
