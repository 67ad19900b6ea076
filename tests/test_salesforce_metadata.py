"""connectors/salesforce/metadata.py: install through the Metadata API and the source package."""
import copy
from types import SimpleNamespace

import pytest
from defusedxml.ElementTree import parse

from adapter.errors import FatalCrmError
from adapter.manifest import load_manifest
from connectors.salesforce.metadata import desired_state, install, write_package

MD = "{http://soap.sforce.com/2006/04/metadata}"
FIELDS_PER_OBJECT = len(load_manifest()["fields"])
ALL_FIELDS = 4 * FIELDS_PER_OBJECT + 1  # four objects, plus the task marker on Activity


class FakeMetadataApi:
    """An in-memory Metadata API with simple-salesforce's `sf.mdapi.<Type>` surface."""

    def __init__(self):
        self.components: dict[tuple[str, str], SimpleNamespace] = {}
        self.calls: list[tuple[str, str, int]] = []

    def __getattr__(self, type_name):
        return _FakeType(self, type_name)


class _FakeType:
    def __init__(self, api, name):
        self.api, self.name = api, name

    def __call__(self, **kwargs):
        return SimpleNamespace(**kwargs)

    def read(self, names):
        assert len(names) <= 10, "readMetadata takes at most 10 names"
        self.api.calls.append(("read", self.name, len(names)))
        found = [copy.deepcopy(self.api.components.get((self.name, n))) or SimpleNamespace(fullName=None)
                 for n in names]
        return found[0] if len(found) == 1 else found

    def create(self, components):
        assert len(components) <= 10
        self.api.calls.append(("create", self.name, len(components)))
        for c in components:
            assert (self.name, c.fullName) not in self.api.components, f"duplicate {c.fullName}"
            self.api.components[(self.name, c.fullName)] = copy.deepcopy(c)

    def update(self, components):
        assert len(components) <= 10
        self.api.calls.append(("update", self.name, len(components)))
        for c in components:
            assert (self.name, c.fullName) in self.api.components
            self.api.components[(self.name, c.fullName)] = copy.deepcopy(c)


class FakeApi:
    def __init__(self):
        self.md = FakeMetadataApi()

    def metadata(self):
        return self.md

    def refresh(self):
        raise AssertionError("no refresh expected")


def writes(api):
    return [c for c in api.md.calls if c[0] != "read"]


def test_install_creates_every_field_and_a_second_run_changes_nothing():
    api = FakeApi()
    manifest = load_manifest()
    first = install(api, manifest)
    assert len(first.created) == ALL_FIELDS + 2  # + the two permission sets
    assert "Opportunity.Baton_Follow_Up_Status__c" in first.created and "Activity.Baton_Source__c" in first.created
    assert sum(n for op, kind, n in writes(api) if kind == "CustomField") == ALL_FIELDS
    assert all(n <= 10 for _, _, n in api.md.calls)

    status = api.md.components[("CustomField", "Lead.Baton_Follow_Up_Status__c")]
    assert status.type == "Picklist" and status.valueSet.restricted is True
    assert [v.fullName for v in status.valueSet.valueSetDefinition.value][:2] == ["ownerless", "queue_owned"]
    assert api.md.components[("CustomField", "Case.Baton_SLA_Breached__c")].defaultValue == "false"
    assert api.md.components[("CustomField", "Case.Baton_Hours_Waiting__c")].scale == 2
    assert api.md.components[("CustomField", "Case.Baton_Owner_Transfers__c")].scale == 0
    assert api.md.components[("CustomField", "Account.Baton_Next_Action__c")].length == 255
    assert api.md.components[("CustomField", "Account.Baton_Next_Action_Due__c")].type == "DateTime"
    read_set = api.md.components[("PermissionSet", "Baton_Fields_Read")]
    assert {p.field for p in read_set.fieldPermissions} >= {"Opportunity.Baton_Next_Action_Due__c",
                                                             "Task.Baton_Source__c"}
    assert not any(p.editable for p in read_set.fieldPermissions)
    assert all(p.editable for p in api.md.components[("PermissionSet", "Baton_Integration")].fieldPermissions)

    api.md.calls.clear()
    second = install(api, manifest)
    assert not second.changed and writes(api) == []
    assert len(second.unchanged) == ALL_FIELDS + 2
    assert any("nothing to change" in note for note in second.notes)


