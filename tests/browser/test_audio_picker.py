"""The service's /play page in headless Chromium picks the audio language and channel count (issue 15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from audio_masters import audio_masters_dir, mov_master
from browser_helpers import play_in_browser
from packaged_titles import PackagedTitle
from reelflow.encoding.audio import encode_track, plan_audio
from reelflow.encoding.encode import encode_video_rung, keyframe_frames
from reelflow.encoding.probe import probe
from reelflow.infra.settings import EncodeConfig, Rung
from reelflow.infra.storage import LocalStorage
from reelflow.packaging import publish
from reelflow.packaging.packager import package

__all__ = ["audio_masters_dir", "mov_master"]  # fixtures used here

pytestmark = pytest.mark.slow
TITLE = "feature-audio"


@pytest.fixture(scope="module")
def audio_title(mov_master: Path, encrypted_title: PackagedTitle, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The MOV master (English 5.1 + its stereo, French, untagged), clear, in the service's store."""
    info = probe(mov_master)
    work = tmp_path_factory.mktemp("audio-title")
    fast = EncodeConfig(preset="ultrafast", segment_s=2.0)
    keys = keyframe_frames([0], info.video.frames, info.video.fps, fast.segment_s)
    video = encode_video_rung(mov_master, Rung(width=416, height=234, kbps=300), keys, info, fast, work / "v.mp4")
    tracks = [encode_track(mov_master, info, t, work / f"{t.name}.mp4") for t in plan_audio(info).tracks]
    pkg = package([video, *tracks], work / "out", segment_s=fast.segment_s)
    store = LocalStorage(encrypted_title.root)
    prefix = f"titles/{TITLE}/v-audio0001"
    publish.publish_package(pkg.root, store, prefix)
    publish.write_title_record(store, f"titles/{TITLE}", {
        "title_id": TITLE, "status": "published", "package": store.url_for(prefix),
        "source": {"probe": {"duration_s": info.duration_s}},
        "manifests": {"dash": store.url_for(f"{prefix}/manifest.mpd"), "hls": store.url_for(f"{prefix}/master.m3u8")},
        "encryption": None, "countries": None})
    return TITLE


@pytest.mark.parametrize(("query", "language", "channels"), [
    ("lang=fr", "fr", 2),
    ("lang=en", "en", 6),                       # AAC 5.1 decodes in Chromium
    ("lang=en&audio_channels=2", "en", 2),      # the service drops the 5.1; the page gets the stereo
])
def test_play_page_picks_audio(service_url: str, audio_title: str, query: str, language: str, channels: int) -> None:
    result = play_in_browser(f"{service_url}/play/{audio_title}?{query}", until_s=1.0)
    report: Any = result.report()
    assert result["state"] in ("playing", "ended") and result["error"] is None, report
    active = [v for v in result["variants"] if v["active"]]
    assert active and (active[0]["language"], active[0]["channels"]) == (language, channels), report
    picker = result["audio_picker"]
    assert {(t["language"], t["channels"]) for t in picker} >= {("fr", 2), ("en", 2)}, report
    assert any(t["active"] and t["language"] == language for t in picker), report
