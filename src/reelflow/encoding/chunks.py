"""Time chunks of a title, so that whole-title analyses (QC, shot detection) fan out and merge exactly.

A chunk owns the frames ``[start, end)``: whatever an analysis finds there (a cut, the start of a
black run, an idet count) is reported by that chunk and no other. It decodes
``[decode_start, decode_end)``, its owned frames plus the context the analysis needs on each side
(a detector's window, a filter's look-ahead), so that what it reports about its owned frames is what
a pass over the whole title would report. The owned ranges tile the title; the context overlaps.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

from reelflow.errors import StageError

# A last chunk shorter than half a chunk would cost its seek and context for little work, so the
# title is cut into round(frames / chunk) pieces: every chunk is between 2/3 and 3/2 of chunk_s,
# and a title under 1.5 chunks stays one chunk (a pass over the whole title, as for short clips).
_MIN_SPLIT = Fraction(3, 2)


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int            # first owned frame (0-based decoded-frame index)
    end: int              # exclusive
    decode_start: int     # first frame decoded: ``start`` minus the context before it, at least 0
    decode_end: int       # exclusive: ``end`` plus the context after it, at most the title's frames

    @property
    def frames(self) -> int:
        return self.end - self.start

    def owns(self, frame: int) -> bool:
        return self.start <= frame < self.end


def plan_chunks(frames: int, fps: Fraction, chunk_s: float, *, before: int = 0, after: int = 0) -> tuple[Chunk, ...]:
    """The title's ``frames`` cut into even chunks of about ``chunk_s`` seconds, each with ``before``
    and ``after`` frames of context (clipped to the title).

    A title shorter than 1.5 chunks (or an infinite ``chunk_s``) is one chunk without context: the
    whole-title pass. Pure: the same inputs always give the same chunks, which is what makes a
    chunk's result cacheable on its range.
    """
    if frames < 1:
        raise StageError(f"cannot cut a title of {frames} frames into chunks")
    if fps <= 0 or chunk_s <= 0 or before < 0 or after < 0:
        raise StageError(f"bad chunk plan: {fps} fps, chunk {chunk_s} s, context {before}/{after} frames")
    size = Fraction(str(chunk_s)) * fps if math.isfinite(chunk_s) else Fraction(frames + 1)
    if frames < _MIN_SPLIT * size:
        return (Chunk(0, 0, frames, 0, frames),)
    count = max(2, math.floor(frames / size + Fraction(1, 2)))
    # Even pieces in integer arithmetic: piece i starts at round(i * frames / count).
    bounds = [(2 * i * frames + count) // (2 * count) for i in range(count)] + [frames]
    return tuple(Chunk(i, s, e, max(0, s - before), min(frames, e + after))
                 for i, (s, e) in enumerate(itertools.pairwise(bounds)))


def check_tiling(chunks: tuple[Chunk, ...] | list[Chunk], frames: int) -> None:
    """StageError unless the chunks' owned ranges tile ``[0, frames)`` in order (a merge's precondition)."""
    position = 0
    for chunk in chunks:
        if chunk.start != position or chunk.end <= chunk.start:
            raise StageError(f"chunk {chunk.index} ({chunk.start}-{chunk.end}) does not continue at frame {position}")
        position = chunk.end
    if position != frames:
        raise StageError(f"chunks end at frame {position}, the title has {frames} frames")
