"""POST /webhooks/hubspot: HubSpot's webhook batches, signature v3.

HubSpot signs method + URI + raw body + `X-HubSpot-Request-Timestamp` with the app's client
secret. The URI is the one HubSpot called: behind a proxy or load balancer set
`BATON_PUBLIC_URL` (e.g. ``https://baton.example.com``) and it is rebuilt from that and the
request's path and query. `HUBSPOT_CLIENT_SECRET` may list several secrets, comma-separated,
while one is being rotated.
"""
from __future__ import annotations

import json
from typing import Sequence

import msgspec
from flask import Blueprint, Request, current_app, request

from adapter.errors import MalformedWebhook
from connectors.hubspot.events import normalize, scan, scan_batch
from webhooks.inbox import Parsed, Receiver, Rejected
from webhooks.signatures import DEFAULT_FUTURE_TOLERANCE, DEFAULT_TOLERANCE, verify_hubspot_v3

MAX_EVENTS = 100
PATH = "/webhooks/hubspot"
SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"


_URL_PARTS = ("wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING")
_URL_CACHE: dict[tuple, str] = {}
_URL_CACHE_SIZE = 256


def public_uri(req: Request, public_url: str | None) -> str:
    """The URL HubSpot signed: `public_url` + path + query, or the request's own URL."""
    if not public_url:
        # werkzeug rebuilds the URL on every request; it depends only on these environ values.
        environ = req.environ
        key = tuple(environ.get(name) for name in _URL_PARTS)
        url = _URL_CACHE.get(key)
        if url is None:
            url = req.url
            if len(_URL_CACHE) >= _URL_CACHE_SIZE:
                _URL_CACHE.clear()
            _URL_CACHE[key] = url
        return url
    query = req.query_string.decode("latin-1")
    return public_url.rstrip("/") + req.path + (f"?{query}" if query else "")


class HubSpotReceiver(Receiver):
    name = "hubspot"

    def __init__(self, secrets: Sequence[str], *, public_url: str | None = None, app_id: str | None = None,
                 tolerance: int = DEFAULT_TOLERANCE, future_tolerance: int = DEFAULT_FUTURE_TOLERANCE,
                 reconcile_own_writes: bool = False):
        self.secrets = list(secrets)
        self.public_url = public_url
        self.app_id = app_id
        #: False (default): events HubSpot attributes to Baton's own app (`HUBSPOT_APP_ID`) are
        #: counted as `own_write` and not queued: they only echo what Baton just wrote, and
        #: reconciling them again would cost CRM calls to change nothing.
        self.reconcile_own_writes = reconcile_own_writes
        self.tolerance = tolerance
        self.future_tolerance = future_tolerance

    def verify(self, request: Request, body: bytes) -> None:
        verify_hubspot_v3(
            body,
            method=request.method,
            uri=public_uri(request, self.public_url),
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            signature=request.headers.get(SIGNATURE_HEADER),
            secrets=self.secrets,
            tolerance=self.tolerance,
            future_tolerance=self.future_tolerance,
        )

    def parse_events(self, request: Request, body: bytes) -> Parsed:
        skip_own_writes = not self.reconcile_own_writes
        # The hot path: a typed decode straight to (key, crm:type, id); `Event`s only on demand.
        scanned = scan_batch(body, self.app_id, skip_own_writes=skip_own_writes, max_events=MAX_EVENTS)
        if scanned is None:  # not a batch of the usual shape: parsed in general, refused here
            payload = parse_json(body)
            if not isinstance(payload, list):
                raise MalformedWebhook(f"expected a JSON array of events, got {type(payload).__name__}")
            if not payload:
                raise MalformedWebhook("empty event array")
            if len(payload) > MAX_EVENTS:
                raise Rejected(400, "too_many_events", f"{len(payload)} events; HubSpot sends at most {MAX_EVENTS}")
            scanned = scan(payload, self.app_id, skip_own_writes=skip_own_writes)
        hints, ignored, own_writes = scanned
        return Parsed(hints=hints, ignored=ignored, own_writes=own_writes,
                      make_events=lambda: [e for e in map(normalize, parse_json(body)) if e is not None])


def parse_json(body: bytes):
    """The body parsed once, by msgspec, which keeps integers of any size exact (orjson would
    make floats of those over 64 bits, and two ids one key); what msgspec refuses but the json
    module reads (UTF-16, NaN, lone surrogates) is read by the json module, so nothing
    HubSpot-valid is lost."""
    try:
        return _GENERIC_JSON.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        pass
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedWebhook(f"malformed JSON: {exc}") from None


_GENERIC_JSON = msgspec.json.Decoder()

blueprint = Blueprint("hubspot_webhooks", __name__)


@blueprint.post(PATH)
def receive():
    return current_app.extensions["baton.inbox"].handle(current_app.extensions["baton.hubspot"], request)
