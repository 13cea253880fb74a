"""vmaf: scores of real encodes at display size, exact frame timelines, subsampling that changes no score."""

from __future__ import annotations

import itertools
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from reelflow.encoding.probe import probe
from reelflow.encoding.shots import Shot
from reelflow.encoding.trials import trial_encode_argv
from reelflow.encoding.vmaf import (
    VmafError,
    check_pieces,
    check_subsample,
    joined_scores,
    measure_rung_vmaf,
    measure_vmaf,
    measure_vmaf_many,
    piece_centres,
    piece_scores,
    rung_spans,
    span_cover,
    vmaf_argv,
)
from reelflow.errors import ConfigError
from reelflow.infra.settings import TrialConfig
from reelflow.infra.tools import run

FPS = Fraction(24)


def _shot(start: int, end: int, fps: Fraction = FPS) -> Shot:
    return Shot(index=0, start_frame=start, end_frame=end, start_s=float(start / fps), end_s=float(end / fps),
                boundary="cut")


@pytest.fixture(scope="module")
def lossless_cut(sintel_fight: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frames 48-96 of Sintel (fast motion, cuts at 58 and 76), cut by the trial argv at CRF 0 (lossless)."""
    out = tmp_path_factory.mktemp("vmaf") / "cut48.nut"
    run(trial_encode_argv(sintel_fight, _shot(48, 96), 640, 360, 0, FPS, "ultrafast", out))
    return out


@pytest.fixture(scope="module")
def crushed(sintel_fight: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 48 frames at 160x90, CRF 45: what any metric must call bad."""
    out = tmp_path_factory.mktemp("vmaf") / "crushed.nut"
    run(trial_encode_argv(sintel_fight, _shot(0, 48), 160, 90, 45, FPS, "ultrafast", out))
    return out


def test_a_clip_against_itself_scores_about_100(sintel_fight: Path) -> None:
    result = measure_vmaf(sintel_fight, sintel_fight, width=640, height=360, fps=FPS, frames=48)
    assert result.frames == 48
    assert result.mean > 97
    assert result.min <= result.p5 <= result.mean
    assert result.harmonic_mean <= result.mean
    assert result.cpu_s > 0


def test_a_crushed_copy_scores_far_lower(sintel_fight: Path, crushed: Path) -> None:
    result = measure_vmaf(crushed, sintel_fight, width=640, height=360, fps=FPS, frames=48)
    assert result.frames == 48
    assert result.mean < 60       # upscaled from 160x90 at CRF 45 to the display size


def test_the_shot_timeline_is_frame_exact(sintel_fight: Path, lossless_cut: Path) -> None:
    aligned = measure_vmaf(lossless_cut, sintel_fight, width=640, height=360, fps=FPS, ref_start_frame=48,
                           frames=48)
    off_by_one = measure_vmaf(lossless_cut, sintel_fight, width=640, height=360, fps=FPS, ref_start_frame=49,
                              frames=48)
    assert aligned.mean > 97 and aligned.min > 90      # every frame met its own original
    assert off_by_one.mean < aligned.mean - 5


def test_a_short_encode_is_not_scored_silently(sintel_fight: Path, lossless_cut: Path) -> None:
    with pytest.raises(VmafError, match="has 48 frames, 60 are to be compared"):
        measure_vmaf(lossless_cut, sintel_fight, width=640, height=360, fps=FPS, ref_start_frame=48, frames=60)


def test_subsampled_scores_equal_the_full_run_on_those_frames(sintel_fight: Path, crushed: Path) -> None:
    """The (n-1, n, n+1) selection keeps VMAF's motion feature exact: every-7th-frame scores change nothing."""
    full = measure_vmaf(crushed, sintel_fight, width=640, height=360, fps=FPS, frames=48)
    sub = measure_vmaf(crushed, sintel_fight, width=640, height=360, fps=FPS, frames=48, subsample=7)
    assert sub.scored == (0, 7, 14, 21, 28, 35, 42)
    assert sub.scores == pytest.approx([full.scores[f] for f in sub.scored], abs=1e-4)
    assert sub.cpu_s < full.cpu_s


def test_pieces_score_every_shot_from_its_own_first_frame(sintel_fight: Path, crushed: Path) -> None:
    pieces = [(0, 13, 5), (13, 30, 7), (30, 48, 11)]
    full = measure_vmaf(crushed, sintel_fight, width=640, height=360, fps=FPS, frames=48)
    [whole] = measure_vmaf_many([crushed], sintel_fight, width=640, height=360, fps=FPS, frames=48, pieces=pieces)
    assert whole.scored == tuple(piece_centres(pieces)) == (0, 5, 10, 13, 20, 27, 30, 41)
    assert whole.scores == pytest.approx([full.scores[f] for f in whole.scored], abs=1e-4)
    first, second, third = piece_scores(whole, pieces)
    assert (first.frames, second.frames, third.frames) == (3, 3, 2)
    # A piece's first frame stands for itself, the others for the rest of the piece.
    assert third.mean == pytest.approx((full.scores[30] + 17 * full.scores[41]) / 18, abs=1e-4)


@pytest.mark.parametrize("step", [2, 3, 4, 6, 8, 9, 10, 12, 0])
def test_a_step_sharing_a_factor_with_gop_periods_is_refused(step: int) -> None:
    with pytest.raises(ConfigError, match="B-frame/GOP"):
        check_subsample(step)
    with pytest.raises(ValueError):
        TrialConfig(vmaf_subsample=step)


@pytest.mark.parametrize("step", [1, 5, 7, 11, 13])
def test_steps_coprime_with_six_are_fine(step: int) -> None:
    assert check_subsample(step) == step
    assert TrialConfig(vmaf_subsample=step).vmaf_subsample == step


def test_pieces_are_checked() -> None:
    with pytest.raises(ConfigError, match="all subsampled"):
        check_pieces([(0, 10, 1), (10, 20, 5)])
    with pytest.raises(ConfigError, match="fewer than 3"):
        check_pieces([(0, 2, 5), (2, 20, 5)])
    with pytest.raises(ConfigError, match="ascending"):
        check_pieces([(0, 10, 5), (8, 20, 5)])
    # Neighbouring triples never share a frame: the last scored frame is 3 before the next piece.
    centres = piece_centres([(0, 13, 5), (13, 20, 5)])
    assert centres == [0, 5, 10, 13, 18]


def test_argv_normalises_both_inputs_and_selects_before_scaling(tmp_path: Path) -> None:
    argv = vmaf_argv(Path("d.nut"), Path("ref.mp4"), width=768, height=576, fps=Fraction(25), subsample=7,
                     ref_start_frame=50, frames=25, log_path=tmp_path / "v.json", threads=1)
    graph = argv[argv.index("-filter_complex") + 1]
    ref_chain, dist_chain = graph.split(";")[0], graph.split(";")[1]
    for chain in (ref_chain, dist_chain):
        assert "setpts=N*1/25/TB" in chain and "trim=end_frame=25" in chain
        assert chain.index("select=") < chain.index("scale=768:576:flags=bicubic")   # skipped frames cost no scaling
    assert "model=version=vmaf_v0.6.1" in graph and "n_subsample=3" in graph and "log_fmt=json" in graph
    seek = argv.index("-ss")
    assert argv[seek - 2:seek] == ["-seek_timestamp", "1"]
    assert float(argv[seek + 1]) == pytest.approx(49.5 / 25)         # half a frame before frame 50
    assert argv[argv.index("-i", seek) + 1] == "ref.mp4"               # the seek is the reference's


def test_a_log_path_with_filtergraph_characters_works(sintel_fight: Path, tmp_path: Path) -> None:
    odd = tmp_path / "a:b,c'd [e]"
    odd.mkdir()
    result = measure_vmaf(sintel_fight, sintel_fight, width=640, height=360, fps=FPS, frames=5, log_dir=odd)
    assert result.frames == 5


def test_non_square_pixels_are_scored_at_display_size(lavfi_clip: object, ffmpeg: str, tmp_path: Path) -> None:
    clip = lavfi_clip("pal43_vmaf.mp4", "-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25:duration=1",  # type: ignore[operator]
                      "-vf", "setsar=16/15", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0")
    info = probe(clip)
    assert info.video.display_width == 768
    rung = tmp_path / "rung.nut"
    run(trial_encode_argv(clip, _shot(0, 25, Fraction(25)), 384, 288, 18, Fraction(25), "ultrafast", rung))
    result = measure_rung_vmaf(rung, info)
    assert result.frames == info.video.frames == 25
    assert 60 < result.mean < 100
    described = subprocess.run([ffmpeg, "-hide_banner", "-i", str(rung)], capture_output=True, text=True,
                               check=False).stderr
    assert "384x288" in described


@pytest.fixture(scope="module")
def whole_rung(sintel_fight: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 240 frames at 416x234, CRF 30 with keyframes every 2 s: a delivered rung, as the flow makes one."""
    from reelflow.encoding.encode import ShotCrf, encode_rung_per_shot, keyframe_frames

    info = probe(sintel_fight)
    keys = keyframe_frames([0], info.video.frames, info.video.fps, 2.0)
    out = tmp_path_factory.mktemp("vmaf-rung") / "rung.mp4"
    return encode_rung_per_shot(sintel_fight, info, 416, 234, [ShotCrf(0, info.video.frames, 30)], keys, "ultrafast",
                                out).path


def test_a_rung_that_switches_resolution_is_scored_on_every_frame(sintel_fight: Path, tmp_path: Path) -> None:
    """A per-shot-resolution rung (416x234, 256x144, 416x234) gets a score for each of its 240 frames,
    and its first piece's frames score exactly as that piece encoded and scored alone."""
    from reelflow.encoding.encode import ShotCrf, encode_piece, encode_rung_per_shot, keyframe_frames

    info = probe(sintel_fight)
    keys = keyframe_frames([0, 58, 140], info.video.frames, info.video.fps, 4.0)
    pieces = [ShotCrf(0, 58, 30, 416, 234), ShotCrf(58, 140, 30, 256, 144), ShotCrf(140, 240, 30, 416, 234)]
    rung = encode_rung_per_shot(sintel_fight, info, 416, 234, pieces, keys, "ultrafast", tmp_path / "r.mp4")
    result = measure_rung_vmaf(rung.path, info, height=234)
    assert len(result.scores) == 240
    encode_piece(sintel_fight, info, 416, 234, pieces[0], keys, "ultrafast", tmp_path / "p0.mp4")
    alone = measure_vmaf_many([tmp_path / "p0.mp4"], sintel_fight, width=640, height=360, fps=info.video.fps,
                              frames=58)[0]
    assert result.scores[:57] == pytest.approx(alone.scores[:57], abs=1e-6)   # frame 57's next neighbour differs


@pytest.mark.parametrize("step", [1, 5])
def test_spans_of_a_rung_join_to_the_whole_run_frame_for_frame(sintel_fight: Path, whole_rung: Path,
                                                               step: int) -> None:
    """Spans that start off the rung's keyframes (every 48th frame) and cut through shots: each
    score equals the whole run's, motion included (one frame of context on each side)."""
    info = probe(sintel_fight)
    frames = info.video.frames
    spans = rung_spans(frames, info.video.fps, 1.45, step)
    assert len(spans) >= 5 and spans[0][0] == 0 and spans[-1][1] == frames
    assert any(start % 48 for start, _ in spans[1:])   # not only on keyframes
    whole = measure_rung_vmaf(whole_rung, info, subsample=step)
    joined = joined_scores([measure_rung_vmaf(whole_rung, info, subsample=step, span=s) for s in spans], frames)
    assert joined.scored == whole.scored
    assert joined.scores == pytest.approx(whole.scores, abs=1e-4)
    assert joined.mean == pytest.approx(whole.mean, abs=1e-4) and joined.frames == whole.frames
    assert joined.cpu_s > 0


@pytest.mark.parametrize("step", [1, 5])
def test_a_span_scored_from_its_own_pieces_equals_the_whole_run(sintel_fight: Path, tmp_path: Path,
                                                                step: int) -> None:
    """The flow scores a rung's spans before it joins the rung: each span from the pieces that cover it
    (span_cover), the file starting at the first one's frame (``offset``)."""
    from reelflow.encoding.encode import ShotCrf, concat_pieces, encode_piece, join_pieces, keyframe_frames

    info = probe(sintel_fight)
    frames = info.video.frames
    keys = keyframe_frames([0], frames, info.video.fps, 2.0)
    pieces = [ShotCrf(a, b, 26 + 6 * (i % 2)) for i, (a, b) in enumerate(itertools.pairwise([*keys, frames]))]
    files = [tmp_path / f"piece{i}.mp4" for i in range(len(pieces))]
    for piece, file in zip(pieces, files, strict=True):
        encode_piece(sintel_fight, info, 416, 234, piece, keys, "ultrafast", file)
    rung = join_pieces(files, info, 416, 234, keys, tmp_path / "rung.mp4")
    whole = measure_rung_vmaf(rung.path, info, subsample=step)
    parts, offsets = [], []
    for span in rung_spans(frames, info.video.fps, 1.45, step):
        first, end = span_cover(span, frames)
        covering = [(p, f) for p, f in zip(pieces, files, strict=True) if p.end_frame > first and p.start_frame < end]
        mini = tmp_path / f"span-{span[0]}.mp4"
        concat_pieces([f for _, f in covering], mini)
        offset = covering[0][0].start_frame
        offsets.append(offset)
        parts.append(measure_rung_vmaf(mini, info, subsample=step, span=span, offset=offset))
    assert sum(o > 0 for o in offsets) >= 3          # files that start after frame 0, off the span
    joined = joined_scores(parts, frames)
    assert joined.scored == whole.scored
    assert joined.scores == pytest.approx(whole.scores, abs=1e-4)
    with pytest.raises(ConfigError, match="after the context"):
        measure_rung_vmaf(mini, info, subsample=step, span=span, offset=span[0])


def test_rung_spans_tile_the_title() -> None:
    assert rung_spans(240, Fraction(24), 60.0) == [(0, 240)]           # a short title: one span
    spans = rung_spans(24 * 600, Fraction(24), 60.0, 5)
    assert spans[0][0] == 0 and spans[-1][1] == 24 * 600 and len(spans) == 10
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(start % 5 == 0 for start, _ in spans)
    assert rung_spans(24 * 80, Fraction(24), 60.0) == [(0, 1920)]      # under 1.5 spans: one
    assert rung_spans(24 * 130, Fraction(24), 60.0) == [(0, 1440), (1440, 3120)]  # a 10 s rest joins the last


def test_a_span_that_cannot_be_scored_exactly_is_refused(sintel_fight: Path, whole_rung: Path) -> None:
    info = probe(sintel_fight)
    with pytest.raises(ConfigError, match="span"):
        measure_rung_vmaf(whole_rung, info, subsample=5, span=(52, 100))   # not a multiple of the step
    with pytest.raises(ConfigError, match="span"):
        measure_rung_vmaf(whole_rung, info, span=(100, 300))              # beyond the title


@pytest.mark.parametrize("step", [1, 5])
def test_spans_of_a_half_rate_rung_join_to_the_whole_run(lavfi_clip: Any, tmp_path: Path, step: int) -> None:
    """A half-rate rung of a 59.94 source: spans whose context starts on odd and even frames."""
    from reelflow.encoding.encode import ShotCrf, encode_rung_per_shot, keyframe_frames

    source = lavfi_clip("testsrc_5994.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=60000/1001:duration=3",
                        "-c:v", "libx264", "-crf", "12", "-preset", "ultrafast")
    info = probe(source)
    frames = info.video.frames
    keys = keyframe_frames([0], frames, info.video.fps, 1.0, even=True)
    rung = encode_rung_per_shot(source, info, 416, 234, [ShotCrf(0, frames, 34)], keys, "ultrafast",
                                tmp_path / "half.mp4", half_rate=True).path
    spans = rung_spans(frames, info.video.fps, 0.38, step)     # 23 or 25 frames: odd and even starts
    assert len(spans) >= 6 and {start % 2 for start, _ in spans[1:]} == {0, 1}
    whole = measure_rung_vmaf(rung, info, subsample=step, half_rate=True)
    joined = joined_scores([measure_rung_vmaf(rung, info, subsample=step, span=s, half_rate=True) for s in spans],
                           frames)
    assert joined.scored == whole.scored and joined.scores == pytest.approx(whole.scores, abs=1e-4)
