// The Node baseline for bench/bullmq_throughput.py: one npm bullmq Worker with a no-op processor.
// Usage: node bench_worker.js '{"redis":{...},"prefix":...,"queue":...,"concurrency":50}'; prints "ready", runs
// until SIGTERM, then closes and exits 0.
'use strict';
const { Worker } = require('bullmq');

const cmd = JSON.parse(process.argv[2]);
const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null, ...(cmd.redis || {}) };
const worker = new Worker(cmd.queue, async () => ({ outcome: 'snapshot_stored', date: '2025-07-01' }), {
  connection, prefix: cmd.prefix, concurrency: cmd.concurrency,
});
worker.waitUntilReady().then(() => process.stdout.write('ready\n'));
process.on('SIGTERM', async () => { await worker.close(); process.exit(0); });
