// A Node producer with BullMQ telemetry (bullmq-otel), as a Node CRM with OpenTelemetry enabled adds jobs.
// Usage: node otel_producer.js '{"redis":{host,port}, "prefix", "queue", "name", "data", "opts"}'
// Adds one job inside bullmq's PRODUCER span and prints one JSON line:
//   {jobId, traceId, spanId, spanName, tm}  (the producer span's ids and the job's stored `tm` option)
'use strict';
const { context, propagation, trace } = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { W3CTraceContextPropagator } = require('@opentelemetry/core');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { Job, Queue } = require('bullmq');
const { BullMQOtel } = require('bullmq-otel');

async function main() {
  const cmd = JSON.parse(process.argv[2]);
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());

  const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null, ...(cmd.redis || {}) };
  const queue = new Queue(cmd.queue, { connection, prefix: cmd.prefix, telemetry: new BullMQOtel('clientflow-crm') });
  try {
    const job = await queue.add(cmd.name, cmd.data || {}, cmd.opts || {});
    await provider.forceFlush();
    const producer = exporter.getFinishedSpans().find((s) => s.kind === 3 /* PRODUCER */);
    if (!producer) throw new Error('bullmq-otel recorded no producer span');
    const stored = await Job.fromId(queue, job.id); // reads the `tm` option back as opts.telemetry.metadata
    process.stdout.write(
      JSON.stringify({
        jobId: job.id,
        traceId: producer.spanContext().traceId,
        spanId: producer.spanContext().spanId,
        spanName: producer.name,
        tm: stored.opts.telemetry && stored.opts.telemetry.metadata,
      }) + '\n',
    );
  } finally {
    await queue.close();
    await provider.shutdown();
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
