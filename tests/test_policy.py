import textwrap

import pytest

from adapter.errors import PolicyError
from adapter.policy import EXAMPLE_POLICY, Policy, load_policy


def test_defaults_are_valid():
    policy = Policy.from_mapping({})
    assert policy.calendar.timezone == "UTC"
    assert policy.confidence_threshold == 0.7
    assert str(policy.prompt_due) == "1 business day"


def test_example_policy_written_by_init_is_valid(tmp_path):
    path = tmp_path / "baton.yml"
    path.write_text(EXAMPLE_POLICY)
    policy = load_policy(path)
    assert policy.calendar.timezone == "America/New_York"
    assert policy.for_object("contact").closed_stages == {"customer", "evangelist", "other"}


@pytest.mark.parametrize("raw, path, fragment", [
    ({"timezone": "Mars/Olympus"}, "timezone", "'Mars/Olympus'"),
    ({"owners": {"routing": {"pool": ["ana@example.com", "bob"]}}}, "owners.routing.pool.1", "'bob'"),
    ({"next_action": {"prompt_due": "soonish"}}, "next_action.prompt_due", "'soonish'"),
    ({"business_hours": {"days": ["mon", "funday"]}}, "business_hours.days.1", "'funday'"),
    ({"business_hours": {"start": "18:00", "end": "09:00"}}, "business_hours.end", "must be after"),
    ({"commitments": {"confidence_threshold": 3}}, "commitments.confidence_threshold", "3"),
    ({"objects": {"widget": {"enabled": True}}}, "objects.widget", "widget"),
    ({"holidays": {"country": "ZZ"}}, "holidays", "ZZ"),
    ({"next_action": {"prompt_title": "Call {customer}"}}, "next_action.prompt_title", "{record}"),
    ({"unknown_key": 1}, "unknown_key", "Unknown field"),
])
def test_errors_name_the_key_path_and_the_bad_value(raw, path, fragment):
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping(raw)
    assert path in caught.value.errors, caught.value.errors
    assert fragment in str(caught.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(PolicyError, match="baton init"):
        load_policy(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("timezone: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)


def test_routing_pool_is_case_insensitive(tmp_path):
    path = tmp_path / "baton.yml"
    path.write_text(textwrap.dedent("""
        owners:
          routing:
            pool: [Ana@Example.com]
            fallback: OPS@example.com
    """))
    policy = load_policy(path)
    assert policy.routing_pool == ("ana@example.com",) and policy.routing_fallback == "ops@example.com"
