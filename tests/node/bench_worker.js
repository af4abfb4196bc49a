// The Node baseline for bench/bullmq_throughput.py: one npm bullmq Worker with a no-op processor.
// Usage: node bench_worker.js '{"redis":{...},"prefix":...,"queue":...,"concurrency":50,"jobMs":0}'; each job
// takes jobMs (default 0: a no-op); prints "ready", runs
// until SIGTERM, then closes and exits 0.
'use strict';
const { Worker } = require('bullmq');

const cmd = JSON.parse(process.argv[2]);
const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null, ...(cmd.redis || {}) };
const jobMs = cmd.jobMs || 0;
const processor = async () => {
  if (jobMs) await new Promise((resolve) => setTimeout(resolve, jobMs));
  return { outcome: 'snapshot_stored', date: '2025-07-01' };
};
const worker = new Worker(cmd.queue, processor, {
  connection, prefix: cmd.prefix, concurrency: cmd.concurrency,
});
worker.waitUntilReady().then(() => process.stdout.write('ready\n'));
process.on('SIGTERM', async () => { await worker.close(); process.exit(0); });
