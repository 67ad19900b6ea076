"""The Salesforce emulator, driven by the real simple-salesforce over real HTTPS."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from defusedxml import ElementTree
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from connectors.salesforce.emulator import Credentials, SalesforceEmulator
from connectors.salesforce.emulator_outbound import OUTBOUND_NS, SOBJECT_NS

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)  # a Friday
XSI = "http://www.w3.org/2001/XMLSchema-instance"


@pytest.fixture
def emu():
    with SalesforceEmulator(clock=lambda: NOW) as emulator:
        yield emulator


@pytest.fixture
def sf(emu):
    """A client on the emulator's access token, as the connector builds it."""
    session = requests.Session()
    session.verify = emu.ca_bundle_path
    session.trust_env = False  # else REQUESTS_CA_BUNDLE silently replaces `verify`
    return Salesforce(instance_url=emu.url, session_id=emu.session_id, session=session)


def password_client(emu: SalesforceEmulator) -> Salesforce:
    creds = emu.credentials
    return Salesforce(username=creds.username, password=creds.password, security_token=creds.security_token,
                      session=emu.requests_session())


def new_opportunity(sf: Salesforce, **fields) -> str:
    values = {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-12-15"} | fields
    return sf.Opportunity.create(values)["id"]


# --------------------------------------------------------------------------- logins
def test_session_id_client_reads_versions_limits_and_usage_header(emu, sf):
    response = sf.session.get(f"{emu.url}/services/data/v59.0/limits",
                              headers={"Authorization": f"Bearer {emu.session_id}"})
    assert response.json()["DailyApiRequests"] == {"Max": 15000, "Remaining": 14999}
    assert response.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    assert sf.query("SELECT Id FROM User")["totalSize"] == 2
    assert sf.api_usage["api-usage"].used == 2
    assert emu.calls["GET /services/data/vXX.X/query"] == 1
    assert emu.calls["SOQL User"] == 1
    assert emu.calls_total == 2


def test_soap_password_login_and_bad_password(emu):
    sf = password_client(emu)
    assert sf.sf_instance == emu.instance_host
    assert sf.query("SELECT COUNT() FROM Organization")["totalSize"] == 1
    with pytest.raises(SalesforceAuthenticationFailed, match="INVALID_LOGIN"):
        Salesforce(username=emu.credentials.username, password="wrong", security_token="x",
                   session=emu.requests_session())


def test_oauth_password_flow(emu):
    creds = emu.credentials
    sf = Salesforce(username=creds.username, password=creds.password, consumer_key=creds.consumer_key,
                    consumer_secret=creds.consumer_secret, session=emu.requests_session())
    assert sf.query("SELECT Id FROM Organization")["records"][0]["Id"] == emu.org_id
    with pytest.raises(SalesforceAuthenticationFailed, match="invalid_client_id"):
        Salesforce(username=creds.username, password=creds.password, consumer_key="other",
                   consumer_secret=creds.consumer_secret, session=emu.requests_session())


def test_jwt_bearer_checks_signature_and_claims():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with SalesforceEmulator(credentials=Credentials(jwt_public_key=public_pem)) as emu:
        creds = emu.credentials
        sf = Salesforce(username=creds.username, consumer_key=creds.consumer_key, privatekey=private_pem,
                        session=emu.requests_session())
        assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 2
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        with pytest.raises(SalesforceAuthenticationFailed, match="invalid assertion"):
            Salesforce(username=creds.username, consumer_key=creds.consumer_key, privatekey=other,
                       session=emu.requests_session())
        with pytest.raises(SalesforceAuthenticationFailed, match="hasn't approved"), pytest.warns(UserWarning):
            Salesforce(username="someone@else.example", consumer_key=creds.consumer_key, privatekey=private_pem,
                       session=emu.requests_session())


def test_expired_session_answers_invalid_session_id_and_password_client_refreshes(emu, sf):
    refreshing = password_client(emu)
    emu.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as raised:
        sf.query("SELECT Id FROM User")
    assert raised.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    assert refreshing.query("SELECT Id FROM User")["totalSize"] == 2  # re-logged in behind the scenes


def test_refresh_after_expiry_drops_custom_headers_in_simple_salesforce(emu):
    """The library's retry after re-login forgets `headers=`: the emulator makes that visible."""
    queue_id = emu.user_create("Group", {"Name": "Inbound", "Type": "Queue"})
    emu.set_assignment_rule("Lead", queue_id)
    sf = password_client(emu)
    no_assign = {"Sforce-Auto-Assign": "FALSE"}
    kept = sf.Lead.create({"LastName": "Kept", "Company": "Acme"}, headers=no_assign)["id"]
    emu.expire_sessions()
    dropped = sf.Lead.create({"LastName": "Dropped", "Company": "Acme"}, headers=no_assign)["id"]
    assert emu.record(kept)["OwnerId"] == emu.state.integration_user_id
    assert emu.record(dropped)["OwnerId"] == queue_id


# --------------------------------------------------------------------------- SOQL
def test_query_all_pages_with_next_records_url_and_sub_queries(emu, sf):
    emu.seed(2600, object_types=("opportunity",), rng_seed=7)
    result = sf.query_all(
        "SELECT Id, Name, Owner.Name, Owner.IsActive, "
        "(SELECT Id, Subject, ActivityDate, Status, OwnerId, IsClosed FROM Tasks WHERE IsClosed = false), "
        "(SELECT Field, OldValue, NewValue, CreatedDate, CreatedById FROM Histories WHERE Field = 'Owner') "
        "FROM Opportunity ORDER BY CreatedDate")
    assert result["totalSize"] == len(result["records"]) == 2600
    assert emu.calls["GET /services/data/vXX.X/query/{locator}"] == 1
    with_tasks = next(r for r in result["records"] if r["Tasks"])
    assert {t["IsClosed"] for t in with_tasks["Tasks"]["records"]} == {False}
    assert with_tasks["Owner"]["attributes"]["type"] == "User"
    changed = next(r for r in result["records"] if r["Histories"])
    rows = changed["Histories"]["records"]
    assert len(rows) % 2 == 0  # every owner change is written twice: ids, then names
    assert {rows[0]["OldValue"][:3], rows[1]["OldValue"][:3]} & {"005"}
    assert any(r["Histories"] is None for r in result["records"])


def test_malformed_and_invalid_queries_fail_loudly(emu, sf):
    cases = {
        "SELECT Id FROM Opportunity WHERE IsClosed = false AND IsWon = true OR Amount > 5": "MALFORMED_QUERY",
        "SELECT SUM(Amount) FROM Opportunity": "MALFORMED_QUERY",
        "SELECT Id FROM Opportunity GROUP BY StageName": "MALFORMED_QUERY",
        "SELECT Id FROM Opportunity WHERE": "MALFORMED_QUERY",
        "SELECT Id FROM Opportunity WHERE Id IN (SELECT WhatId FROM Task)": "MALFORMED_QUERY",
        "SELECT Id, Baton_Follow_Up_Status__c FROM Opportunity": "INVALID_FIELD",
        "SELECT Id FROM Opportunity WHERE CloseDate < '2026-01-01'": "INVALID_QUERY_FILTER_OPERATOR",
        "SELECT Id FROM Opportunity WHERE Description = 'x'": "INVALID_FIELD",
        "SELECT Id FROM Widget": "INVALID_TYPE",
        "SELECT Id, (SELECT Id FROM Widgets) FROM Opportunity": "INVALID_TYPE",
        "SELECT ContentDocumentId FROM ContentDocumentLink": "MALFORMED_QUERY",
    }
    for soql, error_code in cases.items():
        with pytest.raises(SalesforceMalformedRequest) as raised:
            sf.query(soql)
        assert raised.value.content[0]["errorCode"] == error_code, soql


def test_where_clause_semantics(emu):
    integration = emu.state.integration_user_id
    ids = {
        "a": emu.user_create("Opportunity", {"Name": "Alpha renewal", "StageName": "Prospecting",
                                             "CloseDate": "2026-11-20", "Amount": 500, "OwnerId": integration}),
        "b": emu.user_create("Opportunity", {"Name": "beta 100%", "StageName": "Closed Won",
                                             "CloseDate": "2026-10-01", "Amount": 5000, "OwnerId": integration}),
        "c": emu.user_create("Opportunity", {"Name": "Gamma", "StageName": "Negotiation/Review",
                                             "CloseDate": "2027-01-10"}),  # owned by the admin who made it
    }

    def names(where: str, order: str = "ORDER BY Name") -> list[str]:
        rows = emu.query_engine.execute(f"SELECT Name FROM Opportunity WHERE {where} {order}").records
        return [r["Name"] for r in rows]

    assert names("CloseDate = TODAY") == ["Alpha renewal"]
    assert names("CloseDate = LAST_N_DAYS:60") == ["Alpha renewal", "beta 100%"]
    assert names("CloseDate > NEXT_N_DAYS:30") == ["Gamma"]
    assert names("CreatedDate = TODAY AND CreatedDate >= 2026-11-20T00:00:00Z") == ["Alpha renewal", "beta 100%",
                                                                                     "Gamma"]
    assert names("name LIKE 'ALPHA%'") == ["Alpha renewal"]
    assert names("Name LIKE '%100\\%'") == ["beta 100%"]
    assert names("NOT (IsClosed = false)") == ["beta 100%"]
    assert names("Amount = null") == ["Gamma"]
    assert names("Amount != null AND Amount < 1000") == ["Alpha renewal"]
    assert names(f"Id IN ('{ids['a'][:15]}', '{ids['c']}')") == ["Alpha renewal", "Gamma"]
    assert names(f"Id NOT IN ('{ids['a']}')") == ["beta 100%", "Gamma"]
    assert names("Owner.Name = 'Ada Admin' OR IsWon = true") == ["beta 100%", "Gamma"]
    assert names("Name != 'x'", "ORDER BY Amount DESC NULLS FIRST") == ["Gamma", "beta 100%", "Alpha renewal"]
    assert names("Name != 'x'", "ORDER BY Amount ASC LIMIT 1 OFFSET 1") == ["Alpha renewal"]
    assert emu.query_engine.execute("SELECT COUNT() FROM Opportunity WHERE IsClosed = false").total_size == 2


# --------------------------------------------------------------------------- writes
def test_composite_create_and_update_two_hundred_and_reject_more(emu, sf):
    records = [{"attributes": {"type": "Task"}, "Subject": f"Call {i}", "ActivityDate": "2026-11-25"}
               for i in range(200)]
    created = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    assert len(created) == 200 and all(r["success"] and r["id"].startswith("00T") and len(r["id"]) == 18
                                       for r in created)
    updates = [{"attributes": {"type": "Task"}, "Id": r["id"], "Status": "Completed"} for r in created]
    updated = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": updates})
    assert all(r["success"] for r in updated)
    assert emu.record(created[0]["id"])["IsClosed"] is True
    assert emu.record(created[0]["id"])["CompletedDateTime"] == NOW
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.restful("composite/sobjects", method="POST", json={"records": records + records[:1]})
    assert raised.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    fetched = sf.restful(f"composite/sobjects/Task", params={"ids": created[0]["id"], "fields": "Id,Subject"})
    assert fetched[0]["Subject"] == "Call 0"


def test_collection_errors_per_record_and_all_or_none_rollback(emu, sf):
    inactive = emu.user_create("User", {"Username": "x@e.example", "LastName": "Gone", "Email": "x@e.example",
                                        "Alias": "gone", "IsActive": False})
    good = {"attributes": {"type": "Task"}, "Subject": "ok"}
    bad = {"attributes": {"type": "Task"}, "Subject": "bad", "OwnerId": inactive}
    partial = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": [good, bad]})
    assert partial[0]["success"] is True
    assert partial[1]["errors"][0]["statusCode"] == "INACTIVE_OWNER_OR_USER"
    rolled_back = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": [good, bad]})
    assert rolled_back[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert len(emu.records("Task")) == 1


def test_custom_fields_exist_only_after_metadata_api(emu, sf, monkeypatch):
    opportunity = new_opportunity(sf)
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(opportunity, {"Baton_Next_Action__c": "Send proposal"})
    assert raised.value.content[0]["errorCode"] == "INVALID_FIELD"

    # zeep (behind sf.mdapi) opens its own requests.Session, which trusts REQUESTS_CA_BUNDLE.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle_path)
    mdapi = sf.mdapi
    mdapi.CustomField.create([mdapi.CustomField(fullName="Opportunity.Baton_Next_Action__c",
                                                label="Next action", type="Text", length=255)])
    with pytest.raises(Exception, match="DUPLICATE_DEVELOPER_NAME"):
        mdapi.CustomField.create([mdapi.CustomField(fullName="Opportunity.Baton_Next_Action__c",
                                                    label="Next action", type="Text", length=255)])
    assert mdapi.CustomField.read(["Opportunity.Baton_Next_Action__c"]).label == "Next action"
    mdapi.PermissionSet.create([mdapi.PermissionSet(fullName="Baton_Fields_Read", label="Baton", fieldPermissions=[
        mdapi.PermissionSetFieldPermissions(field="Opportunity.Baton_Next_Action__c", editable=True,
                                            readable=True)])])
    assert mdapi.PermissionSet.read(["Baton_Fields_Read"]).fieldPermissions[0].readable is True

    described = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    assert described["Baton_Next_Action__c"]["custom"] is True
    sf.Opportunity.update(opportunity, {"Baton_Next_Action__c": "Send proposal"})
    rows = sf.query("SELECT Baton_Next_Action__c FROM Opportunity WHERE Baton_Next_Action__c != null")["records"]
    assert rows[0]["Baton_Next_Action__c"] == "Send proposal"


def test_owner_change_writes_two_history_rows(emu, sf):
    opportunity = new_opportunity(sf)
    rep = emu.user_create("User", {"Username": "rep@e.example", "FirstName": "Rita", "LastName": "Rep",
                                   "Email": "rep@e.example", "Alias": "rrep"})
    earlier = NOW - timedelta(hours=3)
    emu.user_set_owner("Opportunity", opportunity, rep, at=earlier)
    sf.Opportunity.update(opportunity, {"OwnerId": emu.state.admin_user_id})
    rows = sf.query(f"SELECT Field, DataType, OldValue, NewValue, CreatedDate, CreatedById "
                    f"FROM OpportunityFieldHistory WHERE OpportunityId = '{opportunity}' AND Field = 'Owner' "
                    f"ORDER BY CreatedDate")["records"]
    assert [(r["OldValue"], r["NewValue"]) for r in rows] == [
        (emu.state.integration_user_id, rep), ("Integration User", "Rita Rep"),
        (rep, emu.state.admin_user_id), ("Rita Rep", "Ada Admin")]
    assert rows[0]["CreatedDate"] == "2026-11-20T12:00:00.000+0000"
    assert rows[0]["CreatedById"] == emu.state.admin_user_id  # a person in the UI
    assert rows[2]["CreatedById"] == emu.state.integration_user_id  # the API user


def test_sforce_auto_assign_header_decides_whether_assignment_rules_run(emu, sf):
    queue_id = emu.user_create("Group", {"Name": "Tier 1", "Type": "Queue"})
    emu.set_assignment_rule("Case", queue_id)
    assigned = sf.Case.create({"Subject": "Help"})["id"]
    kept = sf.Case.create({"Subject": "Help"}, headers={"Sforce-Auto-Assign": "FALSE"})["id"]
    assert emu.record(assigned)["OwnerId"] == queue_id
    assert emu.record(kept)["OwnerId"] == emu.state.integration_user_id
    sf.Case.update(kept, {"Subject": "Still mine"}, headers={"Sforce-Auto-Assign": "FALSE"})
    assert emu.record(kept)["OwnerId"] == emu.state.integration_user_id
    sf.Case.update(kept, {"Subject": "Now the queue's"})
    assert emu.record(kept)["OwnerId"] == queue_id


def test_daily_limit_refuses_with_request_limit_exceeded():
    with SalesforceEmulator(daily_api_limit=3) as emu:
        session = emu.requests_session()
        sf = Salesforce(instance_url=emu.url, session_id=emu.session_id, session=session)
        for _ in range(3):
            sf.query("SELECT Id FROM User")
        with pytest.raises(SalesforceRefusedRequest) as raised:
            sf.query("SELECT Id FROM User")
        assert raised.value.content == [{"message": "TotalRequests Limit exceeded.",
                                         "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


def test_fault_injection_then_recovery(emu, sf):
    lock_error = [{"message": "unable to obtain exclusive access to this record", "errorCode": "UNABLE_TO_LOCK_ROW"}]
    emu.faults.add("POST", "*/composite/sobjects", status=503, times=1, body=lock_error)
    payload = {"records": [{"attributes": {"type": "Account"}, "Name": "Acme"}]}
    with pytest.raises(SalesforceGeneralError) as raised:
        sf.restful("composite/sobjects", method="POST", json=payload)
    assert raised.value.status == 503 and raised.value.content == lock_error
    assert sf.restful("composite/sobjects", method="POST", json=payload)[0]["success"] is True
    emu.faults.add("GET", "/services/data/vXX.X/query", status=None, delay=0.2)
    started = time.monotonic()
    sf.query("SELECT Id FROM Account")
    assert time.monotonic() - started >= 0.2
    assert emu.calls["POST /services/data/vXX.X/composite/sobjects"] == 2


def test_user_helpers_write_like_a_person(emu, sf):
    opportunity = new_opportunity(sf)
    task = emu.user_create("Task", {"Subject": "Send revised proposal", "WhatId": opportunity,
                                    "ActivityDate": "2026-11-18"})
    emu.user_complete_task(task)
    emu.user_add_email_message(opportunity, subject="Re: pricing", incoming=False,
                               text_body="I'll send the proposal by Friday.")
    note = emu.user_add_note(opportunity, title="Call notes", body="Budget approved <for> Q3")
    row = sf.query(f"SELECT Id, (SELECT Status, IsClosed, CompletedDateTime FROM Tasks), "
                   f"(SELECT TextBody, Incoming FROM Emails), (SELECT ContentDocumentId FROM ContentDocumentLinks) "
                   f"FROM Opportunity WHERE Id = '{opportunity}'")["records"][0]
    assert row["Tasks"]["records"][0]["IsClosed"] is True
    assert row["Emails"]["records"][0] == {**row["Emails"]["records"][0], "Incoming": False,
                                           "TextBody": "I'll send the proposal by Friday."}
    assert row["ContentDocumentLinks"]["records"][0]["ContentDocumentId"] == note
    preview = sf.query(f"SELECT TextPreview, Content FROM ContentNote WHERE Id = '{note}'")["records"][0]
    assert preview["TextPreview"] == "Budget approved <for> Q3"
    body = sf.session.get(emu.url + preview["Content"], headers={"Authorization": f"Bearer {emu.session_id}"})
    assert body.content == b"<p>Budget approved &lt;for&gt; Q3</p>"


def test_lead_email_is_linked_by_email_message_relation(emu, sf):
    lead = sf.Lead.create({"LastName": "Lee", "Company": "Acme", "Email": "lee@acme.example"})["id"]
    rep = emu.state.admin_user_id
    earlier = NOW - timedelta(hours=2)
    email = emu.user_add_email_message(lead, subject="Pricing", text_body="Can you send pricing by Thursday?",
                                       from_address="lee@acme.example", to_address="admin@baton-emulator.example",
                                       message_date=earlier, by=rep)
    assert emu.record(email)["RelatedToId"] is None  # a Lead is not a "What"
    # What the connector asks: the links of these leads, for emails newer than its watermark.
    soql = ("SELECT RelationId, EmailMessageId, RelationType, RelationObjectType, RelationAddress "
            f"FROM EmailMessageRelation WHERE RelationId IN ('{lead}') AND EmailMessage.MessageDate > ")
    [row] = sf.query(soql + (earlier - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))["records"]
    assert {k: row[k] for k in ("RelationId", "EmailMessageId", "RelationType", "RelationObjectType",
                                "RelationAddress")} == {
        "RelationId": lead, "EmailMessageId": email, "RelationType": "FromAddress", "RelationObjectType": "Lead",
        "RelationAddress": "lee@acme.example"}
    assert sf.query(soql + earlier.strftime("%Y-%m-%dT%H:%M:%SZ"))["totalSize"] == 0
    both = sf.query(f"SELECT RelationId, RelationType FROM EmailMessageRelation WHERE EmailMessageId = '{email}'")
    assert {(r["RelationId"], r["RelationType"]) for r in both["records"]} == {(lead, "FromAddress"),
                                                                              (rep, "ToAddress")}

    contact = emu.user_create("Contact", {"LastName": "Cole", "Email": "cole@acme.example"})
    reply = emu.user_add_email_message(contact, subject="Re: pricing", text_body="Attached.", incoming=False,
                                       from_address="admin@baton-emulator.example", to_address="cole@acme.example")
    rows = sf.query(f"SELECT RelationType, RelationAddress FROM EmailMessageRelation "
                    f"WHERE RelationId = '{contact}'")["records"]
    assert [(r["RelationType"], r["RelationAddress"]) for r in rows] == [("ToAddress", "cole@acme.example")]
    opportunity = new_opportunity(sf)
    emu.user_add_email_message(opportunity, subject="Hi", text_body="Hello")
    assert sf.query("SELECT COUNT() FROM EmailMessageRelation")["totalSize"] == 4  # none for the Opportunity
    assert emu.record(reply)["RelatedToId"] is None


def test_field_definition_tells_whether_owner_history_is_tracked(emu, sf):
    soql = ("SELECT EntityDefinition.QualifiedApiName, IsFieldHistoryTracked FROM FieldDefinition "
            "WHERE EntityDefinition.QualifiedApiName IN ('Lead', 'Opportunity', 'Account', 'Case') "
            "AND QualifiedApiName = 'OwnerId'")
    tracked = {r["EntityDefinition"]["QualifiedApiName"]: r["IsFieldHistoryTracked"] for r in sf.query(soql)["records"]}
    assert tracked == {"Lead": True, "Opportunity": True, "Account": True, "Case": True}

    emu.set_field_history_tracking("Lead", "OwnerId", False)
    tracked = {r["EntityDefinition"]["QualifiedApiName"]: r["IsFieldHistoryTracked"] for r in sf.query(soql)["records"]}
    assert tracked["Lead"] is False and tracked["Opportunity"] is True
    lead = sf.Lead.create({"LastName": "Lee", "Company": "Acme"})["id"]
    emu.user_set_owner("Lead", lead, emu.state.admin_user_id)
    assert sf.query(f"SELECT COUNT() FROM LeadHistory WHERE LeadId = '{lead}' AND Field = 'Owner'")["totalSize"] == 0

    row = sf.query("SELECT DurableId, DataType, EntityDefinitionId, IsNillable FROM FieldDefinition "
                   "WHERE EntityDefinitionId = 'Opportunity' AND QualifiedApiName = 'OwnerId'")["records"][0]
    assert row["attributes"]["url"].endswith("/sobjects/FieldDefinition/Opportunity.OwnerId")
    assert (row["DurableId"], row["DataType"], row["EntityDefinitionId"], row["IsNillable"]) == (
        "Opportunity.OwnerId", "Lookup(User)", "Opportunity", False)
    # Fields created through the Metadata API show up too; a query must name its objects.
    assert sf.query("SELECT COUNT() FROM FieldDefinition WHERE EntityDefinition.QualifiedApiName = 'Case' "
                    "AND QualifiedApiName = 'Baton_Follow_Up_Status__c'")["totalSize"] == 0
    emu.seed(0, object_types=("case",), custom_fields=True)
    assert sf.query("SELECT DataType FROM FieldDefinition WHERE EntityDefinition.QualifiedApiName = 'Case' "
                    "AND QualifiedApiName = 'Baton_Follow_Up_Status__c'")["records"][0]["DataType"] == "Picklist"
    with pytest.raises(SalesforceMalformedRequest, match="FieldDefinition requires a filter"):
        sf.query("SELECT QualifiedApiName FROM FieldDefinition WHERE QualifiedApiName = 'OwnerId'")


# --------------------------------------------------------------------------- outbound messages
class _Listener:
    """A local Outbound Message endpoint that fails the first `failures` posts."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.bodies: list[bytes] = []
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/salesforce/outbound"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @Request.application
    def app(self, request: Request) -> Response:
        self.bodies.append(request.get_data())
        if len(self.bodies) <= self.failures:
            return Response("busy", status=503)
        ack = (f'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
               f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
               f"</soapenv:Body></soapenv:Envelope>")
        return Response(ack, content_type="text/xml")


def test_outbound_message_delivery_and_retry(emu, sf):
    listener = _Listener(failures=2)
    try:
        emu.outbound.configure(listener.url, max_attempts=4, retry_delays=(0.01, 0.02))
        action_id = emu.outbound.add_rule("Opportunity", ["OwnerId", "StageName", "Amount"],
                                          trigger_fields=["OwnerId", "StageName"])
        opportunity = new_opportunity(sf)
        sf.Opportunity.update(opportunity, {"NextStep": "no trigger field"})
        emu.user_set_owner("Opportunity", opportunity, emu.state.admin_user_id)
        assert emu.outbound.flush(timeout=5)
    finally:
        listener.server.shutdown()
    assert (emu.outbound.delivered, emu.outbound.failed, emu.outbound.attempts) == (2, 0, 4)
    root = ElementTree.fromstring(listener.bodies[-1])
    notifications = root.find(f".//{{{OUTBOUND_NS}}}notifications")
    assert notifications.findtext(f"{{{OUTBOUND_NS}}}OrganizationId") == emu.org_id
    assert notifications.findtext(f"{{{OUTBOUND_NS}}}ActionId") == action_id
    assert notifications.find(f"{{{OUTBOUND_NS}}}SessionId").get(f"{{{XSI}}}nil") == "true"
    sobject = notifications.find(f"{{{OUTBOUND_NS}}}Notification/{{{OUTBOUND_NS}}}sObject")
    assert sobject.get(f"{{{XSI}}}type") == "sf:Opportunity"
    assert sobject.findtext(f"{{{SOBJECT_NS}}}Id") == opportunity
    assert sobject.find(f"{{{SOBJECT_NS}}}Amount").get(f"{{{XSI}}}nil") == "true"
    # A retry waits for its back-off while newer changes go out: delivery order is not change order.
    owners = {ElementTree.fromstring(b).findtext(f".//{{{SOBJECT_NS}}}OwnerId") for b in listener.bodies[2:]}
    assert owners == {emu.state.integration_user_id, emu.state.admin_user_id}


def test_outbound_gives_up_after_max_attempts(emu, sf):
    listener = _Listener(failures=100)
    try:
        emu.outbound.configure(listener.url, max_attempts=3, retry_delays=(0.01,))
        emu.outbound.add_rule("Lead", ["Status"])
        sf.Lead.create({"LastName": "Lee", "Company": "Acme"})
        assert emu.outbound.flush(timeout=5)
    finally:
        listener.server.shutdown()
    assert (emu.outbound.delivered, emu.outbound.failed, len(listener.bodies)) == (0, 1, 3)


def test_outbound_rules_from_the_manifest(emu, sf):
    listener = _Listener()
    try:
        emu.outbound.configure(listener.url)
        actions = emu.outbound.add_manifest_rules()
        assert emu.outbound.add_manifest_rules() == actions  # again: the same rules, not twice as many
        assert set(actions) == {"Baton_Lead_Changed", "Baton_Opportunity_Changed", "Baton_Account_Changed",
                                "Baton_Case_Changed"}
        assert len(emu.outbound.rules) == 4
        opportunity = new_opportunity(sf)  # created: fires
        sf.Opportunity.update(opportunity, {"NextStep": "Call"})  # not a trigger field: silent
        emu.user_set_owner("Opportunity", opportunity, emu.state.admin_user_id)  # fires
        sf.Lead.create({"LastName": "Lee", "Company": "Acme"})  # fires
        emu.user_create("Task", {"Subject": "Call", "WhatId": opportunity})  # no rule for Task
        assert emu.outbound.flush(timeout=5)
    finally:
        listener.server.shutdown()
    assert emu.outbound.delivered == 3
    sent = []
    for body in listener.bodies:
        notifications = ElementTree.fromstring(body).find(f".//{{{OUTBOUND_NS}}}notifications")
        action = notifications.findtext(f"{{{OUTBOUND_NS}}}ActionId")
        for sobject in notifications.iter(f"{{{OUTBOUND_NS}}}sObject"):
            sent.append((action, sobject.get(f"{{{XSI}}}type"), [child.tag.rpartition("}")[2] for child in sobject]))
    fields = ["Id", "OwnerId", "LastModifiedDate", "LastModifiedById", "SystemModstamp"]
    assert sorted(sent) == sorted([(actions["Baton_Opportunity_Changed"], "sf:Opportunity", fields)] * 2
                                  + [(actions["Baton_Lead_Changed"], "sf:Lead", fields)])


# --------------------------------------------------------------------------- seeding
def test_seed_is_deterministic_and_fast():
    first, second = SalesforceEmulator(clock=lambda: NOW), SalesforceEmulator(clock=lambda: NOW)
    assert first.seed(300, rng_seed=3) == second.seed(300, rng_seed=3)
    assert first.records("Opportunity") == second.records("Opportunity")
    users = first.records("User")
    assert sum(not u["IsActive"] for u in users) == 2
    assert {g["Type"] for g in first.records("Group")} == {"Queue"}
    assert any(lead["OwnerId"].startswith("00G") for lead in first.records("Lead"))
    assert any(lead["IsConverted"] for lead in first.records("Lead"))
    assert {e["Incoming"] for e in first.records("EmailMessage")} == {True, False}

    big = SalesforceEmulator(clock=lambda: NOW)
    big.seed(10_000, object_types=("opportunity",))  # its speed is measured by bench/api_economy.py
    assert len(big.records("Opportunity")) == 10_000


def test_restricted_picklist_from_seeded_baton_fields(emu, sf):
    emu.seed(20, object_types=("opportunity",), custom_fields=True)
    opportunity = emu.records("Opportunity")[0]["Id"]
    sf.Opportunity.update(opportunity, {"Baton_Follow_Up_Status__c": "overdue"})
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(opportunity, {"Baton_Follow_Up_Status__c": "late"})
    assert raised.value.content[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
