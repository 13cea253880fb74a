"""A UHD title's measured ladders: ingest CPU per content minute (analysis / final encodes / delivered VMAF)
per codec, and analysis over final CPU, on 2160p masters.

    .venv/bin/python bench/uhd.py --make-masters DIR          # the three short masters below, once (ProRes 422 HQ)
    .venv/bin/python bench/uhd.py DIR/bokeh3_2160p.mov DIR/composite4_2160p.mov --codec hevc av1 [--runs 1]
    .venv/bin/python bench/uhd.py DIR/*.mov --codec h264 --max-height 1080 --json out.json

Masters (made with the bundled ffmpeg, lanczos upscales: NOT real UHD detail, so the 4K model sees
a softer picture than a camera's 2160p and the UHD rungs come cheaper than on real 4K content);
short, because a UHD ladder costs thousands of CPU seconds per content minute on 2 cores:
- ``bokeh3_2160p.mov``: the first 3 s of ../shared/media 11_dark_bokeh_7s_1920x1080.mp4 (one shot);
- ``composite4_2160p.mov``: 1-5 s of c01_composite_hardcuts_12s_1280x720.mp4 (three shots, hard cuts, 6x upscale);
- ``dog3_2160p.mov``: the first 3 s of e05_dog_10s_1280x720.mp4 (one shot, daylight, camera motion).
(``--make-masters DIR --long`` also writes session 13's longer two: 7.3 s of the bokeh and 6 s of the composite,
and ``multishot16_2160p.mov``: all 12 s of the composite (six 2 s shots of six real clips, 3x upscale) then the
first 4 s of the bokeh (2x upscale, retimed to 30 fps): 16 s, seven shots, the longest multi-shot UHD title
that fits this machine's CPU.)

Per title and codec, the flow's steps without Prefect (bench/ladder.py's ``deliver_planned``): shots,
trials (``plan_trials`` + ``trial_shots``: HD heights on every shot scored at 1080 lines with the
HD model, 1440/2160 on the sample with the 4K model and mapped per shot), the per-shot ladder, and
the closed loop's final encodes, each rung scored on every frame with its own model. Presets are
the codec's defaults (encoding/codecs.py). ``--max-height 1080`` drops the candidates above it: the
H.264 SDR ladder of a multi-codec UHD title, which stops at 1080p. CPU is each process's own
(tools.run), so other load does not enter it. ``analysis`` = sample + trials + discarded encodes and
checks; ``final`` = the kept final encodes; ``vmaf`` = the delivered rungs' every-frame VMAF;
``ingest`` = the three (audio, packaging and shot detection are left out: small beside these).
"""


from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ladder import deliver_planned, run_trials, shots_and_keyframes
from reelflow.encoding.analysis import LadderAnalysis
from reelflow.encoding.ladder import select_ladder
from reelflow.encoding.probe import probe
from reelflow.encoding.trials import sample_segments
from reelflow.encoding.vmaf import vmaf_model_for
from reelflow.infra.settings import Settings, TrialConfig
from reelflow.infra.tools import ffmpeg_exe, run

