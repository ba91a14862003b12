#!/usr/bin/env node
// Sends work items to an Azure Storage queue (Azurite in the tests) the way
// an application using Azure's JavaScript SDK would, for
// tests/integration/test_queues.py.
//
//   node enqueue.js --conn CONNSTR --queue Q --count N [--start K]
//                   [--base64] [--create] [--raw TEXT]
//
// Message i (K <= i < K+N) is the JSON text {"id":"item-i","src":"azure","n":i}.
// QueueClient.sendMessage sends text as given (SDK v12 no longer encodes it),
// so --base64 sends base64 of that text, as older SDKs and some apps do.
// --raw TEXT sends TEXT once instead (N is then ignored), for bad-input tests.
// --create creates the queue first (no error if it exists).
// Prints one JSON line: {"sent": N, "first": K, "ids": [message ids...]}.
// Exit status: 0 sent, 1 an Azure error, 2 a usage error.
"use strict";

const { QueueClient } = require("@azure/storage-queue");

function usage(msg) {
  process.stderr.write(
    "enqueue.js: " + msg + "\nusage: node enqueue.js --conn CONNSTR " +
      "--queue Q --count N [--start K] [--base64] [--create] [--raw TEXT]\n");
  process.exit(2);
}

function parse(argv) {
  const o = { start: 1, base64: false, create: false, raw: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(a + " needs a value");
      return argv[++i];
    };
    if (a === "--conn") o.conn = val();
    else if (a === "--queue") o.queue = val();
    else if (a === "--count") o.count = Number(val());
    else if (a === "--start") o.start = Number(val());
    else if (a === "--raw") o.raw = val();
    else if (a === "--base64") o.base64 = true;
    else if (a === "--create") o.create = true;
    else usage("unknown option '" + a + "'");
  }
  if (!o.conn) usage("--conn is required");
  if (!o.queue) usage("--queue is required");
  if (o.raw === null && !(Number.isInteger(o.count) && o.count >= 0))
    usage("--count must be a whole number");
  if (!Number.isInteger(o.start)) usage("--start must be a whole number");
  return o;
}

async function main() {
  const o = parse(process.argv.slice(2));
  const q = new QueueClient(o.conn, o.queue);
  if (o.create) await q.createIfNotExists();
  const texts = [];
  if (o.raw !== null) {
    texts.push(o.raw);
  } else {
    for (let i = o.start; i < o.start + o.count; i++) {
      const t = JSON.stringify({ id: "item-" + i, src: "azure", n: i });
      texts.push(o.base64 ? Buffer.from(t, "utf8").toString("base64") : t);
    }
  }
  // A few sends in flight at once: hundreds of messages in well under a
  // second against Azurite, without opening hundreds of connections.
  const ids = new Array(texts.length);
  let next = 0;
  async function lane() {
    while (next < texts.length) {
      const k = next++;
      const r = await q.sendMessage(texts[k]);
      ids[k] = r.messageId;
    }
  }
  await Promise.all(Array.from({ length: Math.min(8, texts.length) }, lane));
  process.stdout.write(JSON.stringify({ sent: texts.length, first: o.start,
                                        ids: ids }) + "\n");
}

main().catch((e) => {
  process.stderr.write("enqueue.js: " + (e && e.message ? e.message : e) +
                       "\n");
  process.exit(1);
});
