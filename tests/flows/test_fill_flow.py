"""The fill flow (flows/fill.py): a title's rungs and first parts pushed to real edge processes by the flow, as
each edge's ISP plays it and its budget allows, then served from the edge's store without a parent fetch; the
pacing and skipping of ``push_edge`` with a fake edge; a package's files by rung and part."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from edge_procs import EDGE_TOKEN, EdgeProcess, wait_for_edges
from packaged_titles import CLEAR_ID, VERSION
from playback_helpers import Server, free_port, service_settings
from reelflow.cli import app
from reelflow.flows.fill import EdgeTarget, Package, PackageFile, fill, push_edge, read_packages
from reelflow.infra.database import open_database
from reelflow.infra.storage import LocalStorage
from reelflow.playback import models
from reelflow.playback.api import create_app
from reelflow.playback.placement import PARTS, Placed, Title
from reelflow.playback.segments import MEDIA_SUFFIXES

PACKAGE = f"titles/{CLEAR_ID}/{VERSION}"


def _qoe(settings: Any, title_id: str, country: str, isp: str, bitrates: list[float], played_s: float) -> None:
    models.save_qoe(open_database(settings.database.url), session_id=f"s-{isp}", title_id=title_id, profile_id="p1",
                    startup_ms=100.0, stall_count=0, stall_ms=0.0, switch_count=0, bitrates_kbps=bitrates,
                    played_s=played_s, extra={"country": country, "isp": isp})


@pytest.mark.slow
def test_the_flow_pushes_the_rungs_and_prefix_each_edge_earns_and_plays_are_served_from_its_store(
        clear_title: Any, tmp_path: Path) -> None:
    root = Path(clear_title.root)
    port = free_port()
    settings = service_settings(clear_title.root, tmp_path, port=port, edge_token=EDGE_TOKEN)
    # acme's players played the 234p rung only (the record's 300 kbps); other's players sent no bitrates
    _qoe(settings, CLEAR_ID, "US", "acme", [300.0, 300.0, 300.0], 6.0)
    _qoe(settings, CLEAR_ID, "US", "other", [], 6.0)
    config = tmp_path / "fill.toml"
    config.write_text(f'[storage]\noutput = "{clear_title.root}"\n'
                      f'[database]\nurl = "{settings.database.url}"\n'
                      f'[service]\nedge_token = "{EDGE_TOKEN}"\n'
                      f'[fill]\nservice_url = "http://127.0.0.1:{port}"\nrate_bytes_per_s = 1e12\n')
    files = sorted(str(p.relative_to(root)) for p in (root / PACKAGE).rglob("*") if p.suffix in MEDIA_SUFFIXES)
    size = {key: (root / key).stat().st_size for key in files}
    low = [k for k in files if "/audio/" in k or "/234p_" in k]
    # the clip's three 2 s segments fall in parts 0, 3 and 6 of 10; part 0 also has every init segment
    first = [k for k in files if k.endswith(("init.mp4", "/1.m4s"))]
    second = [k for k in files if k.endswith("/2.m4s")]
    # other's edge pins (fill.fill_share = 0.8 of its budget) the first part and half the second
    small_budget = int((sum(size[k] for k in first) + sum(size[k] for k in second) / 2) / 0.8)
    with Server(create_app(settings, load_keys=False), port) as origin, \
            EdgeProcess("fill1", origin.url, tmp_path / "store1", service_url=origin.url, region="US",
                        isp="acme") as edge, \
            EdgeProcess("fill2", origin.url, tmp_path / "store2", service_url=origin.url, region="US",
                        isp="other", budget_bytes=small_budget) as small:
        wait_for_edges(origin.url, {"fill1", "fill2"})
        dry = CliRunner().invoke(app, ["--config", str(config), "fill", "--dry-run"])
        assert dry.exit_code == 0 and "fill1" in dry.output and CLEAR_ID in dry.output, dry.output
        assert edge.admin("contents")["objects"] == []           # a dry run pushes nothing
        results = {r["edge"]: r for r in fill(config_file=str(config))}
        assert results["fill1"]["planned"] == [CLEAR_ID] and results["fill1"]["pushed_files"] == len(low)
        assert sorted(o["key"] for o in edge.admin("contents")["objects"] if o["pinned"]) == low
        assert sorted(o["key"] for o in small.admin("contents")["objects"] if o["pinned"]) == sorted(first)
        assert results["fill2"]["pushed_bytes"] == sum(size[k] for k in first)
        with httpx.Client(timeout=20) as http:
            for key in low:
                served = http.get(f"{edge.url}/{key}")
                assert served.status_code == 200 and served.headers["x-cache"] == "HIT"
                assert served.content == (root / key).read_bytes()
            assert edge.admin("stats")["parent_fetches"] == 0
            # a rung acme does not play is not pinned: it comes from the parent, whole
            hd = next(k for k in files if "/1080p_" in k and k.endswith("/2.m4s"))
            served = http.get(f"{edge.url}/{hd}")
            assert served.status_code == 200 and served.headers["x-cache"] == "MISS"
            assert served.content == (root / hd).read_bytes()
        assert edge.admin("stats")["parent_fetches"] == 1
        again = {r["edge"]: r for r in fill(config_file=str(config))}   # what an edge holds is not pushed again
        assert again["fill1"]["pushed_files"] == 0 and again["fill1"]["skipped_files"] == len(low)
        assert again["fill2"]["pushed_files"] == 0 and again["fill2"]["skipped_files"] == len(first)
        # the edges tell the service what the fill placed on them (steering's first choice within an ISP)
        deadline = time.monotonic() + 20
        while True:
            listed = {e["name"]: e for e in httpx.get(f"{origin.url}/api/edges").json()["edges"]}
            if all(listed[n]["placed"] == [f"{CLEAR_ID}/{VERSION}"] for n in ("fill1", "fill2")):
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.2)


def test_push_edge_paces_skips_held_unpins_dropped_and_stops_at_the_deadline(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    for name, size in (("a/v-1/x.m4s", 1000), ("a/v-1/y.m4s", 3000), ("b/v-1/z.m4s", 500)):
        store.put_bytes(bytes(size), f"titles/{name}")
    requests: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append((request.method, request.url.path))
        if request.method == "PUT":
            assert request.headers["x-content-sha256"] == hashlib.sha256(request.content).hexdigest()
            return httpx.Response(201, json={})
        return httpx.Response(204)

    packages = {"a": Package(Title("a", {"720": 4000}), (PackageFile("titles/a/v-1/x.m4s", 1000, "720", 0),
                                                         PackageFile("titles/a/v-1/y.m4s", 3000, "720", 1))),
                "b": Package(Title("b", {"720": 500}), (PackageFile("titles/b/v-1/z.m4s", 500, "720", 0),))}
    edge = EdgeTarget("e", "http://edge", 10_000, "US", None, pinned={"titles/a/v-1/x.m4s": "00",
                                                                       "titles/old/v-1/q.m4s": "11"},
                      held=frozenset())
    placed = [Placed("a", ("720",), 4000, 1.0, 1.0, 0.0, PARTS, PARTS),
              Placed("b", ("720",), 500, 1.0, 1.0, 0.0, PARTS, PARTS)]
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        result = push_edge(http, store, edge, placed, packages, "tok", rate_bytes_per_s=1000.0, deadline=2.0,
                           clock=lambda: now[0], sleep=sleep)
    # old is unpinned; x is held; y (3000 bytes at 1000 B/s) pushes, then the 2 s window has passed: z is left
    assert requests == [("DELETE", "/admin/objects/titles/old/v-1/q.m4s"), ("PUT", "/admin/objects/titles/a/v-1/y.m4s")]
    assert slept == [3.0]
    assert (result.unpinned_files, result.skipped_files, result.pushed_files, result.left_files) == (1, 1, 1, 1)
    assert json.loads(json.dumps(result.to_dict()))["pushed_bytes"] == 3000


def test_a_package_files_go_to_their_rung_and_part_and_a_placement_takes_its_prefix(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    base = "titles/t/v-1"
    layout = {"video/720p_1200k/init.mp4": 10, "audio/aac_en/init.mp4": 5, "manifest.mpd": 3, "video/540p_800k.mp4": 50,
              **{f"video/720p_1200k/{n}.m4s": 100 for n in range(1, 21)},
              **{f"video/1080p_2500k/{n}.m4s": 200 for n in range(1, 21)},
              **{f"audio/aac_en/{n}.m4s": 7 for n in range(1, 21)}}
    for name, size in layout.items():
        store.put_bytes(bytes(size), f"{base}/{name}")
    store.put_bytes(json.dumps({"status": "published", "package": f"/x/{base}", "release_at": "2030-01-01T00:00:00Z",
                                "expected_plays": 40, "source": {"probe": {"duration_s": 40.0}},
                                "renditions": [{"kind": "video", "name": "540p_800k", "height": 540, "kbps": 800},
                                               {"kind": "video", "name": "720p_1200k", "height": 720, "kbps": 1200},
                                               {"kind": "video", "name": "1080p_2500k", "height": 1080, "kbps": 2500},
                                               {"kind": "audio", "name": "aac_en", "height": 0, "kbps": 128}]}
                               ).encode(), "titles/t/title.json")
    package = read_packages(store)["t"]
    by_key = {f.key[len(base) + 1:]: f for f in package.files}
    assert "manifest.mpd" not in by_key                       # manifests come from the service
    assert (by_key["video/720p_1200k/init.mp4"].part, by_key["video/720p_1200k/1.m4s"].part) == (0, 0)
    assert [by_key[f"video/1080p_2500k/{n}.m4s"].part for n in (2, 3, 20)] == [0, 1, PARTS - 1]
    assert (by_key["audio/aac_en/3.m4s"].rung, by_key["video/1080p_2500k/3.m4s"].rung) == ("", "1080")
    assert (by_key["video/540p_800k.mp4"].rung, by_key["video/540p_800k.mp4"].part) == ("540", 0)  # one file
    title = package.title
    assert title.rung_bytes == {"540": 50, "720": 2010, "1080": 4000, "": 145} and title.expected_plays == 40
    assert title.release_at == dt.datetime(2030, 1, 1, tzinfo=dt.UTC).timestamp()
    assert title.part_bytes is not None and title.part_bytes["1080"][0] == 400 and package.duration_s == 40.0
    # three parts of ten, 720p only: init segments and segments 1-6 of 720p and audio
    wanted = package.wanted(Placed("t", ("", "720"), 0, 1.0, 1.0, 0.0, 3, PARTS))
    assert sorted(f.key[len(base) + 1:] for f in wanted) == sorted(
        ["video/720p_1200k/init.mp4", "audio/aac_en/init.mp4", *(f"video/720p_1200k/{n}.m4s" for n in range(1, 7)),
         *(f"audio/aac_en/{n}.m4s" for n in range(1, 7))])
