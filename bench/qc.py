"""QC every clip in the shared media folder and print the verdicts as a markdown table (docs/benchmarks.md).

    .venv/bin/python bench/qc.py [--media ../shared/media] [--runs 3]

Times are the median of ``--runs`` passes of the whole QC (probe excluded: the flow has probed
already); the realtime factor is the clip's duration over that time. Each QC pass is paired with a
plain decode of the same streams, run just before it, so the QC/decode ratio holds even while
other work shares the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from reelflow.encoding.probe import MediaInfo, probe
from reelflow.encoding.qc import QCReport, run_qc
from reelflow.infra import tools
from reelflow.infra.settings import QCConfig

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("SHARED_MEDIA_DIR", REPO.parent / "shared" / "media"))
SUFFIXES = {".mp4", ".webm", ".mkv", ".mov", ".mxf", ".ts"}


def _value(value: float | str | None) -> str:
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def decode_argv(path: Path, info: MediaInfo) -> list[str]:
    """The same streams decoded and discarded, with no analysis: what QC costs on top of."""
    maps = ["-map", f"0:{info.video.index}"]
    for a in info.audio:
        maps += ["-map", f"0:{a.index}"]
    return [tools.ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), *maps,
            "-f", "null", "-"]


def row(path: Path, runs: int, config: QCConfig) -> str:
    info = probe(path)
    times: list[float] = []
    decodes: list[float] = []
    report: QCReport | None = None
    for _ in range(runs):
        started = time.monotonic()
        tools.run(decode_argv(path, info))
        decodes.append(time.monotonic() - started)
        report = run_qc(path, config, info=info)
        times.append(report.measurements["timings"]["decode_s"])
    assert report is not None
    seconds = statistics.median(times)
    ratio = statistics.median(q / d for q, d in zip(times, decodes, strict=True))
    failed = "; ".join(f"{c.name} ({c.severity}) = {_value(c.value)}" for c in report.failed) or "-"
    audio = report.measurements["audio"]
    lufs = ", ".join(f"{a['integrated_lufs']:.1f}" if a["integrated_lufs"] is not None else "-" for a in audio)
    peak = ", ".join(f"{a['true_peak_dbtp']:+.1f}" if a["true_peak_dbtp"] not in (None, float("-inf"))
                     else "-inf" for a in audio)
    return (f"| {path.name} | {report.verdict} | {failed} | {lufs or 'no audio'} | {peak or '-'} | "
            f"{seconds:.2f} | {info.duration_s / seconds:.0f}x | {statistics.median(decodes):.2f} | {ratio:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=MEDIA)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    clips = sorted(p for p in args.media.iterdir() if p.suffix.lower() in SUFFIXES)
    if not clips:
        print(f"no clips in {args.media}", file=sys.stderr)
        return 1
    config = QCConfig()
    print(f"QC with the default QCConfig, median of {args.runs} runs, {platform.machine()} "
          f"{os.cpu_count()} cores\n")
    print("| clip | verdict | failed checks (severity) = value | integrated LUFS | true peak dBTP "
          "| QC time s | realtime | decode s | QC/decode |")
    print("|---|---|---|---|---|---|---|---|---|")
    for clip in clips:
        print(row(clip, args.runs, config), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
