// Job control for the system tests, with the real npm bullmq as the CRM's tooling (Bull Board) uses it.
// Usage: node system_jobs.js '<json command>'; prints one JSON line. Commands ({op, redis:{host,port}, prefix, queue}):
//   promote  {ids:[...]}  job.promote() for each delayed job (run it now)            -> {promoted:[ids]}
//   list     {states:[...]}  queue.getJobs(states): id, name, data of each           -> {jobs}
'use strict';
const { Job } = require('bullmq');
const { main } = require('./queue_command');

main({
  async promote(queue, cmd) {
    const promoted = [];
    for (const id of cmd.ids) {
      const job = await Job.fromId(queue, id);
      if (job && (await job.getState()) === 'delayed') {
        await job.promote();
        promoted.push(id);
      }
    }
    return { promoted };
  },
  async list(queue, cmd) {
    const jobs = await queue.getJobs(cmd.states);
    return { jobs: jobs.map((job) => ({ id: job.id, name: job.name, data: job.data })) };
  },
});
