"""`--metrics-port` on the long-running commands: where it applies and a clear refusal where not."""

from __future__ import annotations

from tests._cli import exit_of_main


def test_agent_metrics_port_needs_a_device_database(tmp_path, monkeypatch, capsys):
    attrs = tmp_path / "attrs.json"
    attrs.write_text('{"device_id": "d1"}')
    args = ["deploy", "agent", "--device-attrs", str(attrs), "--gateway", "http://127.0.0.1:1"]
    args += ["--home", str(tmp_path / "home"), "--trust", str(tmp_path), "--metrics-port", "0"]
    assert exit_of_main(monkeypatch, *args) == 2
    assert "--metrics-port needs --db" in capsys.readouterr().err


def test_metrics_port_is_offered_by_the_agent_and_the_rollout_controller(monkeypatch, capsys):
    for command in (["deploy", "agent"], ["deploy", "rollout"]):
        assert exit_of_main(monkeypatch, *command, "--help") == 0
        assert "--metrics-port" in capsys.readouterr().out
