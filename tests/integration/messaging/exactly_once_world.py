"""The one reminder the exactly-once tests send, shared by the test process and its killed child."""

from __future__ import annotations

from domain.messages import SendClaim, SmsMessage
from domain.values import Channel, ContactId, MessagePurpose, OrgId, PhoneNumber
from tests.support.scratch import CANARY_BODY, CANARY_PHONE

KEY = "reminder:24h:appt-1:sms"
CLAIM = SendClaim(
    KEY, OrgId("org-1"), ContactId("contact-1"), Channel.SMS, MessagePurpose.TRANSACTIONAL, PhoneNumber(CANARY_PHONE)
)
MESSAGE = SmsMessage(KEY, PhoneNumber(CANARY_PHONE), CANARY_BODY)
