"""The ingest flow with DRM (the default) and a sidecar: keys stored before publishing, never published,
an encrypted package with several audio languages and subtitles, key reuse on re-ingest, --no-drm."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import State

from reelflow.errors import ConfigError
from reelflow.flows.ingest import ingest_flow
from reelflow.infra.settings import load_settings
from reelflow.packaging.keys import KeyStore

NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011", "cenc": "urn:mpeg:cenc:2013"}
VTT = "WEBVTT\n\n00:00:00.500 --> 00:00:01.500\nHallo\n\n00:00:02.000 --> 00:00:03.000\nWelt\n"


def run_flow_state(source: Path, storage: Path, config: Path, **params: Any) -> State[Any]:
    flow = ingest_flow(load_settings(config))
    state: State[Any] = flow(str(source), storage=str(storage), config_file=str(config), return_state=True, **params)
    return state


@pytest.fixture(scope="module")
def studio_delivery(lavfi_clip: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s 640x360 programme with two audio streams (main, description), a German dub file,
    a WebVTT file and the sidecar that lists them; returns the sidecar's path."""
    folder = tmp_path_factory.mktemp("delivery")
    source = lavfi_clip(
        "drm_programme.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=4",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-f", "lavfi", "-i", "sine=frequency=660:duration=4",
        "-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
        "-shortest")
    (folder / "programme.mp4").symlink_to(source)
    dub = lavfi_clip("drm_programme_de.wav", "-f", "lavfi", "-i", "sine=frequency=330:duration=4")
    (folder / "de.wav").symlink_to(dub)
    (folder / "de.vtt").write_text(VTT)
    sidecar = folder / "programme.json"
    sidecar.write_text(json.dumps({
        "title_id": "drm-title", "countries": ["NL", "BE"],
        "audio": [{"language": "en"}, {"stream": 1, "language": "en", "role": "description"},
                  {"file": "de.wav", "language": "de", "role": "dub"}],
        "subtitles": [{"file": "de.vtt", "language": "de"}],
    }))
    return sidecar


@pytest.fixture(scope="module")
def drm_ingest(studio_delivery: Path, drm_config: Path,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, State[Any]]:
    store = tmp_path_factory.mktemp("drm-store")
    state = run_flow_state(studio_delivery.with_suffix(".mp4"), store, drm_config, sidecar=str(studio_delivery))
    return store, state


def test_record_names_keys_tracks_and_countries(drm_ingest: tuple[Path, State[Any]], drm_config: Path) -> None:
    _, state = drm_ingest
    record = state.result()
    assert record["title_id"] == "drm-title"  # from the sidecar
    encryption = record["encryption"]
    assert encryption["scheme"] == "cenc"
    assert encryption["systems"] == ["Widevine", "PlayReady", "CommonSystem"]  # FairPlay only with cbcs
    assert encryption["hls_key_uri"] == "keys/{key_id}"
    stored = KeyStore.from_settings(load_settings(drm_config)).get_title_keys("drm-title")
    assert encryption["key_ids"] == {t: k.key_id_hex for t, k in stored.items()}
    assert set(encryption["key_ids"]) == {"AUDIO", "SD"}  # 234p and 360p rungs: SD only
    assert record["countries"] == ["NL", "BE"]
    assert [(a["language"], a["role"]) for a in record["audio"]] == [
        ("en", "main"), ("en", "description"), ("de", "dub")]
    assert record["subtitles"] == [{"language": "de", "role": "subtitle", "name": "de", "playlist": "text/de.m3u8"}]


