"""SalesforceConnector: auth, error mapping, session refresh and the write discipline, one HTTP
exchange at a time with `responses` (simple-salesforce runs on requests).

The same behaviour over real HTTPS against the Salesforce emulator is tested
further down (`emu` fixture)."""
import json
from datetime import datetime, timezone

import pytest
import responses

from adapter.actions import AssignOwner, CreateTask, LogTransfer, Plan, SetFields, UpdateTask
from adapter.errors import ConfigurationError, FatalCrmError, RetriableCrmError
from adapter.model import RecordRef
from connectors.salesforce.auth import SalesforceSettings, endpoint_label, login_host
from connectors.salesforce.connector import SalesforceConnector

LOGIN = "https://login.salesforce.com/services/Soap/u/59.0"
BASE = "https://acme.my.salesforce.com/services/data/v59.0"
PASSWORD_SETTINGS = {
    "SALESFORCE_USERNAME": "baton@acme.example", "SALESFORCE_PASSWORD": "hunter2",
    "SALESFORCE_SECURITY_TOKEN": "TOKEN123", "SALESFORCE_API_VERSION": "59.0",
    "BATON_SALESFORCE_TIMEZONE": "America/New_York",
}
OPP = "0065g000001AbCdAAK"
OPP2 = "0065g000001AbCeAAK"


def soap_login_body(session_id: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com">'
        "<soapenv:Body><loginResponse><result>"
        "<serverUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/00D5g000004ABCD</serverUrl>"
        f"<sessionId>{session_id}</sessionId></result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )


def make(settings=None, **kwargs) -> SalesforceConnector:
    sleeps = []
    connector = SalesforceConnector(SalesforceSettings.from_mapping(settings or PASSWORD_SETTINGS),
                                    sleep=sleeps.append, **kwargs)
    connector.sleeps = sleeps
    return connector


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, LOGIN, body=soap_login_body("SESSION-1"), content_type="text/xml")
        mock.add(responses.POST, LOGIN, body=soap_login_body("SESSION-2"), content_type="text/xml")
        yield mock


def collection_result(*ids, errors=None):
    out = []
    for record_id in ids:
        if errors and record_id in errors:
            out.append({"id": None, "success": False, "errors": [errors[record_id]]})
        else:
            out.append({"id": record_id, "success": True, "errors": []})
    return out


def ref(record_id=OPP, object_type="opportunity"):
    return RecordRef("salesforce", object_type, record_id)


# --- settings and auth -------------------------------------------------------------------

def test_missing_credentials_name_the_variables():
    with pytest.raises(ConfigurationError) as caught:
        SalesforceConnector.from_settings({"SALESFORCE_USERNAME": "someone"})
    for name in ("SALESFORCE_PRIVATE_KEY_FILE", "SALESFORCE_PASSWORD", "SALESFORCE_CLIENT_SECRET",
                 "SALESFORCE_SESSION_ID", "SALESFORCE_INSTANCE_URL"):
        assert name in str(caught.value)


def test_client_credentials_need_a_my_domain():
    with pytest.raises(ConfigurationError, match="My Domain"):
        SalesforceSettings.from_mapping({"SALESFORCE_CLIENT_ID": "id", "SALESFORCE_CLIENT_SECRET": "s"})
    settings = SalesforceSettings.from_mapping({"SALESFORCE_CLIENT_ID": "id", "SALESFORCE_CLIENT_SECRET": "s",
                                                "SALESFORCE_DOMAIN": "acme.my"})
    assert settings.auth_method == "client_credentials" and settings.login_host == "acme.my.salesforce.com"


@pytest.mark.parametrize("settings,method", [
    ({"SALESFORCE_CLIENT_ID": "id", "SALESFORCE_USERNAME": "u", "SALESFORCE_PRIVATE_KEY_FILE": "/k.pem"}, "jwt"),
    ({"SALESFORCE_USERNAME": "u", "SALESFORCE_PASSWORD": "p"}, "password"),
    ({"SALESFORCE_SESSION_ID": "s", "SALESFORCE_INSTANCE_URL": "https://x.my.salesforce.com"}, "session"),
])
def test_auth_methods(settings, method):
    assert SalesforceSettings.from_mapping(settings).auth_method == method


