"""Deterministic feature-length titles built from the real clips in ../shared/media.

A title is a seeded sequence of shots, each 2-10 s cut from one clip (animation, live action,
dark, high motion, talking heads), scaled to the title's size at a constant frame rate, with the
clip's own sound where it has any and a tone of the shot's own pitch where it has none. Every
title of one seed starts with the same shots (the 1-minute title is the first minute of the
5-minute one, and so on), so the shot plan is made once for the longest length and cut.

The picture goes through a pipe as raw frames: one ffmpeg per shot decodes, retimes (``fps``) and
scales it, and one x264 encoder at CRF 10, preset ultrafast, with a fixed thread count writes the
title (near-lossless, so decoding it costs what a studio master costs; ultrafast because a slower
preset would make the builder cost about as much as an ingest). The audio is one PCM track,
assembled sample-exact from the shots. No intermediate files beyond the audio; every step is
deterministic for one ffmpeg and seed (exact seeks in decoded clips, a fixed x264 thread count),
and the decoded picture's MD5 is recorded beside the title so two builds can be compared. Titles
are cached in a folder (``title-<minutes>m-<height>p-<fps>fps-s<seed>.mov`` with a ``.json``
beside it: shots, cuts, picture digest) and only made when missing.

    .venv/bin/python bench/feature_titles.py --minutes 1,5,20 [--height 1080] [--folder DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA_DIR = Path(os.environ.get("SHARED_MEDIA_DIR", REPO.parent / "shared" / "media"))
SAMPLE_RATE = 48000
# (clip, its usable length in s): the clips' durations less a margin, so a shot never runs off the end.
CLIPS: tuple[tuple[str, float], ...] = (
    ("01_bbb_0-30s_1280x720_vp8.webm", 29.5),           # animation, fade, meadow
    ("02_tears_of_steel_10s_640x360.mp4", 9.7),         # live action + CGI
    ("03_sintel_fight_10s_640x360.mp4", 9.7),           # animation, fast motion, cuts
    ("04_caminandes_10s_640x360.mp4", 9.7),             # animation, occlusions
    ("10_talking_head_9s_1280x720.mp4", 9.1),           # talking head
    ("11_dark_bokeh_7s_1920x1080.mp4", 7.0),            # dark, noisy, 1080p
    ("12_dashcam_9s_960x540.mp4", 8.5),                 # whole-frame motion
    ("c01_composite_hardcuts_12s_1280x720.mp4", 11.7),  # live action, cuts
    ("e04_juggle_10s_1280x720.mp4", 10.0),              # live action
    ("e05_dog_10s_1280x720.mp4", 9.4),                  # live action
    ("e07_traffic_cam_23s_1280x720.mp4", 22.7),         # many small moving objects
)
WITH_AUDIO = frozenset({"01_bbb_0-30s_1280x720_vp8.webm", "10_talking_head_9s_1280x720.mp4",
                        "12_dashcam_9s_960x540.mp4", "e05_dog_10s_1280x720.mp4", "e07_traffic_cam_23s_1280x720.mp4"})
MIN_SHOT_S, MAX_SHOT_S = 2.0, 10.0


@dataclass(frozen=True)
class PlannedShot:
    clip: str
    start_s: float      # in the clip
    frames: int         # at the title's frame rate
    tone_hz: int        # the tone under a clip without sound


def plan_shots(total_frames: int, fps: int, seed: int,
               clips: tuple[tuple[str, float], ...] = CLIPS) -> list[PlannedShot]:
    """Shots of 2-10 s (whole frames) from the clips in a seeded order, never one clip twice in a row,
    adding up to exactly ``total_frames`` (the last shot is cut short, to one frame at least)."""
    rng = random.Random(seed)
    shots: list[PlannedShot] = []
    done, last = 0, None
    while done < total_frames:
        clip, usable = rng.choice([c for c in clips if c[0] != last] or list(clips))
        length_s = rng.uniform(MIN_SHOT_S, min(MAX_SHOT_S, usable))
        start_s = round(rng.uniform(0.0, usable - length_s), 3)
        frames = min(max(1, round(length_s * fps)), total_frames - done)
        shots.append(PlannedShot(clip, start_s, frames, 200 + 20 * rng.randrange(40)))
        done += frames
        last = clip
    return shots


def title_shots(minutes: float, fps: int, seed: int, longest_minutes: float = 120.0) -> list[PlannedShot]:
    """The shots of a ``minutes`` title: the first ``minutes`` of the longest title of this seed."""
    total = round(minutes * 60 * fps)
    plan = plan_shots(round(longest_minutes * 60 * fps), fps, seed)
    out, done = [], 0
    for shot in plan:
        if done >= total:
            break
        frames = min(shot.frames, total - done)
        out.append(PlannedShot(shot.clip, shot.start_s, frames, shot.tone_hz))
        done += frames
    return out


def cut_frames(shots: list[PlannedShot]) -> list[int]:
    """The frame index of each shot's first frame after the first (the title's cuts)."""
    cuts, at = [], 0
    for shot in shots[:-1]:
        at += shot.frames
        cuts.append(at)
    return cuts


def _ffmpeg() -> str:
    from reelflow.infra.tools import ffmpeg_exe

    return ffmpeg_exe()


def _shot_picture_argv(shot: PlannedShot, width: int, height: int, fps: int) -> list[str]:
    return [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error",
            "-ss", f"{shot.start_s:.3f}", "-i", str(MEDIA_DIR / shot.clip),   # input seek: exact, we decode
            "-map", "0:v:0", "-vf", f"fps={fps},scale={width}:{height}:flags=lanczos,setsar=1,format=yuv420p",
            "-frames:v", str(shot.frames), "-f", "rawvideo", "-"]


def _shot_audio(shot: PlannedShot, fps: int) -> bytes:
    """The shot's sound, stereo s16le at 48 kHz, exactly as long as its pictures."""
    samples = shot.frames * SAMPLE_RATE // fps
    if shot.clip in WITH_AUDIO:
        source = ["-ss", f"{shot.start_s:.3f}", "-i", str(MEDIA_DIR / shot.clip), "-map", "0:a:0"]
    else:
        source = ["-f", "lavfi", "-i", f"sine=frequency={shot.tone_hz}:sample_rate={SAMPLE_RATE}"]
    argv = [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", *source,
            "-af", f"aresample={SAMPLE_RATE},aformat=sample_fmts=s16:channel_layouts=stereo,volume=0.5,"
                   f"apad,atrim=end_sample={samples}",
            "-f", "s16le", "-"]
    data = subprocess.run(argv, check=True, capture_output=True).stdout
    return data[: samples * 4].ljust(samples * 4, b"\0")


