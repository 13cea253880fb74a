"""`reelflow play` against the real playback service on 127.0.0.1 and the real encrypted 4 s title."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelflow import cli


def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
            ) -> tuple[int, str, str]:
    """Run ``reelflow ARGS`` in-process through the console entry point: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["reelflow", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def play_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, Any]:
    code, out, err = run_cli(capsys, monkeypatch, "play", *args, "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_play_to_duration_posts_qoe_and_progress(service: str, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = play_json(capsys, monkeypatch, "sintel-enc", "--service", service, "--profile", "qoe1",
                     "--duration", "4", "--abr", "throughput")
    assert data["qoe_posted"] is True
    assert data["played_s"] == pytest.approx(4.0, abs=0.05)
    assert len(data["segments"]) == 2
    assert data["startup_s"] > 0 and data["stall_count"] == 0
    assert {s["label"] for s in data["segments"]} <= {"234p", "720p"}   # ClearKey is software DRM: no 1080p
    progress = httpx.get(f"{service}/api/progress/qoe1").json()["titles"]
    assert progress[0]["title_id"] == "sintel-enc"
