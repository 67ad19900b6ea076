"""Connector registry: `get_connector(name, settings)` returns a `Connector` for that CRM.

Connectors are imported lazily so that using one CRM never needs the other's client.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any, Mapping

from adapter.errors import UnknownConnector

CONNECTORS = {
    "hubspot": "connectors.hubspot.connector:HubSpotConnector",
    "salesforce": "connectors.salesforce.connector:SalesforceConnector",
}


#: Settings that only an installation of that CRM has: any of them present, and no
#: `BATON_CRMS`, means the CRM is served.
SETTING_HINTS = {
    "hubspot": ("HUBSPOT_ACCESS_TOKEN", "HUBSPOT_CLIENT_SECRET", "HUBSPOT_APP_ID"),
    "salesforce": ("SALESFORCE_ORG_ID", "SALESFORCE_INSTANCE_URL", "SALESFORCE_USERNAME",
                   "BATON_SALESFORCE_OUTBOUND_TOKEN", "BATON_SALESFORCE_FLOW_SECRET"),
}


def configured_crms(settings) -> list[str]:
    """CRMs this installation serves: `BATON_CRMS` (comma-separated), else every CRM with a
    setting of its own present. `settings` is an `adapter.settings.Settings`."""
    listed = settings.get_list("BATON_CRMS")
    if listed:
        return listed
    return [crm for crm, names in SETTING_HINTS.items() if any(settings.get(n) for n in names)]


def connector_class(name: str):
    try:
        target = CONNECTORS[name]
    except KeyError:
        raise UnknownConnector(f"no connector named {name!r}; known: {', '.join(sorted(CONNECTORS))}") from None
    module_name, class_name = target.split(":")
    return getattr(import_module(module_name), class_name)


def get_connector(name: str, settings: Mapping[str, Any] | None = None, *, redis=None):
    """Build the connector from settings (environment-style keys, see docs/configuration.md).

    `redis`: a connection the connector may use for state shared across processes (the
    HubSpot connector's rate limit), e.g. the worker queue's.
    """
    if redis is not None:
        return connector_class(name).from_settings(settings or {}, redis=redis)
    return connector_class(name).from_settings(settings or {})
