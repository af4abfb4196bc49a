// The frame of our one-shot Node commands: parse the JSON command in argv[2] ({op, redis:{host,port}, prefix,
// queue, ...}), open that npm bullmq Queue, run ops[op](queue, cmd), print its answer as one JSON line, close.
// redis may also be {cluster:[{host,port}...]} (an ioredis Cluster, as the CRM on a Redis Cluster), ioredis'
// Sentinel options ({sentinels, name}), and carry {tlsCaFile, username, password} (TLS with that CA, ACL user).
'use strict';
const fs = require('fs');
const { Cluster } = require('ioredis');
const { Queue } = require('bullmq');

function connectionOf(redis) {
  const { cluster, tlsCaFile, ...options } = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null, ...redis };
  if (tlsCaFile) options.tls = { ca: fs.readFileSync(tlsCaFile) };
  if (!cluster) return options;
  const { host, port, ...nodeOptions } = options;
  return new Cluster(cluster, { redisOptions: nodeOptions });
}

async function runQueueCommand(ops) {
  const cmd = JSON.parse(process.argv[2]);
  const connection = connectionOf(cmd.redis || {});
  const queue = new Queue(cmd.queue, { connection, prefix: cmd.prefix });
  try {
    await queue.waitUntilReady();
    const op = Object.hasOwn(ops, cmd.op) ? ops[cmd.op] : null;
    if (!op) throw new Error(`unknown op ${cmd.op}`);
    const out = await op(queue, cmd);
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    await queue.close();
    if (connection instanceof Cluster) connection.disconnect();
  }
}

function main(ops) {
  runQueueCommand(ops).catch((err) => { console.error(err); process.exit(1); });
}

module.exports = { main };
