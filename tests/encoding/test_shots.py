"""shots: detected cuts against truth.json on every real clip, synthetic edge cases, and bound_shots' properties."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reelflow.encoding.chunks import Chunk
from reelflow.encoding.probe import probe
from reelflow.encoding.shots import (
    Shot,
    ShotList,
    bound_shots,
    chunk_context,
    detect_chunk_cuts,
    detect_cuts,
    detect_shots,
    merge_chunk_cuts,
    shot_chunks,
)
from reelflow.errors import ConfigError, InvalidMedia, SourceNotFound, StageError
from reelflow.infra.settings import ShotConfig, load_settings
from shared_media import MEDIA_DIR


def _truth_names() -> list[str]:
    """Clip names for parametrize (collection time); a placeholder that skips when media is absent."""
    path = MEDIA_DIR / "truth.json"
    return sorted(json.loads(path.read_text())["clips"]) if path.is_file() else ["(no media)"]


@pytest.fixture(scope="session")
def detected(media_dir: Path) -> Callable[[str], list[int]]:
    """detect_cuts per clip with the default config, run once per clip per session."""
    cache: dict[str, list[int]] = {}

    def cuts(name: str) -> list[int]:
        if name not in cache:
            cache[name] = detect_cuts(media_dir / name)
        return cache[name]

    return cuts


def _within_gradual(frame: int, gradual: list[dict[str, Any]]) -> bool:
    # Inside a fade or dissolve, or on the first frame after it: a detection there is neither a hit
    # nor a false positive (truth.json lists gradual transitions as ranges, not cut frames).
    return any(g["start"] <= frame <= g["end"] + 1 for g in gradual)


@pytest.mark.parametrize("name", _truth_names())
def test_cuts_match_truth(name: str, truth: dict[str, Any], detected: Callable[[str], list[int]]) -> None:
    clip = truth.get(name)
    if clip is None:
        pytest.skip(f"{name} is not in truth.json")
    cuts = detected(name)
    missed = [c for c in clip["cuts"] if not any(abs(c - d) <= 1 for d in cuts)]
    extra = [d for d in cuts if not any(abs(c - d) <= 1 for c in clip["cuts"])]
    false_positives = [d for d in extra if not _within_gradual(d, clip["gradual"])]
    in_negatives = [d for d in cuts for n in clip["negatives"] if n["start"] <= d <= n["end"]]
    assert missed == [], f"{name}: truth cuts not found within one frame"
    assert false_positives == [], f"{name}: cuts that are not in truth"
    assert in_negatives == [], f"{name}: cuts inside a hard negative (occlusion, flicker, blur, title)"


def test_fade_in_from_black_is_not_a_cut(truth: dict[str, Any], detected: Callable[[str], list[int]]) -> None:
    """BBB opens with a fade from black (frames 5..48): HSV saturation of near-black is noise."""
    name = "01_bbb_0-30s_1280x720_vp8.webm"
    (fade,) = truth[name]["gradual"]
    assert [c for c in detected(name) if c <= fade["end"] + 1] == []


def test_sintel_shots_keep_short_real_shots(sintel_fight: Path, truth: dict[str, Any]) -> None:
    """Sintel's 18-frame shot (0.75 s) survives merging; the shots carry frames and times."""
    found = detect_shots(sintel_fight)
    expected = truth[sintel_fight.name]["cuts"]
    assert found.cuts == expected
    assert found.fps == Fraction(24) and found.frames == 240
    assert [s.start_frame for s in found.shots] == [0, *expected]
    assert min(s.frames for s in found.shots) == 18
    assert [s.boundary for s in found.shots] == ["start"] + ["cut"] * len(expected)
    for shot in found.shots:
        assert shot.start_s == shot.start_frame / 24 and shot.end_s == shot.end_frame / 24


def test_long_shot_is_split_evenly(caminandes: Path) -> None:
    """One 10 s shot with max_shot_s=4 becomes 3 pieces of 80 frames, marked as splits."""
    found = detect_shots(caminandes, ShotConfig(max_shot_s=4.0))
    assert [(s.start_frame, s.end_frame, s.boundary) for s in found.shots] == [
        (0, 80, "start"), (80, 160, "split"), (160, 240, "split")]
    assert found.cuts == []


