"""devhost.upload as a newcomer runs it: the documented command lines, and clear errors (issue 27)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from devhost import upload
from devhost.emulators import azurite_connection_string


def settings_file(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_notify_before_the_file_takes_the_file_as_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--notify samples/readings.json` (as the docs write it) used to fail: the URL took the file name."""
    settings = settings_file(tmp_path, EtlStorage="UseDevelopmentStorage=true")
    assert upload.main(["--notify", str(tmp_path / "missing.json"), "--settings", str(settings)]) == 1
    err = capsys.readouterr().err
    assert "cannot read" in err and "missing.json" in err and "required" not in err and "Traceback" not in err


def test_unreachable_emulators_are_a_sentence_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = closed_port()
    settings = settings_file(tmp_path, EtlStorage=azurite_connection_string(port, port))
    sample = tmp_path / "r.json"
    sample.write_text("[]")
    assert upload.main([str(sample), "--settings", str(settings), "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert "cannot upload to Azurite" in err and "make start" in err and "Traceback" not in err


def test_missing_local_settings_say_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = tmp_path / "r.json"
    sample.write_text("[]")
    assert upload.main([str(sample), "--settings", str(tmp_path / "nope.json")]) == 1
    assert "local.settings.example.json" in capsys.readouterr().err


def test_a_timeout_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        upload.main([str(tmp_path / "r.json"), "--timeout", "0"])


def test_the_sample_generator_writes_what_it_says(tmp_path: Path) -> None:
    from devhost import sample

    out = tmp_path / "s.jsonl"
    counts = sample.write_sample(out, 5000, sample.parse_share("0.2%"))
    lines = out.read_text().splitlines()
    assert len(lines) == 5000 and counts["invalid"] == 10 and counts["valid"] == 4990
    unreadable = sum(1 for line in lines if line == "{not json")
    no_source = sum(1 for line in lines if line != "{not json" and "source" not in json.loads(line))
    assert unreadable + no_source == 10 and unreadable and no_source
    assert sample.parse_share("0.002") == sample.parse_share("0.2%")
    with pytest.raises(Exception, match="between"):
        sample.parse_share("150%")


def test_peek_without_emulators_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from devhost import peek

    port = closed_port()
    settings = settings_file(tmp_path, EtlStorage=azurite_connection_string(port, port))
    assert peek.main(["blobs", "--settings", str(settings)]) == 1
    err = capsys.readouterr().err
    assert "cannot read the local blobs" in err and "make start" in err and "Traceback" not in err
