"""The providers' webhooks: Twilio status callbacks and inbound SMS, SendGrid's Event Webhook (aiohttp)."""