def test_login_hosts():
    assert login_host("login") == "login.salesforce.com"
    assert login_host("test") == "test.salesforce.com"
    assert login_host("acme.my") == "acme.my.salesforce.com"
    assert login_host("https://acme.my.salesforce.com/") == "acme.my.salesforce.com"
    assert login_host("127.0.0.1:8443") == "127.0.0.1:8443"


def test_secrets_stay_out_of_repr():
    settings = SalesforceSettings.from_mapping({**PASSWORD_SETTINGS, "SALESFORCE_CLIENT_SECRET": "shh-secret",
                                                "SALESFORCE_SESSION_ID": "00D!live-session"})
    text = repr(settings) + repr(SalesforceConnector(settings))
    for secret in ("hunter2", "TOKEN123", "shh-secret", "live-session"):
        assert secret not in text


def test_bad_numbers_and_reserve_are_configuration_errors():
    with pytest.raises(ConfigurationError, match="BATON_SALESFORCE_API_RESERVE"):
        SalesforceSettings.from_mapping({**PASSWORD_SETTINGS, "BATON_SALESFORCE_API_RESERVE": "lots"})
    with pytest.raises(ConfigurationError, match="BATON_SALESFORCE_TIMEOUT"):
        SalesforceSettings.from_mapping({**PASSWORD_SETTINGS, "BATON_SALESFORCE_TIMEOUT": "soon"})


def test_every_request_has_a_timeout(rsps):
    rsps.add(responses.GET, f"{BASE}/query/", json={"done": True, "totalSize": 0, "records": []})
    connector = make({**PASSWORD_SETTINGS, "BATON_SALESFORCE_TIMEOUT": "7"})
    connector.api.query("SELECT Id FROM User")
    assert all(call.request.req_kwargs["timeout"] == 7 for call in rsps.calls)


def test_endpoint_labels():
    assert endpoint_label("GET", f"{BASE}/query/?q=x") == "GET query"
    assert endpoint_label("GET", f"{BASE}/query/01gxx-2000") == "GET query_more"
    assert endpoint_label("PATCH", f"{BASE}/composite/sobjects") == "PATCH composite/sobjects"
    assert endpoint_label("POST", "https://h/services/Soap/m/59.0/00D") == "POST metadata"
    assert endpoint_label("POST", LOGIN) == "POST login"


# --- session refresh and headers ---------------------------------------------------------

def test_auto_assign_header_survives_a_session_refresh(rsps):
    expired = [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]
    rsps.add(responses.PATCH, f"{BASE}/composite/sobjects", json=expired, status=401)
    rsps.add(responses.PATCH, f"{BASE}/composite/sobjects", json=collection_result(OPP))
    connector = make()
    result = connector.apply([Plan(ref(), "overdue", (SetFields({"follow_up_status": "overdue"}),))])
    assert result.applied == [ref()] and not result.failures
    patches = [c.request for c in rsps.calls if c.request.method == "PATCH"]
    assert [p.headers["Authorization"] for p in patches] == ["Bearer SESSION-1", "Bearer SESSION-2"]
    assert all(p.headers["Sforce-Auto-Assign"] == "FALSE" for p in patches)
    assert patches[0].body == patches[1].body
    assert connector.api.logins == 2


def test_a_second_expired_session_is_not_refreshed_forever(rsps):
    expired = [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]
    rsps.add(responses.GET, f"{BASE}/query/", json=expired, status=401)
    connector = make()
    with pytest.raises(FatalCrmError, match="INVALID_SESSION_ID"):
        connector.api.query("SELECT Id FROM User")
    assert connector.api.logins == 2  # the first login and one refresh


def test_a_bare_session_cannot_be_refreshed():
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, "https://x.my.salesforce.com/services/data/v59.0/query/", status=401,
                 json=[{"errorCode": "INVALID_SESSION_ID", "message": "expired"}])
        connector = make({"SALESFORCE_SESSION_ID": "00D!abc", "SALESFORCE_INSTANCE_URL": "https://x.my.salesforce.com",
                          "SALESFORCE_API_VERSION": "59.0"})
        with pytest.raises(FatalCrmError, match="only SALESFORCE_SESSION_ID"):
            connector.api.query("SELECT Id FROM User")