def _feed_pictures(shots: list[PlannedShot], width: int, height: int, fps: int, sink: subprocess.Popen[bytes],
                   failures: list[BaseException]) -> None:
    frame = width * height * 3 // 2
    try:
        assert sink.stdin is not None
        for shot in shots:
            data = subprocess.run(_shot_picture_argv(shot, width, height, fps), check=True,
                                  capture_output=True).stdout
            whole = len(data) // frame
            if whole == 0:
                raise RuntimeError(f"no picture from {shot.clip} at {shot.start_s} s")
            data = data[: whole * frame] + data[(whole - 1) * frame: whole * frame] * (shot.frames - whole)
            sink.stdin.write(data)
        sink.stdin.close()
    except BaseException as exc:   # reported by the caller, which owns the encoder
        failures.append(exc)
        if sink.stdin is not None:
            sink.stdin.close()


def picture_digest(path: Path) -> str:
    """MD5 of the decoded pictures: equal for equal titles whatever the container says."""
    done = subprocess.run([_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
                           "-map", "0:v:0", "-f", "md5", "-"], check=True, capture_output=True, text=True)
    return done.stdout.strip().removeprefix("MD5=")


def title_path(folder: Path, minutes: float, height: int, fps: int, seed: int) -> Path:
    return folder / f"title-{minutes:g}m-{height}p-{fps}fps-s{seed}.mov"


def build_title(folder: Path, minutes: float, *, height: int = 1080, fps: int = 24, seed: int = 18,
                crf: int = 10, preset: str = "ultrafast") -> Path:
    """The title's file in ``folder``, made if missing (to a temporary name, renamed once complete)."""
    out = title_path(folder, minutes, height, fps, seed)
    if out.is_file() and out.with_suffix(".json").is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    width = height * 16 // 9 // 2 * 2
    shots = title_shots(minutes, fps, seed)
    partial = out.with_name(out.stem + ".partial.mov")
    sound = out.with_name(out.stem + ".partial.wav")
    with wave.open(str(sound), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        for shot in shots:
            wav.writeframes(_shot_audio(shot, fps))
    encoder = subprocess.Popen(
        [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-framerate", str(fps), "-i", "-",
         "-i", str(sound), "-map", "0:v", "-map", "1:a",
         # near-lossless like a mezzanine; a fixed thread count keeps x264's output the same on every machine
         "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-threads", "2", "-g", str(2 * fps),
         "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
         "-c:a", "pcm_s16le", "-f", "mov", str(partial)], stdin=subprocess.PIPE)
    failures: list[BaseException] = []
    feeder = threading.Thread(target=_feed_pictures, args=(shots, width, height, fps, encoder, failures))
    feeder.start()
    feeder.join()
    code = encoder.wait()
    sound.unlink()
    if failures or code:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"building {out.name} failed: {failures[0] if failures else f'x264 exited {code}'}")
    meta = {"minutes": minutes, "width": width, "height": height, "fps": fps, "seed": seed, "crf": crf,
            "preset": preset, "frames": sum(s.frames for s in shots), "shots": [asdict(s) for s in shots],
            "cuts": cut_frames(shots), "picture_md5": picture_digest(partial),
            "plan_sha256": hashlib.sha256(json.dumps([asdict(s) for s in shots]).encode()).hexdigest()}
    partial.rename(out)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return out


def default_folder() -> Path:
    home = os.environ.get("REELFLOW_HOME")
    return (Path(home) if home else Path("/tmp")) / "bench-feature-titles"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="1,5,20")
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--folder", type=Path, default=default_folder())
    args = parser.parse_args()
    for minutes in (float(m) for m in args.minutes.split(",")):
        path = build_title(args.folder, minutes, height=args.height, fps=args.fps, seed=args.seed)
        meta = json.loads(path.with_suffix(".json").read_text())
        print(f"{path}  {meta['frames']} frames, {len(meta['shots'])} shots, picture md5 {meta['picture_md5']}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
