"""Shot detection: hard cuts (PySceneDetect's adaptive detector) and gradual transitions (dissolves,
wipes, fades) on PyAV-decoded frames, then bounded work units."""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from queue import Full, Queue
from typing import Any, Literal, TypeVar, cast

import av
import cv2
import numpy as np
from scenedetect import AdaptiveDetector, FrameTimecode

from reelflow.encoding.chunks import Chunk, check_tiling, plan_chunks
from reelflow.encoding.probe import MediaInfo, probe
from reelflow.errors import ConfigError, InvalidMedia, SourceNotFound, StageError
from reelflow.infra.settings import ShotConfig

log = logging.getLogger(__name__)

Boundary = Literal["start", "cut", "gradual", "split"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Shot:
    index: int
    start_frame: int          # 0-based decoded-frame index, inclusive
    end_frame: int            # exclusive: shots[i].end_frame == shots[i + 1].start_frame
    start_s: float            # start_frame / fps, seconds from the first video frame
    end_s: float
    boundary: Boundary        # what begins this shot: the title start, a cut, a gradual transition, a split
    # A gradual transition's first and last frame (inclusive) when one begins this shot; the shot
    # starts after it (see Transition.frame).
    transition: tuple[int, int] | None = None

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, order=True)
class Transition:
    """A detected shot transition: a hard cut (``first == last``: the new shot's first frame) or a
    gradual one (dissolve, wipe, fade), whose mixed frames are ``first`` to ``last`` inclusive."""

    first: int
    last: int
    kind: Literal["cut", "gradual"]

    @property
    def frame(self) -> int:
        """Where the work unit (and its keyframe) starts: a cut's frame, the first frame after a
        gradual transition (the incoming shot's first clean picture).

        A keyframe there is a clean reference for the whole new shot, and the mixed frames are coded
        from the outgoing shot's references; bench/shot_boundary.py measured this against a keyframe
        at the transition's first frame or its middle (docs/benchmarks.md).
        """
        return self.first if self.kind == "cut" else self.last + 1


def split_at(shots: Sequence[Shot], frames: Iterable[int], fps: Fraction) -> tuple[Shot, ...]:
    """The shots cut again at ``frames`` (e.g. the segment grid's keyframes), renumbered from 0.

    A piece that starts at one of ``frames`` inside a shot has boundary ``split``. Encoders put a
    keyframe at every such frame anyway, so the pieces cost no extra keyframe and a ladder can give
    each its own CRF: a finer unit of allocation than the shot.
    """
    cuts = sorted(set(frames))
    out: list[Shot] = []
    for shot in shots:
        starts = [shot.start_frame, *(f for f in cuts if shot.start_frame < f < shot.end_frame)]
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else shot.end_frame
            out.append(Shot(index=len(out), start_frame=start, end_frame=end, start_s=float(start / fps),
                            end_s=float(end / fps), boundary=shot.boundary if i == 0 else "split",
                            transition=shot.transition if i == 0 else None))
    return tuple(out)


_PRECEDENCE: dict[Boundary, int] = {"start": 0, "cut": 1, "gradual": 1, "split": 2}


def even_starts(shot_list: ShotList) -> ShotList:
    """The shot list with every shot starting on an even frame (a title with half-rate rungs).

    A half-rate rung has only the source's even frames, so a keyframe there (every shot start) must
    be on one. An odd start moves one frame later: the half-rate rung's keyframe is then the new
    shot's first frame it has, not the old shot's last (moving a cut by a frame at 50-60 fps is
    invisible; only the full-rate rungs code the one frame across it). Shots that meet then are one
    (a cut wins over a split); the shots still tile the title exactly, and the last may end on an odd frame.
    """
    frames = shot_list.frames
    starts: dict[int, Shot] = {}
    for shot in shot_list.shots:
        start = shot.start_frame + shot.start_frame % 2
        if start >= frames:
            continue
        if start not in starts or _PRECEDENCE[shot.boundary] < _PRECEDENCE[starts[start].boundary]:
            starts[start] = shot
    order = sorted(starts)
    ends = [*order[1:], frames]
    fps = shot_list.fps
    return ShotList(fps=fps, frames=frames, shots=tuple(
        _shot(i, s, e, fps, starts[s].boundary, starts[s].transition)
        for i, (s, e) in enumerate(zip(order, ends, strict=True))))


