"""verify → normalize → de-duplicate → mark pending. Never calls a CRM.

`Receiver` is a template method, as django-anymail's webhook views are: each CRM's receiver
supplies `verify()` (authenticate the raw request) and `parse_events()` (turn the verified
body into `Event`s); `Inbox.handle` does everything else the same way for all of them:

1. refuse bodies over `max_body` (413) from Content-Length before reading, and from the
   length actually read;
2. `verify()`: `WebhookVerificationError` → 401 (403 for receivers that say so);
3. `parse_events()`: `MalformedWebhook` → 400;
4. one Redis round trip: de-duplicate event keys (48 h), add records to the pending sets,
   enqueue a drain where none is queued; Redis down → 503 so the sender redelivers;
5. answer 2xx (`accepted()`), in milliseconds.

Every refusal answers a one-line reason in `text/plain` and counts it in
`baton_webhook_rejections_total{receiver, reason}`; nothing is enqueued.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

from flask import Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from redis.exceptions import RedisError

from adapter.errors import MalformedWebhook, WebhookVerificationError
from adapter.model import Event
from adapter.queue import MarkResult, RealtimeQueue
from adapter.queue_scripts import Hint

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


class Parsed:
    """What a receiver found in a verified body.

    A receiver gives either `events` (normalised `Event`s), or `hints` — (event key,
    "crm:type", record id, when it occurred) per event, all the queue needs — with
    `make_events` to build the `Event`s only if someone asks for them (the HubSpot hot path).
    """

    __slots__ = ("_events", "_make_events", "hints", "ignored", "own_writes", "context")

    def __init__(self, events: Sequence[Event] = (), ignored: int = 0, own_writes: int = 0,
                 context: dict | None = None, *, hints: Sequence[Hint] | None = None,
                 make_events: Callable[[], Sequence[Event]] | None = None):
        self._events, self._make_events = events, make_events
        self.hints, self.ignored, self.own_writes = hints, ignored, own_writes
        self.context = {} if context is None else context

    @property
    def events(self) -> Sequence[Event]:
        if self._make_events is not None:
            self._events, self._make_events = self._make_events(), None
        return self._events

    @events.setter
    def events(self, value: Sequence[Event]) -> None:
        self._events, self._make_events = value, None


class Rejected(Exception):
    """A refusal with its HTTP status and metrics reason (raised by receivers for checks that
    fit neither verification nor parsing, e.g. too many events)."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class Receiver:
    """One webhook sender. Subclasses set `name` and implement `verify` and `parse_events`."""

    name = "receiver"
    max_body = MAX_BODY
    #: Status for a failed authentication: 401, or 403 where the sender must not get an Ack.
    forbidden_status = 401

    def verify(self, request: Request, body: bytes) -> None:
        raise NotImplementedError

    def parse_events(self, request: Request, body: bytes) -> Parsed:
        raise NotImplementedError

    def accepted(self, parsed: Parsed, marked: MarkResult) -> Response:
        return Response(status=204)


