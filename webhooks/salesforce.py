"""Salesforce receivers; parsing lives in `connectors.salesforce.events`.

* POST /webhooks/salesforce/outbound/<token>: Outbound Messages (SOAP). They carry no
  signature, so the secret token in the path must equal `BATON_SALESFORCE_OUTBOUND_TOKEN`
  and the message's OrganizationId must match `SALESFORCE_ORG_ID` (first 15 characters);
  otherwise 403 and no Ack. Good messages are answered 200 `text/xml` with the Ack envelope.
* POST /webhooks/salesforce/flow: JSON from a Flow HTTP callout or Apex, signed
  hex(HMAC-SHA256(secret, timestamp + "." + body)) in `X-Baton-Signature`, timestamp (epoch
  seconds) in `X-Baton-Timestamp`; secret(s) in `BATON_SALESFORCE_FLOW_SECRET`.
"""
from __future__ import annotations

import hmac

from flask import Blueprint, Request, Response, current_app, request

from adapter.queue import MarkResult
from connectors.salesforce.events import ack_response, org_matches, parse_flow_payload, parse_outbound_message
from webhooks.inbox import Parsed, Receiver
from webhooks.signatures import SignatureError, verify_baton_signature

SIGNATURE_HEADER = "X-Baton-Signature"
TIMESTAMP_HEADER = "X-Baton-Timestamp"


class OutboundMessageReceiver(Receiver):
    name = "salesforce_outbound"
    forbidden_status = 403

    def __init__(self, token: str, org_id: str):
        self.token = token
        self.org_id = org_id

    def verify(self, request: Request, body: bytes) -> None:
        received = (request.view_args or {}).get("token", "")
        if not hmac.compare_digest(received.encode("utf-8"), self.token.encode("utf-8")):
            raise SignatureError("the token in the URL is not Baton's outbound token", "wrong_token")

    def parse_events(self, request: Request, body: bytes) -> Parsed:
        message = parse_outbound_message(body)
        if not org_matches(message.organization_id, self.org_id):
            raise SignatureError(f"OrganizationId {message.organization_id[:15]} is not this org", "wrong_org")
        return Parsed(events=list(message.notifications), ignored=len(message.ignored))

    def accepted(self, parsed: Parsed, marked: MarkResult) -> Response:
        return Response(ack_response(True), status=200, content_type="text/xml; charset=utf-8")


class FlowReceiver(Receiver):
    name = "salesforce_flow"

    def __init__(self, secrets: list[str], org_id: str | None = None):
        self.secrets = secrets
        self.org_id = org_id

    def verify(self, request: Request, body: bytes) -> None:
        verify_baton_signature(
            body,
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            signature=request.headers.get(SIGNATURE_HEADER),
            secrets=self.secrets,
        )

    def parse_events(self, request: Request, body: bytes) -> Parsed:
        message = parse_flow_payload(body)
        if self.org_id and not org_matches(message.organization_id, self.org_id):
            raise SignatureError(f"orgId {message.organization_id[:15]} is not this org", "wrong_org")
        return Parsed(events=list(message.events), ignored=len(message.ignored))


blueprint = Blueprint("salesforce_webhooks", __name__)


def _handle(receiver_key: str):
    receiver = current_app.extensions.get(receiver_key)
    if receiver is None:  # configured off: this installation has no such endpoint
        return Response("not_found: this receiver is not configured\n", status=404, mimetype="text/plain")
    return current_app.extensions["baton.inbox"].handle(receiver, request)


@blueprint.post("/webhooks/salesforce/outbound/<token>")
def outbound(token: str):
    return _handle("baton.salesforce_outbound")


@blueprint.post("/webhooks/salesforce/flow")
def flow():
    return _handle("baton.salesforce_flow")
