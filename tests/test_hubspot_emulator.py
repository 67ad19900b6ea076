"""The HubSpot emulator, driven by the real hubspot-api-client over real HTTP.

Every test runs with OpenAPI validation on (when the specs folder exists) and in strict
mode; the fixture fails the test if any response broke HubSpot's published spec.

Note on the client: `HubSpot(...)` hands urllib3 its default `Retry(3)`, which retries GET,
PUT and DELETE (never POST/PATCH) on 429/503 *when a Retry-After header is present*, sleeping
that long. Tests that provoke 429s therefore use POST endpoints.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from flask import Flask, request
from hubspot import HubSpot
from hubspot.crm.associations.v4 import BatchInputPublicFetchAssociationsBatchRequest
from hubspot.crm.deals import ApiException as DealsApiException
from hubspot.crm.deals import (
    BatchInputSimplePublicObjectBatchInput, BatchReadInputSimplePublicObjectId, PublicObjectSearchRequest,
    SimplePublicObjectBatchInput, SimplePublicObjectId, SimplePublicObjectInput, SimplePublicObjectInputForCreate,
)
from hubspot.crm.objects.tasks import (
    AssociationSpec, BatchInputSimplePublicObjectBatchInputForCreate, PublicAssociationsForObject, PublicObjectId,
    SimplePublicObjectBatchInputForCreate,
)
from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate
from hubspot.utils.signature import Signature
from werkzeug.serving import make_server

from connectors.hubspot.emulator import HubSpotEmulator, SeedMix
from connectors.hubspot.emulator_specs import default_specs_dir
from connectors.hubspot.emulator_state import to_iso

TOKEN = "pat-na1-test-token"
NOW = datetime(2025, 3, 12, 15, 0, tzinfo=timezone.utc)
SPECS_PRESENT = default_specs_dir().is_dir()


@pytest.fixture
def emu():
    with HubSpotEmulator(token=TOKEN, strict=True) as emulator:
        yield emulator
        emulator.assert_spec_clean()


@pytest.fixture
def client(emu):
    return HubSpot(access_token=TOKEN, host=emu.url)


def _create_deal(client, **properties) -> str:
    properties = {"dealname": "Acme renewal", "pipeline": "default", "dealstage": "qualifiedtobuy", **properties}
    return client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties=properties)).id


# -- objects ---------------------------------------------------------------------------------------
def test_batch_read_returns_property_history_newest_first_and_207_for_unknown_ids(emu, client):
    deal_id = _create_deal(client, hubspot_owner_id="81273645")
    emu.user_set_owner("deals", deal_id, "81273646", at=NOW)
    emu.user_set_owner("deals", deal_id, "81273647", by_owner_id="81273648", at=NOW + timedelta(hours=1))

    response = client.crm.deals.batch_api.read(BatchReadInputSimplePublicObjectId(
        inputs=[SimplePublicObjectId(id=deal_id), SimplePublicObjectId(id="999")],
        properties=["dealname", "hubspot_owner_id", "amount"], properties_with_history=["hubspot_owner_id"]))

    [deal] = response.results
    assert deal.properties["hubspot_owner_id"] == "81273647"
    assert deal.properties["amount"] is None  # requested but unset: null, as HubSpot answers
    history = deal.properties_with_history["hubspot_owner_id"]
    assert [v.value for v in history] == ["81273647", "81273646", "81273645"]
    assert history[0].source_type == "CRM_UI" and history[0].updated_by_user_id == 5120004
    assert history[0].source_id == "userId:5120004"
    assert history[-1].source_type == "INTEGRATION" and history[-1].source_id == str(emu.app_id)
    assert history[0].timestamp > history[1].timestamp
    [error] = response.errors
    assert error.category == "OBJECT_NOT_FOUND" and error.context == {"ids": ["999"]}


def test_batch_create_with_inline_associations_is_readable_from_both_ends(emu, client):
    deal_id = _create_deal(client)
    to_deal = [PublicAssociationsForObject(
        to=PublicObjectId(id=deal_id),
        types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=216)])]
    due = str(int(NOW.timestamp() * 1000))
    created = client.crm.objects.tasks.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        SimplePublicObjectBatchInputForCreate(
            properties={"hs_task_subject": f"Follow up {i}", "hs_task_status": "NOT_STARTED", "hs_timestamp": due},
            associations=to_deal)
        for i in range(3)]))
    task_ids = sorted(t.id for t in created.results)
    assert created.results[0].properties["hs_timestamp"] == "2025-03-12T15:00:00.000Z"

    reverse = client.crm.associations.v4.batch_api.get_page(
        "deals", "tasks", BatchInputPublicFetchAssociationsBatchRequest(inputs=[{"id": deal_id}]))
    [row] = reverse.results
    assert sorted(t.to_object_id for t in row.to) == task_ids
    assert {(t.category, t.type_id) for t in row.to[0].association_types} == {("HUBSPOT_DEFINED", 215)}

    forward = client.crm.associations.v4.batch_api.get_page(
        "tasks", "deals", BatchInputPublicFetchAssociationsBatchRequest(inputs=[{"id": task_ids[0]}, {"id": "1"}]))
    assert forward.results[0].to[0].to_object_id == deal_id
    assert forward.results[0].to[0].association_types[0].type_id == 216
    assert forward.errors[0].category == "NO_ASSOCIATIONS_FOUND"


def _last_activity(emu, object_type: str, object_id: str) -> str | None:
    return emu.record(object_type, object_id).get("notes_last_updated")


def test_logging_an_engagement_moves_the_records_last_activity_date(emu, client):
    deal_id = _create_deal(client)
    contact_id = emu.user_create_record("contacts", {"firstname": "Maria"})
    company_id = emu.user_create_record("companies", {"name": "Acme"})
    ticket_id = emu.user_create_record("tickets", {"subject": "Login", "hs_pipeline": "0", "hs_pipeline_stage": "1"})
    assert _last_activity(emu, "deals", deal_id) is None  # nothing logged yet

    # A user logs a note on the deal: "Last activity date" is when it was logged.
    emu.user_add_note("deals", deal_id, "<p>Called them</p>", "81273645", at=NOW)
    assert _last_activity(emu, "deals", deal_id) == "2025-03-12T15:00:00.000Z"
    # An email logged later on three records moves each of them.
    emu.user_create_record("emails", {"hs_email_direction": "INCOMING_EMAIL", "hs_timestamp": "2025-03-12T16:00:00Z"},
                           associations=[("deals", deal_id), ("contacts", contact_id), ("companies", company_id)],
                           at=NOW + timedelta(hours=1))
    assert {_last_activity(emu, t, i) for t, i in (("deals", deal_id), ("contacts", contact_id),
                                                   ("companies", company_id))} == {"2025-03-12T16:00:00.000Z"}
    # Logged now about something older: the date moves to when it was logged, never back.
    emu.user_add_note("deals", deal_id, "<p>Old call</p>", "81273645", at=NOW - timedelta(days=3))
    assert _last_activity(emu, "deals", deal_id) == "2025-03-12T16:00:00.000Z"

    # Through the API: a task created with an inline association, a call associated afterwards.
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    client.crm.objects.tasks.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        SimplePublicObjectBatchInputForCreate(
            properties={"hs_task_subject": "Follow up", "hs_timestamp": "2025-03-20T09:00:00Z"},
            associations=[PublicAssociationsForObject(
                to=PublicObjectId(id=ticket_id),
                types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=230)])])]))
    call = client.crm.objects.calls.basic_api.create({"properties": {"hs_timestamp": "2025-03-12T17:00:00Z"}})
    requests.put(f"{emu.url}/crm/v4/objects/calls/{call.id}/associations/default/deals/{deal_id}",
                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).raise_for_status()
    for object_type, object_id in (("tickets", ticket_id), ("deals", deal_id)):
        assert datetime.fromisoformat(_last_activity(emu, object_type, object_id).replace("Z", "+00:00")) >= before
    # Engagements keep no activity date of their own, and HubSpot calculates the property: writes are refused.
    assert "notes_last_updated" not in emu.store.properties["calls"]
    with pytest.raises(DealsApiException) as refused:
        client.crm.deals.basic_api.update(deal_id, SimplePublicObjectInput(
            properties={"notes_last_updated": "2025-01-01T00:00:00Z"}))
    assert refused.value.status == 400 and "READ_ONLY_VALUE" in refused.value.body


def test_seeded_records_carry_the_date_of_their_last_logged_engagement():
    emu = HubSpotEmulator(validate=False)
    emu.seed(60, now=NOW)
    for deal in emu.records("deals"):
        logged = [emu.store.get(kind, i).created_ms for kind in ("tasks", "notes", "emails", "calls")
                  for i in emu.associated_ids("deals", deal["hs_object_id"], kind)]
        assert deal.get("notes_last_updated") == (to_iso(max(logged)) if logged else None)


def test_batch_update_with_unknown_id_answers_207_and_applies_the_rest(emu, client):
    first, second = _create_deal(client), _create_deal(client)
    response = client.crm.deals.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=[
        SimplePublicObjectBatchInput(id=first, properties={"dealstage": "contractsent"}),
        SimplePublicObjectBatchInput(id="424242", properties={"dealstage": "contractsent"}),
        SimplePublicObjectBatchInput(id=second, properties={"amount": "1200"}),
    ]))
    assert {r.id for r in response.results} == {first, second}
    [error] = response.errors
    assert (error.status, error.category, error.context) == ("error", "OBJECT_NOT_FOUND", {"ids": ["424242"]})
    assert emu.record("deals", first)["dealstage"] == "contractsent"
    assert emu.record("deals", second)["amount"] == "1200"


def test_batches_over_100_inputs_and_duplicate_ids_are_refused(client):
    too_many = BatchReadInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=str(i)) for i in range(101)])
    with pytest.raises(DealsApiException) as refused:
        client.crm.deals.batch_api.read(too_many)
    assert refused.value.status == 400
    deal_id = _create_deal(client)
    twice = BatchInputSimplePublicObjectBatchInput(inputs=[
        SimplePublicObjectBatchInput(id=deal_id, properties={"amount": "1"})] * 2)
    with pytest.raises(DealsApiException) as duplicate:
        client.crm.deals.batch_api.update(twice)
    assert duplicate.value.status == 400


def test_writes_bump_last_modified_and_unchanged_values_leave_no_history(emu, client):
    deal_id = _create_deal(client, amount="100")
    before = emu.record("deals", deal_id)["hs_lastmodifieddate"]
    time.sleep(0.005)
    client.crm.deals.basic_api.update(deal_id, SimplePublicObjectInput(properties={"amount": "100"}))
    assert emu.record("deals", deal_id)["hs_lastmodifieddate"] == before
    client.crm.deals.basic_api.update(deal_id, SimplePublicObjectInput(properties={"amount": "200"}))
    assert emu.record("deals", deal_id)["hs_lastmodifieddate"] > before
    deal = client.crm.deals.basic_api.get_by_id(deal_id, properties_with_history=["amount"])
    assert [v.value for v in deal.properties_with_history["amount"]] == ["200", "100"]


# -- search -------------------------------------------------------------------------------------------
def test_search_filters_sorts_and_pages(emu, client):
    emu.rate_limiter.search_per_second = 1000  # this test pages quickly; the limit has its own test
    emu.seed(120, rng_seed=3, now=NOW)
    expected = sorted((d for d in emu.records("deals") if d["pipeline"] == "default"
                       and d["dealstage"] in ("closedwon", "closedlost")),
                      key=lambda d: (-float(d["amount"]), int(d["hs_object_id"])))
    seen, after = [], None
    while True:
        page = client.crm.deals.search_api.do_search(PublicObjectSearchRequest(
            filter_groups=[{"filters": [
                {"propertyName": "pipeline", "operator": "EQ", "value": "default"},
                {"propertyName": "dealstage", "operator": "IN", "values": ["closedwon", "closedlost"]}]}],
            sorts=[{"propertyName": "amount", "direction": "DESCENDING"}],
            properties=["amount", "dealstage"], limit=7, after=after))
        assert page.total == len(expected)
        seen += [r.id for r in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert seen == [d["hs_object_id"] for d in expected] and len(seen) > 7

    unowned = client.crm.deals.search_api.do_search(PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "hubspot_owner_id", "operator": "NOT_HAS_PROPERTY"}]}],
        limit=200))
    assert unowned.total == sum(1 for d in emu.records("deals") if not d.get("hubspot_owner_id"))
    recent = client.crm.deals.search_api.do_search(PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "createdate", "operator": "GTE",
                                     "value": str(int((NOW - timedelta(days=30)).timestamp() * 1000))}]}]))
    assert recent.total == sum(1 for d in emu.records("deals") if d["createdate"] >= "2025-02-10T15:00:00.000Z")


def test_search_refuses_to_page_past_10000_results(client):
    assert client.crm.deals.search_api.do_search(PublicObjectSearchRequest(after="9990", limit=10)).total == 0
    with pytest.raises(DealsApiException) as capped:
        client.crm.deals.search_api.do_search(PublicObjectSearchRequest(after="10000", limit=10))
    assert capped.value.status == 400
    assert json.loads(capped.value.body)["category"] == "VALIDATION_ERROR"
    with pytest.raises(DealsApiException) as too_large:
        client.crm.deals.search_api.do_search(PublicObjectSearchRequest(limit=201))
    assert too_large.value.status == 400


# -- traffic ------------------------------------------------------------------------------------------
def test_rolling_window_answers_429_with_hubspots_body_and_headers():
    with HubSpotEmulator(token=TOKEN, rate_limit=5, strict=True) as emu:
        body = {"inputs": [{"id": "1"}]}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        url = f"{emu.url}/crm/v3/objects/deals/batch/read"
        answers = [requests.post(url, json=body, headers=headers) for _ in range(6)]
        assert [a.status_code for a in answers] == [207] * 5 + [429]
        assert answers[0].headers["X-HubSpot-RateLimit-Max"] == "5"
        assert answers[4].headers["X-HubSpot-RateLimit-Remaining"] == "0"
        assert answers[0].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        refused = answers[-1]
        assert int(refused.headers["Retry-After"]) >= 1
        assert {"X-HubSpot-RateLimit-Daily", "X-HubSpot-RateLimit-Daily-Remaining"} <= set(refused.headers)
        payload = refused.json()
        assert payload["status"] == "error" and payload["errorType"] == "RATE_LIMIT"
        assert payload["policyName"] == "TEN_SECONDLY_ROLLING"
        assert payload["message"] == "You have reached your ten_secondly_rolling limit."
        assert payload["groupName"] == f"publicapi:private-app-api-calls:{emu.portal_id}"
        assert emu.rate_limited == 1 and emu.calls["POST /crm/v3/objects/deals/batch/read"] == 6
        emu.assert_spec_clean()


def test_search_has_its_own_per_second_limit():
    with HubSpotEmulator(token=TOKEN, search_rate_limit=2, strict=True) as emu:
        client = HubSpot(access_token=TOKEN, host=emu.url)
        client.crm.deals.search_api.do_search(PublicObjectSearchRequest())
        client.crm.deals.search_api.do_search(PublicObjectSearchRequest())
        with pytest.raises(DealsApiException) as limited:
            client.crm.deals.search_api.do_search(PublicObjectSearchRequest())
        assert limited.value.status == 429
        assert json.loads(limited.value.body)["policyName"] == "SECONDLY"
        client.crm.deals.basic_api.get_page()  # other endpoints are not held back
        emu.rate_limiter.enabled = False
        client.crm.deals.search_api.do_search(PublicObjectSearchRequest())


def test_injected_faults_fail_then_recover_and_can_be_slow(emu, client):
    emu.faults.add(method="POST", path="/crm/v3/objects/tasks/batch/create", status=500, times=1)
    inputs = BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        SimplePublicObjectBatchInputForCreate(properties={"hs_task_subject": "Call back", "hs_timestamp": "0"})])
    from hubspot.crm.objects.tasks import ApiException as TasksApiException
    with pytest.raises(TasksApiException) as failed:
        client.crm.objects.tasks.batch_api.create(inputs)
    assert failed.value.status == 500
    assert len(client.crm.objects.tasks.batch_api.create(inputs).results) == 1

    emu.faults.add(path="/crm/v3/objects/*/search", status=None, delay=0.2)
    started = time.monotonic()
    client.crm.deals.search_api.do_search(PublicObjectSearchRequest())
    assert time.monotonic() - started >= 0.2

    emu.faults.add(method="POST", path="/crm/v3/objects/deals/batch/update", status=429, times=1)
    with pytest.raises(DealsApiException) as throttled:
        client.crm.deals.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=[]))
    assert throttled.value.status == 429 and emu.rate_limited == 1


def test_requests_need_the_bearer_token(emu):
    missing = requests.get(f"{emu.url}/crm/v3/objects/deals")
    wrong = requests.get(f"{emu.url}/crm/v3/objects/deals", headers={"Authorization": "Bearer nope"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["category"] == "INVALID_AUTHENTICATION" and "correlationId" in missing.json()


def test_calls_are_counted_by_templated_path(emu, client):
    deal_id = _create_deal(client)
    client.crm.deals.basic_api.get_by_id(deal_id)
    requests.get(f"{emu.url}/crm/v3/objects/0-3/{deal_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert emu.calls["GET /crm/v3/objects/deals/{objectId}"] == 2
    assert emu.calls["POST /crm/v3/objects/deals"] == 1
    assert emu.calls_total == 3
    emu.reset_calls()
    assert emu.calls_total == 0 and not emu.calls


# -- portal settings ---------------------------------------------------------------------------------
def test_owners_list_active_and_archived_separately(client):
    active = client.crm.owners.owners_api.get_page().results
    archived = client.crm.owners.owners_api.get_page(archived=True).results
    assert len(active) == 6 and len(archived) == 2
    assert all(o.archived for o in archived) and not any(o.archived for o in active)
    owner = client.crm.owners.owners_api.get_by_id(int(active[0].id))
    assert owner.email and owner.user_id and owner.teams[0].name


def test_pipelines_expose_closed_stages_only_through_metadata(client):
    pipelines = client.crm.pipelines.pipelines_api.get_all("deals").results
    assert len(pipelines) == 2
    renewals = next(p for p in pipelines if p.label == "Renewals")
    closed = [s.label for s in renewals.stages if s.metadata["isClosed"] == "true"]
    assert closed == ["Signed", "Not Renewing"]
    assert all("probability" in s.metadata for p in pipelines for s in p.stages)
    tickets = client.crm.pipelines.pipelines_api.get_all("tickets").results
    assert {s.metadata["ticketState"] for s in tickets[0].stages} == {"OPEN", "CLOSED"}


def test_writing_a_property_before_install_fails_like_hubspot(emu, client):
    deal_id = _create_deal(client)
    update = SimplePublicObjectInput(properties={"baton_follow_up_status": "overdue"})
    with pytest.raises(DealsApiException) as refused:
        client.crm.deals.basic_api.update(deal_id, update)
    assert refused.value.status == 400
    error = json.loads(refused.value.body)
    assert error["category"] == "VALIDATION_ERROR" and "PROPERTY_DOESNT_EXIST" in error["message"]

    properties = client.crm.properties
    properties.groups_api.create("deals", PropertyGroupCreate(name="baton", label="Baton"))
    properties.core_api.create("deals", PropertyCreate(
        name="baton_follow_up_status", label="Follow-up status", type="enumeration", field_type="select",
        group_name="baton", options=[{"label": "Overdue", "value": "overdue", "hidden": False, "displayOrder": 0}]))
    from hubspot.crm.properties import ApiException as PropertiesApiException
    with pytest.raises(PropertiesApiException) as again:
        properties.core_api.create("deals", PropertyCreate(
            name="baton_follow_up_status", label="x", type="string", field_type="text", group_name="baton"))
    assert again.value.status == 409

    client.crm.deals.basic_api.update(deal_id, update)
    assert emu.record("deals", deal_id)["baton_follow_up_status"] == "overdue"
    assert properties.core_api.get_by_name("deals", "baton_follow_up_status").hubspot_defined is False
    names = {p.name for p in properties.core_api.get_all("tasks").results}
    assert {"hs_task_subject", "hs_task_status", "hs_timestamp", "hubspot_owner_id"} <= names


@pytest.mark.skipif(not SPECS_PRESENT, reason="HubSpot OpenAPI specs not available")
def test_requests_that_break_the_spec_get_hubspots_400(emu):
    answer = requests.post(f"{emu.url}/crm/v3/objects/deals/search", json={"limit": "many"},
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"
    assert [v.direction for v in emu.spec_violations] == ["request"]


# -- user actions --------------------------------------------------------------------------------------
def test_user_actions_record_crm_ui_history(emu, client):
    deal_id = _create_deal(client, hubspot_owner_id="81273645")
    task_id = emu.user_create_record("tasks", {"hs_task_subject": "Send proposal", "hs_task_status": "NOT_STARTED",
                                               "hs_timestamp": NOW.isoformat()}, associations=[("deals", deal_id)])
    emu.user_set_task_due(task_id, NOW + timedelta(days=2))
    emu.user_complete_task(task_id)
    note_id = emu.user_add_note("deals", deal_id, "<p>I'll send the proposal by Friday.</p>", "81273645")
    email_id = emu.user_add_email("deals", deal_id, "<p>Can you confirm pricing?</p>", direction="INCOMING_EMAIL")
    emu.user_set_stage("deals", deal_id, "158342003", pipeline_id="75838291")

    task = emu.record("tasks", task_id)
    assert task["hs_task_status"] == "COMPLETED" and task["hs_timestamp"] == "2025-03-14T15:00:00.000Z"
    assert set(emu.associated_ids("deals", deal_id, "notes")) == {note_id}
    assert set(emu.associated_ids("deals", deal_id, "emails")) == {email_id}
    deal = client.crm.deals.basic_api.get_by_id(deal_id, properties_with_history=["dealstage"])
    assert deal.properties_with_history["dealstage"][0].source_type == "CRM_UI"
    emu.user_delete_record("tasks", task_id)
    assert emu.record("tasks", task_id) is None


# -- webhooks -----------------------------------------------------------------------------------------
class _Receiver:
    """A local HTTP endpoint that records what it is sent and can be told to fail."""

    def __init__(self, failures: int = 0):
        self.requests: list[tuple[dict, bytes]] = []
        self.failures = failures
        app = Flask("receiver")

        @app.post("/hubspot")
        def receive():
            self.requests.append((dict(request.headers), request.get_data()))
            if self.failures:
                self.failures -= 1
                return "busy", 503
            return "", 204

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hubspot"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [event for _headers, body in self.requests for event in json.loads(body)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = _Receiver()
    yield receiver
    receiver.close()


def test_webhooks_are_v3_signed_batches_of_real_events(emu, client, receiver):
    emu.webhooks.configure(receiver.url, "client-secret", app_id=4_040_404)
    deal_id = _create_deal(client, hubspot_owner_id="81273645")
    emu.user_set_owner("deals", deal_id, "81273646")
    emu.user_create_record("tasks", {"hs_task_subject": "Call", "hs_timestamp": "0"}, associations=[("deals", deal_id)])
    assert emu.webhooks.flush(5)

    for headers, body in receiver.requests:
        assert headers["Content-Type"] == "application/json"
        assert Signature.is_valid(signature=headers["X-Hubspot-Signature-V3"], client_secret="client-secret",
                                  request_body=body.decode(), http_uri=receiver.url, signature_version="v3",
                                  timestamp=headers["X-Hubspot-Request-Timestamp"])
    events = receiver.events()
    assert all(e["portalId"] == emu.portal_id and e["appId"] == 4_040_404 for e in events)
    creation = next(e for e in events if e["subscriptionType"] == "deal.creation")
    assert creation["changeSource"] == "INTEGRATION" and creation["sourceId"] == "4040404"
    owner_changes = [e for e in events if e["subscriptionType"] == "deal.propertyChange"
                     and e["propertyName"] == "hubspot_owner_id"]
    assert [(e["propertyValue"], e["changeSource"]) for e in owner_changes] == [
        ("81273645", "INTEGRATION"), ("81273646", "CRM_UI")]
    assert owner_changes[1]["sourceId"].startswith("userId:")
    task_created = next(e for e in events if e["subscriptionType"] == "object.creation")
    assert task_created["objectTypeId"] == "0-27" and task_created["attemptNumber"] == 0
    assert any(e["subscriptionType"] == "deal.associationChange" for e in events)
    assert emu.webhooks.delivered == len(events)


def test_webhooks_retry_a_failing_receiver_then_give_up(emu, client):
    flaky = _Receiver(failures=2)
    try:
        emu.webhooks.configure(flaky.url, "s", retry_delays=(0.01,), subscriptions=["deal.creation"])
        _create_deal(client)
        assert emu.webhooks.flush(5)
        assert [json.loads(body)[0]["attemptNumber"] for _h, body in flaky.requests] == [0, 1, 2]
        assert emu.webhooks.delivered == 1 and emu.webhooks.failed == 0

        flaky.failures = 100
        emu.webhooks.configure(flaky.url, "s", retry_delays=(0.01,), max_attempts=3, subscriptions=["deal.creation"])
        _create_deal(client)
        assert emu.webhooks.flush(5)
        assert emu.webhooks.failed == 1
    finally:
        flaky.close()


def test_webhooks_can_arrive_twice_and_out_of_order(emu, client, receiver):
    emu.webhooks.configure(receiver.url, "s", duplicate=True, shuffle=True,
                           subscriptions=["deal.propertyChange:amount"])
    with emu.webhooks.held():  # queue every change first, so they share one batch
        deal_id = _create_deal(client, amount="1")
        for amount in range(2, 30):
            emu.user_update("deals", deal_id, {"amount": str(amount)})
    assert emu.webhooks.flush(5)
    batches = [json.loads(body) for _h, body in receiver.requests]
    by_event_id = [sorted(batch, key=lambda e: e["eventId"]) for batch in batches]
    assert len(batches) == 2 and by_event_id[0] == by_event_id[1]
    values = [int(e["propertyValue"]) for e in batches[0]]
    assert sorted(values) == list(range(1, 30)) and values != sorted(values)


# -- seeding ------------------------------------------------------------------------------------------
def test_seeding_is_deterministic_and_realistic():
    first, second = HubSpotEmulator(validate=False), HubSpotEmulator(validate=False)
    counts = first.seed(300, object_types=("deals", "tickets"), rng_seed=7, now=NOW)
    assert counts == second.seed(300, object_types=("deals", "tickets"), rng_seed=7, now=NOW)
    assert first.records("deals") == second.records("deals")
    assert first.records("emails") == second.records("emails")

    deals = first.records("deals")
    archived_owners = {o["id"] for o in first.store.owners if o["archived"]}
    assert any(not d.get("hubspot_owner_id") for d in deals)
    assert any(d.get("hubspot_owner_id") in archived_owners for d in deals)
    assert {d["pipeline"] for d in deals} == {"default", "75838291"}
    assert any(first.store.stage_is_closed("deals", d["dealstage"]) for d in deals)
    tasks = first.records("tasks")
    now_iso = "2025-03-12T15:00:00.000Z"
    assert any(t["hs_task_status"] == "NOT_STARTED" and t["hs_timestamp"] < now_iso for t in tasks)
    assert any(t["hs_task_status"] == "NOT_STARTED" and t["hs_timestamp"] > now_iso for t in tasks)
    assert any(t["hs_task_status"] == "COMPLETED" for t in tasks)
    assert any("by Friday" in e.get("hs_email_html", "") for e in first.records("emails")) or any(
        "by Friday" in n["hs_note_body"] for n in first.records("notes"))
    histories = [r.history.get("hubspot_owner_id", []) for r in first.store.live_records("deals")]
    changed = [h for h in histories if len(h) > 1]
    assert changed and all(a.timestamp_ms <= b.timestamp_ms for h in changed for a, b in zip(h, h[1:]))


def test_seeding_ten_thousand_deals():
    # How fast it seeds is measured by bench/api_economy.py, not asserted here.
    emu = HubSpotEmulator(validate=False)
    counts = emu.seed(10_000, mix=SeedMix(), now=NOW)
    assert counts["deals"] == 10_000