@dataclass(frozen=True)
class ShotList:
    fps: Fraction
    frames: int
    shots: tuple[Shot, ...]

    @property
    def cuts(self) -> list[int]:
        """First frame of every shot that a detected cut begins (not the title start, not splits)."""
        return [s.start_frame for s in self.shots if s.boundary == "cut"]

    @property
    def gradual(self) -> list[tuple[int, int]]:
        """First and last frame of every gradual transition that begins a shot (on the frame after it)."""
        return [s.transition for s in self.shots if s.boundary == "gradual" and s.transition is not None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict; the exact rate as "num/den" beside a float, times to the microsecond.

        A shot that a gradual transition begins also has ``transition``: its first and last frame.

        from_dict derives the times again from the frame numbers, so the rounding never accumulates.
        """
        return {
            "fps": float(self.fps),
            "fps_exact": f"{self.fps.numerator}/{self.fps.denominator}",
            "frames": self.frames,
            "shots": [
                {"index": s.index, "start_frame": s.start_frame, "end_frame": s.end_frame,
                 "start_s": round(s.start_s, 6), "end_s": round(s.end_s, 6), "boundary": s.boundary,
                 **({"transition": list(s.transition)} if s.transition is not None else {})}
                for s in self.shots
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShotList:
        """The inverse of to_dict; StageError if the shots do not tile [0, frames) exactly."""
        try:
            fps = Fraction(str(d["fps_exact"]))
            frames = int(d["frames"])
            rows = [(int(s["start_frame"]), int(s["end_frame"]), str(s["boundary"]),
                     (int(s["transition"][0]), int(s["transition"][1])) if "transition" in s else None)
                    for s in d["shots"]]
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise StageError(f"not a shot list: {exc!r}") from exc
        if fps <= 0 or frames < 1 or not rows:
            raise StageError(f"not a shot list: fps={fps}, frames={frames}, {len(rows)} shots")
        position = 0
        shots = []
        for index, (start, end, boundary, transition) in enumerate(rows):
            valid = boundary == "start" if index == 0 else boundary in ("cut", "gradual", "split")
            if transition is not None and not (boundary == "gradual" and transition[0] <= transition[1] < start):
                valid = False
            if start != position or end <= start or not valid:
                raise StageError(f"shot {index} ({start}-{end}, {boundary}) does not continue the shot list")
            # Times are derived, never read back: the frame numbers are the one source of truth.
            shots.append(_shot(index, start, end, fps, cast(Boundary, boundary), transition))
            position = end
        if position != frames:
            raise StageError(f"shots end at frame {position}, the title has {frames} frames")
        return cls(fps=fps, frames=frames, shots=tuple(shots))


def _shot(index: int, start: int, end: int, fps: Fraction, boundary: Boundary,
          transition: tuple[int, int] | None = None) -> Shot:
    return Shot(index=index, start_frame=start, end_frame=end, start_s=float(start / fps),
                end_s=float(end / fps), boundary=boundary, transition=transition)


def _to_frames(seconds: float, fps: Fraction) -> int:
    """Whole frames nearest to ``seconds``, halves up, decimal-exact (0.1 s at 30 fps is 3, not 3.0000001).

    Rounding both bounds to the nearest frame (not min up, max down) is what lets
    ``max_shot_s >= 2 * min_shot_s`` promise, at every frame rate, that an even split of a shot just
    over the maximum never yields a piece under the minimum.
    """
    return math.floor(Fraction(str(seconds)) * fps + Fraction(1, 2))


def bound_shots(cuts: Sequence[int], frames: int, fps: Fraction, *, min_shot_s: float,
                max_shot_s: float, gradual: Mapping[int, tuple[int, int]] | None = None) -> tuple[Shot, ...]:
    """Shots that tile [0, frames): too-short shots merged away, too-long ones split evenly.

    Lengths are judged in whole frames, ``min_shot_s`` and ``max_shot_s`` each rounded to the
    nearest frame. Merging goes shortest first, each time removing the boundary to the shorter
    neighbour, until every shot is at least the minimum (a whole title shorter than that stays one
    shot). Then every shot over the maximum is cut into the fewest equal pieces that fit; with
    ``max_shot_s >= 2 * min_shot_s`` no piece is under the minimum. Cuts outside [1, frames - 1]
    are ignored: 0 and ``frames`` are boundaries already. A cut that is a key of ``gradual`` begins
    a shot with boundary ``gradual`` and that transition's first and last frame.
    """
    if frames < 1:
        raise StageError(f"cannot bound shots of a title with {frames} frames")
    if fps <= 0:
        raise StageError(f"cannot bound shots at {fps} fps")
    if not (0 <= 2 * min_shot_s <= max_shot_s) or not math.isfinite(min_shot_s):
        raise ConfigError(f"shot bounds need 0 <= 2 * min_shot_s <= max_shot_s "
                          f"(min_shot_s={min_shot_s}, max_shot_s={max_shot_s})")
    min_frames = max(1, _to_frames(min_shot_s, fps))
    # An infinite maximum means: never split.
    max_frames = _to_frames(max_shot_s, fps) if math.isfinite(max_shot_s) else frames
    if max_frames < 1:
        raise ConfigError(f"max_shot_s={max_shot_s} is shorter than a frame at {float(fps):g} fps")
    detected = {c for c in cuts if 0 < c < frames}
    bounds = _merge_short([0, *sorted(detected), frames], min_frames)
    gradual = gradual or {}

    def boundary(at: int) -> Boundary:
        return "start" if at == 0 else "gradual" if at in gradual else "cut" if at in detected else "split"

    starts: list[tuple[int, Boundary]] = []
    for start, end in itertools.pairwise(bounds):
        pieces = -(-(end - start) // max_frames)  # ceil
        starts.append((start, boundary(start)))
        # Even pieces: piece j starts at start + round(j * length / pieces), integer arithmetic; one
        # that lands on a cut merged away above is that cut again.
        starts.extend((at, boundary(at)) for at in (start + (2 * j * (end - start) + pieces) // (2 * pieces)
                                                    for j in range(1, pieces)))
    ends = [s for s, _ in starts[1:]] + [frames]
    return tuple(_shot(i, s, e, fps, b, gradual.get(s) if b == "gradual" else None)
                 for i, ((s, b), e) in enumerate(zip(starts, ends, strict=True)))


def _merge_short(bounds: list[int], min_frames: int) -> list[int]:
    """Boundaries left once no shot is shorter than ``min_frames`` (or a single shot is left).

    Shortest shot first (earliest on a tie), joined to its shorter neighbour, which keeps work
    units even; a heap over a linked list of shots keeps this O(n log n) for strobe-like inputs.
    """
    starts = bounds[:-1]
    count = len(starts)
    length = [b - a for a, b in itertools.pairwise(bounds)]
    prev = list(range(-1, count - 1))
    after = [*range(1, count), -1]
    alive = [True] * count
    heap = [(length[i], starts[i], i) for i in range(count)]
    heapq.heapify(heap)
    left = count
    while left > 1 and heap:
        size, _, shot = heapq.heappop(heap)
        if not alive[shot] or size != length[shot]:
            continue                           # a stale entry: this shot has grown since
        if size >= min_frames:
            break
        before, nxt = prev[shot], after[shot]
        if before == -1 or (nxt != -1 and length[nxt] < length[before]):
            keep, gone = shot, nxt             # the next shot is absorbed into this one
        else:
            keep, gone = before, shot          # this shot is absorbed into the previous one
        length[keep] += length[gone]
        alive[gone] = False
        after[keep] = after[gone]
        if after[gone] != -1:
            prev[after[gone]] = keep
        left -= 1
        heapq.heappush(heap, (length[keep], starts[keep], keep))
    return [starts[i] for i in range(count) if alive[i]] + [bounds[-1]]


class _ReturnGuard:
    """Rejects a candidate cut when what was on screen before it comes back right after it.

    Occlusions (a car crossing the lens), flashes and flicker make one big frame difference like a
    cut, but the picture returns: some frame in the ``window`` before the candidate looks much more
    like some frame in the ``window`` after it than the two frames either side of the candidate do.
    Frames are compared as tiny HSV thumbnails (the gist of the picture: where the colour masses
    are), which motion within a shot barely changes over half a second but a cut does.
    """

    def __init__(self, window: int, ratio: float, width: int, lag: int) -> None:
        self.window = window
        self.ratio = ratio
        self.width = width
        # The detector reports a candidate ``lag`` frames late; keep enough frames before it.
        self._thumbs: deque[np.ndarray] = deque(maxlen=2 * window + lag + 1)
        self._first = 0                       # frame number of self._thumbs[0]
        self.rejected: list[int] = []

    def add(self, frame_num: int, bgr: np.ndarray) -> None:
        height = max(1, round(bgr.shape[0] * self.width / bgr.shape[1]))
        small = cv2.resize(bgr, (self.width, height), interpolation=cv2.INTER_AREA)
        if len(self._thumbs) == self._thumbs.maxlen:
            self._first += 1
        elif not self._thumbs:
            self._first = frame_num
        self._thumbs.append(cv2.cvtColor(small, cv2.COLOR_BGR2HSV).astype(np.int16).reshape(-1))

    def ready(self, cut: int, last_frame: int) -> bool:
        """Whether the window after ``cut`` has been seen (or the title ended)."""
        return last_frame >= cut + self.window - 1

    def accept(self, cut: int) -> bool:
        """Judge a candidate once the frames after it were added; the frames before must still be kept."""
        have = range(self._first, self._first + len(self._thumbs))
        before = [self._thumbs[f - self._first] for f in range(max(cut - self.window, have.start), cut)]
        after = [self._thumbs[f - self._first] for f in range(cut, min(cut + self.window, have.stop))]
        if not before or not after:
            return True
        jump = float(np.abs(before[-1] - after[0]).mean())
        pairs = np.abs(np.stack(before)[:, None, :] - np.stack(after)[None, :, :]).mean(axis=2)
        closest = float(pairs.min())
        if closest < self.ratio * jump:
            log.debug("frame %d: not a cut, the picture returns (%.1f vs jump %.1f)", cut, closest, jump)
            self.rejected.append(cut)
            return False
        return True


# Gradual transitions. Half-widths (frames) of the windows searched for a dissolve or wipe: together
# they cover transitions of about 6 to 40 frames (a window need not hold the whole transition).
_SCALES = (3, 4, 5, 6, 8, 10, 12, 15)
_MIN_GRADUAL = 6          # frames: a shorter change is a cut, a flash or flicker
_MAX_GRADUAL = 90         # frames: a longer one is a change inside a shot (light, focus, a slow pan)
_JOIN_GAP = 10            # frames: findings closer than this are pieces of one transition
# Pictures either side of a change this alike (correlation of their zero-mean thumbnails) are one
# shot whose light changed, not two shots.
_SAME_PICTURE = 0.7
_FADE_REACH = 32          # frames either side of a fade's darkest frame searched for its ends
_FADE_CONTRAST = 20.0     # luma standard deviation (0-255) a shot needs for a fade to be told from it
_THUMB_WIDTH = 32
# Frames either side of a transition that decide it: a window and its fit, a fade's reach, the guard.
_GRADUAL_REACH = _MAX_GRADUAL + 4 * max(_SCALES) + 2


def _thumb(bgr: np.ndarray) -> np.ndarray:
    height = max(1, round(bgr.shape[0] * _THUMB_WIDTH / bgr.shape[1]))
    return cv2.resize(bgr, (_THUMB_WIDTH, height), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=256)
def _ramps(n: int, min_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every ramp over n frames (first, last, the zero-mean ramps, their squared norms)."""
    first, last = np.triu_indices(n, min_len - 1)
    keep = (first >= 1) & (last <= n - 2)       # a flat frame either side
    first, last = first[keep], last[keep]
    m = np.arange(n)[None, :]
    ramp = np.clip((m - first[:, None] + 1) / (last[:, None] - first[:, None] + 2), 0, 1)
    ramp -= ramp.mean(axis=1, keepdims=True)
    return first, last, ramp, np.maximum((ramp * ramp).sum(axis=1), 1e-9)


def _ramp_fit(progress: np.ndarray, min_len: int) -> tuple[int, int]:
    """(first, last) of the ramp, flat before and after, that fits ``progress`` best (least squares,
    its two levels free): where a transition's progress climbs from one shot to the other."""
    first, last, ramp, norms = _ramps(len(progress), min_len)
    if not len(first):
        return 0, len(progress) - 1
    # The least-squares residual of each ramp is |p|^2 - (ramp . p)^2 / |ramp|^2: the best ramp
    # explains the most.
    explained = (ramp @ (progress - progress.mean())) ** 2 / norms
    best = int(np.argmax(explained))
    return int(first[best]), int(last[best])


def find_gradual(thumbs: np.ndarray, cuts: Iterable[int], config: ShotConfig, guard: int) -> list[tuple[int, int]]:
    """Gradual transitions in consecutive frames ``thumbs`` (n, h, w, 3: tiny BGR pictures), as
    (first, last) mixed frames, indices into ``thumbs``; pure.

    Dissolves and wipes: a window of frames whose picture changes a lot from its first to its last
    frame (``gradual_min_change``), where the frame-to-frame changes add up instead of cancelling
    (``gradual_straightness``: every pixel of a dissolve or wipe moves one way, from the old shot's
    value to the new one's, while motion inside a shot goes back and forth), and no single step
    carries much of it (``gradual_spread``: that would be a cut). The transition's ends are where the
    picture's progress from the window's first frame to its last, fitted with a ramp, starts and
    stops climbing. Fades through black: the luma contrast dips to ``fade_depth`` of the contrast on
    both sides or less; the ends are where it starts to fall and stops rising. Findings that overlap
    or nearly touch are one transition. A transition is dropped when a cut lies on one of its frames
    or the frame after it (the cut detector is the surer one: what is left is the motion around a
    cut), when it is shorter than 6 or longer than 90 frames, and, unless it dips to black, when the
    pictures either side are the same one in another light (a light change inside a shot) or the
    picture before it returns after it (the return guard, as for cuts: a car
    crossing the lens).
    """
    n = len(thumbs)
    found: list[tuple[int, int, bool]] = []                 # first, last, a fade
    if n < 2 * min(_SCALES) + 1:
        return []
    x = thumbs.reshape(n, -1).astype(np.float32)
    step = np.abs(np.diff(x, axis=0)).mean(axis=1)           # step[m]: frame m to m + 1
    path = np.concatenate([[0.0], np.cumsum(step)])
    for h in _SCALES:
        if n <= 2 * h:
            break
        change = np.abs(x[2 * h:] - x[:-2 * h]).mean(axis=1)  # change[a]: frame a to a + 2h
        biggest = np.lib.stride_tricks.sliding_window_view(step, 2 * h).max(axis=1)
        straight = change / np.maximum(path[2 * h:] - path[:-2 * h], 1e-9)
        for a in np.nonzero((change >= config.gradual_min_change) & (straight >= config.gradual_straightness)
                            & (biggest <= config.gradual_spread * change))[0].tolist():
            b = a + 2 * h
            lo, hi = max(0, a - h), min(n - 1, b + h)
            way = x[b] - x[a]
            progress = (x[lo:hi + 1] - x[a]) @ way / max(float(way @ way), 1e-9)
            first, last = _ramp_fit(progress, _MIN_GRADUAL)
            found.append((lo + first, lo + last, False))
    luma = thumbs.reshape(n, -1, 3).astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)
    contrast = luma.std(axis=1)
    for m in range(1, n - 1):
        if not contrast[m] <= contrast[m - 1] or not contrast[m] < contrast[m + 1]:
            continue
        lo, hi = max(0, m - _FADE_REACH), min(n - 1, m + _FADE_REACH)
        left, right = float(contrast[lo:m + 1].max()), float(contrast[m:hi + 1].max())
        if min(left, right) < _FADE_CONTRAST or contrast[m] > config.fade_depth * min(left, right):
            continue
        start = lo + _ramp_fit(-contrast[lo:m + 1] / left, 3)[0] if m - lo >= 4 else lo
        end = m + _ramp_fit(contrast[m:hi + 1] / right, 3)[1] if hi - m >= 4 else hi
        found.append((start, end, True))
    merged: list[tuple[int, int, bool]] = []
    for first, last, fade in sorted(found):
        if merged and first <= merged[-1][1] + _JOIN_GAP:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]), fade or merged[-1][2])
        else:
            merged.append((first, last, fade))
    cut_set = set(cuts)
    out = []
    for first, last, fade in merged:
        if not _MIN_GRADUAL <= last - first + 1 <= _MAX_GRADUAL or cut_set & set(range(first, last + 2)):
            continue
        before, after = x[max(0, first - guard):first], x[last + 1:last + 1 + guard]
        if not fade and len(before) and len(after):
            u, v = before[-1] - before[-1].mean(), after[0] - after[0].mean()
            if float(u @ v) > _SAME_PICTURE * math.sqrt(float(u @ u) * float(v @ v)):
                log.debug("frames %d-%d: not a transition, the same picture in another light", first, last)
                continue
        # A dip to black between two alike pictures is still an edit; a return without one is not.
        if not fade and len(before) and len(after) and config.guard_ratio > 0:
            jump = float(np.abs(before[-1] - after[0]).mean())
            closest = float(np.abs(before[:, None, :] - after[None, :, :]).mean(axis=2).min())
            if closest < config.guard_ratio * jump:
                log.debug("frames %d-%d: not a transition, the picture returns", first, last)
                continue
        out.append((first, last))
    return out


