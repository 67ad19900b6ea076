import time

import pytest
from hubspot.utils.signature import Signature

from adapter.errors import WebhookVerificationError
from webhooks.signatures import (
    SignatureError, baton_signature, hubspot_v3_signature, normalize_hubspot_uri, verify_baton_signature,
    verify_hubspot_v3,
)

BODY = b'[{"eventId":1,"objectId":101,"subscriptionType":"deal.propertyChange"}]'
URI = "https://baton.example.com/webhooks/hubspot"
NOW = 1_763_305_200.0
TS = str(int(NOW * 1000))


def sign(secret="s3cret", body=BODY, uri=URI, ts=TS, method="POST"):
    return hubspot_v3_signature(body, method=method, uri=uri, timestamp=ts, secret=secret)


def verify(**overrides):
    args = dict(method="POST", uri=URI, timestamp=TS, signature=sign(), secrets=["s3cret"], now=NOW)
    args.update(overrides)
    body = args.pop("body", BODY)
    verify_hubspot_v3(body, **args)


def test_good_signature_passes():
    verify()


def test_matches_the_official_client():
    expected = Signature.get_signature("s3cret", BODY.decode(), "v3", URI, "POST", TS)
    assert sign() == expected
    now_ts = str(int(time.time() * 1000))
    assert Signature.is_valid(sign(ts=now_ts), "s3cret", BODY.decode(), URI, "POST", "v3", now_ts)


def test_rotation_accepts_any_configured_secret():
    verify(signature=sign("old"), secrets=["new", "old"])
    verify(signature=sign("new"), secrets="new")


@pytest.mark.parametrize("field,value,reason,message", [
    ("signature", None, "missing_signature", "missing X-HubSpot-Signature-v3"),
    ("timestamp", None, "missing_timestamp", "missing timestamp"),
    ("timestamp", "yesterday", "bad_timestamp", "not an integer"),
    ("signature", "AAAA", "forged", "does not match"),
    ("secrets", [], "no_secret", "no secret is configured"),
])
def test_refusals_have_precise_reasons(field, value, reason, message):
    with pytest.raises(SignatureError, match=message) as caught:
        verify(**{field: value})
    assert caught.value.reason == reason
    assert isinstance(caught.value, WebhookVerificationError)


def test_wrong_secret_tampered_body_wrong_uri_and_method_are_forged():
    for overrides in ({"secrets": ["other"]}, {"body": BODY + b" "}, {"uri": URI + "?x=1"}, {"method": "PUT"}):
        with pytest.raises(SignatureError) as caught:
            verify(**overrides)
        assert caught.value.reason == "forged"


def test_timestamp_window_both_ways():
    verify(now=NOW + 299)
    verify(now=NOW - 59)
    with pytest.raises(SignatureError, match="301 s old; the limit is 300 s") as stale:
        verify(now=NOW + 301)
    assert stale.value.reason == "stale"
    with pytest.raises(SignatureError, match="61 s in the future; the limit is 60 s") as future:
        verify(now=NOW - 61)
    assert future.value.reason == "future"


def test_uri_is_normalized_as_hubspot_signs_it():
    assert normalize_hubspot_uri("https://x.io/hook?a=b%3Ac%2Fd%20e") == "https://x.io/hook?a=b:c/d%20e"
    signed_decoded = sign(uri="https://x.io/hook?a=b:c")
    verify(uri="https://x.io/hook?a=b%3ac", signature=signed_decoded)


def test_baton_flow_signature():
    ts = str(int(NOW))
    sig = baton_signature(b'{"a":1}', timestamp=ts, secret="k")
    verify_baton_signature(b'{"a":1}', timestamp=ts, signature=sig, secrets=["k"], now=NOW)
    verify_baton_signature(b'{"a":1}', timestamp=ts, signature="sha256=" + sig.upper(), secrets=["x", "k"], now=NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify_baton_signature(b'{"a":2}', timestamp=ts, signature=sig, secrets=["k"], now=NOW)
    with pytest.raises(SignatureError, match="old"):
        verify_baton_signature(b'{"a":1}', timestamp=ts, signature=sig, secrets=["k"], now=NOW + 400)
