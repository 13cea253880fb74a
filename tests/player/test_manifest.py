"""Manifest parsing on the real packaged title: its DASH MPD (SegmentTimeline, and a SegmentBase one) and HLS."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelflow.infra.tools import packager_exe
from reelflow.player.manifest import parse_dash, parse_hls, with_sidx
from reelflow.player.session import PlayerHttp

PKG = "titles/sintel-enc/v-test0001"


def test_packaged_mpd_gives_the_ladder_segments_and_key_ids(encrypted_title: Any) -> None:
    text = (encrypted_title.root / PKG / "manifest.mpd").read_text()
    p = parse_dash(text, "http://cdn.example/t/manifest.mpd")
    assert p.scheme == "cenc" and p.duration_s == 6.0 and p.bases == ("http://cdn.example/t/manifest.mpd",)
    assert [(t.label, t.width) for t in p.video] == [("234p", 416), ("720p", 1280), ("1080p", 1920)]
    assert [t.kid for t in p.video] == [encrypted_title.keys[t].key_id for t in ("SD", "HD720", "HD")]
    assert p.audio[0].kid == encrypted_title.keys["AUDIO"].key_id
    top = p.video[2]
    assert top.init_path == "video/1080p_2500k/init.mp4"
    assert [(s.number, s.start_s, s.duration_s, s.path) for s in top.segments] == [
        (1, 0.0, 2.0, "video/1080p_2500k/1.m4s"), (2, 2.0, 2.0, "video/1080p_2500k/2.m4s"),
        (3, 4.0, 2.0, "video/1080p_2500k/3.m4s")]
    assert p.segment_url(top, top.segments[1].path) == "http://cdn.example/t/video/1080p_2500k/2.m4s"
    audio = p.audio[0].segments    # explicit S@t entries with AAC frame-exact durations
    assert audio[0].duration_s == pytest.approx(96256 / 48000) and audio[1].end_s == pytest.approx(4.0, abs=0.02)


def test_packaged_hls_gives_the_same_ladder_with_key_uris(encrypted_title: Any) -> None:
    root = encrypted_title.root / PKG
    base = "http://cdn.example/t/"
    p = parse_hls((root / "master.m3u8").read_text(), base + "master.m3u8",
                  lambda url: (root / url.removeprefix(base)).read_text())
    assert p.format == "hls" and p.scheme == "cenc" and p.duration_s == pytest.approx(6.0)
    assert [t.label for t in p.video] == ["234p", "720p", "1080p"]
    sd = p.video[0]
    kid = encrypted_title.keys["SD"].key_id
    assert sd.kid == kid and sd.key_url == f"{base}keys/{kid.hex()}"  # ../keys/<kid>: the package root
    assert p.segment_url(sd, sd.init_path) == f"{base}video/234p_300k/init.mp4"
    assert [s.duration_s for s in sd.segments] == [2.0, 2.0, 2.0]
    assert p.audio[0].kid == encrypted_title.keys["AUDIO"].key_id


def test_the_services_mpd_puts_segments_on_its_base_url(service: Any) -> None:
    with PlayerHttp() as http:
        info = http.play(service.url, "sintel-enc", "p-mpd", _browser(), "US")
        p = http.presentation(info.manifests["dash"], "dash")
        hls = http.presentation(info.manifests["hls"], "hls")
    assert p.bases == (f"{service.url}/titles/sintel-enc/v-test0001/",)
    assert [t.label for t in p.video] == [t.label for t in hls.video] == ["234p", "720p"]   # software DRM: 720p max
    assert hls.video[0].key_url is not None and hls.video[0].key_url.startswith(f"{service.url}/api/keys/")
    url = p.segment_url(p.video[0], p.video[0].segments[0].path)
    assert httpx.get(url).status_code == 200


def _browser() -> Any:
    from reelflow.player.devices import preset

    return preset("browser-l3")


def test_segment_base_mpd_from_the_packager_reads_its_sidx(renditions: Any, tmp_path: Path) -> None:
    """Shaka Packager without segment templates: one file per track, SegmentBase + sidx byte ranges."""
    video = next(r for r in renditions if r.kind == "video")
    subprocess.run([packager_exe(), f"in={video.path},stream=video,output=v.mp4", "--segment_duration", "2",
                    "--mpd_output", "m.mpd"], cwd=tmp_path, check=True, capture_output=True)
    p = parse_dash((tmp_path / "m.mpd").read_text(), f"file://{tmp_path}/m.mpd")
    track = p.video[0]
    assert track.index_range is not None and track.init_range is not None and not track.segments
    first, last = track.index_range
    data = (tmp_path / "v.mp4").read_bytes()
    resolved = with_sidx(track, data[first:last + 1])
    ranges = [s.byte_range for s in resolved.segments]
    assert len(ranges) == 3 and sum(s.duration_s for s in resolved.segments) == pytest.approx(6.0)
    assert ranges[0] is not None and ranges[-1] is not None
    assert ranges[0][0] == last + 1 and ranges[-1][1] == len(data) - 1
    assert data[ranges[0][0] + 4:ranges[0][0] + 8] in (b"moof", b"styp")