def _agreed(reports: Sequence[list[Any]]) -> list[int]:
    """Frames that every detector reported for the same input frame (they report with the same lag)."""
    found = [{t.frame_num for t in timecodes} for timecodes in reports]
    return sorted(set.intersection(*found))


def _analysis_size(width: int, height: int, target: int) -> tuple[int, int]:
    """Downscaled size for detection: ``target`` wide at most (never upscaled), even height."""
    w = min(target, width)
    h = max(2, round(height * w / width / 2) * 2)
    return w, h


def _open_error(path: Path, exc: Exception) -> InvalidMedia:
    return InvalidMedia(path, f"cannot be decoded for shot detection ({exc})",
                        "run `reelflow probe` and QC on it; the file looks damaged")


def _guard_window(config: ShotConfig, fps: Fraction) -> int:
    return max(1, _to_frames(config.guard_s, fps))


def chunk_context(config: ShotConfig, fps: Fraction) -> tuple[int, int]:
    """Frames a chunk decodes before and after the frames it owns, so its cuts are a whole pass's.

    A candidate at frame c is judged on the frame scores of c - w .. c + w (w = ``window_width``),
    and a frame's score compares it with the frame before, so w + 1 frames before; the return
    guard compares the ``guard_s`` window before c with the one from c on. A gradual transition is
    decided by the frames up to ``_GRADUAL_REACH`` either side of it (its windows, their fits, the
    merge of overlapping findings, the guard) and by the cuts inside it. With this context every
    transition that begins in ``[start, end)`` sees exactly the frames a whole pass shows it, and
    those outside are left to the chunk that owns them: each is found once.
    """
    window = _guard_window(config, fps)
    before, after = max(window, config.window_width + 1), max(config.window_width, window - 1)
    if config.gradual:
        reach = _GRADUAL_REACH + window
        before, after = max(before, reach), max(after, reach)
    return before, after


