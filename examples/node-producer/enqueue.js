// How the Node CRM enqueues ClientFlow jobs: exactly the README's shapes, nothing Python-specific.
// Usage: REDIS_HOST=127.0.0.1 REDIS_PORT=6379 node enqueue.js [reminder|nurture|dunning|snapshot|all]
// The ids below match the demo org seeded by `scripts/run --demo` (entrypoints/cli.py demo). A reminder names an
// appointment and its start exactly as the CRM stores it: the worker re-checks both at send time and skips a
// reminder whose appointment is gone or moved. APPOINTMENT_ID and SCHEDULED_FOR (ISO 8601) choose them; the
// defaults name an appointment the demo does not have, so that job completes as skipped (appointment_not_found).
'use strict';
const { Queue, Job } = require('bullmq');

const connection = {
  host: process.env.REDIS_HOST || '127.0.0.1',
  port: Number(process.env.REDIS_PORT || 6379),
  password: process.env.REDIS_PASSWORD || undefined,
};
const prefix = process.env.BULLMQ_PREFIX || 'bull';
// The README's retry policy: 3 attempts with exponential backoff.
const defaults = { attempts: 3, backoff: { type: 'exponential', delay: 1000 } };

const scheduledFor = process.env.SCHEDULED_FOR ? new Date(process.env.SCHEDULED_FOR) : new Date(Date.now() + 3 * 3600 * 1000);
const yesterday = new Date(Date.now() - 24 * 3600 * 1000).toISOString().slice(0, 10);

const jobs = {
  reminder: ['reminders', 'process-reminder', {
    orgId: 'demo-org', contactId: 'demo-ada', appointmentId: process.env.APPOINTMENT_ID || 'demo-appt-node',
    message: 'Hi Ada, see you soon at Demo Dental!', scheduledFor, reminderType: '3h',
  }],
  nurture: ['nurture', 'process-nurture', {
    orgId: 'demo-org', contactId: 'demo-grace', sequenceStep: 1, template: 'welcome',
    personalization: { first_name: 'Grace', offer: '10% off your first visit' },
  }],
  dunning: ['dunning', 'process-dunning', {
    orgId: 'demo-org', contactId: 'demo-alan', amount: 125.5, daysOverdue: 8,
    paymentLink: 'https://pay.example.com/i/demo-invoice',
  }],
  snapshot: ['snapshots', 'process-snapshots', { orgId: 'demo-org', date: yesterday }],
};

async function main() {
  const which = process.argv[2] || 'all';
  const selected = which === 'all' ? Object.keys(jobs) : [which];
  for (const key of selected) {
    if (!jobs[key]) throw new Error(`unknown job type ${key}; use ${Object.keys(jobs).join('|')}|all`);
    const [queueName, name, data] = jobs[key];
    const queue = new Queue(queueName, { connection, prefix });
    const job = await queue.add(name, data, defaults);
    console.log(`added ${name} ${job.id} to ${queueName}`);
    const finished = await waitForEnd(queue, job.id);
    console.log(`  ${finished.state}: ${JSON.stringify(finished.value)}`);
    await queue.close();
  }
}

async function waitForEnd(queue, id, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    // The state first, then the job: a job read before it finished would carry no return value yet.
    const state = await queue.getJobState(id);
    if (state === 'completed') return { state, value: (await Job.fromId(queue, id)).returnvalue };
    if (state === 'failed') return { state, value: (await Job.fromId(queue, id)).failedReason };
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return { state: 'still waiting (is the worker running?)', value: null };
}

main().catch((error) => { console.error(error); process.exit(1); });
