"""A HubSpot stand-in for tests, the demo and benchmarks.

`HubSpotEmulator` serves, over real HTTP, the part of HubSpot's API Baton uses (CRM objects,
associations v4, owners, pipelines, properties), driven by the real `hubspot-api-client`:

    with HubSpotEmulator(token="pat-test") as emu:
        emu.seed(500)
        client = HubSpot(access_token="pat-test", host=emu.url)

Around the endpoints it behaves like HubSpot where that matters to an integration: bearer
auth, rate limits with HubSpot's 429 bodies and headers, 207 Multi-Status batches, search
caps, property history, and signed webhooks for every change. Each request and response is
checked against HubSpot's published OpenAPI specs when they are available. Tests reach into
it to count calls (`calls`), inject faults (`faults`) and act as a person in the UI would
(`user_*`). Nothing real is ever called.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Callable, Iterable

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

from .emulator_api_metadata import metadata_api
from .emulator_api_objects import crm_error_response, error_response, objects_api
from .emulator_catalog import default_association_type, resolve_object_type
from .emulator_seed import SeedMix, seed_portal
from .emulator_specs import SpecViolation, load_validator
from .emulator_state import Actor, CrmError, CrmStore
from .emulator_traffic import FaultInjector, RateLimiter
from .emulator_webhooks import WebhookSender

__all__ = ["HubSpotEmulator", "SeedMix", "SpecViolationError", "create_app", "serve_forever"]

# Route arguments that name an object type keep their (canonical) value in call-count keys;
# the others are identifiers and become placeholders, so one key counts every id.
_TYPE_ARGS = {"object_type", "from_type", "to_type"}
_ID_PLACEHOLDERS = {"object_id": "{objectId}", "from_id": "{fromObjectId}", "to_id": "{toObjectId}",
                    "owner_id": "{ownerId}", "pipeline_id": "{pipelineId}", "property_name": "{propertyName}",
                    "group_name": "{groupName}"}


class _QuietRequestHandler(WSGIRequestHandler):
    """No access log: tests and benchmarks make thousands of calls."""

    def log_request(self, *args, **kwargs) -> None:
        pass


class SpecViolationError(AssertionError):
    """The emulator answered something HubSpot's published spec does not allow."""


