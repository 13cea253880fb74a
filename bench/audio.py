"""Audio stage CPU per content minute for a 5.1 + 2 stereo master, against the video ladder's CPU.

    .venv/bin/python bench/audio.py [--runs 3] [--seconds 9]

Set-up (not timed): a MOV master is made from ../shared/media's talking head (1280x720, 30 fps,
``--seconds`` long) with three PCM audio streams: English 5.1 (the speech on C, tones elsewhere),
French stereo and an untagged stereo (the speech). Timed per run, as CPU seconds of the ffmpeg
children (user + sys, what ``tools.run`` records):

- audio: the whole stage as ingest runs it: the plan, the layout QC (one decode per published
  mix) and every planned rendition encoded with two-pass loudnorm: AAC 5.1, its BS.775 stereo, and
  the two stereo tracks (4 renditions, 8 ffmpeg passes, 3 QC decodes);
- video: the fixed ladder's final encodes of the same content (Apple's H.264 ladder up to 720p,
  libx264 ``medium``, the default ``encode.preset``): the cheapest ladder ingest makes; a measured
  ladder adds trials and VMAF, so its ratio would be smaller still.

Printed: per run the audio and video CPU seconds per content minute and their ratio; then the
median of each over the runs (the figure in docs/benchmarks.md; target: audio under 5% of video).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from reelflow.encoding.audio import check_layouts, encode_track, plan_audio  # noqa: E402
from reelflow.encoding.encode import encode_video_rung, keyframe_frames, ladder_for_source  # noqa: E402
from reelflow.encoding.probe import probe  # noqa: E402
from reelflow.infra.settings import AudioConfig, EncodeConfig, QCConfig  # noqa: E402
from reelflow.infra.tools import ffmpeg_exe  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"


def make_master(out: Path, seconds: float) -> Path:
    clip = MEDIA / "10_talking_head_9s_1280x720.mp4"
    tones = []
    for f in (440, 550, 50, 660, 770, 600, 650):
        tones += ["-f", "lavfi", "-t", f"{seconds}", "-i", f"sine=f={f}:r=48000"]
    subprocess.run([
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-t", f"{seconds}", "-i", str(clip),
        *tones, "-filter_complex",
        "[0:a]aresample=48000,pan=mono|c0=0.5*c0+0.5*c1,asplit=2[sp][sp2];"
        "[1:a][2:a][sp][3:a][4:a][5:a]amerge=inputs=6,channelmap=map=0|1|2|3|4|5:channel_layout=5.1[m51];"
        "[6:a][7:a]amerge=inputs=2[fr];[sp2]pan=stereo|c0=c0|c1=c0[und]",
        "-map", "0:v", "-map", "[m51]", "-map", "[fr]", "-map", "[und]",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "16", "-c:a", "pcm_s24le",
        "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", "-t", f"{seconds}", str(out)],
        check=True)
    return out


def one_run(master: Path, work: Path) -> dict[str, float]:
    info = probe(master)
    minutes = info.video.duration_s / 60
    config = AudioConfig()
    plan = plan_audio(info, config)
    audio_cpu = sum(layout["cpu_s"] for layout in check_layouts(master, plan, info, QCConfig()))
    for track in plan.tracks:
        audio_cpu += encode_track(master, info, track, work / f"{track.name}.mp4", config=config, reuse=False).cpu_s
    encode = EncodeConfig()
    keys = keyframe_frames([0], info.video.frames, info.video.fps, encode.segment_s)
    video_cpu = 0.0
    for rung in ladder_for_source(info.video, encode.ladder):
        video_cpu += encode_video_rung(master, rung, keys, info, encode, work / f"{rung.name}.mp4", reuse=False).cpu_s
    return {"audio_cpu_s_per_min": audio_cpu / minutes, "video_cpu_s_per_min": video_cpu / minutes,
            "ratio": audio_cpu / video_cpu, "renditions": len(plan.tracks), "content_s": info.video.duration_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=9.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audio-") as tmp:
        work = Path(tmp)
        master = make_master(work / "master.mov", args.seconds)
        runs = []
        for number in range(args.runs):
            started = time.monotonic()
            result = one_run(master, work)
            result["wall_s"] = time.monotonic() - started
            runs.append(result)
            print(f"run {number + 1}: audio {result['audio_cpu_s_per_min']:.1f} CPU s/min, video "
                  f"{result['video_cpu_s_per_min']:.1f} CPU s/min, ratio {result['ratio']:.2%} "
                  f"({result['renditions']} audio renditions, {result['content_s']:.1f} s, "
                  f"{result['wall_s']:.0f} s wall)",
                  flush=True)
    summary = {key: statistics.median(r[key] for r in runs)
               for key in ("audio_cpu_s_per_min", "video_cpu_s_per_min", "ratio")}
    print(json.dumps({"runs": runs, "median": summary}, indent=2))


if __name__ == "__main__":
    main()
