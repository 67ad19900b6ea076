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