class HubSpotEmulator:
    def __init__(self, token: str = "pat-emulator-token", portal_id: int = 24_681_357, *,
                 app_id: int = 3_170_001, rate_limit: int = 100, search_rate_limit: int = 5,
                 rate_limiting: bool = True, validate: bool = True, strict: bool = False,
                 specs_dir: str | None = None, clock: Callable[[], datetime] | None = None):
        """`strict`: answer a spec-violating response with a 500 (besides recording it), so a
        test fails at the call that caused it. `clock`: a callable returning an aware datetime,
        for tests that freeze time; default wall clock."""
        self.token, self.portal_id = token, portal_id
        self._clock = clock
        self.store = CrmStore(clock=self.now_ms)
        self.rate_limiter = RateLimiter(rate_limit, search_rate_limit, enabled=rate_limiting)
        self.faults = FaultInjector()
        self.webhooks = WebhookSender(portal_id, app_id)
        self.store.listeners.append(self.webhooks.on_change)
        self.validator = load_validator(specs_dir) if validate else None
        self.strict = strict
        self.spec_violations: list[SpecViolation] = []
        self.server_errors: list[str] = []  # unexpected exceptions inside handlers
        self.calls: Counter[str] = Counter()
        self.calls_total = 0
        self.rate_limited = 0
        self._calls_lock = threading.Lock()
        self.app = create_app(self)
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def app_id(self) -> int:
        """The app owning the token: API writes are attributed to it (history, webhooks)."""
        return self.webhooks.app_id

    @app_id.setter
    def app_id(self, value: int) -> None:
        self.webhooks.app_id = value

    # -- clock ---------------------------------------------------------------------------
    def now_ms(self) -> int:
        if self._clock is None:
            return int(time.time() * 1000)
        return int(self._clock().timestamp() * 1000)

    # -- serving ---------------------------------------------------------------------------
    def start(self) -> "HubSpotEmulator":
        """Serve on 127.0.0.1 on a free port, in a background thread."""
        if self._server is None:
            self._server = make_server("127.0.0.1", 0, self.app, threaded=True,
                                       request_handler=_QuietRequestHandler)
            # A short poll interval keeps stop() quick; tests start and stop many emulators.
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="hubspot-emulator", daemon=True)
            self._thread.start()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("HubSpotEmulator is not started; call start() first")
        return f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        self.webhooks.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> "HubSpotEmulator":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- observation ---------------------------------------------------------------------------
    def reset_calls(self) -> None:
        with self._calls_lock:
            self.calls.clear()
            self.calls_total = 0
            self.rate_limited = 0

    def count_call(self, key: str) -> None:
        with self._calls_lock:
            self.calls[key] += 1
            self.calls_total += 1

    def assert_spec_clean(self) -> None:
        """Raise if any request or response so far broke HubSpot's spec, or a handler crashed."""
        problems = [str(v) for v in self.spec_violations if v.direction == "response"] + self.server_errors
        if problems:
            raise SpecViolationError("\n".join(problems))

    # -- seeding ------------------------------------------------------------------------------
    def seed(self, n: int, *, object_types: Iterable[str] = ("deals",), mix: SeedMix | None = None,
             rng_seed: int = 0, now: datetime | None = None) -> dict[str, int]:
        """Fill the portal with `n` records of each of `object_types` and their activity.
        Deterministic for a given (n, object_types, mix, rng_seed, now). Returns counts by type."""
        now_ms = int(now.timestamp() * 1000) if now is not None else self.now_ms()
        return seed_portal(self.store, n, tuple(object_types), mix or SeedMix(), rng_seed, now_ms)

    # -- a person in the HubSpot UI ---------------------------------------------------------------
    def _user(self, by_owner_id: str | None) -> Actor:
        owners = self.store.owners
        owner = self.store.owner(by_owner_id) if by_owner_id else next(o for o in owners if not o["archived"])
        if owner is None:
            raise ValueError(f"unknown owner {by_owner_id}")
        return Actor.user(owner["userId"])

    @staticmethod
    def _ms(at: datetime | None) -> int | None:
        return None if at is None else int(at.timestamp() * 1000)

    def user_update(self, object_type: str, object_id: str, properties: dict, *,
                    by_owner_id: str | None = None, at: datetime | None = None) -> None:
        name = resolve_object_type(object_type).name
        with self.store.lock:
            values = self.store.normalize_properties(name, properties)
            self.store.update(name, str(object_id), values, self._user(by_owner_id), at_ms=self._ms(at))

    def user_set_owner(self, object_type: str, object_id: str, owner_id: str | None, **kwargs) -> None:
        """Reassign (None clears the owner), as an admin does in the record sidebar."""
        self.user_update(object_type, object_id, {"hubspot_owner_id": owner_id or ""}, **kwargs)

    def user_set_stage(self, object_type: str, object_id: str, stage_id: str, *,
                       pipeline_id: str | None = None, **kwargs) -> None:
        stage_property, pipeline_property = (
            ("dealstage", "pipeline") if resolve_object_type(object_type).name == "deals"
            else ("hs_pipeline_stage", "hs_pipeline"))
        values = {stage_property: stage_id}
        if pipeline_id is not None:
            values[pipeline_property] = pipeline_id
        self.user_update(object_type, object_id, values, **kwargs)

    def user_complete_task(self, task_id: str, *, by_owner_id: str | None = None, at: datetime | None = None) -> None:
        when = at.timestamp() * 1000 if at else self.now_ms()
        self.user_update("tasks", task_id, {"hs_task_status": "COMPLETED", "hs_task_completion_date": int(when)},
                         by_owner_id=by_owner_id, at=at)

    def user_set_task_due(self, task_id: str, due: datetime, **kwargs) -> None:
        self.user_update("tasks", task_id, {"hs_timestamp": int(due.timestamp() * 1000)}, **kwargs)

    def user_create_record(self, object_type: str, properties: dict, *,
                           associations: Iterable[tuple[str, str]] = (), by_owner_id: str | None = None,
                           at: datetime | None = None) -> str:
        """Create a record associated (default type) to each (object_type, id); returns its id."""
        name = resolve_object_type(object_type).name
        links = []
        for to_type, to_id in associations:
            to_name = resolve_object_type(to_type).name
            links.append((to_name, str(to_id), default_association_type(name, to_name)))
        with self.store.lock:
            values = self.store.normalize_properties(name, properties)
            record = self.store.create(name, values, self._user(by_owner_id), associations=links,
                                       at_ms=self._ms(at))
        return record.id

    def user_delete_record(self, object_type: str, object_id: str, *, by_owner_id: str | None = None) -> None:
        self.store.archive(resolve_object_type(object_type).name, str(object_id), self._user(by_owner_id))

    def user_add_note(self, object_type: str, object_id: str, html: str, author_owner_id: str, *,
                      at: datetime | None = None) -> str:
        when = self._ms(at) or self.now_ms()
        return self.user_create_record(
            "notes", {"hs_note_body": html, "hs_timestamp": when, "hubspot_owner_id": author_owner_id},
            associations=[(object_type, object_id)], by_owner_id=author_owner_id, at=at)

    def user_add_email(self, object_type: str, object_id: str, html: str | None = None, *,
                       text: str | None = None, direction: str = "INCOMING_EMAIL", subject: str = "Re: next steps",
                       owner_id: str | None = None, at: datetime | None = None) -> str:
        """Log an email on a record: INCOMING_EMAIL from the customer, EMAIL sent by the rep."""
        when = self._ms(at) or self.now_ms()
        properties = {"hs_email_direction": direction, "hs_email_subject": subject, "hs_timestamp": when,
                      "hs_email_status": "SENT"}
        if html is not None:
            properties["hs_email_html"] = html
        if text is not None:
            properties["hs_email_text"] = text
        if owner_id:
            properties["hubspot_owner_id"] = owner_id
        return self.user_create_record("emails", properties, associations=[(object_type, object_id)],
                                       by_owner_id=owner_id, at=at)

    # -- inspection without HTTP (tests) -----------------------------------------------------------------
    def record(self, object_type: str, object_id: str) -> dict[str, str] | None:
        """A copy of a live record's properties, or None."""
        with self.store.lock:
            record = self.store.get(resolve_object_type(object_type).name, str(object_id))
            return dict(record.properties) if record else None

    def records(self, object_type: str) -> list[dict[str, str]]:
        with self.store.lock:
            return [dict(r.properties) for r in self.store.live_records(resolve_object_type(object_type).name)]

    def associated_ids(self, object_type: str, object_id: str, to_type: str) -> list[str]:
        with self.store.lock:
            return list(self.store.associated(resolve_object_type(object_type).name, str(object_id),
                                              resolve_object_type(to_type).name))


