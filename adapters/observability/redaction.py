"""One set of redaction rules for everything that leaves the process: log lines, Sentry events, span attributes.

Values under a sensitive key are removed whole; free text is searched for phone numbers, email addresses, URL
credentials and query values, bearer tokens and provider keys, which are masked in place. Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

REDACTED = "[REDACTED]"

# Compared after normalisation (lower case, without "_", "-" and "."), so paymentLink, payment_link and
# PAYMENT-LINK are one key.
_SENSITIVE_KEYS = frozenset(
    {
        # contact details and message content
        "phone", "phonenumber", "mobile", "to", "from", "email", "emailaddress", "address", "street",
        "name", "firstname", "lastname", "fullname", "displayname", "contactname",
        "body", "message", "text", "content", "html", "subject", "personalization", "personalizations",
        "paymentlink", "link",
        # credentials
        "token", "authtoken", "accesstoken", "refreshtoken", "apikey", "key", "password", "passwd", "pwd",
        "secret", "clientsecret", "authorization", "proxyauthorization", "cookie", "setcookie", "dsn",
        "credentials", "privatekey", "signature",
    }
)  # fmt: skip
_SENSITIVE_SUFFIXES = ("token", "secret", "password", "apikey", "privatekey", "accesskey", "dsn")


def normalise_key(key: str) -> str:
    return re.sub(r"[_\-.\s]", "", key).lower()


@functools.lru_cache(maxsize=2048)  # keys are field names, a small vocabulary (never values)
def _is_sensitive_name(key: str) -> bool:
    normal = normalise_key(key)
    return normal in _SENSITIVE_KEYS or normal.endswith(_SENSITIVE_SUFFIXES)


def is_sensitive_key(key: object) -> bool:
    """True for keys whose value is PII or a secret, in any case style (camelCase, snake_case, kebab-case)."""
    return isinstance(key, str) and _is_sensitive_name(key)


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,15}://[^\s\"'<>]+")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# + then 7 to 15 digits, with the separators people write (spaces, dots, dashes, parentheses).
_INTERNATIONAL_PHONE = re.compile(r"(?<![\w+])\+\d(?:[\s.\-()]{0,2}\d){6,14}(?!\w)")
# North American style without a country code: (415) 555-0123, 415-555-0123, 415.555.0123, 415 555 0123.
_NATIONAL_PHONE = re.compile(r"(?<![\w.+\-])(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}(?![\w])")
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE)
# SendGrid (SG.), Stripe-style (sk_live_...), OpenAI (sk-..., sk-proj-...), Twilio account/key SIDs.
_PROVIDER_KEY = re.compile(
    r"\bSG\.[A-Za-z0-9_\-.]{8,}|\b(?:sk|pk|rk|tok|key)_(?:live_|test_)?[A-Za-z0-9]{6,}|\b(?:AC|SK)[0-9a-fA-F]{32}\b"
    r"|\bsk-[A-Za-z0-9_\-]{16,}"
)
_KEY_VALUE = re.compile(
    r"(?i)\b((?:api[_\-]?key|auth[_\-]?token|access[_\-]?token|refresh[_\-]?token|token|secret|password|passwd|"
    r"pwd|authorization|dsn|payment[_\-]?link)\b[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,;]+"
)


# A cheap first look: text showing none of these signs cannot match any rule above and is returned as it is
# (most log values: queue names, outcomes, job ids, trace and span ids). Keep them a superset of the rules when
# adding one: a national phone number without "(" shows three digits and a separator.
_SIGNS = re.compile(r"[@+:(]|AC|SK|\d{3}[\s.\-]")
_SIGN_WORDS = re.compile(r"bearer|basic|token|secret|passw|pwd|authoriz|dsn|key|payment|sg\.|sk_|sk-|pk_|rk_|tok_")


def _may_hold_sensitive_text(text: str) -> bool:
    return _SIGNS.search(text) is not None or _SIGN_WORDS.search(text.lower()) is not None


# Texts the first look found clean, remembered so a value seen on every line (a queue, a job name, an event name, an
# outcome) is looked at once: none of them shows a sign of any rule, so this set holds nothing to mask. Bounded: it
# starts over when full (unique job ids and trace ids pass through it too).
_CLEAN_TEXTS: set[str] = set()
_CLEAN_TEXTS_LIMIT = 4096
_CLEAN_TEXT_MAX_LENGTH = 128


def mask_phone(text: str) -> str:
    digits = re.sub(r"\D", "", text)
    prefix = "+" if text.startswith("+") else ""
    return prefix + digits[:2] + "*" * max(len(digits) - 4, 1) + digits[-2:]


def mask_email(text: str) -> str:
    local, _, domain = text.partition("@")
    return f"{local[:1]}***@{domain[:1]}***"


def _looks_like_token(segment: str) -> bool:
    """A path segment carrying an identifier or secret: letters and digits mixed, or a long opaque run."""
    if len(segment) >= 20:
        return True
    has_digit = any(c.isdigit() for c in segment)
    has_alpha = any(c.isalpha() for c in segment)
    return len(segment) >= 6 and has_digit and has_alpha


def redact_url(url: str) -> str:
    """Keep scheme, host and port and the readable path; drop credentials, query values and token-like segments."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return REDACTED
    host = parts.hostname or ""
    netloc = ("[REDACTED]@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    path = "/".join(REDACTED if _looks_like_token(segment) else segment for segment in parts.path.split("/"))
    query = "&".join(
        f"{pair.partition('=')[0]}={REDACTED}" if "=" in pair else REDACTED for pair in parts.query.split("&") if pair
    )
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def redact_text(text: str) -> str:
    """Mask PII and secrets inside free text; everything else is left readable."""
    if text in _CLEAN_TEXTS:
        return text
    if _may_hold_sensitive_text(text):
        return _mask_all(text)
    if len(text) <= _CLEAN_TEXT_MAX_LENGTH:
        if len(_CLEAN_TEXTS) >= _CLEAN_TEXTS_LIMIT:
            _CLEAN_TEXTS.clear()
        _CLEAN_TEXTS.add(text)
    return text


def _mask_all(text: str) -> str:
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _KEY_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _PROVIDER_KEY.sub(REDACTED, text)
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    text = _INTERNATIONAL_PHONE.sub(lambda m: mask_phone(m.group(0)), text)
    return _NATIONAL_PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def redact(value: object) -> object:
    """Redact a nested structure: sensitive keys lose their value, strings are masked, other objects are
    rendered with ``repr`` and masked (domain values mask themselves already)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: REDACTED if is_sensitive_key(key) else redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    if isinstance(value, bytes):
        return REDACTED
    return redact_text(repr(value))


def redact_mapping(mapping: Mapping[str, object]) -> dict[str, object]:
    """``redact`` for a top-level mapping, typed as one (a log line's fields: mostly short strings and numbers,
    taken first)."""
    redacted: dict[str, object] = {}
    for key, item in mapping.items():
        if is_sensitive_key(key):
            redacted[key] = REDACTED
        elif type(item) is str:
            redacted[key] = redact_text(item)
        elif item is None or type(item) is int:
            redacted[key] = item
        else:
            redacted[key] = redact(item)
    return redacted
