"""shots: gradual transitions (dissolve, fade through black, wipe) and a hard cut of known frames,
joined from real clips by bench/shot_transitions.py; found as ranges, shots, and split by time."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from reelflow.encoding.chunks import Chunk
from reelflow.encoding.probe import probe
from reelflow.encoding.shots import (
    ShotList,
    Transition,
    chunk_context,
    detect_chunk_transitions,
    detect_cuts,
    detect_shots,
    detect_transitions,
    merge_chunk_cuts,
    shots_from_cuts,
)
from reelflow.errors import StageError
from reelflow.infra.settings import ShotConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import itertools

import shot_transitions as st

# Talking head -dissolve 16-> dash cam -cut-> juggler -fade 14-> talking head -wipe 12-> Tears of Steel.
_PIECES = [st.Piece("10_talking_head_9s_1280x720.mp4", 0, 56), st.Piece("12_dashcam_9s_960x540.mp4", 0, 56),
           st.Piece("e04_juggle_10s_1280x720.mp4", 0, 54), st.Piece("10_talking_head_9s_1280x720.mp4", 120, 66),
           st.Piece("02_tears_of_steel_10s_640x360.mp4", 70, 52)]
_JOINS = [st.Join("dissolve", 16), st.Join("cut", 0), st.Join("fade", 14), st.Join("wipe", 12, "left")]


@pytest.fixture(scope="session")
def joined(media_dir: Path, ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A 320x180 25 fps title of 5 real single shots joined by the 4 kinds of transition; its truth."""
    out = tmp_path_factory.mktemp("gradual") / "joined.mp4"
    truth = st.truth_of(_PIECES, _JOINS)
    assert st.write_title(ffmpeg, _PIECES, _JOINS, (320, 180), 25, out) == truth["frames"]
    return out, truth


@pytest.fixture(scope="session")
def found(joined: tuple[Path, dict[str, Any]]) -> list[Transition]:
    return detect_transitions(joined[0])


def test_truth_of_the_fixture(joined: tuple[Path, dict[str, Any]]) -> None:
    _, truth = joined
    assert truth["cuts"] == [96]
    assert [(g["start"], g["end"], g["kind"]) for g in truth["gradual"]] == [
        (40, 55, "dissolve"), (136, 149, "fade"), (190, 201, "wipe left")]


def test_hard_cut_at_its_frame(joined: tuple[Path, dict[str, Any]], found: list[Transition]) -> None:
    assert [t.first for t in found if t.kind == "cut"] == joined[1]["cuts"]
    assert detect_cuts(joined[0]) == joined[1]["cuts"]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["dissolve", "fade", "wipe"])
def test_gradual_found_as_a_range(joined: tuple[Path, dict[str, Any]], found: list[Transition], which: int) -> None:
    truth = joined[1]["gradual"][which]
    ranges = [t for t in found if t.kind == "gradual" and t.first <= truth["end"] and t.last >= truth["start"]]
    assert len(ranges) == 1, f"{truth['kind']}: {found}"
    (got,) = ranges
    # Ends within a few frames of the truth; the unit starts on the first frame after it.
    assert abs(got.first - truth["start"]) <= 3 and abs(got.last - truth["end"]) <= 3
    assert got.frame == got.last + 1


def test_nothing_else_is_found(joined: tuple[Path, dict[str, Any]], found: list[Transition]) -> None:
    assert len(found) == 4


def test_shots_start_at_the_cut_and_after_the_gradual_ones(joined: tuple[Path, dict[str, Any]],
                                                           found: list[Transition]) -> None:
    shots = detect_shots(joined[0])
    gradual = [t for t in found if t.kind == "gradual"]
    assert [s.start_frame for s in shots.shots] == sorted([0, 96, *(t.frame for t in gradual)])
    assert [s.boundary for s in shots.shots] == ["start", "gradual", "cut", "gradual", "gradual"]
    assert shots.cuts == [96]
    assert shots.gradual == [(t.first, t.last) for t in gradual]
    d = json.loads(json.dumps(shots.to_dict()))
    assert d["shots"][1]["transition"] == [gradual[0].first, gradual[0].last]
    assert "transition" not in d["shots"][2]
    assert ShotList.from_dict(d) == shots


def test_split_by_time_across_gradual_transitions_is_exact(joined: tuple[Path, dict[str, Any]],
                                                            found: list[Transition]) -> None:
    """Chunk edges inside the dissolve, on the fade's first frame and inside the wipe: the merged
    transitions and shots are the whole pass's."""
    path, _truth = joined
    info = probe(path)
    frames = info.video.frames
    before, after = chunk_context(ShotConfig(), info.video.fps)
    edges = [0, 47, 136, 195, frames]
    chunks = tuple(Chunk(i, s, e, max(0, s - before), min(frames, e + after))
                   for i, (s, e) in enumerate(itertools.pairwise(edges)))
    parts = [detect_chunk_transitions(path, chunk, info=info) for chunk in chunks]
    assert merge_chunk_cuts(chunks, parts, frames) == found
    assert shots_from_cuts(merge_chunk_cuts(chunks, parts, frames), info) == detect_shots(path)
    # Without the context a transition at an edge is cut in two or lost.
    bare = tuple(Chunk(c.index, c.start, c.end, c.start, c.end) for c in chunks)
    assert merge_chunk_cuts(bare, [detect_chunk_transitions(path, c, info=info) for c in bare], frames) != found


def test_merge_refuses_a_transition_a_chunk_does_not_own() -> None:
    chunks = (Chunk(0, 0, 10, 0, 14), Chunk(1, 10, 20, 6, 20))
    ok = [[Transition(3, 9, "gradual")], [Transition(10, 10, "cut")]]
    assert merge_chunk_cuts(chunks, ok, 20) == [Transition(3, 9, "gradual"), Transition(10, 10, "cut")]
    with pytest.raises(StageError, match="does not own"):
        merge_chunk_cuts(chunks, [[Transition(11, 14, "gradual")], []], 20)


def test_from_dict_refuses_a_range_that_does_not_hold_the_shot_start(joined: tuple[Path, dict[str, Any]]) -> None:
    shots = shots_from_cuts([Transition(40, 55, "gradual")], probe(joined[0]), ShotConfig())
    d = shots.to_dict()
    assert d["shots"][1]["start_frame"] == 56 and d["shots"][1]["transition"] == [40, 55]
    bad = json.loads(json.dumps(d))
    bad["shots"][1]["transition"] = [50, 60]
    cut = json.loads(json.dumps(d))
    cut["shots"][1]["boundary"] = "cut"
    for broken in (bad, cut):
        with pytest.raises(StageError):
            ShotList.from_dict(broken)


def test_a_gradual_transition_next_to_a_cut_gives_way(joined: tuple[Path, dict[str, Any]]) -> None:
    """Closer than min_shot_s (0.5 s: 13 frames at 25 fps) to a cut, a gradual transition is dropped."""
    info = probe(joined[0])
    shots = shots_from_cuts([Transition(40, 40, "cut"), Transition(40, 49, "gradual"),
                             Transition(100, 120, "gradual")], info, ShotConfig())
    assert [(s.start_frame, s.boundary) for s in shots.shots] == [(0, "start"), (40, "cut"), (121, "gradual")]
