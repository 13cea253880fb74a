"""BD-rate of the HEVC and AV1 measured ladders against the H.264 ladder of the same title (VMAF, SDR clips).

    .venv/bin/python bench/codec_bdrate.py                                   # the default three clips
    .venv/bin/python bench/codec_bdrate.py --clips 03_sintel_fight_10s_640x360.mp4 --mode per-title --json out.json

Per clip and codec, what the flow does (bench/ladder.py's machinery): shots, the codec's trials
(its own trial preset, CRFs and measured correction, encoding/codecs.py defaults: x264 medium,
x265 medium, SVT-AV1 preset 8), the ladder (``--mode``, per-shot by default), and every rung
encoded by the closed loop and scored with VMAF (vmaf_v0.6.1) on every frame at the source's
size. Each codec's delivered rungs (payload kbps, VMAF) are one curve; BD-rate (bdrate.bd_rate,
PCHIP over the VMAF range both cover) is of HEVC's and AV1's curves against H.264's, negative
meaning fewer bits at the same quality. The final encodes' CPU per codec is reported beside it.

Nothing here is tuned: the codecs' presets and trial CRFs are encoding/codecs.py's, on every clip alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from ladder import MEDIA_DIR, deliver_planned, run_trials, shots_and_keyframes
from reelflow.encoding.analysis import LadderAnalysis
from reelflow.encoding.bdrate import BdRateError, bd_rate
from reelflow.encoding.ladder import select_ladder
from reelflow.encoding.probe import probe
from reelflow.infra.settings import Settings

log = logging.getLogger("bench.codecs")
CLIPS = ("02_tears_of_steel_10s_640x360.mp4", "03_sintel_fight_10s_640x360.mp4", "04_caminandes_10s_640x360.mp4")
CODEC_NAMES = ("h264", "hevc", "av1")


def codec_ladder(src: Path, codec: str, mode: Literal["per-title", "per-shot"], jobs: int) -> dict[str, Any]:
    settings = Settings(encode={"codec": codec})
    info = probe(src)
    found, keyframes = shots_and_keyframes(src, info, settings)
    with tempfile.TemporaryDirectory(prefix=f"bench-codecs-{codec}-") as tmp, ThreadPoolExecutor(jobs) as pool:
        work = Path(tmp)
        units, plan, measured = run_trials(src, info, found, keyframes, settings, work, pool)
        analysis = LadderAnalysis(mode=mode, plan=plan, shots=tuple(measured), units=units,
                                  rungs=tuple(select_ladder([s.points for s in measured], settings.ladder, mode)))
        ladder = deliver_planned(mode, src, info, analysis, keyframes, settings, work)
    analysis_cpu = plan.cpu_s + sum(s.cpu_s for s in measured) + ladder.discarded_cpu_s
    return {"codec": codec, "preset": settings.encode.preset, "rungs": ladder.rungs,
            "points": [(round(k, 1), round(v, 2)) for k, v in ladder.points],
            "planned": [(round(k, 1), round(v, 2)) for k, v in ladder.planned],
            "final_cpu_s": round(ladder.encode_cpu_s, 1), "analysis_cpu_s": round(analysis_cpu, 1)}


def _monotone(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for kbps, vmaf in sorted(points):
        if not out or vmaf > out[-1][1]:
            out.append((kbps, vmaf))
    return out


def bench_clip(src: Path, mode: Literal["per-title", "per-shot"], jobs: int) -> dict[str, Any]:
    ladders = {codec: codec_ladder(src, codec, mode, jobs) for codec in CODEC_NAMES}
    anchor = _monotone(ladders["h264"]["points"])
    bd: dict[str, float | None] = {}
    for codec in CODEC_NAMES[1:]:
        try:
            bd[codec] = round(bd_rate(anchor, _monotone(ladders[codec]["points"])), 2)
        except BdRateError as exc:
            log.warning("%s %s: BD-rate not defined: %s", src.name, codec, exc)
            bd[codec] = None
    return {"clip": src.name, "mode": mode, "bd_rate_vs_h264": bd, "ladders": ladders}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="*", default=list(CLIPS))
    parser.add_argument("--mode", default="per-shot", choices=["per-shot", "per-title"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    results = []
    for name in args.clips:
        result = bench_clip(MEDIA_DIR / name, args.mode, args.jobs)
        results.append(result)
        print(json.dumps({"clip": name, "bd_rate_vs_h264": result["bd_rate_vs_h264"],
                          **{c: {"points": result["ladders"][c]["points"],
                                 "final_cpu_s": result["ladders"][c]["final_cpu_s"]} for c in CODEC_NAMES}}),
              flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    for codec in CODEC_NAMES[1:]:
        values = [r["bd_rate_vs_h264"][codec] for r in results if r["bd_rate_vs_h264"][codec] is not None]
        if values:
            print(f"{codec} vs h264: mean BD-rate {statistics.fmean(values):+.1f}% over {len(values)} clips "
                  f"({', '.join(f'{v:+.1f}' for v in values)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
