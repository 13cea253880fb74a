"""A UHD title's measured ladder: analysis/final CPU and ingest CPU per content minute, on 2160p masters.

    .venv/bin/python bench/uhd.py --make-masters DIR          # the two masters below, once (ProRes 422 HQ)
    .venv/bin/python bench/uhd.py DIR/dark_bokeh_2160p.mov DIR/composite_2160p.mov [--codec h264] [--runs 1]
    .venv/bin/python bench/uhd.py ... --json out.json

Masters (made with the bundled ffmpeg, lanczos upscales: NOT real UHD detail, so the 4K model sees
a softer picture than a camera's 2160p and the UHD rungs come cheaper than on real 4K content):
- ``dark_bokeh_2160p.mov``: ../shared/media 11_dark_bokeh_7s_1920x1080.mp4 scaled to 3840x2160;
- ``composite_2160p.mov``: the first 6 s (three 2 s shots, hard cuts) of c01_composite_hardcuts_12s_1280x720.mp4.

Per title, the flow's steps without Prefect (bench/ladder.py's ``deliver_planned``): shots, trials
(``plan_trials`` + ``trial_shots``: HD heights on every shot scored at 1080 lines with the HD
model, 1440/2160 on the sample with the 4K model and mapped per shot), the per-shot ladder, and the
closed loop's final encodes, each rung scored on every frame with its own model. CPU is each
process's own (tools.run), so other load does not enter it. ``analysis`` = sample + trials +
discarded encodes; ``final`` = the kept final encodes; ``ingest`` = analysis + final + the delivered
rungs' VMAF (audio, packaging and shot detection are left out: small beside these).
"""

from __future__ import annotations

import argparse
import json
import logging
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
from reelflow.encoding.vmaf import vmaf_model_for
from reelflow.infra.settings import Settings
from reelflow.infra.tools import ffmpeg_exe, run

log = logging.getLogger("bench.uhd")
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def make_masters(folder: Path) -> list[Path]:
    """The two 2160p ProRes 422 HQ masters (lanczos upscales of real clips)."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [("dark_bokeh_2160p.mov", MEDIA / "11_dark_bokeh_7s_1920x1080.mp4", None),
            ("composite_2160p.mov", MEDIA / "c01_composite_hardcuts_12s_1280x720.mp4", 6.0)]
    out = []
    for name, src, seconds in jobs:
        dst = folder / name
        if not dst.exists():
            run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *(["-t", str(seconds)] if seconds else []),
                 "-i", str(src), "-vf", "scale=3840:2160:flags=lanczos", "-an",
                 "-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le", str(dst)])
        out.append(dst)
    return out


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
    analysis_cpu = plan.cpu_s + sum(s.cpu_s for s in measured) + ladder.discarded_cpu_s
    final_cpu = ladder.encode_cpu_s
    vmaf_cpu = sum(ladder.vmaf_cpu_s)
    return {
        "title": src.name, "codec": settings.encode.codec, "seconds": round(minutes * 60, 2), "shots": len(found),
        "heights_tried": list(plan.heights), "heights_mapped": list(plan.uhd_heights),
        "uhd_map": None if plan.uhd_map is None else {
            "heights": list(plan.uhd_map.heights), "crfs": list(plan.uhd_map.crfs),
            "rate_ratio": [[round(r, 3) for r in row] for row in plan.uhd_map.rate_ratio],
            "vmaf_offset": [[round(v, 2) for v in row] for row in plan.uhd_map.vmaf_offset]},
        "rungs": [{"rung": name, "model": vmaf_model_for(int(name.split("p_")[0])),
                   "planned_vmaf": round(p[1], 2), "kbps": round(k, 1), "vmaf": round(v, 2)}
                  for name, p, (k, v) in zip(ladder.rungs, ladder.planned, ladder.points, strict=True)],
        "checks": ladder.checks,
        "cpu_s": {"sample": round(plan.cpu_s, 1), "trials": round(sum(s.cpu_s for s in measured), 1),
                  "discarded": round(ladder.discarded_cpu_s, 1), "analysis": round(analysis_cpu, 1),
                  "final": round(final_cpu, 1), "delivered_vmaf": round(vmaf_cpu, 1)},
        "analysis_over_final": round(analysis_cpu / final_cpu, 3),
        "ingest_cpu_s_per_content_min": round((analysis_cpu + final_cpu + vmaf_cpu) / minutes, 0),
        "wall_s": round(time.monotonic() - wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("titles", nargs="*", type=Path)
    parser.add_argument("--make-masters", type=Path, help="write the two 2160p masters into this folder")
    parser.add_argument("--codec", default="h264", choices=["h264", "hevc", "av1"])
    parser.add_argument("--runs", type=int, default=1, help="runs per title; the median ratio is reported")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    titles = list(args.titles)
    if args.make_masters:
        titles += make_masters(args.make_masters)
    settings = Settings(encode={"codec": args.codec})
    results = []
    for title in titles:
        runs = [bench_title(title, settings, args.jobs) for _ in range(args.runs)]
        median = statistics.median(r["analysis_over_final"] for r in runs)
        best = min(runs, key=lambda r: abs(r["analysis_over_final"] - median))
        best["runs"] = [r["analysis_over_final"] for r in runs]
        results.append(best)
        print(json.dumps(best, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
