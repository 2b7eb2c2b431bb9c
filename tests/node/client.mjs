// A Node.js client of oplog.v1.OpLog: loads proto/oplog/v1/*.proto at run time (no generated code),
// applies a performTransactions JSON body, reads a block back, subscribes, and prints one JSON object.
//
// Usage: node client.mjs ADDRESS PROTO_ROOT BODY.json BLOCK_ID
// Env:   OPLOG_NODE_DEPS  folder whose node_modules holds @grpc/grpc-js and @grpc/proto-loader
//        OPLOG_TOKEN      token sent as "authorization: Token <t>" (optional)

import { createRequire } from "node:module";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const require = createRequire(join(process.env.OPLOG_NODE_DEPS || process.cwd(), "package.json"));
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, protoRoot, bodyPath, blockId] = process.argv.slice(2);

// JSON value -> google.protobuf.Value. protobufjs ships struct.proto built in with camelCase field
// names, so keepCase (which our own messages use) does not apply to it: stringValue, not string_value.
function toValue(v) {
  if (v === null || v === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof v === "boolean") return { boolValue: v };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  const fields = {};
  for (const [k, x] of Object.entries(v)) fields[k] = toValue(x);
  return { structValue: { fields } };
}

function toOperation(op) {
  const out = {
    action: op.action,
    id: op.id || "",
    parent_id: op.parentID || "",
    previous_id: op.previousID || "",
    next_id: op.nextID || "",
    data_type: op.dataType || "",
    is_detached: Boolean(op.isDetached),
  };
  if (op.data !== undefined) out.data = toValue(op.data);
  return out;
}

function toRequest(body) {
  return {
    req_id: String(body.reqId || 0),
    app: body.app || "",
    session: body.session || "",
    transactions: (body.transactions || []).map((tx) => ({
      timestamp: String(tx.timestamp || 0),
      do_operations: (tx.doOperations || []).map(toOperation),
      undo_operations: (tx.undoOperations || []).map(toOperation),
    })),
  };
}

const dir = join(protoRoot, "oplog", "v1");
const files = readdirSync(dir).filter((f) => f.endsWith(".proto")).map((f) => join("oplog", "v1", f));
const definition = protoLoader.loadSync(files, {
  includeDirs: [protoRoot],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { OpLog } = grpc.loadPackageDefinition(definition).oplog.v1;
const client = new OpLog(address, grpc.credentials.createInsecure());

function metadata() {
  const md = new grpc.Metadata();
  if (process.env.OPLOG_TOKEN) md.set("authorization", `Token ${process.env.OPLOG_TOKEN}`);
  return md;
}

function deadline(seconds = 15) {
  return new Date(Date.now() + seconds * 1000);
}

function unary(method, request) {
  return new Promise((resolve, reject) => {
    let trailers = null;
    const call = client[method](request, metadata(), { deadline: deadline() }, (err, reply) =>
      err ? reject(err) : resolve({ reply, trailers: () => trailers }),
    );
    call.on("status", (status) => {
      trailers = status.metadata;
    });
  });
}

function firstEvents(fromPosition, count) {
  return new Promise((resolve, reject) => {
    const got = [];
    const call = client.Subscribe({ from_position: String(fromPosition) }, metadata(), { deadline: deadline() });
    call.on("data", (event) => {
      got.push(event);
      if (got.length === count) {
        call.cancel();
        resolve(got);
      }
    });
    call.on("error", (err) => {
      if (err.code !== grpc.status.CANCELLED) reject(err);
    });
  });
}

async function main() {
  const body = JSON.parse(readFileSync(bodyPath, "utf8"));
  const applied = await unary("Apply", toRequest(body));
  // The status event (with trailers) may arrive just after the reply.
  await new Promise((r) => setTimeout(r, 50));
  const trailers = applied.trailers();
  const block = (await unary("GetBlock", { id: blockId })).reply;
  const events = await firstEvents(0, 1);
  let notFound = null;
  try {
    await unary("GetBlock", { id: "20000101000000-missing" });
  } catch (err) {
    notFound = grpc.status[err.code];
  }
  const out = {
    positions: applied.reply.positions.map((p) => ({ device_id: p.device_id, device_seq: Number(p.device_seq) })),
    transactions: applied.reply.transactions.length,
    server_timing: trailers ? trailers.get("server-timing")[0] || null : null,
    block: { id: block.id, type: block.type, markdown: block.markdown, root_id: block.root_id },
    subscribed: events.map((e) => ({
      position: Number(e.position),
      device_seq: Number(e.event.device_seq),
      req_id: e.event.req_id,
      first_action: e.event.transaction.do_operations[0].action,
    })),
    not_found: notFound,
  };
  process.stdout.write(JSON.stringify(out) + "\n");
  client.close();
}

main().catch((err) => {
  process.stderr.write(`node client failed: ${err.code !== undefined ? grpc.status[err.code] + ": " : ""}${err.message}\n`);
  process.exit(1);
});
