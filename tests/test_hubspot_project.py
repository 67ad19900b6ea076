import json

import pytest

from adapter.manifest import load_manifest
from connectors.hubspot.project import webhook_subscriptions, write_project


def test_project_declares_app_scopes_and_webhooks_from_the_manifest(tmp_path):
    manifest = load_manifest()
    written = write_project(manifest, tmp_path, public_url="https://baton.example.com/")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "hsproject.json", "src/app/app-hsmeta.json", "src/app/webhooks/webhooks-hsmeta.json"]
    app = json.loads((tmp_path / "src/app/app-hsmeta.json").read_text())
    assert app["config"]["auth"]["requiredScopes"] == manifest["crms"]["hubspot"]["scopes"]
    hooks = json.loads((tmp_path / "src/app/webhooks/webhooks-hsmeta.json").read_text())
    assert hooks["config"]["settings"]["targetUrl"] == "https://baton.example.com/webhooks/hubspot"


def test_engagements_are_generic_object_subscriptions():
    subscriptions = webhook_subscriptions(load_manifest())
    assert {"subscriptionType": "object.creation", "active": True, "objectType": "note"} in subscriptions["crmObjects"]
    assert {"subscriptionType": "deal.propertyChange", "active": True, "propertyName": "hubspot_owner_id"} \
        in subscriptions["legacyCrmObjects"]
    assert not any("objectType" in s for s in subscriptions["legacyCrmObjects"])


def test_webhooks_need_https(tmp_path):
    with pytest.raises(ValueError, match="HTTPS"):
        write_project(load_manifest(), tmp_path, public_url="http://baton.example.com")
