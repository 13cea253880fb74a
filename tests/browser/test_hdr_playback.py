"""An HDR10 title with an AV1 10-bit PQ ladder and a tone-mapped H.264 SDR fallback, played in Chromium.

The title is made the way ingest makes it (encoding/hdr.py options, encoding/tonemap.py intermediate,
the project's packager, cenc with a key per tier) from a 1 s HDR10 master, and served by the session's
playback service. A device that declares AV1 and an HDR display gets the AV1 PQ ladder only; one that
declares H.264 without HDR gets the SDR fallback only; both decode frames. (Debian's chromium decodes
AV1 but not HEVC: the HEVC HDR rungs are decoded with ffmpeg in tests/flows/test_hdr_flow.py.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import urlencode

import pytest

from browser_helpers import Playback, play_in_browser
from hdr_masters import make_hdr10
from packaged_titles import KeyDatabase, PackagedTitle, _encrypted
from reelflow.encoding.encode import Rendition, encode_video_rung, keyframe_frames
from reelflow.encoding.probe import probe
from reelflow.encoding.tonemap import tonemap_source
from reelflow.infra.settings import EncodeConfig, Rung, ToneMapConfig

pytestmark = pytest.mark.slow

HDR_ID = "hdr10-enc"
RUNG = Rung(width=640, height=360, kbps=600)


@pytest.fixture(scope="module")
def hdr_title(dark_bokeh: Path, store_root: Path, key_database: KeyDatabase,
              tmp_path_factory: pytest.TempPathFactory) -> PackagedTitle:
    work = tmp_path_factory.mktemp("hdr-browser")
    master = make_hdr10(dark_bokeh, work / "hdr10_720p.mp4", 1280, 720)
    info = probe(master)
    keyframes = keyframe_frames([0], info.video.frames, info.video.fps, 2.0)
    av1 = encode_video_rung(master, RUNG, keyframes, info, EncodeConfig(codec="av1", preset="10", segment_s=2.0),
                            work / "av1_hdr.mp4", codec="av1")
    sdr = tonemap_source(info, "browser", ToneMapConfig(), work)
    h264 = encode_video_rung(sdr.path, RUNG, keyframes, sdr.info, EncodeConfig(preset="ultrafast", segment_s=2.0),
                             work / "h264.mp4")
    renditions: list[Rendition] = [dataclasses.replace(av1, ladder="av1_hdr", range="pq"),
                                   dataclasses.replace(h264, ladder="h264")]
    return _encrypted(HDR_ID, "cenc", renditions, store_root, key_database, work)


def _play(player_origin: str, service_url: str, codecs: str, hdr: bool) -> Playback:
    query = urlencode({"service": service_url, "title": HDR_ID, "format": "dash", "codecs": codecs,
                       "hdr": "1" if hdr else "0"})
    return play_in_browser(f"{player_origin}/player.html?{query}", until_s=0.8)


@pytest.mark.parametrize(("codecs", "hdr", "family"), [("av01,avc1,mp4a", True, "av01"),
                                                       ("avc1,mp4a", False, "avc1")], ids=["av1-hdr", "sdr"])
def test_hdr_device_gets_av1_pq_and_sdr_device_the_fallback(
        service_url: str, player_origin: str, hdr_title: PackagedTitle, codecs: str, hdr: bool,
        family: str) -> None:
    result = _play(player_origin, service_url, codecs, hdr)
    report = result.report()
    assert result["state"] in ("playing", "ended") and result["error"] is None, report
    assert result["current_time"] >= 0.8 and result["video_error"] is None and result["frames"] > 0, report
    assert result["key_system"] == "org.w3.clearkey", report
    variants = result["variants"]
    assert variants and all(v["codecs"].startswith(family) for v in variants), report
    if family == "av01":
        assert all(".10." in v["codecs"] for v in variants), report          # the 10-bit AV1 rung
