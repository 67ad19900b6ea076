import pytest

from adapter.errors import ConfigurationError
from adapter.settings import Settings
from tests.fakes import (
    OUTBOUND_TOKEN, base_settings, flow_body, flow_headers, outbound_body, prefix, queue, redis_server,  # noqa: F401
)
from webhooks.app import create_app


@pytest.fixture
def app(prefix, queue):
    return create_app(base_settings(prefix), queue=queue)


def pending(queue, object_type="opportunity"):
    return sorted(m.decode() for m in queue.redis.smembers(queue.pending_key("salesforce", object_type)))


def test_outbound_message_marks_records_and_acks(app, queue):
    ids = ["0065e00000AbCdEAAV", "0065e00000AbCdFAAV"]
    response = app.test_client().post(f"/webhooks/salesforce/outbound/{OUTBOUND_TOKEN}", data=outbound_body(record_ids=ids),
                                      headers={"Content-Type": "text/xml"})
    assert response.status_code == 200
    assert response.content_type.startswith("text/xml")
    assert b"<Ack>true</Ack>" in response.data
    assert pending(queue) == sorted(ids)
    assert [job.args for job in queue.rq.jobs] == [("salesforce", "opportunity")]


def test_outbound_redelivery_is_deduplicated(app, queue):
    client = app.test_client()
    for _ in range(2):
        client.post(f"/webhooks/salesforce/outbound/{OUTBOUND_TOKEN}", data=outbound_body())
        queue.redis.delete(queue.pending_key("salesforce", "opportunity"))
    registry = app.extensions["baton.registry"]
    labels = {"receiver": "salesforce_outbound", "outcome": "duplicate"}
    assert registry.get_sample_value("baton_webhook_events_total", labels) == 1


def test_flow_callout(app, queue):
    body = flow_body()
    response = app.test_client().post("/webhooks/salesforce/flow", data=body, headers=flow_headers(body))
    assert response.status_code == 204
    assert pending(queue) == ["0065e00000AbCdEAAV"]


def test_salesforce_needs_its_org_id(queue):
    settings = Settings({"BATON_CRMS": "salesforce", "BATON_SALESFORCE_OUTBOUND_TOKEN": "t"})
    with pytest.raises(ConfigurationError, match="SALESFORCE_ORG_ID"):
        create_app(settings, queue=queue)


def test_salesforce_needs_a_token_or_a_flow_secret(queue):
    settings = Settings({"BATON_CRMS": "salesforce", "SALESFORCE_ORG_ID": "00D5e000000AbCdEAK"})
    with pytest.raises(ConfigurationError, match="BATON_SALESFORCE_OUTBOUND_TOKEN"):
        create_app(settings, queue=queue)


def test_flow_endpoint_absent_when_not_configured(prefix, queue):
    app = create_app(base_settings(prefix, BATON_SALESFORCE_FLOW_SECRET=""), queue=queue)
    body = flow_body()
    assert app.test_client().post("/webhooks/salesforce/flow", data=body, headers=flow_headers(body)).status_code == 404