def shot_chunks(info: MediaInfo, config: ShotConfig) -> tuple[Chunk, ...]:
    """The title's frames in chunks of about ``config.chunk_s`` with their context (one chunk for a
    short or variable-rate title: frame numbers from timestamps need a constant rate)."""
    v = info.video
    before, after = chunk_context(config, v.fps)
    chunk_s = math.inf if v.variable_rate else config.chunk_s
    return plan_chunks(v.frames, v.fps, chunk_s, before=before, after=after)


def _decoded(path: Path, info: MediaInfo, chunk: Chunk) -> Iterator[tuple[int, Any]]:
    """(frame number, frame) from ``chunk.decode_start`` on, to ``decode_end`` (to the end of the file for
    a chunk that ends the title, as a whole pass reads it).

    From the title start, frames are counted from 0 as they come. Elsewhere the demuxer seeks to a
    keyframe before the first frame wanted and the decoder runs forward; frames are numbered by
    their timestamps (constant rate) and kept from the first keyframe on (frames before it may
    reference pictures from before the seek). When that keyframe is too late (a seek lands by
    decode time, or on a long GOP) the seek goes back further, and finally to the start.
    """
    v = info.video
    first = chunk.decode_start
    stop = None if chunk.end >= v.frames else chunk.decode_end
    # First straight to the frame (on a worker's partial copy only the packets from the keyframe
    # before it are there), then further back as often as needed.
    margin_s = 0.0
    while True:
        target_s = float((first - Fraction(1, 2)) / v.fps) - margin_s  # from the video's first frame
        seek = first > 0 and target_s > 0
        retry = False
        with av.open(str(path), metadata_errors="ignore") as container:
            streams = [s for s in container.streams.video if s.index == v.index]
            if not streams:
                raise InvalidMedia(path, f"has no video stream #{v.index}", "probe the file again")
            stream = streams[0]
            stream.thread_type = "AUTO"  # frame threads: decoding is most of the cost
            origin = stream.start_time or 0
            base = Fraction(stream.time_base) if stream.time_base is not None else Fraction(1, 1)
            if seek:
                container.seek(origin + math.floor(Fraction(str(target_s)) / base), stream=stream, backward=True)
            started = not seek
            counter = 0
            for frame in container.decode(stream):
                if seek:
                    if frame.pts is None:
                        margin_s = math.inf           # no timestamps to number frames by: count from 0
                        retry = True
                        break
                    index = math.floor((frame.pts - origin) * base * v.fps + Fraction(1, 2))
                    if not started:
                        if not frame.key_frame:
                            continue
                        if index > first:
                            margin_s = 4 * margin_s if margin_s else 1.0
                            retry = True
                            break
                        started = True
                else:
                    index = counter
                    counter += 1
                if index < first:
                    continue
                if stop is not None and index >= stop:
                    return
                yield index, frame
        if not retry:
            return
        log.debug("%s: seek for frame %d landed late; seeking %.0f s earlier", path.name, first, margin_s)


