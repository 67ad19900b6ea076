"""`baton install hubspot --project DIR`: a HubSpot developer-platform project generated from
manifest.json, for admins who deploy apps with `hs project upload`.

It declares the app (static auth for a single portal, the scopes Baton needs, the backend
it may fetch from) and its webhook subscriptions pointing at Baton's receiver. The same
manifest drives `baton install hubspot`, so the app and the fields never disagree.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .fields import ACTIVITY_TYPE_IDS

PLATFORM_VERSION = "2025.2"


def webhook_subscriptions(manifest: Mapping[str, Any]) -> dict[str, list[dict]]:
    """The manifest's subscriptions in the project schema: record types as legacy CRM object
    subscriptions (`deal.propertyChange`), engagements as CRM object ones (`object.creation`)."""
    legacy, generic = [], []
    for subscription in manifest["crms"]["hubspot"]["webhook_subscriptions"]:
        entry = {"subscriptionType": subscription["subscriptionType"], "active": True}
        if "propertyName" in subscription:
            entry["propertyName"] = subscription["propertyName"]
        if "objectTypeId" in subscription:
            # Engagement objects arrive only as generic `object.*` subscriptions (DESIGN.md).
            entry["objectType"] = ACTIVITY_TYPE_IDS[subscription["objectTypeId"]]
            generic.append(entry)
        else:
            legacy.append(entry)
    return {"crmObjects": generic, "legacyCrmObjects": legacy}


def project_files(manifest: Mapping[str, Any], public_url: str) -> dict[str, dict]:
    """Relative path -> JSON document."""
    base = public_url.rstrip("/")
    hubspot = manifest["crms"]["hubspot"]
    return {
        "hsproject.json": {"name": manifest["name"], "srcDir": "src", "platformVersion": PLATFORM_VERSION},
        "src/app/app-hsmeta.json": {
            "uid": f"{manifest['name']}_app",
            "type": "app",
            "config": {
                "name": manifest["label"],
                "description": manifest["description"],
                "distribution": "private",
                "auth": {"type": "static", "requiredScopes": list(hubspot["scopes"]),
                         "optionalScopes": [], "conditionallyRequiredScopes": []},
                "permittedUrls": {"fetch": [base], "iframe": [], "img": []},
                "support": {"supportEmail": "", "documentationUrl": f"{base}/docs", "supportUrl": "", "supportPhone": ""},
            },
        },
        "src/app/webhooks/webhooks-hsmeta.json": {
            "uid": f"{manifest['name']}_webhooks",
            "type": "webhooks",
            "config": {
                "settings": {"targetUrl": f"{base}/webhooks/hubspot", "maxConcurrentRequests": 10},
                "subscriptions": webhook_subscriptions(manifest),
            },
        },
    }


def write_project(manifest: Mapping[str, Any], directory: str | Path, *, public_url: str) -> list[Path]:
    """Write the project under `directory`; returns the files written."""
    if not public_url.startswith("https://"):
        raise ValueError(f"HubSpot only sends webhooks to HTTPS URLs; BATON_PUBLIC_URL is {public_url!r}")
    root = Path(directory)
    written = []
    for relative, document in project_files(manifest, public_url).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
