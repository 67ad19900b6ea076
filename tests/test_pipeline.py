from datetime import timedelta

from adapter.model import RecordRef
from adapter.pipeline import audit, reconcile_refs, resolve_activity_refs
from adapter.policy import Policy
from tests.fake_crm import BEN, T0, FakeConnector, snapshot, task

POLICY = Policy.from_mapping({"owners": {"routing": {"pool": ["ben@example.com"]}}})


def crm_with(n, **kwargs):
    return FakeConnector([snapshot(str(i), owner=None if i % 3 == 0 else "1",
                                   tasks=[task(f"t{i}")] if i % 2 else [], **kwargs) for i in range(n)])


def test_records_are_loaded_and_written_in_batches():
    crm = crm_with(250)
    result = reconcile_refs(crm, list(crm.records), POLICY, now=T0)
    assert crm.calls["load"] == 3 and crm.calls["apply"] == 3 and crm.calls["owners"] == 1
    assert len(result.plans) == 250 and len(result.applied) == 250
    assert result.statuses["ownerless"] == 0
    assert all(crm.records[ref].owner_id for ref in crm.records)


def test_second_run_writes_nothing():
    crm = crm_with(40)
    reconcile_refs(crm, list(crm.records), POLICY, now=T0)
    again = reconcile_refs(crm, list(crm.records), POLICY, now=T0)
    assert again.writes == 0 and crm.calls["apply"] == 1


def test_dry_run_plans_without_writing():
    crm = crm_with(10)
    result = reconcile_refs(crm, list(crm.records), POLICY, now=T0, dry_run=True)
    assert result.writes > 0 and crm.calls["apply"] == 0 and not result.applied


def test_a_failed_record_loses_nothing_else_and_gets_no_deadline():
    crm = crm_with(5)
    bad = RecordRef("fake", "deal", "1")
    crm.fail_refs = {bad}
    result = reconcile_refs(crm, list(crm.records), POLICY, now=T0)
    assert [f.ref for f in result.failures] == [bad]
    assert len(result.applied) == 4
    assert bad not in result.deadlines
    assert RecordRef("fake", "deal", "3") in result.deadlines  # has a task due in 5 days


def test_missing_records_are_reported():
    crm = crm_with(2)
    result = reconcile_refs(crm, [RecordRef("fake", "deal", "0"), RecordRef("fake", "deal", "404")], POLICY, now=T0)
    assert result.missing == [RecordRef("fake", "deal", "404")]


def test_duplicate_refs_are_reconciled_once():
    crm = crm_with(1)
    ref = RecordRef("fake", "deal", "0")
    assert len(reconcile_refs(crm, [ref, ref, ref], POLICY, now=T0).plans) == 1


def test_audit_scans_each_enabled_type_and_reports_progress():
    crm = FakeConnector([snapshot("1"), snapshot("2", object_type="contact"), snapshot("3", object_type="company")])
    policy = Policy.from_mapping({"objects": {"company": {"enabled": False}}})
    seen = []
    result = audit(crm, policy, ["deal", "contact", "company"], now=T0, progress=seen.append)
    assert sorted(r.ref.object_type for r in result.records) == ["contact", "deal"]
    assert sum(seen) == 2 and crm.calls["apply"] == 0


def test_audit_summary_has_owner_and_age():
    crm = FakeConnector([snapshot("1", tasks=[task(due=T0 - timedelta(days=2))])])
    [record] = audit(crm, POLICY, ["deal"], now=T0).records
    assert record.status == "overdue" and record.since == T0 - timedelta(days=2)
    assert record.owner.startswith("Ana Lopez")


def test_activity_refs_stand_for_their_records():
    crm = FakeConnector([snapshot("1", tasks=[task("t9")]), snapshot("2")])
    refs = resolve_activity_refs(crm, [RecordRef("fake", "task", "t9"), RecordRef("fake", "deal", "2")])
    assert refs == [RecordRef("fake", "deal", "2"), RecordRef("fake", "deal", "1")]
    assert BEN.active
