#!/usr/bin/env node
// Prints the state of an Azure Storage queue as one JSON line, for
// tests/integration/test_queues.py:
//
//   node qstat.js --conn CONNSTR --queue Q
//   {"exists": true, "messages": 3, "visible": 1}
//
// "messages" is the queue's approximateMessagesCount. In Azurite (as in
// Azure) it counts every message still in the queue, the invisible ones
// (received, lease not yet run out, not deleted) included: 0 means every
// message was deleted. "visible" is how many messages a peek returns now
// (peek reads at most 32, so it is capped at 32); it leaves the messages
// and their visibility alone. A missing queue prints
// {"exists": false, "messages": 0, "visible": 0}.
// Exit status: 0 printed, 1 an Azure error, 2 a usage error.
"use strict";

const { QueueClient } = require("@azure/storage-queue");

function usage(msg) {
  process.stderr.write("qstat.js: " + msg +
                       "\nusage: node qstat.js --conn CONNSTR --queue Q\n");
  process.exit(2);
}

async function main() {
  const argv = process.argv.slice(2);
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if ((a === "--conn" || a === "--queue") && i + 1 < argv.length)
      o[a.slice(2)] = argv[++i];
    else usage("unknown option or missing value '" + a + "'");
  }
  if (!o.conn || !o.queue) usage("--conn and --queue are required");
  const q = new QueueClient(o.conn, o.queue);
  if (!(await q.exists())) {
    process.stdout.write(JSON.stringify({ exists: false, messages: 0,
                                          visible: 0 }) + "\n");
    return;
  }
  const props = await q.getProperties();
  const peek = await q.peekMessages({ numberOfMessages: 32 });
  process.stdout.write(JSON.stringify({
    exists: true,
    messages: props.approximateMessagesCount,
    visible: peek.peekedMessageItems.length,
  }) + "\n");
}

main().catch((e) => {
  process.stderr.write("qstat.js: " + (e && e.message ? e.message : e) + "\n");
  process.exit(1);
});
