// Job control for the system tests, with the real npm bullmq as the CRM's tooling (Bull Board) uses it.
// Usage: node system_jobs.js '<json command>'; prints one JSON line. Commands ({op, redis:{host,port}, prefix, queue}):
//   promote  {ids:[...]}  job.promote() for each delayed job (run it now)            -> {promoted:[ids]}
//   list     {states:[...]}  queue.getJobs(states): id, name, data of each           -> {jobs}
'use strict';
const { Queue, Job } = require('bullmq');

async function main() {
  const cmd = JSON.parse(process.argv[2]);
  const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null, ...(cmd.redis || {}) };
  const queue = new Queue(cmd.queue, { connection, prefix: cmd.prefix });
  try {
    await queue.waitUntilReady();
    let out;
    switch (cmd.op) {
      case 'promote': {
        const promoted = [];
        for (const id of cmd.ids) {
          const job = await Job.fromId(queue, id);
          if (job && (await job.getState()) === 'delayed') {
            await job.promote();
            promoted.push(id);
          }
        }
        out = { promoted };
        break;
      }
      case 'list': {
        const jobs = await queue.getJobs(cmd.states);
        out = { jobs: jobs.map((job) => ({ id: job.id, name: job.name, data: job.data })) };
        break;
      }
      default:
        throw new Error(`unknown op ${cmd.op}`);
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    await queue.close();
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
