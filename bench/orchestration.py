"""Concurrent CLI ingests on one machine through its one orchestration service (flows/server.py).

For N = 1, 2, 4 (``--counts``), starts N `reelflow ingest` processes at once on a 2 s 640x360 clip
(fixed ladder, ultrafast, in the clear), each with its own title id, and records per run: exit
code, process wall time and the flow run's own duration as the Prefect API recorded it. Their
difference is what a run spends outside its flow: Python and reelflow imports, the pre-flow
checks (probe, storage, keys), connecting to the API and creating the flow run. The same
difference for a `reelflow --version` process (imports only) is printed beside it, so the Prefect
part is (start-up - imports).

Every repeat uses a fresh REELFLOW_HOME whose service is started once by `reelflow orchestrator
--start` (its start time is printed) before the ingests, so the figures are for the service
being up, as the issue's target states it.

    .venv/bin/python bench/orchestration.py [--counts 1,2,4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

CONFIG = '[ladder]\nmode = "fixed"\n[encode]\npreset = "ultrafast"\n[drm]\nenabled = false\n'


def _clip(folder: Path) -> Path:
    from reelflow.infra.tools import ffmpeg_exe

    out = folder / "clip.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=24:duration=2",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


def _env(home: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(REELFLOW_HOME=str(home), REELFLOW_CONFIG=str(config))
    return env


def _flow_durations(api: str) -> dict[str, float]:
    """Flow run durations (s) by title id, from the API (the run's parameters name the title)."""
    runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, timeout=30).json()
    return {r["parameters"].get("title_id"): r["total_run_time"] for r in runs}


def one_round(count: int, clip: Path, folder: Path) -> dict[str, Any]:
    home = folder / f"home-{count}-{time.monotonic_ns()}"
    config = folder / "fast.toml"
    env = _env(home, config)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "reelflow.cli", "orchestrator", "--start"], env=env, check=True,
                   capture_output=True)
    server_start = time.monotonic() - started
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "reelflow.cli", "--version"], env=env, check=True, capture_output=True)
    imports = time.monotonic() - t0
    procs = []
    for i in range(count):
        procs.append((time.monotonic(), subprocess.Popen(
            [sys.executable, "-m", "reelflow.cli", "ingest", str(clip), "--title-id", f"t{i}", "--json",
             "--storage", str(folder / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)))
    walls, codes = [], []
    for begun, proc in procs:
        proc.communicate(timeout=900)
        walls.append(time.monotonic() - begun)
        codes.append(proc.returncode)
    api = json.loads((home / "prefect" / "server.json").read_text())["url"]
    flows = _flow_durations(api)
    startup = [wall - flows.get(f"t{i}", float("nan")) for i, wall in enumerate(walls)]
    subprocess.run([sys.executable, "-m", "reelflow.cli", "orchestrator", "--stop"], env=env, check=True,
                   capture_output=True)
    return {"n": count, "ok": sum(c == 0 for c in codes), "server_start_s": round(server_start, 1),
            "imports_s": round(imports, 2), "wall_s": [round(w, 1) for w in walls],
            "flow_s": [round(flows.get(f"t{i}", float("nan")), 1) for i in range(count)],
            "outside_flow_s": [round(s, 2) for s in startup]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-orchestration-") as tmp:
        folder = Path(tmp)
        (folder / "fast.toml").write_text(CONFIG)
        clip = _clip(folder)
        rounds = [one_round(int(n), clip, folder) for _ in range(args.repeats) for n in args.counts.split(",")]
    for r in rounds:
        print(json.dumps(r))
    print("\nN  runs ok  median wall s  median outside-flow s  median imports s  median server start s")
    for n in sorted({r["n"] for r in rounds}):
        mine = [r for r in rounds if r["n"] == n]
        print(f"{n}  {sum(r['ok'] for r in mine)}/{n * len(mine)}  "
              f"{statistics.median(w for r in mine for w in r['wall_s']):.1f}  "
              f"{statistics.median(s for r in mine for s in r['outside_flow_s']):.2f}  "
              f"{statistics.median(r['imports_s'] for r in mine):.2f}  "
              f"{statistics.median(r['server_start_s'] for r in mine):.1f}")


if __name__ == "__main__":
    main()
