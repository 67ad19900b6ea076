import csv
import io
import json
from datetime import timedelta

from rich.console import Console

from adapter import report
from adapter.model import RecordRef
from adapter.pipeline import RecordSummary
from tests.fake_crm import T0

RECORDS = [
    RecordSummary(RecordRef("hubspot", "deal", "1"), "Acme", "Ana <ana@example.com>", "overdue",
                  T0 - timedelta(days=2, hours=3), ("set follow_up_status",)),
    RecordSummary(RecordRef("hubspot", "deal", "2"), "Globex", "(no owner)", "ownerless", None, ()),
    RecordSummary(RecordRef("hubspot", "contact", "3"), "Jo", "Ben", "on_track", T0, ()),
]


def test_json_is_one_object_per_record_with_the_documented_keys():
    lines = [json.loads(line) for line in report.as_json(RECORDS).splitlines()]
    assert [line["id"] for line in lines] == ["1", "2", "3"]
    assert {"id", "object", "status", "owner", "actions"} <= set(lines[0])
    assert lines[0]["actions"] == ["set follow_up_status"]


def test_csv_has_age():
    rows = list(csv.DictReader(io.StringIO(report.as_csv(RECORDS, T0))))
    assert rows[0]["age"] == "2d 3h" and rows[1]["age"] == "-"


def test_table_lists_exceptions_first_and_counts():
    console = Console(record=True, width=160)
    report.render(console, RECORDS, T0)
    text = console.export_text()
    assert text.index("ownerless") < text.index("overdue")
    assert "Globex" in text and "Jo" not in text.split("Records by status")[0]
    assert report.status_counts(RECORDS) == {"ownerless": 1, "overdue": 1, "on_track": 1}
