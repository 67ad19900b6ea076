import json

import pytest

from adapter.cli import main
from adapter.policy import load_policy


def test_init_writes_a_valid_policy_and_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "baton.yml"
    assert main(["init", "--path", str(path)]) == 0
    load_policy(path)
    assert main(["init", "--path", str(path)]) == 1


def test_extract_reads_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("Thanks for the call. I'll send the revised proposal by Friday."))
    assert main(["extract", "--sent-at", "2026-11-16T10:00:00-05:00", "--tz", "America/New_York", "--json"]) == 0
    [found] = json.loads(capsys.readouterr().out)
    assert "proposal" in found["action"].lower() and found["due"].startswith("2026-11-20")


def test_configuration_errors_name_the_variable(monkeypatch, capsys):
    monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN", raising=False)
    assert main(["audit", "--crm", "hubspot"]) == 2
    assert "HUBSPOT_ACCESS_TOKEN" in capsys.readouterr().err


def test_invalid_policy_names_the_key(tmp_path, capsys):
    bad = tmp_path / "baton.yml"
    bad.write_text("timezone: Mars/Olympus\n")
    assert main(["audit", "--policy", str(bad)]) == 2
    assert "timezone" in capsys.readouterr().err


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit):
        main(["frobnicate"])
