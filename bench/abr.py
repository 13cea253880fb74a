"""Every ABR rule over the standard traces (hsdpa, fcc, oboe) in the standard setup, as markdown.

    .venv/bin/python bench/abr.py                   # the tables of docs/benchmarks.md
    .venv/bin/python bench/abr.py --variants        # also the parameter choices discussed there
    .venv/bin/python bench/abr.py --sets hsdpa --rules bola,bba

The setup is ../shared/traces/README.md's (``STANDARD`` in reelflow.player.simulator): 48 chunks
of 4 s of the envivio video, a 60 s buffer cap, 80 ms round trip per chunk, 95% payload, QoE_lin
with a 4.3 stall penalty, first chunk at rung 1, each trace from time 0. The simulation is
deterministic, so one run is the figure; wall time per rule is printed for scale only.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from reelflow.player.abr import RULES, AbrRule, BolaRule, MpcRule, ReelflowRule, ThroughputRule
from reelflow.player.simulator import (
    STANDARD,
    Summary,
    Trace,
    Video,
    load_traces,
    load_video,
    markdown_table,
    simulate_all,
    summarize,
)

REPO = Path(__file__).resolve().parents[1]
TRACES = Path(os.environ.get("SHARED_TRACES_DIR", REPO.parent / "shared" / "traces"))
SETS = ("hsdpa", "fcc", "oboe")

# ../shared/traces/README.md: an independent simulator on hsdpa/, QoE_lin per chunk.
PUBLISHED_HSDPA = {"mpc": 0.87, "bola": 0.79, "throughput": 0.64, "bba": 0.63}
PUBLISHED_LEARNED = {"Pensieve": 0.925, "Comyco": 0.984}

VARIANTS: dict[str, Callable[[], AbrRule]] = {
    "bola, parameters from the 60 s cap": lambda: BolaRule(stable_buffer_s=60.0),
    "throughput, no safety factor": lambda: ThroughputRule(safety=1.0),
    "throughput, safety 0.8": lambda: ThroughputRule(safety=0.8),
    "mpc, horizon 3": lambda: MpcRule(horizon=3),
    # what each part of the default rule is worth (docs/benchmarks.md)
    "reelflow without the buffer terms": lambda: ReelflowRule(reservoir_weight=0.0, target_weight=0.0),
    "reelflow without the guard": lambda: ReelflowRule(guard_factor=math.inf),
    "reelflow, climbs unrestricted": lambda: ReelflowRule(max_up=99),
    "reelflow, one rung up at a time": lambda: ReelflowRule(max_up=1),
    "reelflow, target 30 s": lambda: ReelflowRule(target_s=30.0),
    "reelflow, target 60 s": lambda: ReelflowRule(target_s=60.0),
    "reelflow, target weight 0.15": lambda: ReelflowRule(target_weight=0.15),
    "reelflow, target weight 0.25": lambda: ReelflowRule(target_weight=0.25),
    "reelflow, reservoir 8 s": lambda: ReelflowRule(reservoir_s=8.0),
    "reelflow, reservoir 12 s": lambda: ReelflowRule(reservoir_s=12.0),
}


def run(traces: Sequence[Trace], video: Video, name: str, make: Callable[[], AbrRule]) -> tuple[Summary, float]:
    started = time.perf_counter()
    sessions = simulate_all(traces, video, make(), STANDARD)
    return summarize(name, sessions), time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=TRACES, help="holds hsdpa/, fcc/, oboe/, envivio_sizes/")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated trace sets")
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated rule names")
    parser.add_argument("--variants", action="store_true", help="also the alternative parameters in the docs")
    args = parser.parse_args(argv)

    video = load_video(args.traces / "envivio_sizes")
    names = [n for n in args.rules.split(",") if n]
    print(f"Traces: {args.traces}; ladder {', '.join(f'{k:g}' for k in video.ladder_kbps)} kbit/s; "
          f"{STANDARD.chunks} chunks of {video.chunk_s:g} s; {os.cpu_count()} CPUs")
    for set_name in [s for s in args.sets.split(",") if s]:
        traces = load_traces(args.traces / set_name)
        results = [run(traces, video, name, RULES[name]) for name in names]
        print(f"\n### {set_name}/ ({len(traces)} traces)\n")
        print(markdown_table(s for s, _ in results))
        print("\nwall time per rule: " + ", ".join(f"{s.rule} {t:.1f} s" for s, t in results))
        if set_name == "hsdpa":
            measured = {s.rule: s.qoe_per_chunk for s, _ in results}
            print("\npublished (independent simulator) vs measured here, QoE_lin per chunk: " + "; ".join(
                f"{rule} {pub:.2f} vs {measured[rule]:.3f} ({measured[rule] - pub:+.3f})"
                for rule, pub in PUBLISHED_HSDPA.items() if rule in measured))
            print("learned ABRs, published: " + ", ".join(f"{k} {v}" for k, v in PUBLISHED_LEARNED.items()))
        if args.variants:
            variants = [run(traces, video, name, make) for name, make in VARIANTS.items()]
            print(f"\nvariants on {set_name}/:\n")
            print(markdown_table(s for s, _ in variants))


if __name__ == "__main__":
    main()
