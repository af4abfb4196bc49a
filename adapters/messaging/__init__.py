"""Messaging adapters: the SMS and email senders (Twilio, SendGrid, the development outbox) and their rate limit."""
