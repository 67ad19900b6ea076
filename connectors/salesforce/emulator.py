"""A Salesforce org on 127.0.0.1, over real HTTPS, for tests and local runs.

    with SalesforceEmulator() as emu:
        emu.seed(200)
        session = requests.Session()
        session.verify = emu.ca_bundle_path
        sf = Salesforce(instance_url=emu.url, session_id=emu.session_id, session=session)
        sf.query_all("SELECT Id, Owner.Name FROM Opportunity WHERE IsClosed = false")

simple-salesforce builds every URL with `https://`, so the emulator serves TLS with a
throwaway CA from `trustme`; `ca_bundle_path` is that CA. `requests_session()` also
routes login.salesforce.com / test.salesforce.com to the emulator, so the library's own
login flows (SOAP password login, OAuth password, JWT bearer, client credentials) work
unchanged. Everything answers with Salesforce's shapes and error bodies; see the
`emulator_*` modules for each part (REST, SOQL, Metadata API, Outbound Messages, seeding).

`python -m connectors.salesforce.emulator [port] [seed]` serves a seeded org until Ctrl-C.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import requests
import trustme
from flask import Flask, Response, g, request
from requests.adapters import HTTPAdapter
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

from connectors.emulator_faults import FaultInjector

from .emulator_auth import Credentials, SessionRegistry, auth_blueprint
from .emulator_metadata import MetadataStore, metadata_blueprint
from .emulator_outbound import OutboundMessages
from .emulator_rest import json_response, rest_blueprint
from .emulator_schema import object_for_id
from .emulator_seed import seed_org
from .emulator_soql_eval import QueryEngine
from .emulator_state import OrgState
from .emulator_wire import DmlError, SalesforceError

__all__ = ["SalesforceEmulator", "FaultPlan", "Credentials", "DmlError", "SalesforceError", "serve_forever"]

_VERSIONED = re.compile(r"^/services/data/v(\d+\.\d+)(/|$)")
_DEFAULT_FAULT_BODIES = {
    400: [{"message": "Bad request (injected fault)", "errorCode": "MALFORMED_REQUEST"}],
    401: [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    403: [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    404: [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}],
    500: [{"message": "An unexpected error occurred. Please include this ErrorId if you contact support: "
                      "1234567890-12345 (-1234567890)", "errorCode": "UNKNOWN_EXCEPTION"}],
    503: [{"message": "Server temporarily unavailable", "errorCode": "SERVER_UNAVAILABLE"}],
}


# Kept under its old name: the injector is shared with the HubSpot emulator.
FaultPlan = FaultInjector


class SalesforceEmulator:
    def __init__(self, org_id: str = "00D5g000004XyzAEAS", api_version: str = "59.0", daily_api_limit: int = 15000,
                 instance_host: str | None = None, *, credentials: Credentials | None = None,
                 clock: Callable[[], datetime] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.org_id = org_id
        self.api_version = api_version
        self.daily_api_limit = daily_api_limit
        self.api_usage = 0
        self.credentials = credentials or Credentials()
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.state = OrgState(org_id=org_id, clock=self.clock)
        self.query_engine = QueryEngine(self.state)
        self.sessions = SessionRegistry(org_id)
        self.metadata = MetadataStore(self.state)
        self.outbound = OutboundMessages(self)
        self.faults = FaultInjector()
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._host, self._port = host, port
        self._instance_host = instance_host
        self._session_id: str | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._tempdir: str | None = None
        self.ca_bundle_path = ""
        self.app = self._create_app()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "SalesforceEmulator":
        self._tempdir = tempfile.mkdtemp(prefix="baton-sf-emulator-")
        authority = trustme.CA(organization_name="Baton Salesforce emulator CA")
        identities = [self._host, "localhost"]
        if self._instance_host:
            identities.append(self._instance_host.split(":")[0])
        certificate = authority.issue_cert(*identities)
        self.ca_bundle_path = os.path.join(self._tempdir, "ca.pem")
        authority.cert_pem.write_to_path(self.ca_bundle_path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        certificate.configure_cert(context)
        self._server = make_server(self._host, self._port, self.app, threaded=True, ssl_context=context,
                                   request_handler=_QuietHandler)
        self._port = self._server.server_port
        # A short poll interval keeps `stop()` (which waits for the loop to notice) fast in tests.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="salesforce-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.outbound.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tempdir:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> "SalesforceEmulator":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"https://{self._host}:{self._port}"

    @property
    def instance_host(self) -> str:
        """The host the org reports as its instance in login answers (default: the emulator itself)."""
        return self._instance_host or f"{self._host}:{self._port}"

    @property
    def session_id(self) -> str:
        """A valid access token for the integration user; a new one after `expire_sessions()`."""
        if self._session_id is None or self.sessions.user_for(self._session_id) is None:
            self._session_id = self.sessions.issue(self.state.integration_user_id)
        return self._session_id

    def expire_sessions(self) -> None:
        """Invalidate every token: the next call with one answers 401 INVALID_SESSION_ID."""
        self.sessions.expire_all()

    def requests_session(self) -> requests.Session:
        """A requests.Session that trusts the emulator's CA and sends Salesforce login hosts to it."""
        session = requests.Session()
        session.verify = self.ca_bundle_path
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override `session.verify` (psf/requests#3829),
        # so a machine with either set would reject the emulator's CA.
        session.trust_env = False
        adapter = _RerouteAdapter(self.url)
        for host in ("login.salesforce.com", "test.salesforce.com", self._instance_host):
            if host:
                session.mount(f"https://{host}/", adapter)
        return session

    # ------------------------------------------------------------------ accounting
    @property
    def calls_total(self) -> int:
        with self._calls_lock:
            return sum(n for key, n in self.calls.items() if not key.startswith("SOQL "))

    def reset_calls(self) -> None:
        with self._calls_lock:
            self.calls.clear()

    # ------------------------------------------------------------------ data
    def seed(self, n: int, *, object_types: Iterable[str] = ("opportunity", "lead", "account", "case"),
             mix: dict[str, float] | None = None, rng_seed: int = 0, custom_fields: bool = False) -> dict[str, list[str]]:
        """Fill the org with a realistic, deterministic data set; returns the ids created per object."""
        return seed_org(self, n, object_types=tuple(object_types), mix=mix, rng_seed=rng_seed,
                        custom_fields=custom_fields)

    def set_assignment_rule(self, sobject: str, owner_id: str | None) -> None:
        """An active assignment rule that gives every Lead/Case written without opting out to `owner_id`."""
        with self.state.lock:
            if owner_id is None:
                self.state.assignment_rules.pop(sobject, None)
            else:
                self.state.assignment_rules[sobject] = owner_id

    def record(self, record_id: str) -> dict | None:
        """A copy of a record as stored (typed values), or None."""
        found = self.state.get(record_id, include_deleted=True)
        return dict(found[1]) if found else None

    def records(self, sobject: str) -> list[dict]:
        with self.state.lock:
            return [dict(r) for r in self.state.live_records(self.state.object_def(sobject).name)]

    # -------------------------------------------------- user actions (a person in the UI)
    def _person(self, by: str | None) -> str:
        return by or self.state.admin_user_id

    def user_create(self, sobject: str, fields: dict, *, by: str | None = None, at: datetime | None = None) -> str:
        return self.state.insert(sobject, fields, actor=self._person(by), auto_assign=False, at=at)

    def user_update(self, sobject: str, record_id: str, fields: dict, *, by: str | None = None,
                    at: datetime | None = None) -> None:
        self.state.update(sobject, record_id, fields, actor=self._person(by), auto_assign=False, at=at)

    def user_set_owner(self, sobject: str, record_id: str, owner_id: str, *, by: str | None = None,
                       at: datetime | None = None) -> None:
        self.user_update(sobject, record_id, {"OwnerId": owner_id}, by=by, at=at)

    def user_complete_task(self, task_id: str, *, by: str | None = None, at: datetime | None = None) -> None:
        self.user_update("Task", task_id, {"Status": "Completed"}, by=by, at=at)

    def user_add_email_message(self, related_to_id: str, *, subject: str, text_body: str, incoming: bool = True,
                               from_address: str = "customer@example.com", to_address: str = "rep@example.com",
                               html_body: str | None = None, message_date: datetime | None = None,
                               by: str | None = None) -> str:
        """An email logged on a record, as Enhanced Email stores it.

        On an Opportunity, Account or Case the email's `RelatedToId` is the record (and
        `ParentId` for a Case). Leads and contacts cannot be a `RelatedToId`: the email is
        linked to them by `EmailMessageRelation` rows instead — the person as sender (incoming)
        or recipient (outgoing), and the user on the other side.
        """
        at = message_date or self.clock()
        person = object_for_id(related_to_id) in {"Lead", "Contact"}
        fields = {"Subject": subject, "TextBody": text_body, "Incoming": incoming, "FromAddress": from_address,
                  "ToAddress": to_address, "MessageDate": at.isoformat(), "HtmlBody": html_body,
                  "Status": "0" if incoming else "3", "RelatedToId": None if person else related_to_id}
        if related_to_id.startswith("500"):
            fields["ParentId"] = related_to_id
        user = self._person(by)
        with self.state.lock:  # readers see the email together with its relations
            email_id = self.user_create("EmailMessage", fields, by=by, at=at)
            if person:
                customer, rep = (("FromAddress", from_address), ("ToAddress", to_address)) if incoming \
                    else (("ToAddress", to_address), ("FromAddress", from_address))
                for relation_id, (relation_type, address) in ((related_to_id, customer), (user, rep)):
                    self.user_create("EmailMessageRelation", {
                        "EmailMessageId": email_id, "RelationId": relation_id, "RelationType": relation_type,
                        "RelationAddress": address}, by=by, at=at)
        return email_id

    def set_field_history_tracking(self, sobject: str, field_name: str, tracked: bool = True) -> None:
        """An admin turns field history tracking on or off (what `FieldDefinition.IsFieldHistoryTracked` reads)."""
        self.state.set_history_tracking(sobject, field_name, tracked)

    def user_add_note(self, linked_entity_id: str, *, title: str, body: str, by: str | None = None,
                      at: datetime | None = None) -> str:
        """A ContentNote (body stored as the HTML a note holds) linked to the record."""
        content = base64.b64encode(f"<p>{escape(body)}</p>".encode()).decode()
        note_id = self.user_create("ContentNote", {"Title": title, "Content": content}, by=by, at=at)
        self.user_create("ContentDocumentLink", {"ContentDocumentId": note_id, "LinkedEntityId": linked_entity_id,
                                                 "ShareType": "V"}, by=by, at=at)
        return note_id

    # ------------------------------------------------------------------ HTTP
    def _create_app(self) -> Flask:
        app = Flask(__name__)
        app.url_map.strict_slashes = False
        app.register_blueprint(auth_blueprint(self))
        app.register_blueprint(rest_blueprint(self))
        app.register_blueprint(metadata_blueprint(self))
        app.before_request(self._before_request)
        app.after_request(self._after_request)
        app.register_error_handler(SalesforceError, lambda e: json_response(e.body(), e.status))
        app.register_error_handler(HTTPException, self._http_error)
        return app

    def _before_request(self) -> Response | None:
        template = _template(request.url_rule.rule if request.url_rule else request.path)
        with self._calls_lock:
            self.calls[f"{request.method} {template}"] += 1
        fault = self.faults.take(request.method, request.path, template)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is not None:
                body = fault.body if fault.body is not None else _DEFAULT_FAULT_BODIES.get(fault.status, [])
                response = json_response(body, fault.status)
                response.headers.update(fault.headers)
                return response
        versioned = _VERSIONED.match(request.path)
        if versioned is None:
            return None
        g.api_version = versioned.group(1)
        authorization = request.headers.get("Authorization", "")
        token = authorization.split(" ", 1)[1] if " " in authorization else None
        g.user_id = self.sessions.user_for(token)
        if g.user_id is None:
            return json_response([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401)
        with self._calls_lock:
            if self.api_usage >= self.daily_api_limit:
                return json_response([{"message": "TotalRequests Limit exceeded.",
                                       "errorCode": "REQUEST_LIMIT_EXCEEDED"}], 403)
            self.api_usage += 1
        return None

    def _after_request(self, response: Response) -> Response:
        if _VERSIONED.match(request.path):
            response.headers["Sforce-Limit-Info"] = f"api-usage={self.api_usage}/{self.daily_api_limit}"
        return response

    def _http_error(self, error: HTTPException) -> Response:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.code or 500, "UNKNOWN_EXCEPTION")
        message = "The requested resource does not exist" if error.code == 404 else error.description
        return json_response([{"message": message, "errorCode": code}], error.code or 500)


def _template(rule: str) -> str:
    """'/services/data/v<version>/sobjects/<Type>/<Id>' -> '/services/data/vXX.X/sobjects/{Type}/{Id}'."""
    templated = rule.replace("v<version>", "vXX.X").replace("<version>", "{version}")
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", templated).rstrip("/") or "/"


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # tests make thousands of calls
        pass


class _RerouteAdapter(HTTPAdapter):
    """Sends requests for another https host to the emulator, keeping path and query."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self._target = target

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(request.url)
        request.url = f"{self._target}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


def serve_forever(port: int = 0, seed: int = 0) -> None:
    """Run a seeded emulator until interrupted; prints what a client needs to connect."""
    emulator = SalesforceEmulator(port=port)
    emulator.start()
    emulator.seed(200, rng_seed=seed, custom_fields=True)
    print(f"Salesforce emulator listening on {emulator.url}")
    print(f"  org id:      {emulator.org_id}")
    print(f"  session id:  {emulator.session_id}")
    print(f"  CA bundle:   {emulator.ca_bundle_path}")
    print(f"  username:    {emulator.credentials.username}")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:3]]
    serve_forever(*arguments)