def test_login_failure_is_a_configuration_error():
    with responses.RequestsMock() as rsps:
        fault = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                 'xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault>'
                 "<faultcode>INVALID_LOGIN</faultcode><detail><sf:LoginFault>"
                 "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username"
                 "</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>")
        rsps.add(responses.POST, LOGIN, body=fault, status=500, content_type="text/xml")
        with pytest.raises(ConfigurationError, match="INVALID_LOGIN") as caught:
            make().api.query("SELECT Id FROM User")
        assert "hunter2" not in str(caught.value)


# --- busy answers, limits ----------------------------------------------------------------

def test_request_limit_exceeded_backs_off_then_is_retriable(rsps):
    limit = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]
    rsps.add(responses.GET, f"{BASE}/query/", json=limit, status=403)
    connector = make()
    with pytest.raises(RetriableCrmError) as caught:
        connector.api.query("SELECT Id FROM User")
    assert connector.sleeps == [1.0, 4.0]
    assert caught.value.retry_after == 60.0
    assert sum(1 for c in rsps.calls if c.request.method == "GET") == 3


def test_request_limit_exceeded_recovers(rsps):
    limit = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentPerOrgLongTxn Limit exceeded."}]
    rsps.add(responses.GET, f"{BASE}/query/", json=limit, status=403)
    rsps.add(responses.GET, f"{BASE}/query/", json={"done": True, "totalSize": 1, "records": [{"Id": "005"}]})
    connector = make()
    assert connector.api.query("SELECT Id FROM User") == [{"Id": "005"}]
    assert connector.sleeps == [1.0]


def test_the_api_reserve_slows_down_before_the_org_runs_out(rsps):
    rsps.add(responses.GET, f"{BASE}/query/", json={"done": True, "totalSize": 0, "records": []},
             headers={"Sforce-Limit-Info": "api-usage=8999/10000"})
    rsps.add(responses.GET, f"{BASE}/query/", json={"done": True, "totalSize": 0, "records": []},
             headers={"Sforce-Limit-Info": "api-usage=9000/10000"})
    connector = make()
    connector.api.query("SELECT Id FROM User")
    assert connector.api.remaining == 1001
    connector.api.query("SELECT Id FROM User")
    with pytest.raises(RetriableCrmError, match="9000 of 10000") as caught:
        connector.api.query("SELECT Id FROM User")
    assert caught.value.retry_after == 900.0
    with pytest.raises(RetriableCrmError):
        connector.apply([Plan(ref(), "overdue", (SetFields({"follow_up_status": "overdue"}),))])
    assert not [c for c in rsps.calls if c.request.method == "PATCH"]


def test_absolute_reserve(rsps):
    rsps.add(responses.GET, f"{BASE}/query/", json={"done": True, "totalSize": 0, "records": []},
             headers={"Sforce-Limit-Info": "api-usage=80/100; per-app-api-usage=2/50(appName=baton)"})
    connector = make({**PASSWORD_SETTINGS, "BATON_SALESFORCE_API_RESERVE": "25"})
    connector.api.query("SELECT Id FROM User")
    with pytest.raises(RetriableCrmError):
        connector.api.query("SELECT Id FROM User")


# --- apply: results per record -----------------------------------------------------------

def test_per_record_errors_become_failures_without_failing_the_rest(rsps):
    validation = {"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Close date required",
                  "fields": ["CloseDate"]}
    rsps.add(responses.PATCH, f"{BASE}/composite/sobjects",
             json=collection_result(OPP, OPP2, errors={OPP2: validation}))
    connector = make()
    result = connector.apply([
        Plan(ref(OPP), "ownerless", (AssignOwner("0055g000001AAAAAAA", "round robin"),
                                     SetFields({"follow_up_status": "on_track"}))),
        Plan(ref(OPP2), "overdue", (SetFields({"follow_up_status": "overdue"}),)),
    ])
    assert result.applied == [ref(OPP)]
    [failure] = result.failures
    assert failure.ref == ref(OPP2) and not failure.retriable
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION: Close date required (CloseDate)" in failure.reason
    body = json.loads(rsps.calls[-1].request.body)
    assert body["allOrNone"] is False
    assert body["records"][0] == {"attributes": {"type": "Opportunity"}, "Id": OPP,
                                  "OwnerId": "0055g000001AAAAAAA", "Baton_Follow_Up_Status__c": "on_track"}


