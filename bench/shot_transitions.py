"""Deterministic titles with synthetic shot transitions of known frames, built from the real clips.

Each title joins single shots taken from the real clips in ../shared/media (inside one shot of
truth.json: no real cut or fade in a piece) with hard cuts, cross-dissolves, fades through black
and wipes of 8-30 frames, seeded. ffmpeg decodes the pieces (``trim`` by decoded-frame index, the
convention of truth.json), scales them to the title's size, and encodes the title (x264, a fixed
thread count, so a build is repeatable); numpy mixes the frames of a transition in between, so the
truth is exact by construction:

- a hard cut is the index of the first frame of the new shot;
- a gradual transition of L frames is the inclusive range of its L mixed frames: frame k (0-based)
  of it is at progress p = (k + 1) / (L + 1); a dissolve shows (1 - p) A + p B, a fade through
  black A (1 - 2p) up to the middle and B (2p - 1) after it (black at p = 0.5), a wipe B on the
  part of the picture the moving edge has passed (left, right, up, down or diagonal). The outgoing
  shot keeps playing under the transition, as in an edit.

Frames of a piece are shown one for one at the title's rate (no frames dropped or repeated).
The truth is written beside each title as ``<title>.json`` in the schema of truth.json's clips
(``cuts``, ``gradual`` with ``start``/``end``/``kind``, ``negatives``), plus the pieces used.

The split between tuning and report data is fixed here (SPLIT) and must not change once figures
are reported. The two parts share no clip, no seed, and no transition length (tuning: even
lengths, report: odd lengths), and differ in size and frame rate:

- tune: clips 02, 04, 10, 11, 12, e05, c01 of ../shared/media, seeds 1-6, 640x360 at 25 fps;
- report: clips 01, 03, e04, e07, seeds 101-108, 960x540 at 24 and 30 fps.

(c01 contains 2 s of clip 11, which is in the tuning part too; nothing of a report clip is in c01.)
Outputs go to ``$REELFLOW_HOME/shot-transitions`` or, without REELFLOW_HOME, to
``/tmp/reelflow-shot-transitions``, never into the repository; existing titles are kept.

    .venv/bin/python bench/shot_transitions.py [--part tune|report|all] [--folder DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEDIA_DIR = Path(os.environ.get("SHARED_MEDIA_DIR", REPO.parent / "shared" / "media"))
KINDS = ("cut", "dissolve", "fade", "wipe")
WIPES = ("left", "right", "up", "down", "diagonal")


@dataclass(frozen=True)
class Part:
    clips: tuple[str, ...]
    seeds: tuple[int, ...]
    lengths: tuple[int, ...]        # gradual transition lengths, in frames
    size: tuple[int, int]
    rates: tuple[int, ...]          # frame rate of the title, by seed in turn
    joins: int = 10                 # transitions per title


SPLIT: dict[str, Part] = {
    "tune": Part(
        clips=("02_tears_of_steel_10s_640x360.mp4", "04_caminandes_10s_640x360.mp4",
               "10_talking_head_9s_1280x720.mp4", "11_dark_bokeh_7s_1920x1080.mp4",
               "12_dashcam_9s_960x540.mp4", "e05_dog_10s_1280x720.mp4",
               "c01_composite_hardcuts_12s_1280x720.mp4"),
        seeds=(1, 2, 3, 4, 5, 6), lengths=tuple(range(8, 31, 2)), size=(640, 360), rates=(25,)),
    "report": Part(
        clips=("01_bbb_0-30s_1280x720_vp8.webm", "03_sintel_fight_10s_640x360.mp4",
               "e04_juggle_10s_1280x720.mp4", "e07_traffic_cam_23s_1280x720.mp4"),
        seeds=tuple(range(101, 109)), lengths=tuple(range(9, 30, 2)), size=(960, 540), rates=(24, 30)),
}
_MIN_PURE = 20          # frames of a piece shown unmixed, at least


@dataclass(frozen=True)
class Piece:
    clip: str
    start: int          # first source frame used (decoded-frame index)
    frames: int         # source frames used, including those under the transitions either side


@dataclass(frozen=True)
class Join:
    kind: str           # cut, dissolve, fade, wipe
    length: int         # mixed frames (0 for a cut)
    wipe: str = ""      # direction of a wipe


def default_folder() -> Path:
    home = os.environ.get("REELFLOW_HOME")
    return Path(home) / "shot-transitions" if home else Path("/tmp/reelflow-shot-transitions")


def shots_of(clip: dict[str, object], min_frames: int) -> list[tuple[int, int]]:
    """[start, end) ranges of a clip's real shots (from truth.json), without its gradual transitions."""
    frames = int(clip["frames"])  # type: ignore[call-overload]
    bounds = sorted({0, frames, *clip["cuts"]})  # type: ignore[misc]
    shots = []
    for a, b in itertools.pairwise(bounds):
        for g in clip["gradual"]:  # type: ignore[attr-defined]
            if g["start"] < b and g["end"] >= a:   # keep the part after a fade or dissolve
                a = max(a, g["end"] + 1)
        if b - a >= min_frames:
            shots.append((a, b))
    return shots


