"""Half-rate rungs of a 59.94 title: the encode CPU they save and their delivered VMAF at the same bitrate.

    .venv/bin/python bench/half_rate.py e05_dog_10s_1280x720.mp4 --runs 3

Derives a 720p59.94 master from the clip (played at double speed, 5 s), then encodes each of the
fixed ladder's rungs up to 540 lines (encode.encode_video_rung, final preset, the rung's bitrate)
once at full rate and once at half rate (``half_rate_max_height`` 0 and 540), ``--runs`` times,
and scores each with VMAF against every source frame (vmaf.measure_rung_vmaf; a half-rate frame
stands for itself and the next). Prints per rung: median encode CPU of each, their ratio, file
kbps and VMAF of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ladder import MEDIA_DIR
from reelflow.encoding.encode import encode_video_rung, keyframe_frames, ladder_for_source
from reelflow.encoding.probe import probe
from reelflow.encoding.vmaf import measure_rung_vmaf
from reelflow.infra.settings import EncodeConfig
from reelflow.infra.tools import ffmpeg_exe, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", help="a clip name in ../shared/media (29.97 fps, played at double speed)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="half-rate-") as tmp:
        work = Path(tmp)
        master = work / "master5994.mp4"
        run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-i", str(MEDIA_DIR / args.clip),
             "-vf", "setpts=0.5*PTS,fps=60000/1001", "-c:v", "libx264", "-preset", "veryfast", "-crf", "14", "-an",
             str(master)])
        info = probe(master)
        print(f"{args.clip} at double speed: {info.video.width}x{info.video.height} {float(info.video.fps):.3f} fps, "
              f"{info.video.frames} frames")
        print("rung        full CPU s  half CPU s  half/full   full kbps  half kbps   full VMAF  half VMAF")
        for rung in ladder_for_source(info.video, EncodeConfig().ladder):
            if rung.height > 540:
                continue
            row = []
            for bound in (0, 540):
                config = EncodeConfig(half_rate_max_height=bound)
                keys = keyframe_frames([0], info.video.frames, info.video.fps, config.segment_s, even=True)
                cpu = []
                for i in range(args.runs):
                    made = encode_video_rung(master, rung, keys, info, config, work / f"{rung.name}-{bound}-{i}.mp4",
                                             reuse=False)
                    cpu.append(made.cpu_s)
                score = measure_rung_vmaf(made.path, info, half_rate=made.half_rate)
                row.append((statistics.median(cpu), made.kbps, score.mean))
            (fc, fk, fv), (hc, hk, hv) = row
            print(f"{rung.name:<11} {fc:>10.2f}  {hc:>10.2f}  {hc / fc:>9.2f}   {fk:>9.0f}  {hk:>9.0f}   "
                  f"{fv:>9.2f}  {hv:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
