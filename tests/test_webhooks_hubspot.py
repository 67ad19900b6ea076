import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from adapter.errors import ConfigurationError
from adapter.queue import RealtimeQueue
from adapter.settings import Settings
from tests.fakes import (
    base_settings, hubspot_body, hubspot_event, hubspot_headers, prefix, queue, redis_server,  # noqa: F401
)
from webhooks.app import create_app


@pytest.fixture
def app(prefix, queue):
    return create_app(base_settings(prefix), queue=queue)


def post(app, events, **kwargs):
    body = hubspot_body(events)
    return app.test_client().post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, **kwargs))


def events_counted(app, outcome):
    registry = app.extensions["baton.registry"]
    return registry.get_sample_value("baton_webhook_events_total", {"receiver": "hubspot", "outcome": outcome}) or 0


def pending(queue, object_type="deal"):
    return sorted(m.decode() for m in queue.redis.smembers(queue.pending_key("hubspot", object_type)))


def test_a_batch_marks_records_pending_and_enqueues_one_drain(app, queue):
    events = [hubspot_event(i % 3, event_id=i) for i in range(30)]  # 30 events, 3 records
    response = post(app, events)
    assert response.status_code == 204 and response.data == b""
    assert pending(queue) == ["0", "1", "2"]
    assert [job.func_name for job in queue.rq.jobs] == ["adapter.jobs.drain"]
    assert queue.rq.jobs[0].args == ("hubspot", "deal")
    assert events_counted(app, "accepted") == 30


def test_redelivery_is_deduplicated_for_48_hours(app, queue):
    events = [hubspot_event(101, event_id=1), hubspot_event(102, event_id=2)]
    assert post(app, events).status_code == 204
    queue.redis.delete(queue.pending_key("hubspot", "deal"))  # a worker drained them meanwhile
    assert post(app, events).status_code == 204
    assert pending(queue) == []
    assert events_counted(app, "duplicate") == 2
    ttl = queue.redis.ttl(next(queue.redis.scan_iter(match=f"{queue.prefix}:seen:*")))
    assert 48 * 3600 - 5 <= ttl <= 48 * 3600  # the day's set lives 48 h past its last delivery


def test_deduplication_window_is_48_hours_from_the_last_delivery(queue):
    import time

    from connectors.hubspot.events import scan

    hints, _, _ = scan([hubspot_event(101, event_id=1)])
    now = time.time()
    assert queue.mark_hints(hints, now=now).accepted == 1
    for later in (1, 24 * 3600, 47.99 * 3600, 30 * 86400):  # whenever it comes, it meets its day's set
        assert queue.mark_hints(hints, now=now + later).duplicates == 1
    (seen,) = queue.redis.scan_iter(match=f"{queue.prefix}:seen:*")
    assert 48 * 3600 - 5 <= queue.redis.ttl(seen) <= 48 * 3600
    queue.redis.delete(seen)  # as Redis does 48 h after that day's events stop coming
    assert queue.mark_hints(hints, now=now).accepted == 1


def test_a_batch_of_unusual_shape_is_read_in_general_and_accepted_alike(app, queue):
    events = [
        hubspot_event(5, event_id=1, subscription_type="contact.merge", objectId="", primaryObjectId=5),
        hubspot_event(6, event_id=2, occurred_at="1763305200000"),  # a string: the typed decode declines
        hubspot_event(7, event_id=3, sourceId=None, changeSource=None),
    ]
    assert post(app, events).status_code == 204
    assert (pending(queue, "contact"), pending(queue)) == (["5"], ["6", "7"])
    assert post(app, events).status_code == 204
    assert events_counted(app, "accepted") == 3 and events_counted(app, "duplicate") == 3


def test_events_are_built_on_demand_from_the_body(app):
    from connectors.hubspot.events import normalize

    batch = [hubspot_event(101, event_id=1), hubspot_event(8, event_id=2, subscription_type="product.creation")]
    parsed = app.extensions["baton.hubspot"].parse_events(None, hubspot_body(batch))
    assert [hint[0] for hint in parsed.hints] == [normalize(batch[0]).key]
    assert parsed.events == [normalize(batch[0])]


def test_single_flight_drain_while_one_is_queued(app, queue):
    for i in range(5):
        post(app, [hubspot_event(100 + i, event_id=i)])
    assert queue.rq.count == 1
    assert len(pending(queue)) == 5


