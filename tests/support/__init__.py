"""What more than one test suite uses, and nothing else: suites import this package, never each other.

- ``fakes``: the in-memory fakes of ``domain.ports``, one module per port group (unit and contract tests only).
- ``fakeservers``: local Twilio, SendGrid, OpenAI, Sentry and OTLP servers the real client libraries talk to.
- ``worlds``, ``reminder_world``: the unit tests' in-memory worlds.
- ``postgres``: throwaway migrated databases; ``backends``, ``builders``: the two sides of a contract test and its
  fixture values.
- ``queues``, ``worker_app``: the npm bullmq CLI, key clean-up, polling, a test-owned Redis, a worker process.
- ``scratch``, ``canaries``: scratch Redis prefixes, databases and fake servers; canary PII that must never leak.
- ``processes``, ``crm``: real worker and CLI processes with fake providers; CRM rows written as the Node CRM would.
- ``supervised``, ``clinic``: our supervisord.conf running the whole system; the end-to-end CRM data.
- ``redis_topologies``: Redis Cluster, Sentinel and TLS servers of the tests' own.
"""
