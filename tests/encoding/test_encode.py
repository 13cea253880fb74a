"""encode: ladder and keyframe planning (pure), and real encodes with aligned keyframes."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelflow.encoding.audio import encode_audio
from reelflow.encoding.codecs import CodecName
from reelflow.encoding.encode import (
    ShotCrf,
    drop_leading_frames,
    encode_rung_per_shot,
    encode_video_rung,
    force_key_frames_arg,
    keyframe_frames,
    keyframe_sizes,
    ladder_for_source,
    piece_file_name,
    read_keyframes,
    segment_frames,
)
from reelflow.encoding.probe import probe
from reelflow.errors import StageError
from reelflow.infra.settings import APPLE_HLS_LADDER, EncodeConfig

FAST = EncodeConfig(preset="ultrafast")


def test_ladder_leaves_out_rungs_above_the_source(sintel_fight: Path, dark_bokeh: Path) -> None:
    small = ladder_for_source(probe(sintel_fight).video, APPLE_HLS_LADDER)
    assert [(r.width, r.height, r.kbps) for r in small] == [(416, 234, 145), (640, 360, 365)]
    full = ladder_for_source(probe(dark_bokeh).video, APPLE_HLS_LADDER)
    assert full == APPLE_HLS_LADDER  # 16:9 at 1080: Apple's ladder as published


def test_ladder_follows_a_four_by_three_display_aspect(lavfi_clip: object) -> None:
    clip = lavfi_clip("pal43.mp4", "-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25:duration=1",  # type: ignore[operator]
                      "-vf", "setsar=16/15", "-c:v", "libx264", "-preset", "ultrafast")
    rungs = ladder_for_source(probe(clip).video, APPLE_HLS_LADDER)
    assert [(r.width, r.height) for r in rungs] == [(312, 234), (480, 360), (576, 432), (576, 432), (720, 540)]


def test_ladder_refuses_a_source_smaller_than_every_rung(lavfi_clip: object) -> None:
    clip = lavfi_clip("tiny.mp4", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=1",  # type: ignore[operator]
                      "-c:v", "libx264", "-preset", "ultrafast")
    with pytest.raises(StageError, match="no rung"):
        ladder_for_source(probe(clip).video, APPLE_HLS_LADDER)


def test_segment_grid_is_whole_frames() -> None:
    assert segment_frames(Fraction(24), 4.0) == 96
    assert segment_frames(Fraction(30000, 1001), 4.0) == 120
    assert segment_frames(Fraction(25), 4.0) == 100


@given(
    starts=st.lists(st.integers(0, 5000), max_size=40),
    frames=st.integers(1, 5000),
    fps=st.sampled_from([Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(60)]),
    segment_s=st.sampled_from([2.0, 4.0, 6.0]),
)
def test_keyframes_cover_grid_and_shot_starts(starts: list[int], frames: int, fps: Fraction,
                                              segment_s: float) -> None:
    keys = keyframe_frames(starts, frames, fps, segment_s)
    step = segment_frames(fps, segment_s)
    assert keys[0] == 0 and list(keys) == sorted(set(keys))
    assert all(0 <= k < frames for k in keys)
    assert set(range(0, frames, step)) <= set(keys)
    assert {s for s in starts if s < frames} <= set(keys)
    # no gap between keyframes is longer than the grid step
    assert all(b - a <= step for a, b in zip(keys, [*keys[1:], frames], strict=True))


def test_forced_times_aim_half_a_frame_early() -> None:
    assert force_key_frames_arg([0, 1, 96], Fraction(24)) == "0.000000,0.020833,3.979167"


@pytest.fixture(scope="module")
def sintel_rungs(sintel_fight: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], tuple[int, ...]]:
    """Both 640x360 rungs of Sintel with shot-start keyframes from truth, encoded once."""
    info = probe(sintel_fight)
    cuts = [0, 58, 76, 96, 118, 140, 176, 209]
    keys = keyframe_frames(cuts, info.video.frames, info.video.fps, FAST.segment_s)
    out = tmp_path_factory.mktemp("rungs")
    paths = []
    for rung in ladder_for_source(info.video, FAST.ladder):
        rendition = encode_video_rung(sintel_fight, rung, keys, info, FAST, out / f"{rung.name}.mp4")
        paths.append(rendition.path)
    return paths, keys


def test_rungs_have_planned_keyframes_at_the_same_frames(sintel_rungs: tuple[list[Path], tuple[int, ...]]) -> None:
    paths, keys = sintel_rungs
    assert keys == (0, 58, 76, 96, 118, 140, 176, 192, 209)
    for path in paths:
        frames, found = read_keyframes(path)
        assert frames == 240
        assert tuple(found) == keys
    assert not list(paths[0].parent.glob("*.partial.*"))


def test_rung_bitrate_is_near_target(sintel_rungs: tuple[list[Path], tuple[int, ...]]) -> None:
    paths, _ = sintel_rungs
    for path, target in zip(paths, (145, 365), strict=True):
        kbps = path.stat().st_size * 8 / 1000 / 10.0
        assert 0.6 * target < kbps < 1.3 * target, (path.name, kbps)


def test_ntsc_rate_keeps_every_frame(dog: Path, tmp_path: Path) -> None:
    """30000/1001 with a 4 s grid: keyframes at multiples of 120 frames, no frame dropped or doubled."""
    clip = dog
    info = probe(clip)
    keys = keyframe_frames([0, 77], info.video.frames, info.video.fps, 4.0)
    rung = FAST.ladder[0]
    rendition = encode_video_rung(clip, rung, keys, info, FAST, tmp_path / "dog.mp4")
    assert rendition.frames == 289
    assert tuple(read_keyframes(rendition.path)[1]) == (0, 77, 120, 240)


def test_audio_is_stereo_aac_48k(talking_head: Path, tmp_path: Path) -> None:
    """44.1 kHz speech in, 48 kHz stereo AAC near the configured 128 kb/s out."""
    info = probe(talking_head)
    rendition = encode_audio(talking_head, info, FAST, tmp_path / "audio.mp4")
    assert probe_audio(rendition.path) == ("aac", 2, 48000)
    assert rendition.duration_s == pytest.approx(9.426, abs=0.05)
    assert 100 < rendition.kbps < 160


def probe_audio(path: Path) -> tuple[str, int, int]:
    import av

    with av.open(str(path)) as container:
        cc = container.streams.audio[0].codec_context
        return cc.name, cc.layout.nb_channels, cc.sample_rate


def test_audio_of_a_silent_source_is_refused(sintel_fight: Path, tmp_path: Path) -> None:
    with pytest.raises(StageError, match="no audio"):
        encode_audio(sintel_fight, probe(sintel_fight), FAST, tmp_path / "a.mp4")


def test_finished_encode_is_reused_and_a_bad_one_redone(sintel_fight: Path, tmp_path: Path) -> None:
    """The final name is only given to a verified encode; a file there that fails the check is redone."""
    info = probe(sintel_fight)
    keys = keyframe_frames([0, 58], info.video.frames, info.video.fps, FAST.segment_s)
    rung = FAST.ladder[0]
    out = tmp_path / "rung.mp4"
    first = encode_video_rung(sintel_fight, rung, keys, info, FAST, out)
    stamp = out.stat().st_mtime_ns
    again = encode_video_rung(sintel_fight, rung, keys, info, FAST, out)
    assert out.stat().st_mtime_ns == stamp and again == first
    other_plan = keyframe_frames([0, 100], info.video.frames, info.video.fps, FAST.segment_s)
    redone = encode_video_rung(sintel_fight, rung, other_plan, info, FAST, out)  # plan changed: not reusable
    assert out.stat().st_mtime_ns != stamp and tuple(read_keyframes(redone.path)[1]) == other_plan


def test_late_video_and_long_audio_land_on_the_video_timeline(lavfi_clip: object, tmp_path: Path) -> None:
    """Video starting 0.5 s after the audio, audio 1.5 s longer than the video.

    The video keeps exactly its frames and planned keyframes (no padded head frames), and the audio
    is cut to the video's span: what played before the first frame or after the last is dropped.
    """
    clip = lavfi_clip("vlate.mp4", "-itsoffset", "0.5", "-f", "lavfi",  # type: ignore[operator]
                      "-i", "testsrc2=size=320x180:rate=24:duration=8",
                      "-f", "lavfi", "-i", "sine=frequency=440:duration=9.5:sample_rate=48000",
                      "-c:v", "libx264", "-preset", "ultrafast", "-g", "24", "-c:a", "aac")
    info = probe(clip)
    assert info.video.start_s == pytest.approx(0.5, abs=0.01) and info.audio[0].start_s == 0.0
    keys = keyframe_frames([0, 50], info.video.frames, info.video.fps, 4.0)
    video = encode_video_rung(clip, FAST.ladder[0], keys, info, FAST, tmp_path / "v.mp4")
    assert video.frames == 192 and tuple(read_keyframes(video.path)[1]) == (0, 50, 96)
    audio = encode_audio(clip, info, FAST, tmp_path / "a.mp4")
    assert audio.duration_s == pytest.approx(8.0, abs=0.03)


def test_per_shot_rung_joins_pieces_at_their_own_crfs(sintel_fight: Path, tmp_path: Path) -> None:
    """Three shots at CRF 23, 30 and 18 joined without re-encoding: every frame, every planned keyframe,
    and the CRF really differs per shot (bits per frame follow it)."""
    info = probe(sintel_fight)
    keys = keyframe_frames([0, 58, 140], info.video.frames, info.video.fps, 4.0)
    pieces = [ShotCrf(0, 58, 23), ShotCrf(58, 140, 30), ShotCrf(140, 240, 18)]
    rendition = encode_rung_per_shot(sintel_fight, info, 416, 234, pieces, keys, "ultrafast", tmp_path / "r.mp4",
                                     target_kbps=300)
    frames, found = read_keyframes(rendition.path)
    assert frames == 240 and tuple(found) == keys == (0, 58, 96, 140, 192)
    assert (rendition.width, rendition.height, rendition.target_kbps) == (416, 234, 300)
    import av

    with av.open(str(rendition.path)) as container:
        sizes = [(p.pts, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    sizes.sort()
    per_frame = [sum(s for _, s in sizes[a:b]) / (b - a) for a, b in ((0, 58), (58, 140), (140, 240))]
    assert per_frame[1] < per_frame[0] < per_frame[2]  # CRF 30 cheapest, CRF 18 dearest
    assert not list(tmp_path.glob("r-*"))  # the pieces are gone


def _frames(path: Path) -> list[object]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray").astype("float64") for f in container.decode(video=0)]


def test_preroll_is_encoded_and_dropped_without_moving_a_frame(sintel_fight: Path, tmp_path: Path) -> None:
    """Pieces that start 6 frames early keep every frame where it was: the same frames, the same
    keyframes, and each frame is the picture a join without pre-roll has there (a frame off by one
    in this fight would differ by far more than coding noise)."""
    info = probe(sintel_fight)
    keys = keyframe_frames([0, 58, 140], info.video.frames, info.video.fps, 4.0)
    pieces = [ShotCrf(0, 58, 20), ShotCrf(58, 140, 20), ShotCrf(140, 240, 20)]
    plain = encode_rung_per_shot(sintel_fight, info, 416, 234, pieces, keys, "ultrafast", tmp_path / "plain.mp4")
    rolled = encode_rung_per_shot(sintel_fight, info, 416, 234, pieces, keys, "ultrafast", tmp_path / "rolled.mp4",
                                  preroll=6)
    assert read_keyframes(rolled.path) == (240, list(keys))
    import numpy as np

    a, b = _frames(plain.path), _frames(rolled.path)
    assert len(a) == len(b) == 240
    same = [float(np.mean(np.abs(x - y))) for x, y in zip(a, b, strict=True)]
    shifted = [float(np.mean(np.abs(x - y))) for x, y in zip(a[1:], b, strict=False)]
    assert max(same) < 4.0 < float(np.median(shifted))
    assert rolled.cpu_s > 0 and not list(tmp_path.glob("rolled-*"))


def test_dropping_a_preroll_needs_a_keyframe_after_it(sintel_fight: Path, tmp_path: Path) -> None:
    info = probe(sintel_fight)
    rendition = encode_rung_per_shot(sintel_fight, info, 416, 234, [ShotCrf(0, 240, 30)], [0], "ultrafast",
                                     tmp_path / "r.mp4")
    with pytest.raises(StageError, match="frame 5 is not a keyframe"):
        drop_leading_frames(rendition.path, 5, tmp_path / "cut.mp4")


def test_per_shot_pieces_must_tile_the_title(sintel_fight: Path, tmp_path: Path) -> None:
    info = probe(sintel_fight)
    with pytest.raises(StageError, match="tile"):
        encode_rung_per_shot(sintel_fight, info, 416, 234, [ShotCrf(0, 100, 23), ShotCrf(120, 240, 23)], [0],
                             "ultrafast", tmp_path / "r.mp4")


# Sintel's fight (640x360, 240 frames) as a rung that switches resolution at its shot starts
SWITCH_KEYS = (0, 58, 96, 140, 192)
SWITCH_PIECES = [ShotCrf(0, 58, 26, 416, 234), ShotCrf(58, 140, 26, 256, 144), ShotCrf(140, 240, 26, 416, 234)]


@pytest.mark.parametrize(("codec", "tag"), [("h264", "avc3"), ("hevc", "hev1")])
def test_per_shot_resolution_rung_decodes_every_frame_at_its_pieces_sizes(sintel_fight: Path, tmp_path: Path,
                                                                          codec: CodecName, tag: str) -> None:
    """Pieces of 416x234, 256x144 and 416x234 (each with the ingest's pre-roll) joined without
    re-encoding: every frame decodes, at its piece's size, under an avc3/hev1 sample entry that
    declares the largest size."""
    import av

    info = probe(sintel_fight)
    keys = keyframe_frames([0, 58, 140], info.video.frames, info.video.fps, 4.0)
    assert keys == SWITCH_KEYS
    rendition = encode_rung_per_shot(sintel_fight, info, 416, 234, SWITCH_PIECES, keys, "ultrafast",
                                     tmp_path / "r.mp4", target_kbps=300, codec=codec, preroll=6)
    assert (rendition.width, rendition.height, rendition.frames) == (416, 234, 240)
    assert read_keyframes(rendition.path) == (240, list(keys))
    assert keyframe_sizes(rendition.path) == [(416, 234), (256, 144), (256, 144), (416, 234), (416, 234)]
    with av.open(str(rendition.path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.codec_tag == tag
        sizes = [(f.width, f.height) for f in container.decode(stream)]
    assert sizes == [(416, 234)] * 58 + [(256, 144)] * 82 + [(416, 234)] * 100
    entry = rendition.path.read_bytes()
    at = entry.index(tag.encode(), entry.index(b"stsd")) + 4   # VisualSampleEntry: width, height after 24 bytes
    assert (int.from_bytes(entry[at + 24:at + 26], "big"), int.from_bytes(entry[at + 26:at + 28], "big")) == (416, 234)


def test_per_shot_resolution_rung_is_declared_at_its_largest_piece(sintel_fight: Path, tmp_path: Path) -> None:
    """Refused before any piece is encoded (no piece file is made)."""
    info = probe(sintel_fight)
    with pytest.raises(StageError, match="must be its largest piece"):
        encode_rung_per_shot(sintel_fight, info, 640, 360, SWITCH_PIECES, SWITCH_KEYS, "ultrafast",
                             tmp_path / "r.mp4")
    same = [ShotCrf(p.start_frame, p.end_frame, p.crf, 256, 144) for p in SWITCH_PIECES]
    with pytest.raises(StageError, match="must be its largest piece"):    # one size, not the rung's
        encode_rung_per_shot(sintel_fight, info, 416, 234, same, SWITCH_KEYS, "ultrafast", tmp_path / "r.mp4")
    with pytest.raises(StageError, match="per-shot resolution is for h264 and hevc"):
        encode_rung_per_shot(sintel_fight, info, 416, 234, SWITCH_PIECES, SWITCH_KEYS, "8", tmp_path / "r.mp4",
                             codec="av1")
    with pytest.raises(StageError, match="every piece its size"):
        encode_rung_per_shot(sintel_fight, info, 416, 234, [ShotCrf(0, 58, 26), *SWITCH_PIECES[1:]], SWITCH_KEYS,
                             "ultrafast", tmp_path / "r.mp4")
    assert not list(tmp_path.rglob("*.mp4"))


def test_a_piece_of_its_own_size_is_a_different_encode() -> None:
    """Its parameter sets are in band, so it never reuses a rung-sized piece of the same size."""
    own, plain = ShotCrf(0, 58, 26, 416, 234), ShotCrf(0, 58, 26)
    assert piece_file_name(416, 234, own, SWITCH_KEYS, "medium") != piece_file_name(416, 234, plain, SWITCH_KEYS,
                                                                                     "medium")
    assert piece_file_name(640, 360, own, SWITCH_KEYS, "medium").startswith("234p-")


def _loudness(ffmpeg: str, path: Path) -> float:
    import re
    import subprocess

    done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path), "-af", "ebur128", "-f", "null", "-"],
                          capture_output=True, text=True, check=True)
    return float(re.findall(r"I:\s+(-?[\d.]+) LUFS", done.stderr)[-1])


def test_audio_stream_file_language_role_and_loudness(lavfi_clip: Callable[..., Path], ffmpeg: str,
                                                      tmp_path: Path) -> None:
    """A source's second audio stream, or a separate file, each fitted to the video and normalised."""
    make = lavfi_clip
    source = make("two_audio.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=3",
                  "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
                  "-f", "lavfi", "-i", "sine=frequency=880:duration=3,volume=-18dB",
                  "-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast",
                  "-c:a", "aac", "-metadata:s:a:1", "language=fra", "-shortest")
    dub = make("dub_long.wav", "-f", "lavfi", "-i", "sine=frequency=330:duration=5,volume=-30dB")
    info = probe(source)
    second = encode_audio(source, info, FAST, tmp_path / "fr.mp4", stream=1, role="description",
                          loudness_lufs=-23.0)
    assert (second.language, second.role, second.name) == ("fra", "description", "aac_fra_description")
    assert _loudness(ffmpeg, second.path) == pytest.approx(-23.0, abs=1.0)
    external = encode_audio(source, info, FAST, tmp_path / "de.mp4", audio_file=dub, language="de", role="dub",
                            loudness_lufs=-23.0)
    assert external.name == "aac_de_dub" and external.duration_s == pytest.approx(3.0, abs=0.05)  # cut to the video
    assert _loudness(ffmpeg, external.path) == pytest.approx(-23.0, abs=1.0)
    default = encode_audio(source, info, FAST, tmp_path / "main.mp4")
    assert (default.language, default.role, default.name) == ("und", "main", "aac_und")  # as before
    with pytest.raises(StageError, match="has 2 audio stream"):
        encode_audio(source, info, FAST, tmp_path / "x.mp4", stream=2)
    with pytest.raises(StageError, match="has 1 audio stream"):
        encode_audio(source, info, FAST, tmp_path / "y.mp4", audio_file=dub, stream=1)