def plan(part: Part, seed: int, truth: dict[str, dict[str, object]]) -> tuple[list[Piece], list[Join]]:
    """The pieces and joins of one title: each join between pieces of two different clips."""
    rng = random.Random(seed)
    joins = []
    for _ in range(part.joins):
        kind = rng.choice(KINDS)
        length = 0 if kind == "cut" else rng.choice(part.lengths)
        joins.append(Join(kind, length, rng.choice(WIPES) if kind == "wipe" else ""))
    pool = [(name, s) for name in part.clips for s in shots_of(truth[name], _MIN_PURE + 2)]
    pieces: list[Piece] = []
    previous = ""
    for i in range(part.joins + 1):
        before = joins[i - 1].length if i else 0
        after = joins[i].length if i < part.joins else 0
        pure = rng.randint(_MIN_PURE, 3 * _MIN_PURE)
        fits = [(n, s) for n, s in pool if n != previous and s[1] - s[0] >= before + after + _MIN_PURE]
        name, (a, b) = rng.choice(fits)
        need = min(before + after + pure, b - a)
        start = rng.randint(a, b - need)
        pieces.append(Piece(name, start, need))
        previous = name
    return pieces, joins


def truth_of(pieces: list[Piece], joins: list[Join]) -> dict[str, object]:
    """cuts and gradual ranges of the planned title (truth.json's schema)."""
    cuts: list[int] = []
    gradual: list[dict[str, object]] = []
    position = 0
    for i, join in enumerate(joins):
        before = joins[i - 1].length if i else 0
        position += pieces[i].frames - before - join.length   # the piece's unmixed frames
        if join.kind == "cut":
            cuts.append(position)
        else:
            kind = f"wipe {join.wipe}" if join.kind == "wipe" else join.kind
            gradual.append({"start": position, "end": position + join.length - 1, "kind": kind,
                            "length": join.length})
            position += join.length
    frames = position + pieces[-1].frames - joins[-1].length
    return {"frames": frames, "cuts": cuts, "gradual": gradual, "negatives": []}


