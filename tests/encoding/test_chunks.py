"""chunks: the planner that cuts a title by time, pure."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelflow.encoding.chunks import Chunk, check_tiling, plan_chunks
from reelflow.errors import StageError


def test_short_title_is_one_chunk_without_context() -> None:
    assert plan_chunks(100, Fraction(25), 3.0, before=5, after=9) == (Chunk(0, 0, 100, 0, 100),)
    assert plan_chunks(10**6, Fraction(25), float("inf"), before=5) == (Chunk(0, 0, 10**6, 0, 10**6),)


def test_even_chunks_with_clipped_context() -> None:
    chunks = plan_chunks(250, Fraction(25), 2.0, before=3, after=10)   # 10 s in 2 s chunks
    assert [(c.start, c.end) for c in chunks] == [(i * 50, i * 50 + 50) for i in range(5)]
    assert chunks[0].decode_start == 0 and chunks[1].decode_start == 47
    assert chunks[-1].decode_end == 250 and chunks[0].decode_end == 60


@settings(deadline=None)  # no timed assertions: a loaded machine is slow, not wrong
@given(frames=st.integers(1, 200_000), fps=st.sampled_from([Fraction(24), Fraction(30000, 1001), Fraction(50)]),
       chunk_s=st.floats(0.5, 600), before=st.integers(0, 100), after=st.integers(0, 100))
def test_chunks_tile_the_title(frames: int, fps: Fraction, chunk_s: float, before: int, after: int) -> None:
    chunks = plan_chunks(frames, fps, chunk_s, before=before, after=after)
    check_tiling(chunks, frames)
    size = float(chunk_s * fps)
    if len(chunks) > 1:
        # every chunk between 2/3 and 3/2 of the asked length (give or take a frame of rounding)
        assert all(size * 2 / 3 - 1 <= c.frames <= size * 3 / 2 + 1 for c in chunks)
        assert all(c.decode_start == max(0, c.start - before) and c.decode_end == min(frames, c.end + after)
                   for c in chunks)
    else:
        assert frames < 1.5 * size + 1


def test_bad_plans_are_refused() -> None:
    with pytest.raises(StageError):
        plan_chunks(0, Fraction(25), 2.0)
    with pytest.raises(StageError):
        plan_chunks(100, Fraction(25), 0.0)
    with pytest.raises(StageError, match="does not continue"):
        check_tiling([Chunk(0, 0, 10, 0, 10), Chunk(1, 11, 20, 11, 20)], 20)