def test_activities_and_records_go_to_their_own_sets(app, queue):
    events = [
        hubspot_event(5, event_id=1, subscription_type="object.propertyChange", objectTypeId="0-27",
                      property_name="hs_task_status", value="COMPLETED"),
        hubspot_event(6, event_id=2, subscription_type="object.creation", objectTypeId="0-46", property_name=None),
        hubspot_event(7, event_id=3, subscription_type="contact.propertyChange"),
    ]
    assert post(app, events).status_code == 204
    assert (pending(queue, "task"), pending(queue, "note"), pending(queue, "contact")) == (["5"], ["6"], ["7"])
    assert queue.rq.count == 3


def test_ignored_and_own_write_events_are_counted(app, queue):
    events = [
        hubspot_event(1, event_id=1, subscription_type="product.creation"),
        hubspot_event(2, event_id=2, changeSource="INTEGRATION", sourceId="4242"),
        hubspot_event(3, event_id=3),
    ]
    assert post(app, events).status_code == 204
    assert pending(queue) == ["3"]  # Baton's own write only echoes what it wrote: not queued
    assert events_counted(app, "ignored") == 1
    assert events_counted(app, "own_write") == 1
    assert events_counted(app, "accepted") == 1


def test_own_writes_can_be_reconciled_again_when_configured(prefix, queue):
    app = create_app(base_settings(prefix, BATON_RECONCILE_OWN_WRITES="true"), queue=queue)
    events = [hubspot_event(2, event_id=2, changeSource="INTEGRATION", sourceId="4242"), hubspot_event(3, event_id=3)]
    assert post(app, events).status_code == 204
    assert pending(queue) == ["2", "3"]
    assert events_counted(app, "own_write") == 1 and events_counted(app, "accepted") == 2


def test_a_batch_of_only_ignored_events_is_still_acknowledged(app, queue):
    assert post(app, [hubspot_event(1, subscription_type="line_item.creation")]).status_code == 204
    assert queue.rq.count == 0


def test_other_methods_on_the_webhook_path_are_flasks(app):
    assert app.test_client().get("/webhooks/hubspot").status_code == 405


def test_an_unexpected_error_answers_500_so_hubspot_retries(app, queue, monkeypatch):
    def broken(hints, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(queue, "mark_hints", broken)
    response = post(app, [hubspot_event(1)])
    assert response.status_code == 500 and b"bug" not in response.data


def test_healthz_and_metrics(app):
    client = app.test_client()
    assert client.get("/healthz").json == {"ok": True}
    post(app, [hubspot_event(1)])
    text = client.get("/metrics").get_data(as_text=True)
    assert 'baton_webhook_requests_total{outcome="accepted",receiver="hubspot"} 1.0' in text
    assert "baton_webhook_seconds_bucket" in text


def test_redis_down_answers_503_so_hubspot_retries(prefix):
    dead = RealtimeQueue(Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)), prefix)
    app = create_app(base_settings(prefix), queue=dead)
    response = post(app, [hubspot_event(1)])
    assert response.status_code == 503
    assert response.data.startswith(b"unavailable: ")
    assert app.test_client().get("/healthz").status_code == 503


def test_missing_client_secret_fails_at_start(prefix, queue):
    settings = Settings({"BATON_CRMS": "hubspot", "BATON_REDIS_PREFIX": prefix})
    with pytest.raises(ConfigurationError, match="HUBSPOT_CLIENT_SECRET"):
        create_app(settings, queue=queue)


def test_no_crm_configured_fails_at_start(queue):
    with pytest.raises(ConfigurationError, match="BATON_CRMS"):
        create_app(Settings({}), queue=queue)


def test_without_public_url_the_request_url_is_signed(prefix, queue):
    settings = base_settings(prefix)
    app = create_app(settings.with_values(BATON_PUBLIC_URL=""), queue=queue)
    body = hubspot_body([hubspot_event(1)])
    headers = hubspot_headers(body, uri="http://localhost/webhooks/hubspot?portal=1")
    response = app.test_client().post("/webhooks/hubspot?portal=1", data=body, headers=headers)
    assert response.status_code == 204


def test_ids_beyond_64_bits_stay_exact_on_the_general_path(app):
    batch = [hubspot_event(1, event_id=2 ** 70), hubspot_event(1, event_id=2 ** 70 + 1),
             hubspot_event(2, event_id=3, occurred_at="1763305200000")]  # a string: the typed decode declines
    parsed = app.extensions["baton.hubspot"].parse_events(None, hubspot_body(batch))
    keys = [hint[0] for hint in parsed.hints]
    assert keys[:2] == [f"hubspot:62515:1900001:{2 ** 70}:1:1763305200000",
                        f"hubspot:62515:1900001:{2 ** 70 + 1}:1:1763305200000"]