def _decode(ffmpeg: str, piece: Piece, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    argv = [ffmpeg, "-nostdin", "-v", "error", "-i", str(MEDIA_DIR / piece.clip),
            # trim counts decoded frames: truth.json's frame numbers
            "-vf", f"trim=start_frame={piece.start}:end_frame={piece.start + piece.frames},setpts=PTS-STARTPTS,"
                   f"scale={w}:{h}:flags=bicubic,setsar=1",
            "-fps_mode", "passthrough",  # one output frame per decoded frame, none repeated
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-threads", "1", "-"]
    raw = subprocess.run(argv, check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    if len(frames) != piece.frames:
        raise RuntimeError(f"{piece}: decoded {len(frames)} frames")
    return frames


def _mask(direction: str, p: float, h: int, w: int) -> np.ndarray:
    """Where a wipe at progress p shows the incoming shot."""
    y, x = np.mgrid[0:h, 0:w]
    ramp = {"left": x / w, "right": 1 - (x + 1) / w, "up": y / h, "down": 1 - (y + 1) / h,
            "diagonal": (x / w + y / h) / 2}[direction]
    return (ramp < p)[..., None]


def mix(a: np.ndarray, b: np.ndarray, join: Join) -> Iterator[np.ndarray]:
    """The transition's frames from the outgoing frames ``a`` and incoming ``b`` (same count)."""
    for k in range(join.length):
        p = (k + 1) / (join.length + 1)
        fa, fb = a[k].astype(np.float32), b[k].astype(np.float32)
        if join.kind == "dissolve":
            out = (1 - p) * fa + p * fb
        elif join.kind == "fade":
            out = fa * (1 - 2 * p) if p < 0.5 else fb * (2 * p - 1)
        else:
            out = np.where(_mask(join.wipe, p, *fa.shape[:2]), fb, fa)
        yield np.clip(np.rint(out), 0, 255).astype(np.uint8)


def title_frames(ffmpeg: str, pieces: list[Piece], joins: list[Join], size: tuple[int, int]) -> Iterator[np.ndarray]:
    previous: np.ndarray | None = None
    for i, piece in enumerate(pieces):
        frames = _decode(ffmpeg, piece, size)
        before = joins[i - 1] if i else None
        head = before.length if before else 0
        if before is not None and before.length:
            assert previous is not None
            yield from mix(previous[len(previous) - head:], frames[:head], before)
        tail = joins[i].length if i < len(joins) else 0
        yield from frames[head:len(frames) - tail]
        previous = frames


def write_title(ffmpeg: str, pieces: list[Piece], joins: list[Join], size: tuple[int, int], rate: int,
                out: Path) -> int:
    """Encode the title of ``pieces`` joined by ``joins`` to ``out``; the number of frames written."""
    w, h = size
    argv = [ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
            "-r", str(rate), "-i", "-",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",  # a clean mezzanine-like picture
            "-threads", "2",                                         # a fixed count: the same bytes each build
            "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out)]
    encoder = subprocess.Popen(argv, stdin=subprocess.PIPE)
    assert encoder.stdin is not None
    count = 0
    for frame in title_frames(ffmpeg, pieces, joins, size):
        encoder.stdin.write(frame.tobytes())
        count += 1
    encoder.stdin.close()
    if encoder.wait():
        raise RuntimeError(f"x264 failed on {out.name}")
    return count


def build(part_name: str, seed: int, folder: Path, ffmpeg: str, truth: dict[str, dict[str, object]]) -> Path:
    part = SPLIT[part_name]
    rate = part.rates[seed % len(part.rates)]
    w, h = part.size
    out = folder / f"{part_name}-s{seed}-{h}p{rate}.mp4"
    record = out.with_suffix(".json")
    if out.is_file() and record.is_file():
        return out
    pieces, joins = plan(part, seed, truth)
    meta = {"part": part_name, "seed": seed, "fps": rate, "width": w, "height": h, **truth_of(pieces, joins),
            "pieces": [asdict(p) for p in pieces], "joins": [asdict(j) for j in joins]}
    partial = out.with_suffix(".part.mp4")
    count = write_title(ffmpeg, pieces, joins, part.size, rate, partial)
    if count != meta["frames"]:
        raise RuntimeError(f"{out.name}: wrote {count} frames, planned {meta['frames']}")
    partial.replace(out)
    record.write_text(json.dumps(meta, indent=1) + "\n")
    return out


def titles(part_name: str, folder: Path | None = None) -> list[Path]:
    """Build (if missing) and list every title of one part of SPLIT."""
    import imageio_ffmpeg

    folder = folder or default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    truth = json.loads((MEDIA_DIR / "truth.json").read_text())["clips"]
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    return [build(part_name, seed, folder, ffmpeg, truth) for seed in SPLIT[part_name].seeds]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*SPLIT, "all"], default="all")
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args(argv)
    for name in SPLIT if args.part == "all" else [args.part]:
        for path in titles(name, args.folder):
            meta = json.loads(path.with_suffix(".json").read_text())
            print(f"{path}: {meta['frames']} frames, {len(meta['cuts'])} cuts, {len(meta['gradual'])} gradual")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