# -- the flask app ------------------------------------------------------------------------------------
def _call_key() -> str:
    rule = request.url_rule
    if rule is None:
        return f"{request.method} {request.path}"
    path = rule.rule
    for name, value in (request.view_args or {}).items():
        if name in _TYPE_ARGS:
            object_type = resolve_object_type(value)
            replacement = object_type.name if object_type else value
        else:
            replacement = _ID_PLACEHOLDERS.get(name, "{" + name + "}")
        path = path.replace(f"<{name}>", replacement)
    return f"{request.method} {path}"


def _rate_limit_response(emu: HubSpotEmulator, policy: str, retry_after_s: int, headers: dict) -> Response:
    if policy == "SECONDLY":
        message, group = "You have reached your secondly limit.", f"publicapi:private-app-api-calls-search:{emu.portal_id}"
    else:
        message, group = "You have reached your ten_secondly_rolling limit.", f"publicapi:private-app-api-calls:{emu.portal_id}"
    response = jsonify({"status": "error", "message": message, "errorType": "RATE_LIMIT",
                        "correlationId": str(uuid.uuid4()), "policyName": policy, "groupName": group})
    response.status_code = 429
    response.headers.update(headers)
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def _fault_response(emu: HubSpotEmulator, status: int, body) -> Response:
    if status == 429 and body is None:
        return _rate_limit_response(emu, "TEN_SECONDLY_ROLLING", 1, emu.rate_limiter.peek_headers())
    if body is None:
        return error_response(status, "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR",
                              f"Injected fault: HTTP {status}")
    response = jsonify(body) if isinstance(body, (dict, list)) else Response(body)
    response.status_code = status
    return response


