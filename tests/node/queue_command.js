// The frame of our one-shot Node commands: parse the JSON command in argv[2] ({op, redis:{host,port}, prefix,
// queue, ...}), open that npm bullmq Queue, run ops[op](queue, cmd), print its answer as one JSON line, close.
'use strict';
const { Queue } = require('bullmq');

async function runQueueCommand(ops) {
  const cmd = JSON.parse(process.argv[2]);
  const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null, ...(cmd.redis || {}) };
  const queue = new Queue(cmd.queue, { connection, prefix: cmd.prefix });
  try {
    await queue.waitUntilReady();
    const op = Object.hasOwn(ops, cmd.op) ? ops[cmd.op] : null;
    if (!op) throw new Error(`unknown op ${cmd.op}`);
    const out = await op(queue, cmd);
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    await queue.close();
  }
}

function main(ops) {
  runQueueCommand(ops).catch((err) => { console.error(err); process.exit(1); });
}

module.exports = { main };
