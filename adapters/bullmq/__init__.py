"""The BullMQ adapter: consumes the Node CRM's queues with PyPI ``bullmq`` and publishes jobs Node can read."""
