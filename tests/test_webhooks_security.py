"""One security suite for every signed receiver (anymail's WebhookBasicAuthTestCase idea):
each subclass says how to call its webhook; the suite checks what a forger, a replayer or a
broken sender gets: the status, a one-line reason, a counter, and nothing enqueued."""
import io
import json
import time

import pytest

from tests.fakes import (
    FLOW_SECRET, HUBSPOT_OLD_SECRET, HUBSPOT_SECRET, ORG_ID, OUTBOUND_TOKEN, base_settings, flow_body, flow_headers,
    hubspot_body, hubspot_event, hubspot_headers, outbound_body, prefix, queue, redis_server,  # noqa: F401
)
from webhooks.app import create_app


@pytest.fixture
def app(prefix, queue):
    return create_app(base_settings(prefix), queue=queue)


def rejections(app, receiver, reason):
    registry = app.extensions["baton.registry"]
    return registry.get_sample_value("baton_webhook_rejections_total", {"receiver": receiver, "reason": reason}) or 0


def assert_nothing_enqueued(queue):
    assert queue.rq.count == 0
    assert queue.pending_types() == []
    assert list(queue.redis.scan_iter(match=f"{queue.prefix}:*")) == []


class SignedReceiverSuite:
    receiver = ""
    status_forbidden = 401

    def good_body(self) -> bytes:
        raise NotImplementedError

    def call_webhook(self, client, body: bytes, *, secret: str | None = None, timestamp_s: float | None = None,
                     path: str | None = None, headers: dict | None = None):
        raise NotImplementedError

    def check(self, app, queue, response, status, reason):
        assert response.status_code == status, response.data
        text = response.get_data(as_text=True)
        assert text.startswith(f"{reason}: ") and text.count("\n") == 1
        assert rejections(app, self.receiver, reason) == 1
        assert_nothing_enqueued(queue)

    def test_good_signature_is_accepted(self, app, queue):
        response = self.call_webhook(app.test_client(), self.good_body())
        assert response.status_code in (200, 204)
        assert queue.pending_types() and queue.rq.count == 1

    def test_wrong_secret(self, app, queue):
        response = self.call_webhook(app.test_client(), self.good_body(), secret="not-the-secret")
        self.check(app, queue, response, self.status_forbidden, "forged")

    def test_stale_timestamp(self, app, queue):
        response = self.call_webhook(app.test_client(), self.good_body(), timestamp_s=time.time() - 301)
        self.check(app, queue, response, self.status_forbidden, "stale")

    def test_future_timestamp(self, app, queue):
        response = self.call_webhook(app.test_client(), self.good_body(), timestamp_s=time.time() + 120)
        self.check(app, queue, response, self.status_forbidden, "future")

    def test_tampered_body(self, app, queue):
        body = self.good_body()
        signed = self.call_webhook(app.test_client(), body, headers_only=True)
        response = app.test_client().post(self.path, data=body.replace(b"1", b"2", 1), headers=signed)
        self.check(app, queue, response, self.status_forbidden, "forged")

    def test_missing_signature(self, app, queue):
        response = app.test_client().post(self.path, data=self.good_body(), headers={"Content-Type": "application/json"})
        self.check(app, queue, response, self.status_forbidden, "missing_signature")

    def test_malformed_json(self, app, queue):
        response = self.call_webhook(app.test_client(), b'[{"eventId": 1,')
        self.check(app, queue, response, 400, "malformed")

    def test_oversize_body(self, app, queue):
        response = self.call_webhook(app.test_client(), b"[" + b" " * (1024 * 1024) + b"]")
        self.check(app, queue, response, 413, "too_large")

    def test_oversize_chunked_body_without_content_length(self, app, queue):
        big = b"[" + b" " * (1024 * 1024) + b"]"
        headers = self.call_webhook(app.test_client(), big, headers_only=True)
        response = app.test_client().post(
            self.path, input_stream=io.BytesIO(big), headers={**headers, "Transfer-Encoding": "chunked"},
            environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True})
        self.check(app, queue, response, 413, "too_large")


