"""Signing webhook requests as the providers do: the ``twilio`` library's RequestValidator computes Twilio's
signature; SendGrid's ECDSA signature is made with a test key pair by ``cryptography`` (the library the ``sendgrid``
helper verifies with), over ``timestamp + body`` as SendGrid signs it."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping

import attrs
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from adapters.webhooks.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER

AUTH_TOKEN = "f00dfacecafe0123456789abcdef0123"
PUBLIC_URL = "https://hooks.example.com"


def twilio_headers(
    path_qs: str, form: Mapping[str, str], token: str = AUTH_TOKEN, public_url: str = PUBLIC_URL
) -> dict[str, str]:
    """``X-Twilio-Signature`` for a POST of ``form`` to the public URL of ``path_qs``."""
    signature = RequestValidator(token).compute_signature(public_url + path_qs, dict(form))
    return {"X-Twilio-Signature": signature}


@attrs.define
class SendGridKeys:
    """A P-256 key pair as SendGrid holds it; ``public_key`` in the form SendGrid's settings page shows."""

    private: ec.EllipticCurvePrivateKey = attrs.Factory(lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key(self) -> str:
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: float | None = None) -> dict[str, str]:
        stamp = str(int(time.time() if timestamp is None else timestamp))
        signature = self.private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: stamp}