class Metrics:
    """The inbox's prometheus series, in the app's own registry."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "baton_webhook_requests", "Webhook requests by outcome", ["receiver", "outcome"], registry=registry)
        self.rejections = Counter(
            "baton_webhook_rejections", "Refused webhook requests by reason", ["receiver", "reason"],
            registry=registry)
        self.events = Counter(
            "baton_webhook_events", "Webhook events by outcome (accepted, duplicate, ignored, own_write)",
            ["receiver", "outcome"], registry=registry)
        self.seconds = Histogram(
            "baton_webhook_seconds", "Time to answer a webhook request", ["receiver"], registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self._children: dict[str, ReceiverMetrics] = {}

    def of(self, receiver: str) -> "ReceiverMetrics":
        """One receiver's series, looked up once: prometheus' `labels()` is slow per request."""
        children = self._children.get(receiver)
        if children is None:
            children = self._children[receiver] = ReceiverMetrics(self, receiver)
        return children


class ReceiverMetrics:
    """Cached label children of `Metrics` for one receiver."""

    OUTCOMES = ("accepted", "duplicate", "ignored", "own_write")

    def __init__(self, metrics: Metrics, receiver: str):
        self._metrics, self._receiver = metrics, receiver
        self.seconds = metrics.seconds.labels(receiver)
        self.accepted_requests = metrics.requests.labels(receiver, "accepted")
        self.rejected_requests = metrics.requests.labels(receiver, "rejected")
        self.events = {outcome: metrics.events.labels(receiver, outcome) for outcome in self.OUTCOMES}
        self._rejections: dict[str, Counter] = {}

    def rejection(self, reason: str):
        child = self._rejections.get(reason)
        if child is None:
            child = self._rejections[reason] = self._metrics.rejections.labels(self._receiver, reason)
        return child


class Inbox:
    def __init__(self, queue: RealtimeQueue, metrics: Metrics):
        self.queue = queue
        self.metrics = metrics

    def handle(self, receiver: Receiver, request: Request) -> Response:
        started = time.perf_counter()
        metrics = self.metrics.of(receiver.name)
        try:
            response = self._handle(receiver, request, metrics)
        except Rejected as refusal:
            response = self._reject(receiver, refusal, metrics)
        metrics.seconds.observe(time.perf_counter() - started)
        return response

    def _handle(self, receiver: Receiver, request: Request, metrics: ReceiverMetrics) -> Response:
        body = self._read(receiver, request)
        try:
            receiver.verify(request, body)
            parsed = receiver.parse_events(request, body)
        except WebhookVerificationError as exc:
            raise Rejected(receiver.forbidden_status, getattr(exc, "reason", "forbidden"), str(exc)) from None
        except MalformedWebhook as exc:
            raise Rejected(400, "malformed", str(exc)) from None
        try:
            if parsed.hints is not None:
                marked = self.queue.mark_hints(parsed.hints)
            else:
                marked = self.queue.mark_pending(parsed.events)
        except RedisError as exc:
            log.error("webhook %s: queue unavailable: %s", receiver.name, exc)
            raise Rejected(503, "unavailable", "queue unavailable; deliver again later") from None
        self._count(metrics, parsed, marked)
        return receiver.accepted(parsed, marked)

    def _read(self, receiver: Receiver, request: Request) -> bytes:
        limit = receiver.max_body
        if request.content_length is not None and request.content_length > limit:
            raise Rejected(413, "too_large", f"body of {request.content_length} bytes exceeds {limit}")
        # A chunked body has no Content-Length: werkzeug stops reading at max_content_length,
        # so allow one byte more than the limit and look at what was read.
        request.max_content_length = limit + 1
        try:
            body = request.get_data(cache=True)
        except Exception as exc:  # werkzeug's RequestEntityTooLarge, or a client that went away
            if getattr(exc, "code", None) == 413:
                raise Rejected(413, "too_large", f"body exceeds {limit} bytes") from None
            raise
        if len(body) > limit:
            raise Rejected(413, "too_large", f"body of {len(body)} bytes exceeds {limit}")
        return body

    def _count(self, metrics: ReceiverMetrics, parsed: Parsed, marked: MarkResult) -> None:
        metrics.accepted_requests.inc()
        events = metrics.events
        if marked.accepted:
            events["accepted"].inc(marked.accepted)
        if marked.duplicates:
            events["duplicate"].inc(marked.duplicates)
        if parsed.ignored:
            events["ignored"].inc(parsed.ignored)
        if parsed.own_writes:
            events["own_write"].inc(parsed.own_writes)

    def _reject(self, receiver: Receiver, refusal: Rejected, metrics: ReceiverMetrics) -> Response:
        metrics.rejected_requests.inc()
        metrics.rejection(refusal.reason).inc()
        log.info("webhook %s refused (%s): %s", receiver.name, refusal.status, refusal.message)
        message = refusal.message.replace("\n", " ")[:300]
        return Response(f"{refusal.reason}: {message}\n", status=refusal.status, mimetype="text/plain")
