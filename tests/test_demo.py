"""End to end on the bundled emulators: install, apply, and a second pass writes nothing."""
import logging
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import pytest

from adapter.manifest import load_manifest
from adapter.pipeline import audit
from connectors import get_connector
from connectors.demo import EMULATORS, demo_policy


@pytest.fixture(params=sorted(EMULATORS))
def crm(request):
    with ExitStack() as stack:
        emulator, settings = EMULATORS[request.param](stack, 120)
        connector = get_connector(request.param, settings)
        connector.install(load_manifest())
        yield request.param, emulator, connector


@pytest.mark.slow
def test_apply_converges_in_one_pass(crm, caplog):
    name, emulator, connector = crm
    caplog.set_level(logging.ERROR)
    policy = demo_policy(connector)
    types = list(connector.object_types)
    now = datetime.now(timezone.utc)
    before = audit(connector, policy, types, now=now)
    assert before.writes > 0 and not before.failures
    applied = audit(connector, policy, types, now=now, apply=True)
    assert not applied.failures
    after = audit(connector, policy, types, now=now + timedelta(seconds=5))
    leftovers = {str(p.ref): p.describe() for p in after.plans if not p.is_noop}
    assert leftovers == {}
    assert not after.statuses.get("ownerless") and not after.statuses.get("queue_owned")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EMULATORS))
def test_demo_runs_end_to_end_with_the_real_time_path(name, tmp_path):
    from adapter.settings import Settings
    from connectors.demo import run_crm

    summary = run_crm(name, Settings({"BATON_DATA_DIR": str(tmp_path)}), records=40, realtime=True)
    assert summary["failures"] == 0 and summary["writes_after"] == 0
    assert summary["realtime"]["deliveries"] > 0 and summary["realtime"]["echo_writes"] == 0