def test_package_is_encrypted_with_the_stored_keys_which_are_never_published(
    drm_ingest: tuple[Path, State[Any]], drm_config: Path, ffmpeg: str, tmp_path: Path
) -> None:
    store, state = drm_ingest
    record = state.result()
    package = Path(record["package"])
    keys = KeyStore.from_settings(load_settings(drm_config)).get_title_keys("drm-title")
    mpd = ET.parse(package / "manifest.mpd").getroot()
    kids = {(cp.get(f"{{{NS['cenc']}}}default_KID") or "").replace("-", "")
            for cp in mpd.iter(f"{{{NS['mpd']}}}ContentProtection") if cp.get("value") == "cenc"}
    assert kids == {k.key_id_hex for k in keys.values()}
    langs = {(a.get("contentType"), a.get("lang")) for a in mpd.iter(f"{{{NS['mpd']}}}AdaptationSet")}
    assert {("audio", "en"), ("audio", "de"), ("text", "de")} <= langs
    hls = (package / "video" / "360p_365k.m3u8").read_text()
    assert f'URI="../keys/{keys["SD"].key_id_hex}",KEYFORMAT="identity"' in hls
    # nothing in the output store holds a key, in any encoding
    files = [p for p in store.rglob("*") if p.is_file()]
    assert any(p.name == "title.json" for p in files)
    for key in keys.values():
        forms = [key.key, key.key.hex().encode(), key.key.hex().upper().encode(), base64.b64encode(key.key)]
        assert not any(form in p.read_bytes() for p in files for form in forms)
    # and the segments really are encrypted with the SD key
    folder = package / "video" / "360p_365k"
    joined = tmp_path / "sd.mp4"
    joined.write_bytes(b"".join(p.read_bytes() for p in [folder / "init.mp4",
                                                        *sorted(folder.glob("*.m4s"), key=lambda p: int(p.stem))]))
    base = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"]
    without = subprocess.run([*base, "-i", str(joined), "-f", "null", "-"], capture_output=True, text=True)
    assert without.stderr.strip()  # the decoder chokes on ciphertext
    with_key = subprocess.run([*base, "-decryption_key", keys["SD"].key.hex(), "-i", str(joined), "-f", "null", "-"],
                              capture_output=True, text=True)
    assert with_key.returncode == 0 and not with_key.stderr.strip()


def test_keys_stay_out_of_the_run_logs(drm_ingest: tuple[Path, State[Any]], drm_config: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    _, state = drm_ingest
    APILogHandler().flush()
    logs: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:  # the API hands out at most 200 at a time
            page = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])),
                                    limit=200, offset=len(logs))
            logs += page
            if len(page) < 200:
                break
    text = " ".join(log.message for log in logs).lower()
    keys = KeyStore.from_settings(load_settings(drm_config)).get_title_keys("drm-title")
    assert "content keys: audio" in text and "encrypted (cenc)" in text
    for key in keys.values():
        assert key.key_id_hex in text  # ids are logged, they are public
        assert key.key.hex() not in text


def test_reingest_reuses_the_keys_in_a_new_package(
    drm_ingest: tuple[Path, State[Any]], studio_delivery: Path, drm_config: Path
) -> None:
    """Players of the old version keep their keys; the old package stays where it was."""
    store, first_state = drm_ingest
    first = first_state.result()
    second = run_flow_state(studio_delivery.with_suffix(".mp4"), store, drm_config,
                            sidecar=str(studio_delivery)).result()
    assert second["encryption"]["key_ids"] == first["encryption"]["key_ids"]
    assert second["package"] != first["package"]  # fresh IVs: never rewritten in place
    assert (Path(first["package"]) / "manifest.mpd").is_file()
    assert json.loads((store / "titles" / "drm-title" / "title.json").read_text())["package"] == second["package"]


def test_sidecar_stream_missing_from_the_media_fails_before_work(
    studio_delivery: Path, drm_config: Path, tmp_path: Path
) -> None:
    bad = studio_delivery.with_name("bad.json")
    bad.write_text(json.dumps({"audio": [{"stream": 2, "language": "en"}]}))
    state = run_flow_state(studio_delivery.with_suffix(".mp4"), tmp_path / "store", drm_config, sidecar=str(bad))
    assert state.is_failed()
    with pytest.raises(ConfigError, match=r"audio\[0\]\.stream: the media has 2 audio stream\(s\)"):
        state.result()
    assert not (tmp_path / "store" / "titles").exists()


def test_cli_no_drm_packages_in_the_clear(studio_delivery: Path, drm_config: Path, prefect_server: str,
                                          tmp_path: Path) -> None:
    """DRM is on in this config: --no-drm alone makes the package clear; the sidecar still applies."""
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "REELFLOW_CONFIG": str(drm_config),
           "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "results")}
    done = subprocess.run([sys.executable, "-m", "reelflow.cli", "ingest", str(studio_delivery.with_suffix(".mp4")),
                           "--sidecar", str(studio_delivery), "--no-drm", "--title-id", "clear-title", "--json",
                           "--storage", str(tmp_path / "out")], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    assert record["title_id"] == "clear-title" and record["encryption"] is None
    assert record["countries"] == ["NL", "BE"] and len(record["audio"]) == 3
    package = Path(record["package"])
    assert "ContentProtection" not in (package / "manifest.mpd").read_text()
    assert "EXT-X-KEY" not in (package / "video" / "360p_365k.m3u8").read_text()
