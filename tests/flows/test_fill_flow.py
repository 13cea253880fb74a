"""The fill flow (flows/fill.py): a title pushed to a real edge process by the flow, then served from its store
without a parent fetch; and the pacing and skipping of ``push_edge`` with a fake edge."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from edge_procs import EDGE_TOKEN, EdgeProcess, wait_for_edges
from packaged_titles import CLEAR_ID, VERSION
from playback_helpers import Server, free_port, service_settings
from reelflow.cli import app
from reelflow.flows.fill import EdgeTarget, Package, fill, push_edge
from reelflow.infra.database import open_database
from reelflow.infra.storage import LocalStorage
from reelflow.playback import models
from reelflow.playback.api import create_app
from reelflow.playback.placement import Placed, Title
from reelflow.playback.segments import MEDIA_SUFFIXES

PACKAGE = f"titles/{CLEAR_ID}/{VERSION}"


@pytest.mark.slow
def test_the_flow_fills_an_edge_and_a_play_is_served_from_its_store(clear_title: Any, tmp_path: Path) -> None:
    port = free_port()
    settings = service_settings(clear_title.root, tmp_path, port=port, edge_token=EDGE_TOKEN)
    models.save_qoe(open_database(settings.database.url), session_id="s1", title_id=CLEAR_ID, profile_id="p1",
                    startup_ms=100.0, stall_count=0, stall_ms=0.0, switch_count=0, bitrates_kbps=[300.0],
                    played_s=6.0, extra={})
    config = tmp_path / "fill.toml"
    config.write_text(f'[storage]\noutput = "{clear_title.root}"\n'
                      f'[database]\nurl = "{settings.database.url}"\n'
                      f'[service]\nedge_token = "{EDGE_TOKEN}"\n'
                      f'[fill]\nservice_url = "http://127.0.0.1:{port}"\nrate_bytes_per_s = 1e12\n')
    files = sorted(str(p.relative_to(clear_title.root)) for p in (Path(clear_title.root) / PACKAGE).rglob("*")
                   if p.suffix in MEDIA_SUFFIXES)
    with Server(create_app(settings, load_keys=False), port) as origin, \
            EdgeProcess("fill1", origin.url, tmp_path / "store", service_url=origin.url, region="US",
                        isp="acme") as edge:
        wait_for_edges(origin.url, {"fill1"})
        dry = CliRunner().invoke(app, ["--config", str(config), "fill", "--dry-run"])
        assert dry.exit_code == 0 and "fill1" in dry.output and CLEAR_ID in dry.output, dry.output
        assert edge.admin("contents")["objects"] == []           # a dry run pushes nothing
        results = fill(config_file=str(config))
        assert [r["edge"] for r in results] == ["fill1"]
        assert results[0]["planned"] == [CLEAR_ID] and results[0]["pushed_files"] == len(files)
        contents = edge.admin("contents")
        assert sorted(o["key"] for o in contents["objects"] if o["pinned"]) == files
        with httpx.Client(timeout=20) as http:
            for key in files:
                served = http.get(f"{edge.url}/{key}")
                assert served.status_code == 200 and served.headers["x-cache"] == "HIT"
                assert served.content == (Path(clear_title.root) / key).read_bytes()
        assert edge.admin("stats")["parent_fetches"] == 0
        again = fill(config_file=str(config))           # what the edge holds is not pushed again
        assert again[0]["pushed_files"] == 0 and again[0]["skipped_files"] == len(files)


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

    packages = {"a": Package(Title("a", {"all": 4000}), (("titles/a/v-1/x.m4s", 1000), ("titles/a/v-1/y.m4s", 3000))),
                "b": Package(Title("b", {"all": 500}), (("titles/b/v-1/z.m4s", 500),))}
    edge = EdgeTarget("e", "http://edge", 10_000, "US", None, pinned={"titles/a/v-1/x.m4s": "00",
                                                                       "titles/old/v-1/q.m4s": "11"},
                      held=frozenset())
    placed = [Placed("a", ("all",), 4000, 1.0, 1.0, 0.0), Placed("b", ("all",), 500, 1.0, 1.0, 0.0)]
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
