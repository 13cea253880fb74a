"""`reelflow play` against the real playback service on 127.0.0.1 and the real encrypted 4 s title."""

from __future__ import annotations

import functools
import http.server
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from packaged_titles import SWITCH_ENC_ID, SWITCH_SIZES
from reelflow import cli
from reelflow.errors import Unauthorized
from reelflow.infra.database import open_database
from reelflow.playback.models import QoeReport
from reelflow.player import session as player_session
from reelflow.player.abr import make_rule
from reelflow.player.commands import _keys
from reelflow.player.devices import preset
from reelflow.player.manifest import parse_dash
from reelflow.player.player import Player
from reelflow.player.session import PlayerHttp

LiveService = Any          # conftest.LiveService: .url, .db_url
FRAMES_PER_SEGMENT = 48    # 2 s segments at 24 fps


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


def qoe_rows(service: LiveService, profile: str) -> list[QoeReport]:
    db = open_database(service.db_url)
    with db() as s:
        return list(s.scalars(select(QoeReport).where(QoeReport.profile_id == profile)))


def test_play_to_duration_posts_qoe_and_progress(service: LiveService, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = play_json(capsys, monkeypatch, "sintel-enc", "--service", service.url, "--profile", "qoe1",
                     "--duration", "4", "--abr", "throughput")
    assert data["qoe_posted"] is True
    assert data["played_s"] == pytest.approx(4.0, abs=0.05)
    assert len(data["segments"]) == 2
    assert data["startup_s"] > 0 and data["stall_count"] == 0
    assert {s["label"] for s in data["segments"]} <= {"234p", "720p"}   # ClearKey is software DRM: no 1080p
    rows = qoe_rows(service, "qoe1")
    assert len(rows) == 1 and rows[0].title_id == "sintel-enc" and rows[0].stall_count == 0
    assert rows[0].startup_ms == pytest.approx(data["startup_s"] * 1000, abs=1)
    progress = httpx.get(f"{service.url}/api/progress/qoe1").json()["titles"]
    assert progress[0]["title_id"] == "sintel-enc" and progress[0]["position_s"] == pytest.approx(4.0, abs=0.05)


def test_throttled_play_stalls_and_reports_it(service: LiveService, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    trace = tmp_path / "slow.txt"
    trace.write_text("0 0.3\n1 0.3\n")    # 0.3 Mbit/s: a 2 s 234p segment plus audio takes about 3.3 s
    data = play_json(capsys, monkeypatch, "sintel-enc", "--service", service.url, "--profile", "slow1",
                     "--trace", str(trace), "--abr", "bba")
    assert data["stall_count"] >= 1 and data["stall_s"] > 0.5
    assert data["startup_s"] > 2.5
    assert data["qoe_lin_per_chunk"] < 0
    rows = qoe_rows(service, "slow1")
    assert rows[0].stall_count == data["stall_count"] and rows[0].stall_ms == pytest.approx(data["stall_s"] * 1000,
                                                                                           abs=5)


def test_second_play_resumes_where_the_first_stopped(service: LiveService, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first = play_json(capsys, monkeypatch, "sintel-enc", "--service", service.url, "--profile", "resume1",
                      "--duration", "2")
    assert first["start_s"] == 0 and first["position_s"] == pytest.approx(2.0, abs=0.05)
    second = play_json(capsys, monkeypatch, "sintel-enc", "--service", service.url, "--profile", "resume1",
                       "--format", "hls")
    assert second["start_s"] == pytest.approx(2.0, abs=0.05)
    assert [s["number"] for s in second["segments"]] == [2, 3]  # the rest of the 6 s title
    assert second["format"] == "hls"


def test_save_writes_a_decrypted_file_with_every_played_frame(service: LiveService, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             decode: Any) -> None:
    out = tmp_path / "played.mp4"
    data = play_json(capsys, monkeypatch, "sintel-enc", "--service", service.url, "--profile", "save1",
                     "--abr", "throughput", "--save", str(out))
    labels = [s["label"] for s in data["segments"]]
    assert data["saved_segments"] == len(labels) == 3
    assert labels[0] == "234p" and "720p" in labels   # the throughput rule starts low and climbs: a switch
    decoded = decode(out, "-map", "0:v")
    assert decoded["frames"] == FRAMES_PER_SEGMENT * len(labels)
    assert decoded["error_lines"] == 0
    assert decode(out, "-map", "0:a")["seconds"] == pytest.approx(6.0, abs=0.1)


def test_save_decodes_every_frame_across_resolution_switches(service: LiveService, switch_encrypted_title: Any,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch, decode: Any) -> None:
    """The per-shot-resolution rung (640x360, 384x216, 640x360; cenc): every frame of the saved file
    decodes without an error, each at its piece's size."""
    import av

    out = tmp_path / "switch.mp4"
    data = play_json(capsys, monkeypatch, SWITCH_ENC_ID, "--service", service.url, "--profile", "save-switch",
                     "--save", str(out))
    assert data["saved_segments"] == 3 and {s["label"] for s in data["segments"]} == {"360p"}
    with av.open(str(out)) as container:
        sizes = [(f.width, f.height) for f in container.decode(video=0)]
    assert sizes == [size for start, end, size in SWITCH_SIZES for _ in range(start, end)]
    decoded = decode(out, "-map", "0:v")
    assert decoded["frames"] == len(sizes) and decoded["error_lines"] == 0


def test_refused_license_is_one_clear_error(service: LiveService, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = player_session.PlayInfo.from_json

    def forged(data: dict[str, Any]) -> player_session.PlayInfo:
        data["license"]["url"] = data["license"]["url"].replace("token=", "token=x")   # a forged token
        return real(data)

    monkeypatch.setattr(player_session.PlayInfo, "from_json", staticmethod(forged))
    code, out, err = run_cli(capsys, monkeypatch, "play", "sintel-enc", "--service", service.url)
    assert code == 1 and not out
    assert err.startswith("reelflow: error: license refused (401)") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_l3_device_gets_no_hd_keys_and_plays_no_hd_rung(service: LiveService, encrypted_title: Any) -> None:
    """The unfiltered package MPD lists 1080p; the license withholds its key, so it is never played.

    (The service's own MPD already leaves 1080p out for software DRM and does not serve the package
    MPD, so the test reads it from the store and plays its segments from the service.)
    """
    device = preset("browser-l3")
    mpd = encrypted_title.root / "titles/sintel-enc/v-test0001/manifest.mpd"
    with PlayerHttp() as http:
        info = http.play(service.url, "sintel-enc", "l3", device, "US")
        package = parse_dash(mpd.read_text(), f"{service.url}/titles/sintel-enc/v-test0001/manifest.mpd")
        assert [t.label for t in package.video] == ["234p", "720p", "1080p"]
        playable, keys, withheld = _keys(http, package, info.license_url)
        assert withheld == ["1080p"] and [t.label for t in playable.video] == ["234p", "720p"]
        assert len(keys) == 3            # SD, HD720 and audio
        player = Player(http, playable, make_rule("bba"), device.caps(), title="sintel-enc")
        result = player.run()
    assert {s.label for s in result.segments} <= {"234p", "720p"} and len(result.segments) == 3


def test_bad_token_on_the_license_raises_unauthorized(service: LiveService) -> None:
    with PlayerHttp() as http, pytest.raises(Unauthorized, match="401"):
        http.license(f"{service.url}/api/license?token=forged", [bytes(16)])


def test_missing_segment_is_one_clear_error(broken_service: str, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(capsys, monkeypatch, "play", "sintel-enc", "--service", broken_service,
                             "--abr", "bba", "--profile", "broken1")
    assert code == 1 and not out
    assert "404" in err and "234p_300k/2.m4s" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("target", "expected"), [
    ("no-such-title", "play no-such-title refused (404)"),
    ("sintel-enc --country FR", "refused (451)"),
])
def test_bad_title_or_country_is_one_clear_error(service: LiveService, target: str, expected: str,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(capsys, monkeypatch, "play", *target.split(), "--service", service.url)
    assert code == 1 and expected in err and "Traceback" not in err


def test_service_down_is_one_clear_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from playback_helpers import free_port

    code, _, err = run_cli(capsys, monkeypatch, "play", "sintel-enc", "--service", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot reach" in err and "Traceback" not in err


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def static_clear(clear_title: Any) -> Iterator[str]:
    """The clear package served as plain files (no service), like any web server or CDN would."""
    folder = clear_title.root / "titles/sintel-clear/v-test0001"
    handler = functools.partial(_QuietFiles, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


@pytest.mark.parametrize(("name", "fmt"), [("manifest.mpd", "dash"), ("master.m3u8", "hls")])
def test_manifest_url_plays_clear_content_without_the_service(static_clear: str, name: str, fmt: str,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data = play_json(capsys, monkeypatch, f"{static_clear}/{name}", "--duration", "2")
    assert data["format"] == fmt and data["qoe_posted"] is False and len(data["segments"]) == 1