def _pictures(path: Path, info: MediaInfo, chunk: Chunk, size: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, downscaled BGR picture) of the chunk, decoded and converted in a thread of its
    own (PyAV lets go of the GIL there), so decoding overlaps detection; errors come out here."""
    done = object()
    queue: Queue[Any] = Queue(maxsize=16)
    stop = threading.Event()

    def produce() -> None:
        try:
            for index, frame in _decoded(path, info, chunk):
                # swscale converts and downscales in one pass; AREA averages, so noise is not aliased.
                item = (index, frame.to_ndarray(format="bgr24", width=size[0], height=size[1],
                                                interpolation="AREA"))
                while not stop.is_set():
                    try:
                        queue.put(item, timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            queue.put(exc)

    worker = threading.Thread(target=produce, name=f"decode {path.name}", daemon=True)
    worker.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _scan(path: Path | str, config: ShotConfig, info: MediaInfo | None, progress: Progress | None,
          chunk: Chunk | None = None) -> tuple[MediaInfo, list[Transition], int]:
    """Decode the chunk (default: the whole title), run the detectors and the guard; (info, the
    transitions it owns, frames it owns that were decoded)."""
    path = Path(path)
    if info is None:
        info = probe(path)                  # SourceNotFound / InvalidMedia for bad inputs
    elif not path.is_file():
        raise SourceNotFound(path, "no such file", "check the path")
    fps = info.video.fps
    total = info.video.frames
    whole = chunk is None
    if chunk is None:
        chunk = Chunk(0, 0, total, 0, total)
    size = _analysis_size(info.video.width, info.video.height, config.analysis_width)
    # Two AdaptiveDetectors that must agree on the frame: the default one on hue, saturation and
    # value, and one on value (brightness) alone. HSV alone fires on noise: saturation is undefined
    # as brightness goes to 0 (a fade from black swings it 0 -> 250 -> 20), and OpenCV's hue wraps
    # at 180 with no circular distance, so pinks and reds near 0/180 jump. A cut changes brightness
    # too; colour-only changes of that kind do not.
    detectors = [
        AdaptiveDetector(
            adaptive_threshold=config.adaptive_threshold,
            min_content_val=config.min_content_val,
            window_width=config.window_width,
            luma_only=luma_only,
            min_scene_len=0,  # bound_shots merges short shots; a rejected candidate must not block the next
        )
        for luma_only in ((False, True) if config.luma_check else (False,))
    ]
    guard = _ReturnGuard(window=_guard_window(config, fps), ratio=config.guard_ratio,
                         width=config.guard_width, lag=config.window_width)
    pending: list[int] = []
    cuts: list[int] = []
    thumbs: list[np.ndarray] = []            # every decoded frame's, for the gradual stage
    first_frame = -1
    every = max(1, chunk.frames // 100)
    owned = 0
    last = -1
    started = time.perf_counter()
    try:
        for last, bgr in _pictures(path, info, chunk, size):
            guard.add(last, bgr)
            if config.gradual:
                if first_frame < 0:
                    first_frame = last
                thumbs.append(_thumb(bgr))
            timecode = FrameTimecode(last, fps)
            pending.extend(_agreed([d.process_frame(timecode, bgr) for d in detectors]))
            while pending and guard.ready(pending[0], last):
                cut = pending.pop(0)
                if guard.accept(cut):
                    cuts.append(cut)
            if last >= chunk.start and (last < chunk.end or chunk.end >= total):
                owned += 1
                if progress is not None and owned % every == 0:
                    progress(min(owned, chunk.frames), chunk.frames)
    except av.error.FFmpegError as exc:
        raise _open_error(path, exc) from exc
    if last < 0:
        raise InvalidMedia(path, "no video frame could be decoded", "re-deliver the file")
    # At the end of the title (not of a chunk: its context runs past what it owns) the candidates
    # still waiting are judged on the frames there are, as a whole pass does.
    pending.extend(_agreed([d.post_process(FrameTimecode(last, fps)) for d in detectors]))
    cuts.extend(cut for cut in pending if guard.accept(cut))
    if progress is not None:
        progress(chunk.frames, chunk.frames)
    if whole and owned != total:
        log.warning("%s: decoded %d frames, probe counted %d packets; shots follow probe's count",
                    path, owned, total)
    found = [Transition(c, c, "cut") for c in cuts]
    if config.gradual and thumbs:
        ranges = find_gradual(np.stack(thumbs), [c - first_frame for c in cuts], config, guard.window)
        found += [Transition(first_frame + a, first_frame + b, "gradual") for a, b in ranges]
    owned_found = sorted(t for t in found if chunk.owns(t.first) and 0 < t.frame < total)
    elapsed = time.perf_counter() - started
    log.info("%s: %d transitions in frames %d-%d (%d cut candidates rejected as returns) at %.0f frames/s",
             path.name, len(owned_found), chunk.start, chunk.end, len(guard.rejected),
             (last + 1 - chunk.decode_start) / max(elapsed, 1e-9))
    return info, owned_found, owned


def detect_chunk_transitions(path: Path | str, chunk: Chunk, config: ShotConfig = ShotConfig(), *,
                             info: MediaInfo | None = None, progress: Progress | None = None) -> list[Transition]:
    """The transitions that begin in the frames ``chunk`` owns, exactly as a whole pass finds them
    there (shot_chunks)."""
    return _scan(path, config, info, progress, chunk)[1]


def detect_chunk_cuts(path: Path | str, chunk: Chunk, config: ShotConfig = ShotConfig(), *,
                      info: MediaInfo | None = None, progress: Progress | None = None) -> list[int]:
    """The hard cuts in the frames ``chunk`` owns, exactly as a whole pass finds them there."""
    return [t.first for t in detect_chunk_transitions(path, chunk, config, info=info, progress=progress)
            if t.kind == "cut"]


_Found = TypeVar("_Found", int, Transition)


def _first(found: int | Transition) -> int:
    return found if isinstance(found, int) else found.first


def merge_chunk_cuts(chunks: Sequence[Chunk], found: Sequence[Sequence[_Found]], frames: int) -> list[_Found]:
    """One list from the chunks' cuts or transitions (pure): each chunk reports only those that begin
    in what it owns, so this checks that and concatenates; the owned ranges must tile the title."""
    if len(chunks) != len(found):
        raise StageError(f"{len(found)} chunk results for {len(chunks)} chunks")
    check_tiling(list(chunks), frames)
    merged: list[_Found] = []
    for chunk, chunk_found in zip(chunks, found, strict=True):
        stray = [c for c in chunk_found if not chunk.owns(_first(c))]
        if stray:
            raise StageError(f"chunk {chunk.index} ({chunk.start}-{chunk.end}) reports cuts it does not own: {stray}")
        merged.extend(sorted(chunk_found, key=_first))
    return merged


def shots_from_cuts(cuts: Sequence[int] | Sequence[Transition], info: MediaInfo,
                    config: ShotConfig = ShotConfig()) -> ShotList:
    """The title's shots between ``config.min_shot_s`` and ``config.max_shot_s`` from its detected cuts
    (frames) or transitions (a gradual one starts its shot on the frame after it, Transition.frame)."""
    fps, frames = info.video.fps, info.video.frames
    found = [c if isinstance(c, Transition) else Transition(c, c, "cut") for c in cuts]
    # A gradual transition that begins or ends closer than the shortest shot to a cut goes: the shot
    # between them would be merged away, and the cut is the surer boundary.
    near = max(1, _to_frames(config.min_shot_s, fps))
    hard = [t.frame for t in found if t.kind == "cut"]
    gradual = {t.frame: (t.first, t.last) for t in found
               if t.kind == "gradual" and not any(t.first - near < c < t.frame + near for c in hard)}
    shots = bound_shots([*hard, *gradual], frames, fps, min_shot_s=config.min_shot_s,
                        max_shot_s=config.max_shot_s, gradual=gradual)
    return ShotList(fps=fps, frames=frames, shots=shots)


def detect_transitions(path: Path | str, config: ShotConfig = ShotConfig(), *, info: MediaInfo | None = None,
                       progress: Progress | None = None) -> list[Transition]:
    """Hard cuts and gradual transitions, by first frame; nothing merged or split."""
    return _scan(path, config, info, progress)[1]


def detect_cuts(path: Path | str, config: ShotConfig = ShotConfig(), *, info: MediaInfo | None = None,
                progress: Progress | None = None) -> list[int]:
    """Frames (0-based, decoded order) that begin a new shot with a hard cut, as detected."""
    return [t.first for t in _scan(path, config, info, progress)[1] if t.kind == "cut"]


def detect_shots(path: Path | str, config: ShotConfig = ShotConfig(), *, info: MediaInfo | None = None,
                 progress: Progress | None = None) -> ShotList:
    """Detect transitions and turn them into shots between ``config.min_shot_s`` and ``config.max_shot_s``."""
    info, found, _ = _scan(path, config, info, progress)
    return shots_from_cuts(found, info, config)