def test_progress_reports_up_to_the_total(caminandes: Path) -> None:
    seen: list[tuple[int, int]] = []
    detect_cuts(caminandes, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) >= 10
    assert seen[-1] == (240, 240)
    assert all(total == 240 for _, total in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_given_info_is_used(sintel_fight: Path, detected: Callable[[str], list[int]]) -> None:
    info = probe(sintel_fight)
    assert detect_shots(sintel_fight, info=info).cuts == detected(sintel_fight.name)


# Synthetic clips: one property each, made by lavfi at 25 fps (320x180, x264).
_X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")


def test_synthetic_hard_cut_at_exact_frame(lavfi_clip: Any) -> None:
    clip = lavfi_clip("shots_cut.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=2",
                      "-f", "lavfi", "-i", "mandelbrot=size=320x180:rate=25",
                      "-filter_complex", "[1]trim=end_frame=50[b];[0][b]concat=n=2:v=1", *_X264)
    assert detect_cuts(clip) == [50]


def test_flash_frames_are_not_cuts(lavfi_clip: Any) -> None:
    """Two white frames (a camera flash) in one shot: the picture returns, so no cut."""
    clip = lavfi_clip("shots_flash.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=4",
                      "-vf", "drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='between(n,50,51)'", *_X264)
    assert detect_cuts(clip) == []


def test_fade_from_black_is_not_a_cut(lavfi_clip: Any) -> None:
    clip = lavfi_clip("shots_fade.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=3",
                      "-vf", "fade=t=in:st=0.4:d=1.6", *_X264)
    assert detect_cuts(clip) == []


# Bad inputs: the errors probe raises, never a traceback from av or scenedetect.


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound):
        detect_shots(tmp_path / "nope.mp4")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound):
        detect_cuts(tmp_path)


def test_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    with pytest.raises(InvalidMedia):
        detect_shots(text)


