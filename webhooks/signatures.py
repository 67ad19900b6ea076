"""Pure webhook signature verifiers: bytes and headers in, `WebhookVerificationError` out.

No flask, no Redis, no clock except the `now` a caller may pass. Every comparison is
constant-time and is made against each configured secret, so a secret can be rotated by
listing the new one next to the old one for as long as deliveries signed with the old one
may still arrive.

The timestamp is checked in both directions: a signature older than `tolerance` seconds is
a replay, one more than `future_tolerance` seconds ahead is a forged or badly skewed clock.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Iterable

from adapter.errors import WebhookVerificationError

__all__ = [
    "SignatureError", "DEFAULT_TOLERANCE", "DEFAULT_FUTURE_TOLERANCE",
    "hubspot_v3_signature", "verify_hubspot_v3", "normalize_hubspot_uri",
    "baton_signature", "verify_baton_signature",
]

class SignatureError(WebhookVerificationError):
    """A verification failure with a short machine-readable `reason` for metrics:
    ``missing_signature``, ``missing_timestamp``, ``bad_timestamp``, ``stale``, ``future``,
    ``forged`` or ``no_secret``."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


DEFAULT_TOLERANCE = 300
DEFAULT_FUTURE_TOLERANCE = 60

# HubSpot decodes exactly these escapes in the URI before signing it (v3 documentation).
_HUBSPOT_URI_DECODE = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}


def normalize_hubspot_uri(uri: str) -> str:
    """The URI as HubSpot signs it: the listed percent-escapes decoded, nothing else."""
    if "%" not in uri:
        return uri
    out, i = [], 0
    while i < len(uri):
        escape = uri[i:i + 3].upper()
        if uri[i] == "%" and escape in _HUBSPOT_URI_DECODE:
            out.append(_HUBSPOT_URI_DECODE[escape])
            i += 3
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def hubspot_v3_signature(body: bytes, *, method: str, uri: str, timestamp: str, secret: str) -> str:
    """base64(HMAC-SHA256(secret, method + uri + body + timestamp)), as HubSpot computes it."""
    message = b"".join((
        method.upper().encode("ascii"), normalize_hubspot_uri(uri).encode("utf-8"),
        _as_bytes(body), timestamp.encode("ascii"),
    ))
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def baton_signature(body: bytes, *, timestamp: str, secret: str) -> str:
    """hex(HMAC-SHA256(secret, timestamp + "." + body)): what Salesforce Flows send Baton."""
    message = timestamp.encode("ascii") + b"." + _as_bytes(body)
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def _check_timestamp(
    timestamp: str | None, *, unit: float, tolerance: int, future_tolerance: int, now: float | None,
) -> None:
    if not timestamp:
        raise SignatureError("missing timestamp header", "missing_timestamp")
    try:
        sent_at = int(timestamp.strip()) / unit
    except ValueError:
        raise SignatureError(f"timestamp is not an integer: {timestamp[:32]!r}", "bad_timestamp") from None
    current = time.time() if now is None else now
    age = current - sent_at
    if age > tolerance:
        raise SignatureError(f"timestamp is {age:.0f} s old; the limit is {tolerance} s", "stale")
    if -age > future_tolerance:
        raise SignatureError(f"timestamp is {-age:.0f} s in the future; the limit is {future_tolerance} s", "future")


def _match_any(expected: Iterable[str], received: str) -> bool:
    received_bytes = received.encode("utf-8", "replace")
    # Compare against every secret, without short-circuiting, so timing does not tell how
    # many secrets are configured or which one matched.
    matched = False
    for candidate in expected:
        matched |= hmac.compare_digest(candidate.encode("ascii"), received_bytes)
    return matched


def _secrets(secrets: str | Iterable[str]) -> list[str]:
    listed = [secrets] if isinstance(secrets, str) else list(secrets)
    listed = [s for s in listed if s]
    if not listed:
        raise SignatureError("no secret is configured to verify this webhook", "no_secret")
    return listed


def verify_hubspot_v3(
    body: bytes,
    *,
    method: str,
    uri: str,
    timestamp: str | None,
    signature: str | None,
    secrets: str | Iterable[str],
    tolerance: int = DEFAULT_TOLERANCE,
    future_tolerance: int = DEFAULT_FUTURE_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check `X-HubSpot-Signature-v3` over the raw body; return None or raise.

    `uri` is the full public URL HubSpot called (scheme, host, path and query), not the one
    the request arrived on behind a proxy. `timestamp` is `X-HubSpot-Request-Timestamp`, in
    epoch milliseconds. `now` is epoch seconds, for tests.
    """
    listed = _secrets(secrets)
    if not signature:
        raise SignatureError("missing X-HubSpot-Signature-v3 header", "missing_signature")
    _check_timestamp(timestamp, unit=1000, tolerance=tolerance, future_tolerance=future_tolerance, now=now)
    expected = [
        hubspot_v3_signature(body, method=method, uri=uri, timestamp=timestamp.strip(), secret=secret)
        for secret in listed
    ]
    if not _match_any(expected, signature.strip()):
        raise SignatureError("signature does not match any configured client secret", "forged")


def verify_baton_signature(
    body: bytes,
    *,
    timestamp: str | None,
    signature: str | None,
    secrets: str | Iterable[str],
    tolerance: int = DEFAULT_TOLERANCE,
    future_tolerance: int = DEFAULT_FUTURE_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check `X-Baton-Signature` (hex HMAC-SHA256 of `timestamp + "." + body`).

    `timestamp` is `X-Baton-Timestamp` in epoch seconds. The signature header may carry a
    `sha256=` prefix, as GitHub-style senders write it.
    """
    listed = _secrets(secrets)
    if not signature:
        raise SignatureError("missing X-Baton-Signature header", "missing_signature")
    _check_timestamp(timestamp, unit=1, tolerance=tolerance, future_tolerance=future_tolerance, now=now)
    received = signature.strip()
    if received.lower().startswith("sha256="):
        received = received[len("sha256="):]
    expected = [baton_signature(body, timestamp=timestamp.strip(), secret=s) for s in listed]
    if not _match_any(expected, received.lower()):
        raise SignatureError("signature does not match any configured secret", "forged")