def test_locked_rows_are_sent_again_then_retriable(rsps):
    locked = {"statusCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access"}
    rsps.add(responses.PATCH, f"{BASE}/composite/sobjects",
             json=collection_result(OPP, OPP2, errors={OPP2: locked}))
    rsps.add(responses.PATCH, f"{BASE}/composite/sobjects", json=collection_result(OPP2, errors={OPP2: locked}))
    rsps.add(responses.PATCH, f"{BASE}/composite/sobjects", json=collection_result(OPP2, errors={OPP2: locked}))
    connector = make()
    result = connector.apply([Plan(ref(r), "overdue", (SetFields({"follow_up_status": "overdue"}),))
                              for r in (OPP, OPP2)])
    assert result.applied == [ref(OPP)]
    assert result.failures[0].retriable and "UNABLE_TO_LOCK_ROW" in result.failures[0].reason
    resent = [json.loads(c.request.body)["records"] for c in rsps.calls if c.request.method == "PATCH"]
    assert [len(r) for r in resent] == [2, 1, 1] and resent[1][0]["Id"] == OPP2
    assert connector.sleeps == [1.0, 4.0]


def test_tasks_and_transfers_are_written_as_salesforce_tasks(rsps):
    rsps.add(responses.POST, f"{BASE}/composite/sobjects", json=collection_result("00T1", "00T2", "00T3"))
    rsps.add(responses.PATCH, f"{BASE}/composite/sobjects", json=collection_result("00T9"))
    lead = ref("00Q5g000000AbCdEAK", "lead")
    due = datetime(2024, 5, 2, 3, 0, tzinfo=timezone.utc)  # still May 1st in New York
    connector = make()
    result = connector.apply([
        Plan(ref(), "no_next_action", (
            CreateTask("Set the next step", due, "0055g000001AAAAAAA", "baton:prompt", body="why", priority="HIGH"),
            LogTransfer("Ann", "Bob", datetime(2024, 5, 1, 14, 30, tzinfo=timezone.utc), "Carol", "manual"),
            UpdateTask("00T9", owner_id="0055g000002BBBBAAA", completed=True),
        )),
        Plan(lead, "no_next_action", (CreateTask("Call back", due, "0055g000001AAAAAAA", "baton:prompt"),)),
    ])
    assert result.applied == [ref(), lead] and not result.failures
    posted = json.loads(next(c for c in rsps.calls if c.request.method == "POST" and "composite" in c.request.url)
                        .request.body)["records"]
    prompt, transfer, lead_task = posted
    assert prompt == {
        "attributes": {"type": "Task"}, "WhatId": OPP, "Subject": "Set the next step", "ActivityDate": "2024-05-01",
        "Status": "Not Started", "Priority": "High", "OwnerId": "0055g000001AAAAAAA", "Description": "why",
        "Baton_Source__c": f"baton:prompt|salesforce:opportunity:{OPP}",
    }
    assert transfer["Subject"] == "Ownership transferred: Ann → Bob"
    assert transfer["Status"] == "Completed" and transfer["TaskSubtype"] == "Task"
    assert transfer["ActivityDate"] == "2024-05-01"
    assert transfer["Baton_Source__c"] == f"baton:transfer:2024-05-01T14:30:00Z:->-|salesforce:opportunity:{OPP}"
    assert "Changed by: Carol" in transfer["Description"] and "Why: manual" in transfer["Description"]
    assert lead_task["WhoId"] == lead.id and "WhatId" not in lead_task
    patched = json.loads(next(c for c in rsps.calls if c.request.method == "PATCH").request.body)["records"]
    assert patched == [{"attributes": {"type": "Task"}, "Id": "00T9", "OwnerId": "0055g000002BBBBAAA",
                        "Status": "Completed"}]
    assert all(c.request.headers.get("Sforce-Auto-Assign") == "FALSE"
               for c in rsps.calls if "composite" in c.request.url)


