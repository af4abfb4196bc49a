"""The production worker with one injected fault, for the fault-catalogue tests: ``python -m
tests.integration.system.fault_worker --queue reminders`` runs ``entrypoints.worker`` unchanged, except that the
real Twilio sender misbehaves when it is about to send to ``FAULT_PHONE`` (after the job's ledger claim, before the
HTTP request leaves):

- ``FAULT=block:<seconds>``: the event loop is blocked (``time.sleep``) that long, once: in the first process to
  create the file ``FAULT_MARK`` (so a second worker taking the job over sends without blocking);
- ``FAULT=segfault``: the process dies of a segmentation fault (a null pointer read through ctypes), every time.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from datetime import datetime

from adapters.messaging.twilio_sms import TwilioSmsSender
from domain.messages import ProviderReceipt, SmsMessage
from entrypoints.worker import main

_send = TwilioSmsSender.send


def _first_to_block() -> bool:
    try:
        os.close(os.open(os.environ["FAULT_MARK"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


async def _send_with_fault(self: TwilioSmsSender, message: SmsMessage, deadline: datetime) -> ProviderReceipt:
    fault = os.environ["FAULT"]
    if message.to.e164 == os.environ["FAULT_PHONE"]:
        if fault == "segfault":
            ctypes.string_at(0)  # SIGSEGV: no exception, no clean-up, no log line
        elif fault.startswith("block:") and _first_to_block():
            time.sleep(float(fault.removeprefix("block:")))  # noqa: ASYNC251  # the fault under test
    return await _send(self, message, deadline)


TwilioSmsSender.send = _send_with_fault  # type: ignore[method-assign]  # the injected fault

if __name__ == "__main__":
    sys.exit(main())
