"""package: one Shaka Packager run gives a static DASH MPD and an HLS master over CMAF segments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import m3u8
import mpegdash.parser
import pytest

from reelflow.encoding.audio import encode_audio
from reelflow.encoding.encode import encode_video_rung, keyframe_frames, ladder_for_source
from reelflow.encoding.probe import probe
from reelflow.errors import StageError
from reelflow.infra.settings import EncodeConfig
from reelflow.packaging.packager import Package, package

FAST = EncodeConfig(preset="ultrafast")


@pytest.fixture(scope="module")
def talking_head_package(talking_head: Path, tmp_path_factory: pytest.TempPathFactory) -> Package:
    """Talking head (282 frames at 30 fps, 9.4 s): three rungs up to 432p plus AAC, packaged once."""
    info = probe(talking_head)
    work = tmp_path_factory.mktemp("pkg")
    keys = keyframe_frames([0], info.video.frames, info.video.fps, FAST.segment_s)
    rungs = ladder_for_source(info.video, FAST.ladder)[:3]
    renditions = [encode_video_rung(talking_head, r, keys, info, FAST, work / f"{r.name}.mp4") for r in rungs]
    renditions.append(encode_audio(talking_head, info, FAST, work / "audio.mp4"))
    return package(list(reversed(renditions)), work / "out", segment_s=FAST.segment_s)


def test_dash_is_static_with_ordered_aligned_representations(talking_head_package: Package) -> None:
    mpd = mpegdash.parser.MPEGDASHParser.parse(str(talking_head_package.root / "manifest.mpd"))
    assert mpd.type == "static"
    assert mpd.media_presentation_duration == "PT9.4S"
    video_sets = [a for a in mpd.periods[0].adaptation_sets if a.content_type == "video"]
    audio_sets = [a for a in mpd.periods[0].adaptation_sets if a.content_type == "audio"]
    assert len(video_sets) == 1 and len(audio_sets) == 1
    reps = video_sets[0].representations
    assert [(r.width, r.height) for r in reps] == [(416, 234), (640, 360), (768, 432)]  # by bitrate
    # every representation is cut at the same instants: a player can switch at any boundary
    timelines = {tuple((s.t, s.d, s.r) for s in r.segment_templates[0].segment_timelines[0].Ss) for r in reps}
    assert len(timelines) == 1


def test_hls_master_lists_every_variant_with_audio_group(talking_head_package: Package) -> None:
    master = m3u8.load(str(talking_head_package.root / "master.m3u8"))
    assert master.is_variant
    resolutions = [p.stream_info.resolution for p in master.playlists]
    assert resolutions == [(416, 234), (640, 360), (768, 432)]
    assert all(p.stream_info.audio == "audio" for p in master.playlists)
    assert [m.type for m in master.media] == ["AUDIO"]
    for playlist in master.playlists:
        media = m3u8.load(str(talking_head_package.root / playlist.uri))
        assert media.is_endlist and media.playlist_type == "vod"
        assert media.segment_map[0].uri.endswith("init.mp4")
        assert sum(s.duration for s in media.segments) == pytest.approx(9.4, abs=0.01)


def test_every_representation_decodes_from_both_manifests(
    talking_head_package: Package, decode: Callable[..., dict[str, float]]
) -> None:
    root = talking_head_package.root
    for index in range(3):
        dash = decode(root / "manifest.mpd", "-map", f"0:v:{index}")
        assert dash["frames"] == 282, index
        hls = decode(root / "master.m3u8", "-map", f"0:v:{index}")
        assert hls["frames"] == 282, index
    audio = decode(root / "manifest.mpd", "-map", "0:a:0")
    assert audio["seconds"] == pytest.approx(9.4, abs=0.1)


def test_package_refuses_audio_only(tmp_path: Path, talking_head: Path) -> None:
    info = probe(talking_head)
    audio = encode_audio(talking_head, info, FAST, tmp_path / "audio.mp4")
    with pytest.raises(StageError, match="no video"):
        package([audio], tmp_path / "out", segment_s=4.0)