log = logging.getLogger("bench.uhd")
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def make_masters(folder: Path, long: bool = False) -> list[Path]:
    """The 2160p ProRes 422 HQ masters (lanczos upscales of real clips): (name, clip, start s, seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [("bokeh3_2160p.mov", "11_dark_bokeh_7s_1920x1080.mp4", 0.0, 3.0),
            ("composite4_2160p.mov", "c01_composite_hardcuts_12s_1280x720.mp4", 1.0, 4.0),
            ("dog3_2160p.mov", "e05_dog_10s_1280x720.mp4", 0.0, 3.0)]
    if long:
        jobs += [("dark_bokeh_2160p.mov", "11_dark_bokeh_7s_1920x1080.mp4", 0.0, 0.0),
                 ("composite_2160p.mov", "c01_composite_hardcuts_12s_1280x720.mp4", 0.0, 6.0)]
    out = []
    if long:
        out.append(make_multishot(folder / "multishot16_2160p.mov"))
    for name, clip, start, seconds in jobs:
        dst = folder / name
        if not dst.exists():
            run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *(["-ss", str(start)] if start else []),
                 *(["-t", str(seconds)] if seconds else []), "-i", str(MEDIA / clip),
                 "-vf", "scale=3840:2160:flags=lanczos", "-an",
                 "-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le", str(dst)])
        out.append(dst)
    return out


def make_multishot(dst: Path) -> Path:
    """The composite's 12 s (six shots) then the bokeh's first 4 s at 30 fps: 16 s, seven shots, 2160p ProRes."""
    if not dst.exists():
        to_uhd = "scale=3840:2160:flags=lanczos,setsar=1,format=yuv422p10le"
        run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y",
             "-i", str(MEDIA / "c01_composite_hardcuts_12s_1280x720.mp4"),
             "-t", "4", "-i", str(MEDIA / "11_dark_bokeh_7s_1920x1080.mp4"),
             "-filter_complex", f"[0:v]{to_uhd}[a];[1:v]fps=30,{to_uhd}[b];[a][b]concat=n=2:v=1:a=0[v]",
             "-map", "[v]", "-an", "-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le", str(dst)])
    return dst


def bench_title(src: Path, settings: Settings, jobs: int) -> dict[str, Any]:
    info = probe(src)
    found, keyframes = shots_and_keyframes(src, info, settings)
    wall = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-uhd-") as tmp, ThreadPoolExecutor(jobs) as pool:
        work = Path(tmp)
        units, plan, measured = run_trials(src, info, found, keyframes, settings, work, pool)
        analysis = LadderAnalysis(mode="per-shot", plan=plan, shots=tuple(measured), units=units,
                                  rungs=tuple(select_ladder([s.points for s in measured], settings.ladder)))
        ladder = deliver_planned("per-shot", src, info, analysis, keyframes, settings, work)
    minutes = info.video.frames / float(info.video.fps) / 60
    uhd_cpu = sum(t.cpu_s for t in plan.uhd_sample_trials)
    analysis_cpu = plan.cpu_s + sum(s.cpu_s for s in measured) + ladder.discarded_cpu_s
    final_cpu = ladder.encode_cpu_s
    vmaf_cpu = sum(ladder.vmaf_cpu_s)
    return {
        "title": src.name, "codec": settings.encode.codec, "presets": [settings.trials.preset, settings.encode.preset],
        "seconds": round(minutes * 60, 2), "shots": len(found), "units": len(units),
        "heights_tried": list(plan.heights), "heights_mapped": list(plan.uhd_heights),
        "sample_frames": plan.sample_frames, "sample_pieces": sample_segments(found, info.video.fps, settings.trials),
        "uhd_sample_crfs": sorted({t.crf for t in plan.uhd_sample_trials}),
        "uhd_map": None if plan.uhd_map is None else {
            "heights": list(plan.uhd_map.heights), "crfs": list(plan.uhd_map.crfs),
            "rate_ratio": [[round(r, 3) for r in row] for row in plan.uhd_map.rate_ratio],
            "vmaf_offset": [[round(v, 2) for v in row] for row in plan.uhd_map.vmaf_offset],
            "reach": [[h, c, round(r, 3), round(v, 2)] for h, c, r, v in plan.uhd_reach]},
        "rungs": [{"rung": name, "model": vmaf_model_for(int(name.split("p_")[0])),
                   "planned_vmaf": round(p[1], 2), "kbps": round(k, 1), "vmaf": round(v, 2)}
                  for name, p, (k, v) in zip(ladder.rungs, ladder.planned, ladder.points, strict=True)],
        "checks": ladder.checks,
        "cpu_s": {"sample": round(plan.cpu_s, 1), "uhd_sample_trials": round(uhd_cpu, 1),
                  "trials": round(sum(s.cpu_s for s in measured), 1), "discarded": round(ladder.discarded_cpu_s, 1),
                  "analysis": round(analysis_cpu, 1), "final": round(final_cpu, 1),
                  "delivered_vmaf": round(vmaf_cpu, 1)},
        "per_content_min": {"analysis": round(analysis_cpu / minutes), "final": round(final_cpu / minutes),
                            "vmaf": round(vmaf_cpu / minutes),
                            "ingest": round((analysis_cpu + final_cpu + vmaf_cpu) / minutes)},
        "analysis_over_final": round(analysis_cpu / final_cpu, 3),
        "wall_s": round(time.monotonic() - wall, 1),
        "load_avg": [round(x, 1) for x in os.getloadavg()],
    }


def settings_for(codec: str, max_height: int | None) -> Settings:
    """Default settings for ``codec`` (its presets and trial CRFs), candidates no taller than ``max_height``."""
    heights = [h for h in TrialConfig().heights if max_height is None or h <= max_height]
    return Settings(encode={"codec": codec}, trials={"heights": heights})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("titles", nargs="*", type=Path)
    parser.add_argument("--make-masters", type=Path, help="write the 2160p masters into this folder")
    parser.add_argument("--long", action="store_true", help="with --make-masters: also session 13's longer two")
    parser.add_argument("--codec", nargs="+", default=["h264"], choices=["h264", "hevc", "av1"])
    parser.add_argument("--max-height", type=int, help="no candidate taller (1080: an H.264 ladder to 1080p)")
    parser.add_argument("--runs", type=int, default=1, help="runs per title and codec; the median run is reported")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    titles = list(args.titles)
    if args.make_masters:
        titles += make_masters(args.make_masters, args.long)
    results = []
    for codec in args.codec:
        settings = settings_for(codec, args.max_height)
        for title in titles:
            runs = [bench_title(title, settings, args.jobs) for _ in range(args.runs)]
            median = statistics.median(r["per_content_min"]["ingest"] for r in runs)
            best = min(runs, key=lambda r: abs(r["per_content_min"]["ingest"] - median))
            best["runs"] = [{"ingest_per_min": r["per_content_min"]["ingest"],
                             "analysis_over_final": r["analysis_over_final"]} for r in runs]
            results.append(best)
            print(json.dumps(best, indent=1), flush=True)
            if args.json:      # after every title: a long run keeps what it has measured
                args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