def test_a_changed_manifest_updates_only_what_differs():
    api = FakeApi()
    install(api, load_manifest())
    manifest = copy.deepcopy(load_manifest())
    status = next(f for f in manifest["fields"] if f["name"] == "follow_up_status")
    status["options"].append({"value": "snoozed", "label": "Snoozed"})
    api.md.calls.clear()
    report = install(api, manifest)
    assert sorted(report.updated) == sorted(f"{o}.Baton_Follow_Up_Status__c"
                                            for o in ("Lead", "Opportunity", "Account", "Case"))
    assert not report.created
    assert writes(api) == [("update", "CustomField", 4)]


def test_dry_run_reads_but_writes_nothing():
    api = FakeApi()
    report = install(api, load_manifest(), dry_run=True)
    assert len(report.created) == ALL_FIELDS + 2 and writes(api) == []
    assert any("dry run" in note for note in report.notes)


def test_validation_rules_only_when_asked_with_a_bypass_permission():
    api = FakeApi()
    report = install(api, load_manifest())
    assert not any(name.startswith("ValidationRule") for name in report.created)
    assert any("validation rules not installed" in note for note in report.notes)
    report = install(api, load_manifest(), enforce=True)
    rules = [n for n in report.created if n.startswith("ValidationRule.")]
    assert "ValidationRule.Lead.Baton_Owner_Must_Be_User" in rules
    assert "ValidationRule.Opportunity.Baton_Next_Action_Required" in rules
    assert "CustomPermission.Baton_Bypass_Rules" in report.created
    rule = api.md.components[("ValidationRule", "Case.Baton_Owner_Must_Be_User")]
    assert "$Permission.Baton_Bypass_Rules" in rule.errorConditionFormula and rule.active is True
    integration = api.md.components[("PermissionSet", "Baton_Integration")]
    assert [p.name for p in integration.customPermissions] == ["Baton_Bypass_Rules"]
    assert not install(api, load_manifest(), enforce=True).changed


def test_metadata_failures_name_the_operation():
    class Broken(FakeApi):
        def metadata(self):
            md = super().metadata()
            md.__class__ = type("BrokenMd", (FakeMetadataApi,), {
                "__getattr__": lambda s, n: SimpleNamespace(read=lambda names: (_ for _ in ()).throw(
                    Exception("INSUFFICIENT_ACCESS: no Modify Metadata permission")))})
            return md

    with pytest.raises(FatalCrmError, match="read CustomField failed: INSUFFICIENT_ACCESS"):
        install(Broken(), load_manifest())


def test_desired_state_matches_the_manifest():
    want = desired_state(load_manifest())
    names = {d.full_name for d in want.fields}
    for raw in load_manifest()["fields"]:
        for sobject in ("Lead", "Opportunity", "Account", "Case"):
            assert f"{sobject}.{raw['salesforce']}" in names
    assert len(names) == ALL_FIELDS