class TestHubSpotSecurity(SignedReceiverSuite):
    receiver = "hubspot"
    path = "/webhooks/hubspot"

    def good_body(self):
        return hubspot_body([hubspot_event(101)])

    def call_webhook(self, client, body, *, secret=HUBSPOT_SECRET, timestamp_s=None, uri=None, headers_only=False):
        ts = int((time.time() if timestamp_s is None else timestamp_s) * 1000)
        headers = hubspot_headers(body, secret=secret, timestamp_ms=ts,
                                  uri=uri or "https://baton.example.com/webhooks/hubspot")
        return headers if headers_only else client.post(self.path, data=body, headers=headers)

    def test_rotated_secret_is_accepted(self, app, queue):
        response = self.call_webhook(app.test_client(), self.good_body(), secret=HUBSPOT_OLD_SECRET)
        assert response.status_code == 204

    def test_signature_over_the_internal_url_is_refused(self, app, queue):
        # Behind the proxy the request arrives on http://localhost; HubSpot signed the public URL.
        response = self.call_webhook(app.test_client(), self.good_body(), uri="http://localhost/webhooks/hubspot")
        self.check(app, queue, response, 401, "forged")

    def test_wrong_uri(self, app, queue):
        response = self.call_webhook(app.test_client(), self.good_body(),
                                     uri="https://baton.example.com/webhooks/other")
        self.check(app, queue, response, 401, "forged")

    def test_101_events(self, app, queue):
        body = hubspot_body([hubspot_event(i, event_id=i) for i in range(101)])
        self.check(app, queue, self.call_webhook(app.test_client(), body), 400, "too_many_events")

    def test_not_an_array(self, app, queue):
        body = json.dumps({"eventId": 1}).encode()
        self.check(app, queue, self.call_webhook(app.test_client(), body), 400, "malformed")

    def test_empty_array(self, app, queue):
        self.check(app, queue, self.call_webhook(app.test_client(), b"[]"), 400, "malformed")


class TestFlowSecurity(SignedReceiverSuite):
    receiver = "salesforce_flow"
    path = "/webhooks/salesforce/flow"

    def good_body(self):
        return flow_body()

    def call_webhook(self, client, body, *, secret=FLOW_SECRET, timestamp_s=None, headers_only=False):
        ts = int(time.time() if timestamp_s is None else timestamp_s)
        headers = flow_headers(body, secret=secret, timestamp=ts)
        return headers if headers_only else client.post(self.path, data=body, headers=headers)

    def test_other_org(self, app, queue):
        response = self.call_webhook(app.test_client(), flow_body(org="00D5e000000ZzZzEAK"))
        self.check(app, queue, response, 401, "wrong_org")


class TestOutboundMessageSecurity:
    receiver = "salesforce_outbound"

    def post(self, app, body, token=OUTBOUND_TOKEN, **kwargs):
        return app.test_client().post(f"/webhooks/salesforce/outbound/{token}", data=body,
                                      headers={"Content-Type": "text/xml; charset=utf-8"}, **kwargs)

    def check(self, app, queue, response, status, reason):
        SignedReceiverSuite.check(self, app, queue, response, status, reason)
        assert b"Ack" not in response.data

    def test_good_message_is_acked(self, app, queue):
        response = self.post(app, outbound_body())
        assert response.status_code == 200 and response.mimetype == "text/xml"
        assert b"<Ack>true</Ack>" in response.data

    def test_wrong_token(self, app, queue):
        self.check(app, queue, self.post(app, outbound_body(), token="guess"), 403, "wrong_token")

    def test_wrong_org(self, app, queue):
        self.check(app, queue, self.post(app, outbound_body(org="00D5e000000ZzZzEAK")), 403, "wrong_org")

    def test_billion_laughs(self, app, queue):
        bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                b"<notifications>&lol3;</notifications>")
        self.check(app, queue, self.post(app, bomb), 400, "malformed")

    def test_external_entity(self, app, queue):
        xxe = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
               b"<notifications>&e;</notifications>")
        self.check(app, queue, self.post(app, xxe), 400, "malformed")

    def test_malformed_xml(self, app, queue):
        self.check(app, queue, self.post(app, b"<notifications><Notification>"), 400, "malformed")

    def test_oversize(self, app, queue):
        self.check(app, queue, self.post(app, b"<a>" + b"x" * (1024 * 1024) + b"</a>"), 413, "too_large")