def create_app(emu: HubSpotEmulator) -> Flask:
    app = Flask(__name__)
    app.extensions["hubspot_emulator"] = emu
    app.json.sort_keys = False  # keep HubSpot's member order: id, properties, createdAt, ...
    app.register_blueprint(objects_api)
    app.register_blueprint(metadata_api)
    app.register_error_handler(CrmError, crm_error_response)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        return error_response(error.code or 500, "OBJECT_NOT_FOUND" if error.code == 404 else "VALIDATION_ERROR",
                              error.description or error.name)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        # A crash is an emulator bug: answer like HubSpot's 500 and keep it for assert_spec_clean().
        emu.server_errors.append(f"{request.method} {request.path}: {type(error).__name__}: {error}")
        app.logger.exception("emulator handler crashed")
        return error_response(500, "INTERNAL_ERROR", "internal error")

    @app.before_request
    def _gatekeeper():
        key = _call_key()
        emu.count_call(key)
        fault = emu.faults.take(request.method, request.path, key.split(" ", 1)[1])
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is not None:
                if fault.status == 429:
                    emu.rate_limited += 1
                response = _fault_response(emu, fault.status, fault.body)
                response.headers.update(fault.headers)
                return response
        authorization = request.headers.get("Authorization", "")
        if authorization != f"Bearer {emu.token}":
            message = ("Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
                       "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
                       if not authorization else "The access token provided is invalid or expired.")
            response = error_response(401, "INVALID_AUTHENTICATION", message)
            response.headers.update(emu.rate_limiter.peek_headers())
            return response
        decision = emu.rate_limiter.admit(is_search=request.path.endswith("/search"))
        if not decision.allowed:
            with emu._calls_lock:
                emu.rate_limited += 1
            return _rate_limit_response(emu, decision.policy, decision.retry_after_s, decision.headers)
        g.rate_headers = decision.headers
        if emu.validator is not None and request.url_rule is not None:
            problem = emu.validator.check_request(request.method, request.path, request.args, request.headers,
                                                  request.get_data(), request.content_type)
            if problem:
                emu.spec_violations.append(SpecViolation("request", request.method, request.path, None, problem))
                response = error_response(400, "VALIDATION_ERROR", f"Invalid input: {problem}")
                response.headers.update(decision.headers)
                return response
        g.handled_by_emulator = True
        return None

    @app.after_request
    def _finish(response: Response):
        response.headers.update(g.get("rate_headers", {}))
        if g.get("handled_by_emulator") and emu.validator is not None:
            problem = emu.validator.check_response(
                request.method, request.path, request.args, request.headers, request.get_data(),
                request.content_type, response.status_code, response.get_data(), response.content_type)
            if problem:
                emu.spec_violations.append(
                    SpecViolation("response", request.method, request.path, response.status_code, problem))
                if emu.strict:
                    strict = error_response(500, "EMULATOR_SPEC_VIOLATION", f"Emulator response broke the spec: {problem}")
                    strict.headers.update(g.get("rate_headers", {}))
                    return strict
        return response

    return app


# -- standalone -------------------------------------------------------------------------------------------
def serve_forever(port: int = 0, seed: int = 0, token: str | None = None, *, rng_seed: int = 0,
                  validate: bool = True) -> None:
    """Run an emulator in the foreground (for `baton emulator hubspot`). `seed` is how many
    deals (with their contacts, companies and activity) to create; 0 leaves the portal empty."""
    emu = HubSpotEmulator(token=token or f"pat-emulator-{uuid.uuid4().hex[:12]}", validate=validate)
    if seed:
        counts = emu.seed(seed, rng_seed=rng_seed)
        print("seeded " + ", ".join(f"{n} {t}" for t, n in counts.items()), flush=True)
    server = make_server("127.0.0.1", port, emu.app, threaded=True)
    print(f"HubSpot emulator listening on http://127.0.0.1:{server.server_port}", flush=True)
    print(f"token: {emu.token}", flush=True)
    print(f"portal: {emu.portal_id}  app: {emu.app_id}  spec validation: {'on' if emu.validator else 'off'}",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        emu.webhooks.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m connectors.hubspot.emulator", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--seed", type=int, default=0, help="number of deals to seed (default: none)")
    parser.add_argument("--rng-seed", type=int, default=0, help="random seed for the seeded data")
    parser.add_argument("--token", default=None, help="bearer token to accept (default: random)")
    parser.add_argument("--no-validate", action="store_true", help="skip OpenAPI validation")
    args = parser.parse_args(argv)
    serve_forever(args.port, args.seed, args.token, rng_seed=args.rng_seed, validate=not args.no_validate)


if __name__ == "__main__":
    main()
