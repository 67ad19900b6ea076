"""The flask app factory for Baton's webhook receivers, plus `serve` for `baton serve`.

    gunicorn -w 4 -k gthread --threads 8 -b 0.0.0.0:8000 'webhooks.app:from_env()'

Routes: POST /webhooks/hubspot (answered by `DirectRoute`, outside flask's dispatch),
POST /webhooks/salesforce/outbound/<token>,
POST /webhooks/salesforce/flow, GET /healthz, GET /metrics (prometheus text format; under
gunicorn set PROMETHEUS_MULTIPROC_DIR so every worker process is counted).
"""
from __future__ import annotations

import logging
import os

from flask import Flask, Request, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.exceptions import RedisError

from adapter.errors import ConfigurationError
from adapter.queue import RealtimeQueue
from adapter.settings import Settings
from connectors import configured_crms
from webhooks import hubspot, salesforce
from webhooks.inbox import MAX_BODY, Inbox, Metrics, Receiver

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, queue: RealtimeQueue | None = None) -> Flask:
    """Build the app; a missing setting raises `ConfigurationError` naming it, here and now."""
    crms = configured_crms(settings)
    if not crms:
        raise ConfigurationError(
            "BATON_CRMS is not set, and no HUBSPOT_* or SALESFORCE_* setting says which CRM to serve"
        )
    app = Flask("baton")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY + 1  # the inbox answers 413 itself, with a reason
    app.config["BATON_SETTINGS"] = settings
    receivers = {}
    if "hubspot" in crms:
        secrets = settings.get_list("HUBSPOT_CLIENT_SECRET")
        if not secrets:
            settings.require("HUBSPOT_CLIENT_SECRET", "the HubSpot app's client secret signs its webhooks")
        receivers["baton.hubspot"] = hubspot.HubSpotReceiver(
            secrets, public_url=settings.public_url, app_id=settings.get("HUBSPOT_APP_ID"),
            reconcile_own_writes=_flag(settings.get("BATON_RECONCILE_OWN_WRITES")))
        app.register_blueprint(hubspot.blueprint)
    if "salesforce" in crms:
        org_id = settings.require("SALESFORCE_ORG_ID", "Outbound Messages and Flows are checked against it")
        token = settings.get("BATON_SALESFORCE_OUTBOUND_TOKEN")
        flow_secrets = settings.get_list("BATON_SALESFORCE_FLOW_SECRET")
        if not token and not flow_secrets:
            raise ConfigurationError(
                "BATON_SALESFORCE_OUTBOUND_TOKEN is not set (or BATON_SALESFORCE_FLOW_SECRET for Flow callouts)")
        if token:
            receivers["baton.salesforce_outbound"] = salesforce.OutboundMessageReceiver(token, org_id)
        if flow_secrets:
            receivers["baton.salesforce_flow"] = salesforce.FlowReceiver(flow_secrets, org_id)
        app.register_blueprint(salesforce.blueprint)

    registry = CollectorRegistry()
    queue = queue if queue is not None else RealtimeQueue.from_settings(settings)
    app.extensions["baton.queue"] = queue
    app.extensions["baton.registry"] = registry
    app.extensions["baton.inbox"] = Inbox(queue, Metrics(registry))
    app.extensions.update(receivers)
    app.add_url_rule("/healthz", "healthz", healthz)
    app.add_url_rule("/metrics", "metrics", metrics)
    if "baton.hubspot" in receivers:
        inbox = app.extensions["baton.inbox"]
        app.wsgi_app = DirectRoute(app.wsgi_app, hubspot.PATH, inbox, receivers["baton.hubspot"])
    return app


class DirectRoute:
    """POST `path` answered by the inbox straight from WSGI; every other request goes to flask.

    HubSpot's webhook carries the volume, and for it flask's dispatch (app and request
    contexts, session, URL matching, response hooks) costs more CPU than checking the batch's
    signature. The inbox needs none of it: it takes a request and returns a response. The
    flask route stays for everything else on the path (a GET still gets flask's 405).
    """

    def __init__(self, app, path: str, inbox: Inbox, receiver: Receiver):
        self.app, self.path, self.inbox, self.receiver = app, path, inbox, receiver

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != self.path or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        try:
            response = self.inbox.handle(self.receiver, Request(environ))
        except Exception:  # as flask would: log it, answer 500 (the sender retries)
            log.exception("webhook %s failed", self.receiver.name)
            response = Response("internal_error\n", status=500, mimetype="text/plain")
        return response(environ, start_response)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def healthz():
    try:
        current_app.extensions["baton.queue"].redis.ping()
    except RedisError as exc:
        return jsonify(ok=False, redis=str(exc)), 503
    return jsonify(ok=True)


def metrics():
    registry = current_app.extensions["baton.registry"]
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def from_env() -> Flask:
    """The app configured from the environment: the gunicorn entry point."""
    return create_app(Settings.from_env())


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """`baton serve`: flask's development server. In production run gunicorn (module docstring)."""
    create_app(settings).run(host=host, port=port, threaded=True)
