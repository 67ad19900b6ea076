import pytest

from adapter.errors import UnknownConnector
from adapter.settings import Settings
from connectors import configured_crms, connector_class


@pytest.mark.parametrize("values,expected", [
    ({"BATON_CRMS": "salesforce"}, ["salesforce"]),
    ({"BATON_CRMS": "hubspot, salesforce", "SALESFORCE_ORG_ID": "00D"}, ["hubspot", "salesforce"]),
    ({"HUBSPOT_CLIENT_SECRET": "s"}, ["hubspot"]),
    ({"HUBSPOT_ACCESS_TOKEN": "t", "BATON_SALESFORCE_FLOW_SECRET": "f"}, ["hubspot", "salesforce"]),
    ({"BATON_REDIS_PREFIX": "x"}, []),
])
def test_the_crms_served_are_listed_or_told_by_their_own_settings(values, expected):
    assert configured_crms(Settings(values)) == expected


def test_an_unknown_crm_is_named_in_the_error():
    with pytest.raises(UnknownConnector, match="pipedrive.*hubspot, salesforce"):
        connector_class("pipedrive")
