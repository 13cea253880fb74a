"""bench/cdn_sim.py at a small scale: it runs, it is deterministic, Belady bounds the reactive policies of one
edge, and the fill's placement (parts, ISP pooling) is what the result depends on."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from cdn_sim import arguments, run

SMALL = ["--edges", "120", "--isps", "12", "--regions", "4", "--titles", "600", "--days", "2",
         "--sessions", "150", "--replay-isps", "2", "--releases", "4"]


def test_small_simulation_is_deterministic_and_bounded() -> None:
    result = run(arguments(SMALL))
    assert result == run(arguments(SMALL))
    hit = {name: r["byte_hit_ratio"] for name, r in result.items()}
    assert all(0.0 < h <= 1.0 for h in hit.values())
    # offline demand-fetch Belady is above the demand-fetch policies of one edge; with a free daily refill, above all
    assert hit["belady"] >= hit["lru"] and hit["belady"] >= hit["s3fifo"]
    assert all(hit["belady_prefetch"] >= hit[name] for name in ("lru", "s3fifo", "belady"))
    assert hit["fill"] > hit["lru"] and hit["lru_pool"] > hit["lru"]
    assert result["fill"]["fill_gb_per_edge_day"] > 0 and result["lru"]["fill_gb_per_edge_day"] == 0
    assert result["fill"]["peak_mbps_per_edge"] < result["lru"]["peak_mbps_per_edge"]


def test_pooling_an_isp_edges_raises_the_fill_hit_ratio() -> None:
    pooled = run(arguments(SMALL))["fill"]
    alone = run(arguments([*SMALL, "--replicate-share", "1"]))["fill"]
    assert pooled["byte_hit_ratio"] > alone["byte_hit_ratio"] + 0.05
    assert pooled["peak_mbps_per_edge"] < alone["peak_mbps_per_edge"]