def test_file_gone_after_probe(tmp_path: Path, lavfi_clip: Any) -> None:
    clip = lavfi_clip("shots_gone.mp4", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=1", *_X264)
    info = probe(clip)
    with pytest.raises(SourceNotFound):
        detect_shots(tmp_path / "moved.mp4", info=info)


def test_damaged_file_after_probe(tmp_path: Path, lavfi_clip: Any) -> None:
    clip = lavfi_clip("shots_ok.mp4", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=1", *_X264)
    info = probe(clip)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0" * 4096)
    with pytest.raises(InvalidMedia):
        detect_cuts(broken, info=info)


# The JSON the CLI prints and the flow caches.


def _sample() -> ShotList:
    fps = Fraction(30000, 1001)
    return ShotList(fps=fps, frames=700, shots=bound_shots([100, 105, 400], 700, fps,
                                                           min_shot_s=0.5, max_shot_s=5.0))


def test_json_shape() -> None:
    shot_list = _sample()
    d = json.loads(json.dumps(shot_list.to_dict()))
    assert set(d) == {"fps", "fps_exact", "frames", "shots"}
    assert d["fps_exact"] == "30000/1001" and d["fps"] == pytest.approx(29.97, abs=0.001)
    assert d["frames"] == 700
    first = d["shots"][0]
    assert set(first) == {"index", "start_frame", "end_frame", "start_s", "end_s", "boundary"}
    assert (first["index"], first["start_frame"], first["boundary"], first["start_s"]) == (0, 0, "start", 0.0)
    assert [s["boundary"] for s in d["shots"]] == ["start", "cut", "split", "cut", "split"]
    assert ShotList.from_dict(d) == shot_list
    assert ShotList(fps=Fraction(24), frames=1, shots=()).to_dict()["fps_exact"] == "24/1"


def test_from_dict_refuses_what_does_not_tile() -> None:
    d = _sample().to_dict()
    gap = json.loads(json.dumps(d))
    gap["shots"][1]["start_frame"] += 1
    short = json.loads(json.dumps(d))
    short["frames"] = 800
    bad_kind = json.loads(json.dumps(d))
    bad_kind["shots"][1]["boundary"] = "dissolve"
    for broken in (gap, short, bad_kind, {"fps": 24}):
        with pytest.raises(StageError):
            ShotList.from_dict(broken)


# bound_shots: pure, so its promises are checked as properties.


def test_split_45s_into_three_15s_pieces() -> None:
    shots = bound_shots([], 45 * 24, Fraction(24), min_shot_s=0.5, max_shot_s=20.0)
    assert [(s.start_s, s.end_s, s.boundary) for s in shots] == [
        (0.0, 15.0, "start"), (15.0, 30.0, "split"), (30.0, 45.0, "split")]


def test_short_shot_joins_its_shorter_neighbour() -> None:
    # Shots 0-50, 50-55 (too short), 55-300: the 5-frame shot joins the 50-frame one.
    shots = bound_shots([50, 55], 300, Fraction(25), min_shot_s=0.5, max_shot_s=20.0)
    assert [(s.start_frame, s.boundary) for s in shots] == [(0, "start"), (55, "cut")]


def test_bound_shots_refuses_inconsistent_bounds() -> None:
    with pytest.raises(ConfigError):
        bound_shots([], 100, Fraction(24), min_shot_s=2.0, max_shot_s=3.0)
    with pytest.raises(ConfigError, match="max_shot_s"):
        load_settings(shots={"min_shot_s": 2.0, "max_shot_s": 3.0})
    with pytest.raises(StageError):
        bound_shots([], 0, Fraction(24), min_shot_s=0.5, max_shot_s=20.0)


_RATES = [Fraction(24), Fraction(25), Fraction(30), Fraction(24000, 1001), Fraction(30000, 1001),
          Fraction(60), Fraction(50), Fraction(15)]


@st.composite
def _inputs(draw: st.DrawFn) -> tuple[list[int], int, Fraction, float, float]:
    fps = draw(st.sampled_from(_RATES))
    frames = draw(st.integers(1, 4000))
    cuts = draw(st.lists(st.integers(-3, frames + 3), max_size=300))
    min_s = draw(st.sampled_from([0.0, 0.04, 0.1, 0.3, 0.5, 0.75, 1.0, 2.0]))
    max_s = draw(st.floats(max(2 * min_s, 0.05), 60.0, allow_nan=False))
    return cuts, frames, fps, min_s, max_s


def _nearest_frames(seconds: float, fps: Fraction) -> int:
    return int(Fraction(str(seconds)) * fps + Fraction(1, 2))


@settings(max_examples=300, deadline=None)
@given(_inputs())
@example(([18, 47, 64], 93, Fraction(15), 2.0, 4.0))     # a split that lands on a cut merged away is that cut
def test_bound_shots_properties(args: tuple[list[int], int, Fraction, float, float]) -> None:
    cuts, frames, fps, min_s, max_s = args
    shots = bound_shots(cuts, frames, fps, min_shot_s=min_s, max_shot_s=max_s)
    # They tile [0, frames) exactly, in order, indexed from 0.
    assert shots[0].start_frame == 0 and shots[-1].end_frame == frames
    assert all(a.end_frame == b.start_frame for a, b in itertools.pairwise(shots))
    assert [s.index for s in shots] == list(range(len(shots)))
    assert all(s.frames >= 1 for s in shots)
    # None shorter than the minimum (to the nearest frame) unless the whole title is.
    min_frames = max(1, _nearest_frames(min_s, fps))
    if frames >= min_frames:
        assert all(s.frames >= min_frames for s in shots)
    else:
        assert len(shots) == 1
    # None longer than the maximum (to the nearest frame).
    assert all(s.frames <= max(1, _nearest_frames(max_s, fps)) for s in shots)
    # Boundaries: the start, detected cuts that survived merging, or splits; each cut is kept as a cut.
    valid_cuts = {c for c in cuts if 0 < c < frames}
    assert shots[0].boundary == "start"
    assert all(s.boundary in ("cut", "split") for s in shots[1:])
    assert all(s.start_frame in valid_cuts for s in shots if s.boundary == "cut")
    starts = {s.start_frame for s in shots}
    kept = [c for c in valid_cuts if c in starts]
    assert all(next(s for s in shots if s.start_frame == c).boundary == "cut" for c in kept)
    # With no merging needed, every cut survives.
    bounds = [0, *sorted(valid_cuts), frames]
    if all(b - a >= min_frames for a, b in itertools.pairwise(bounds)):
        assert {s.start_frame for s in shots if s.boundary == "cut"} == valid_cuts
    # Times are frames / fps.
    for s in shots:
        assert s.start_s == float(s.start_frame / fps) and s.end_s == float(s.end_frame / fps)
        assert s.duration_s == pytest.approx(s.frames / fps)
    # Splits are even: the pieces of one shot differ by at most a frame.
    piece_groups: list[list[Shot]] = []
    for s in shots:
        if s.boundary == "split":
            piece_groups[-1].append(s)
        else:
            piece_groups.append([s])
    for group in piece_groups:
        sizes = [p.frames for p in group]
        assert max(sizes) - min(sizes) <= 1
    # Round trip through JSON.
    shot_list = ShotList(fps=fps, frames=frames, shots=shots)
    assert ShotList.from_dict(json.loads(json.dumps(shot_list.to_dict()))) == shot_list


@settings(max_examples=30, deadline=None)
@given(st.integers(2000, 20000))
def test_merging_a_strobe_stays_fast(frames: int) -> None:
    """A cut on every frame (a strobe) must not make merging quadratic."""
    shots = bound_shots(range(1, frames), frames, Fraction(25), min_shot_s=0.5, max_shot_s=20.0)
    assert all(s.frames >= 13 for s in shots)


def test_split_at_cuts_shots_at_the_grid_and_renumbers() -> None:
    from fractions import Fraction

    from reelflow.encoding.shots import Shot, split_at

    fps = Fraction(24)
    shots = [Shot(0, 0, 100, 0.0, 100 / 24, "start"), Shot(1, 100, 250, 100 / 24, 250 / 24, "cut")]
    pieces = split_at(shots, [0, 96, 100, 192], fps)
    assert [(p.index, p.start_frame, p.end_frame, p.boundary) for p in pieces] == [
        (0, 0, 96, "start"), (1, 96, 100, "split"), (2, 100, 192, "cut"), (3, 192, 250, "split")]
    assert pieces[3].start_s == 8.0 and pieces[3].end_s == 250 / 24
    assert split_at(shots, [], fps) == tuple(shots)


# ---------------------------------------------------------------------------------------------
# Split by time: chunks with their context find exactly a whole pass's cuts.


def _chunked(path: Path, chunks: tuple[Chunk, ...], config: ShotConfig = ShotConfig()) -> list[int]:
    info = probe(path)
    found = [detect_chunk_cuts(path, chunk, config, info=info) for chunk in chunks]
    return merge_chunk_cuts(chunks, found, info.video.frames)


def _edges_at(frames: int, bounds: list[int], context: tuple[int, int]) -> tuple[Chunk, ...]:
    """Chunks whose owned ranges end at ``bounds``: cuts placed exactly on, before and after an edge."""
    edges = [0, *bounds, frames]
    before, after = context
    return tuple(Chunk(i, s, e, max(0, s - before), min(frames, e + after))
                 for i, (s, e) in enumerate(itertools.pairwise(edges)))


@pytest.mark.parametrize("name", [pytest.param("c01_composite_hardcuts_12s_1280x720.mp4", marks=pytest.mark.slow),
                                  "02_tears_of_steel_10s_640x360.mp4"])
@pytest.mark.parametrize("chunk_s", [2.0, 3.0])
def test_split_cuts_equal_a_whole_pass(media_dir: Path, name: str, chunk_s: float,
                                      detected: Callable[[str], list[int]]) -> None:
    path = media_dir / name
    info = probe(path)
    chunks = shot_chunks(info, ShotConfig(chunk_s=chunk_s))
    assert len(chunks) >= 3
    assert _chunked(path, chunks) == detected(name)


def test_cuts_on_chunk_edges_are_found_once(media_dir: Path, truth: dict[str, Any],
                                            detected: Callable[[str], list[int]]) -> None:
    # Edges on a cut, a frame before one and a frame after one (c01: cuts every 60 frames).
    name = "c01_composite_hardcuts_12s_1280x720.mp4"
    path = media_dir / name
    info = probe(path)
    cuts = truth[name]["cuts"]
    context = chunk_context(ShotConfig(), info.video.fps)
    chunks = _edges_at(info.video.frames, [cuts[0], cuts[1] - 1, cuts[2] + 1, cuts[3] - 3], context)
    assert _chunked(path, chunks) == detected(name) == cuts
    # Without the context the cut at an edge is lost: the context is what makes the split exact.
    assert _chunked(path, _edges_at(info.video.frames, [cuts[0]], (0, 0))) != cuts


def test_chunk_context_covers_the_detector_and_the_guard() -> None:
    config = ShotConfig(window_width=2, guard_s=0.5, gradual=False)
    assert chunk_context(config, Fraction(24)) == (12, 11)       # the guard's 12 frames dominate
    assert chunk_context(ShotConfig(window_width=5, guard_s=0.1, gradual=False), Fraction(24)) == (6, 5)
    # Gradual transitions are decided on frames further away: their reach dominates.
    before, after = chunk_context(ShotConfig(), Fraction(24))
    assert before > 12 and after > 11


def test_merge_refuses_what_does_not_tile() -> None:
    chunks = (Chunk(0, 0, 10, 0, 14), Chunk(1, 10, 20, 6, 20))
    assert merge_chunk_cuts(chunks, [[3], [10, 15]], 20) == [3, 10, 15]
    with pytest.raises(StageError, match="does not own"):
        merge_chunk_cuts(chunks, [[3, 12], []], 20)
    with pytest.raises(StageError, match="title has 25 frames"):
        merge_chunk_cuts(chunks, [[], []], 25)
