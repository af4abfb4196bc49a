// Producer and inspector for tests and benchmarks, with the real npm bullmq as the Node CRM uses it.
// Usage: node bullmq_cli.js '<json command>'; prints one JSON line. Commands ({op, redis:{host,port}, prefix, queue}):
//   add       {jobs:[{name, data, opts}]}  objects {"$date": iso} in data become real JS Dates,
//             {"$repeat": [text, n]} text.repeat(n) (bodies too long for a command line)            -> {ids}
//   inspect   {ids:[...]}  Job.fromId for each                                                   -> {jobs}
//   counts    {}  queue.getJobCounts()                                                            -> {counts}
//   version   {}  the meta version marker this Queue writes                                       -> {version}
//   add-noop  {count, name, data}  addBulk in chunks of 1000                                        -> {count}
//   trickle   {count, intervalMs, name, data}  one add per interval                               -> {ids}
//   workers   {}  queue.getWorkers() (what Bull Board shows), and the client name it matches      -> {workers, clientName}
//   obliterate {}  queue.obliterate({force: true}), as an operator resetting a queue does           -> {}
//   pause / resume {}  queue.pause() / queue.resume()                                            -> {}
//   global-limits {concurrency?, rateMax?, rateDurationMs?}  setGlobalConcurrency / setGlobalRateLimit -> {}
'use strict';
const { Job } = require('bullmq');
const { main } = require('./queue_command');

function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value && typeof value === 'object') {
    if (Object.keys(value).length === 1 && typeof value.$date === 'string') return new Date(value.$date);
    if (Object.keys(value).length === 1 && Array.isArray(value.$repeat)) return value.$repeat[0].repeat(value.$repeat[1]);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]));
  }
  return value;
}

main({
  async add(queue, cmd) {
    const ids = [];
    for (const job of cmd.jobs) {
      const added = await queue.add(job.name, revive(job.data), job.opts || {});
      ids.push(added.id);
    }
    return { ids };
  },
  async inspect(queue, cmd) {
    const jobs = [];
    for (const id of cmd.ids) {
      const job = await Job.fromId(queue, id);
      jobs.push(job ? {
        id: job.id, name: job.name, data: job.data, state: await job.getState(),
        returnvalue: job.returnvalue, failedReason: job.failedReason, attemptsMade: job.attemptsMade,
        attemptsStarted: job.attemptsStarted, stacktrace: job.stacktrace, timestamp: job.timestamp,
        processedOn: job.processedOn, finishedOn: job.finishedOn, delay: job.delay, opts: job.opts,
      } : null);
    }
    return { jobs };
  },
  async counts(queue) {
    return { counts: await queue.getJobCounts() };
  },
  async version(queue) {
    return { version: await queue.getVersion() };
  },
  async workers(queue) {
    return { workers: await queue.getWorkers(), clientName: queue.clientName() };
  },
  async obliterate(queue) {
    await queue.obliterate({ force: true });
    return {};
  },
  async 'add-noop'(queue, cmd) {
    for (let done = 0; done < cmd.count; done += 1000) {
      const n = Math.min(1000, cmd.count - done);
      await queue.addBulk(Array.from({ length: n }, () => ({ name: cmd.name, data: cmd.data })));
    }
    return { count: cmd.count };
  },
  async pause(queue) {
    await queue.pause();
    return {};
  },
  async resume(queue) {
    await queue.resume();
    return {};
  },
  async 'global-limits'(queue, cmd) {
    if (cmd.concurrency !== undefined) await queue.setGlobalConcurrency(cmd.concurrency);
    if (cmd.rateMax !== undefined) await queue.setGlobalRateLimit(cmd.rateMax, cmd.rateDurationMs);
    return {};
  },
  async trickle(queue, cmd) {
    const ids = [];
    for (let i = 0; i < cmd.count; i++) {
      ids.push((await queue.add(cmd.name, cmd.data)).id);
      await new Promise((resolve) => setTimeout(resolve, cmd.intervalMs));
    }
    return { ids };
  },
});