def test_a_create_with_unknown_outcome_is_looked_up_before_it_is_sent_again(rsps):
    rsps.add(responses.POST, f"{BASE}/composite/sobjects", status=503, body="upstream timeout")
    marker = f"baton:prompt|salesforce:opportunity:{OPP}"
    rsps.add(responses.GET, f"{BASE}/query/",
             json={"done": True, "totalSize": 1, "records": [{"Id": "00T1", "Baton_Source__c": marker}]})
    rsps.add(responses.POST, f"{BASE}/composite/sobjects", json=collection_result("00T2"))
    due = datetime(2024, 5, 2, 15, 0, tzinfo=timezone.utc)
    connector = make()
    result = connector.apply([Plan(ref(r), "no_next_action",
                                   (CreateTask("Set the next step", due, "0055g000001AAAAAAA", "baton:prompt"),))
                              for r in (OPP, OPP2)])
    assert sorted(result.applied) == sorted([ref(OPP), ref(OPP2)]) and not result.failures
    posts = [json.loads(c.request.body)["records"] for c in rsps.calls
             if c.request.method == "POST" and "composite" in c.request.url]
    assert [len(p) for p in posts] == [2, 1]
    assert posts[1][0]["WhatId"] == OPP2  # only the missing one is created again
    lookup = next(c.request for c in rsps.calls if c.request.method == "GET")
    assert "Baton_Source__c IN" in lookup.params["q"] and "CreatedDate >=" in lookup.params["q"]
    assert connector.sleeps == []  # a create is never blindly retried


def test_a_malformed_collection_call_fails_its_records_only(rsps):
    bad = [{"errorCode": "JSON_PARSER_ERROR", "message": "Unexpected character"}]
    rsps.add(responses.PATCH, f"{BASE}/composite/sobjects", json=bad, status=400)
    rsps.add(responses.POST, f"{BASE}/composite/sobjects", json=collection_result("00T1"))
    connector = make()
    due = datetime(2024, 5, 2, 15, 0, tzinfo=timezone.utc)
    result = connector.apply([
        Plan(ref(OPP), "overdue", (SetFields({"follow_up_status": "overdue"}),)),
        Plan(ref(OPP2), "no_next_action", (CreateTask("Next", due, "0055g000001AAAAAAA", "baton:prompt"),)),
    ])
    assert result.applied == [ref(OPP2)]
    assert result.failures[0].ref == ref(OPP) and "JSON_PARSER_ERROR" in result.failures[0].reason


def test_a_limit_hit_midway_keeps_what_was_written(rsps):
    limit = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]
    rsps.add(responses.PATCH, f"{BASE}/composite/sobjects", json=collection_result(OPP))
    rsps.add(responses.POST, f"{BASE}/composite/sobjects", json=limit, status=403)
    connector = make(backoff=())
    due = datetime(2024, 5, 2, 15, 0, tzinfo=timezone.utc)
    result = connector.apply([
        Plan(ref(OPP), "overdue", (SetFields({"follow_up_status": "overdue"}),)),
        Plan(ref(OPP2), "no_next_action", (CreateTask("Next", due, "0055g000001AAAAAAA", "baton:prompt"),)),
    ])
    assert result.applied == [ref(OPP)]
    assert result.failures[0].ref == ref(OPP2) and result.failures[0].retriable


# === against the Salesforce emulator, over real HTTPS with the real simple-salesforce ========

emulator_module = pytest.importorskip("connectors.salesforce.emulator")
from connectors.salesforce.metadata import desired_state  # noqa: E402


def _install_fields(emu) -> None:
    """Baton's fields, created through the emulator's Metadata store (it has no `Activity`
    object, so the task marker goes on Task directly; see test_salesforce_metadata.py)."""
    from adapter.manifest import load_manifest

    for d in desired_state(load_manifest()).fields:
        body = [("fullName", d.full_name.replace("Activity.", "Task.")), ("label", d.label), ("type", d.type)]
        body += [(k, str(v)) for k, v in (("length", d.length), ("precision", d.precision), ("scale", d.scale),
                                          ("defaultValue", d.default_value)) if v is not None]
        if d.picklist:
            body.append(("valueSet", [("restricted", "true"), ("valueSetDefinition", [
                ("value", [("fullName", v), ("label", label)]) for v, label in d.picklist])]))
        emu.metadata.save("CustomField", body, mode="upsert")