def test_write_package(tmp_path):
    files = write_package(load_manifest(), tmp_path, public_url="https://baton.example.com/", token="s3cr3t",
                          integration_user="baton@acme.example", enforce=True)
    relative = {p.relative_to(tmp_path).as_posix() for p in files}
    assert "package.xml" in relative
    assert "objects/Opportunity/fields/Baton_Follow_Up_Status__c.field-meta.xml" in relative
    assert "objects/Activity/fields/Baton_Source__c.field-meta.xml" in relative
    assert "permissionsets/Baton_Fields_Read.permissionset-meta.xml" in relative
    assert "objects/Lead/validationRules/Baton_Owner_Must_Be_User.validationRule-meta.xml" in relative
    assert "customPermissions/Baton_Bypass_Rules.customPermission-meta.xml" in relative
    assert "workflows/Opportunity.workflow-meta.xml" in relative
    assert "flows/Baton_Opportunity_Changed.flow-meta.xml" in relative
    for path in files:
        parse(path)  # every file is well-formed XML

    field = parse(tmp_path / "objects/Lead/fields/Baton_Follow_Up_Status__c.field-meta.xml").getroot()
    assert field.findtext(f"{MD}type") == "Picklist"
    assert [v.findtext(f"{MD}fullName") for v in field.iter(f"{MD}value")][:3] == [
        "ownerless", "queue_owned", "no_next_action"]
    workflow = parse(tmp_path / "workflows/Opportunity.workflow-meta.xml").getroot()
    assert workflow.findtext(f"{MD}outboundMessages/{MD}endpointUrl") == \
        "https://baton.example.com/webhooks/salesforce/outbound/s3cr3t"
    assert workflow.findtext(f"{MD}outboundMessages/{MD}integrationUser") == "baton@acme.example"
    flow = parse(tmp_path / "flows/Baton_Opportunity_Changed.flow-meta.xml").getroot()
    assert flow.findtext(f"{MD}actionCalls/{MD}actionType") == "outboundMessage"
    assert "ISCHANGED({!$Record.OwnerId})" in flow.findtext(f"{MD}start/{MD}filterFormula")
    package = parse(tmp_path / "package.xml").getroot()
    kinds = {t.findtext(f"{MD}name"): [m.text for m in t.findall(f"{MD}members")] for t in package.findall(f"{MD}types")}
    assert len(kinds["CustomField"]) == ALL_FIELDS
    assert set(kinds) >= {"CustomField", "PermissionSet", "ValidationRule", "CustomPermission", "Workflow", "Flow"}


def test_write_package_without_a_public_url_has_no_outbound_messages(tmp_path):
    files = write_package(load_manifest(), tmp_path)
    assert not any("workflows" in str(p) or "flows" in str(p) or "validationRules" in str(p) for p in files)


# --- against the emulator (real HTTPS, real simple-salesforce + zeep) ----------------------

emulator_module = pytest.importorskip("connectors.salesforce.emulator")


@pytest.fixture
def emu():
    with emulator_module.SalesforceEmulator() as emulator:
        yield emulator


def _connector(emu):
    from connectors.salesforce.auth import SalesforceSettings
    from connectors.salesforce.connector import SalesforceConnector

    c = emu.credentials
    return SalesforceConnector(SalesforceSettings.from_mapping({
        "SALESFORCE_DOMAIN": emu.url.removeprefix("https://"), "SALESFORCE_USERNAME": c.username,
        "SALESFORCE_PASSWORD": c.password, "SALESFORCE_SECURITY_TOKEN": c.security_token,
        "BATON_SALESFORCE_CA_BUNDLE": emu.ca_bundle_path, "SALESFORCE_API_VERSION": emu.api_version,
    }))


def test_install_against_the_emulator_is_idempotent_and_equal_to_the_manifest(emu):
    connector = _connector(emu)
    first = connector.install(load_manifest())
    assert len(first.created) == ALL_FIELDS + 2
    describe = connector.api.describe("Opportunity")
    custom = {f["name"]: f for f in describe["fields"] if f["custom"]}
    assert set(custom) >= {raw["salesforce"] for raw in load_manifest()["fields"]}
    assert custom["Baton_Follow_Up_Status__c"]["type"] == "picklist"
    second = connector.install(load_manifest())
    assert not second.changed


def test_install_against_the_emulator_creates_the_record_fields(emu):
    connector = _connector(emu)
    try:
        connector.install(load_manifest())
    except FatalCrmError as exc:  # the emulator has no Activity object; everything else must be there
        assert "Activity.Baton_Source__c" in str(exc)
    for sobject in ("Lead", "Opportunity", "Account", "Case"):
        fields = {f["name"]: f for f in connector.api.describe(sobject)["fields"]}
        for raw in load_manifest()["fields"]:
            assert raw["salesforce"] in fields, (sobject, raw["salesforce"])
        assert fields["Baton_Next_Action_Due__c"]["type"] == "datetime"
        assert fields["Baton_SLA_Breached__c"]["type"] == "boolean"
        assert [p["value"] for p in fields["Baton_Follow_Up_Status__c"]["picklistValues"]][0] == "ownerless"
    assert connector.calls["POST metadata"] >= 7  # 61 fields read 10 at a time
