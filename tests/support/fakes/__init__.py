"""In-memory fakes of the ports (``domain.ports``, ``domain.personalization``) for unit tests, one module per port
group. Each fake passes the same contract suite as its adapter (tests/contract, through ``tests.support.backends``).

- ``clock``: Clock
- ``senders``: SmsSender, EmailSender
- ``ledger``: SendLedger
- ``feedback``: SuppressionList, DeliveryFeedback, UnsettledSends
- ``crm``: Organizations, Contacts, Appointments, Invoices, Templates
- ``rendering``: TemplateRenderer
- ``nurture``: NurtureEnrollments
- ``snapshots``: KpiFactsSource, SnapshotStore
- ``jobs``: JobPublisher
- ``personalization``: CopyPersonalizer, PersonalizedCopies, PersonalizationBudgets, PersonalizationRecorder
"""