@pytest.fixture
def emu():
    with emulator_module.SalesforceEmulator() as emulator:
        _install_fields(emulator)
        yield emulator


def emulator_connector(emu, **settings) -> SalesforceConnector:
    credentials = emu.credentials
    values = {
        "SALESFORCE_DOMAIN": emu.url.removeprefix("https://"), "SALESFORCE_USERNAME": credentials.username,
        "SALESFORCE_PASSWORD": credentials.password, "SALESFORCE_SECURITY_TOKEN": credentials.security_token,
        "BATON_SALESFORCE_CA_BUNDLE": emu.ca_bundle_path, "SALESFORCE_API_VERSION": emu.api_version, **settings,
    }
    sleeps = []
    connector = SalesforceConnector(SalesforceSettings.from_mapping(values), sleep=sleeps.append)
    connector.sleeps = sleeps
    return connector


def opportunities(emu, n, **fields):
    return [emu.user_create("Opportunity", {"Name": f"Deal {i}", "StageName": "Prospecting",
                                            "CloseDate": "2030-12-31", **fields}) for i in range(n)]


def status_plans(ids, status="overdue", object_type="opportunity"):
    return [Plan(ref(i, object_type), status, (SetFields({"follow_up_status": status}),)) for i in ids]


def test_load_reads_records_tasks_history_emails_and_notes(emu):
    ann = emu.user_create("User", {"Username": "ann@x.example", "LastName": "Ann", "Email": "ann@x.example",
                                   "Alias": "ann"})
    [opp] = opportunities(emu, 1)
    emu.user_set_owner("Opportunity", opp, ann)
    task = emu.user_create("Task", {"Subject": "Send proposal", "WhatId": opp, "ActivityDate": "2030-01-01",
                                    "OwnerId": ann})
    emu.user_create("Task", {"Subject": "Done already", "WhatId": opp, "Status": "Completed"})
    emu.user_add_email_message(opp, subject="Re: pricing", text_body="Can you send the contract by Friday?")
    emu.user_add_note(opp, title="Call notes", body="Maria will call them tomorrow")
    connector = emulator_connector(emu)
    result = connector.load([ref(opp), ref("0065g0000009999AAA")])
    assert result.missing == [ref("0065g0000009999AAA")]
    [snapshot] = result.snapshots
    assert snapshot.name == "Deal 0" and snapshot.owner_id == ann and not snapshot.is_closed
    assert snapshot.stage == "Prospecting"
    assert [t.id for t in snapshot.tasks] == [task]  # open tasks only (and Baton's own)
    assert snapshot.tasks[0].due.astimezone(connector.timezone()).date().isoformat() == "2030-01-01"
    assert [c.owner_id for c in snapshot.owner_history] == [ann]  # two history rows, one change
    assert snapshot.owner_history[0].changed_by == "Ada Admin"
    assert {a.kind for a in snapshot.activities} == {"email", "note"}
    email = next(a for a in snapshot.activities if a.kind == "email")
    assert email.direction == "inbound" and "contract by Friday" in email.body
    assert snapshot.url.endswith(f"/lightning/r/Opportunity/{opp}/view")
    assert snapshot.fields["follow_up_status"] is None


def test_history_off_is_reported_as_untracked(emu):
    [opp] = opportunities(emu, 1)
    connector = emulator_connector(emu)
    connector.api.query = _failing_history(connector.api.query)
    [snapshot] = connector.load([ref(opp)]).snapshots
    assert snapshot.owner_history == () and snapshot.owner_history_tracked is False


def _failing_history(query):
    def patched(soql, *args, **kwargs):
        if "FieldHistory" in soql:
            raise FatalCrmError("query: INVALID_TYPE: sObject type 'OpportunityFieldHistory' is not supported.")
        return query(soql, *args, **kwargs)
    return patched


