import re

from adapter import reconcile
from adapter.manifest import field_names_for, field_specs, load_manifest
from adapter.visibility import MAINTAINED


def test_every_field_names_itself_in_both_crms():
    for spec in field_specs():
        assert re.fullmatch(r"baton_[a-z_]+", spec.name_in("hubspot")), spec
        assert re.fullmatch(r"Baton_[A-Za-z_]+__c", spec.name_in("salesforce")), spec
        assert len(spec.name_in("salesforce")) <= 40  # Salesforce API name limit incl. __c
        assert spec.label and spec.description


def test_core_maintains_only_declared_fields():
    assert set(MAINTAINED) <= {spec.name for spec in field_specs()}


def test_status_options_match_what_reconcile_can_write():
    [status] = [s for s in field_specs() if s.name == "follow_up_status"]
    declared = {value for value, _ in status.options}
    assert declared == {reconcile.OWNERLESS, reconcile.QUEUE_OWNED, reconcile.NO_NEXT_ACTION, reconcile.OVERDUE,
                        reconcile.DUE_SOON, reconcile.ON_TRACK, reconcile.CLOSED}


def test_names_are_unique_per_crm():
    for crm in ("hubspot", "salesforce"):
        names = list(field_names_for(crm).values())
        assert len(names) == len(set(names))


def test_manifest_declares_crms_objects_scopes_and_webhooks():
    manifest = load_manifest()
    assert manifest["name"] == "baton" and manifest["version"]
    hubspot = manifest["crms"]["hubspot"]
    assert set(hubspot["object_types"]) == {"deal", "contact", "company", "ticket"}
    assert "crm.objects.owners.read" in hubspot["scopes"]
    owner_subscriptions = [s for s in hubspot["webhook_subscriptions"] if s.get("propertyName") == "hubspot_owner_id"]
    assert len(owner_subscriptions) == 4
    assert set(manifest["crms"]["salesforce"]["object_types"]) == {"lead", "opportunity", "account", "case"}