def test_queues_are_owners(emu):
    queue = emu.user_create("Group", {"Name": "Inbound leads", "Type": "Queue"})
    lead = emu.user_create("Lead", {"LastName": "Lee", "Company": "Acme", "OwnerId": queue})
    connector = emulator_connector(emu)
    owners = connector.owners()
    assert owners.get(queue).is_queue and owners.get(queue).name == "Inbound leads"
    assert not any(o.is_queue for o in owners.people())
    [snapshot] = connector.load([ref(lead, "lead")]).snapshots
    assert snapshot.owner_id == queue and snapshot.name == "Lee (Acme)"


def test_a_200_record_load_and_apply_is_a_handful_of_calls(emu):
    ids = opportunities(emu, 200)
    connector = emulator_connector(emu)
    connector.owners()
    connector.timezone()
    emu.reset_calls()
    loaded = connector.load([ref(i) for i in ids])
    assert len(loaded.snapshots) == 200
    applied = connector.apply(status_plans(ids))
    assert len(applied.applied) == 200 and not applied.failures
    calls = {k: v for k, v in emu.calls.items() if not k.startswith("SOQL ")}
    assert sum(calls.values()) <= 6, calls
    assert calls["PATCH /services/data/vXX.X/composite/sobjects"] == 1


def test_450_updates_take_three_collection_calls(emu):
    ids = opportunities(emu, 450)
    connector = emulator_connector(emu)
    emu.reset_calls()
    result = connector.apply(status_plans(ids, "on_track"))
    assert len(result.applied) == 450
    assert emu.calls["PATCH /services/data/vXX.X/composite/sobjects"] == 3
    assert {emu.record(i)["Baton_Follow_Up_Status__c"] for i in ids} == {"on_track"}


def test_partial_failure_keeps_the_rest(emu):
    good, bad = opportunities(emu, 2)
    connector = emulator_connector(emu)
    result = connector.apply([
        Plan(ref(good), "overdue", (SetFields({"follow_up_status": "overdue"}),)),
        Plan(ref(bad), "ownerless", (AssignOwner("0055g000000NoPeAAA", "round robin"),
                                     SetFields({"follow_up_status": "on_track"}))),
    ])
    assert result.applied == [ref(good)]
    assert result.failures[0].ref == ref(bad) and not result.failures[0].retriable
    assert "0055g000000NoPeAAA" in result.failures[0].reason or "OwnerId" in result.failures[0].reason
    assert emu.record(good)["Baton_Follow_Up_Status__c"] == "overdue"
    assert emu.record(bad)["Baton_Follow_Up_Status__c"] is None


def test_an_expired_session_is_refreshed_and_the_write_keeps_auto_assign_off(emu):
    queue_owner = emu.user_create("User", {"Username": "q@x.example", "LastName": "Rule", "Email": "q@x.example",
                                           "Alias": "rule"})
    rep = emu.user_create("User", {"Username": "rep@x.example", "LastName": "Rep", "Email": "rep@x.example",
                                   "Alias": "rep"})
    lead = emu.user_create("Lead", {"LastName": "Lee", "Company": "Acme"})
    emu.set_assignment_rule("Lead", queue_owner)  # an active rule that would take the lead away
    connector = emulator_connector(emu)
    connector.owners()
    emu.expire_sessions()
    result = connector.apply([Plan(ref(lead, "lead"), "ownerless", (AssignOwner(rep, "round robin"),))])
    assert result.applied == [ref(lead, "lead")]
    assert emu.record(lead)["OwnerId"] == rep  # the header survived the refresh
    assert connector.api.logins == 2


def test_request_limit_exceeded_backs_off_against_the_emulator(emu):
    [opp] = opportunities(emu, 1)
    connector = emulator_connector(emu)
    connector.owners()
    emu.faults.add("PATCH", "*/composite/sobjects", status=403, times=2)
    result = connector.apply(status_plans([opp]))
    assert result.applied == [ref(opp)] and connector.sleeps == [1.0, 4.0]
    emu.faults.add("PATCH", "*/composite/sobjects", status=403, times=3)
    with pytest.raises(RetriableCrmError):
        connector.apply(status_plans([opp], "on_track"))


def test_tasks_created_once_even_when_the_answer_is_lost(emu):
    [opp] = opportunities(emu, 1)
    connector = emulator_connector(emu)
    owner = emu.state.integration_user_id
    # The create goes through, then the answer is a 500: Baton must look before sending again.
    original = emu.app.after_request_funcs
    due = datetime(2030, 1, 2, 15, 0, tzinfo=timezone.utc)
    plan = Plan(ref(opp), "no_next_action", (CreateTask("Set the next step", due, owner, "baton:prompt"),))

    def lose_answer(response):
        from flask import request as flask_request
        if flask_request.method == "POST" and flask_request.path.endswith("/composite/sobjects") \
                and not getattr(lose_answer, "done", False):
            lose_answer.done = True
            response.status_code = 500
            response.set_data(json.dumps([{"errorCode": "UNKNOWN_EXCEPTION", "message": "lost"}]))
        return response

    emu.app.after_request_funcs.setdefault(None, []).append(lose_answer)
    try:
        result = connector.apply([plan])
    finally:
        original[None].remove(lose_answer)
    assert result.applied == [ref(opp)]
    tasks = [t for t in emu.records("Task") if t.get("WhatId") == opp]
    assert len(tasks) == 1 and tasks[0]["Baton_Source__c"] == f"baton:prompt|salesforce:opportunity:{opp}"
    [snapshot] = connector.load([ref(opp)]).snapshots
    assert [t.source for t in snapshot.tasks] == ["baton:prompt"] and snapshot.tasks[0].is_prompt


def test_transfer_log_and_lead_tasks_land_in_salesforce(emu):
    lead = emu.user_create("Lead", {"LastName": "Lee", "Company": "Acme"})
    connector = emulator_connector(emu)
    owner = emu.state.integration_user_id
    due = datetime(2030, 1, 2, 15, 0, tzinfo=timezone.utc)
    result = connector.apply([Plan(ref(lead, "lead"), "no_next_action", (
        CreateTask("Call back", due, owner, "baton:prompt"),
        LogTransfer("(no owner)", "Integration User", datetime(2030, 1, 1, 9, 0, tzinfo=timezone.utc), "Baton",
                    "no owner; chosen by round robin"),
    ))])
    assert result.applied == [ref(lead, "lead")], result.failures
    tasks = {t["Subject"]: t for t in emu.records("Task") if t.get("WhoId") == lead}
    assert tasks["Call back"]["ActivityDate"] is not None and tasks["Call back"]["Status"] == "Not Started"
    transfer = tasks["Ownership transferred: (no owner) → Integration User"]
    assert transfer["Status"] == "Completed" and transfer["TaskSubtype"] == "Task"


def test_scan_pages_open_records(emu):
    ids = opportunities(emu, 450)
    won = opportunities(emu, 3, StageName="Closed Won")
    connector = emulator_connector(emu)
    connector.api.http.headers["Sforce-Query-Options"] = "batchSize=200"
    emu.reset_calls()
    scanned = list(connector.scan("opportunity"))
    assert {s.ref.id for s in scanned} == set(ids) and not set(won) & {s.ref.id for s in scanned}
    assert emu.calls["GET /services/data/vXX.X/query"] == 1
    assert emu.calls["GET /services/data/vXX.X/query/{locator}"] >= 2
    future = datetime(2100, 1, 1, tzinfo=timezone.utc)
    assert list(connector.scan("opportunity", since=future)) == []


def test_records_for_activities(emu):
    [opp] = opportunities(emu, 1)
    lead = emu.user_create("Lead", {"LastName": "Lee", "Company": "Acme"})
    task = emu.user_create("Task", {"Subject": "x", "WhoId": lead})
    email = emu.user_add_email_message(opp, subject="s", text_body="b")
    note = emu.user_add_note(opp, title="t", body="b")
    connector = emulator_connector(emu)
    found = connector.records_for([RecordRef("salesforce", "task", task), RecordRef("salesforce", "email", email),
                                   RecordRef("salesforce", "note", note)])
    assert set(found) == {ref(lead, "lead"), ref(opp)}
