"""A studio's release time and expected plays: from the sidecar, through ingest's title record, to the fill."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

from reelflow.flows.fill import read_packages
from reelflow.flows.ingest import title_record
from reelflow.infra.storage import LocalStorage
from reelflow.packaging import publish
from reelflow.packaging.sidecar import load_sidecar


def _record(store: LocalStorage, sidecar_data: dict[str, object], folder: Path) -> dict[str, object]:
    path = folder / "sidecar.json"
    path.write_text(json.dumps(sidecar_data))
    # title_record reads only these attributes of the probe, QC report, shot list and package
    info = SimpleNamespace(size_bytes=10, to_dict=lambda: {"duration_s": 6.0})
    report = {"verdict": "pass", "checks": []}
    shot_list = SimpleNamespace(shots=[], cuts=[])
    pkg = SimpleNamespace(encryption=None, dash_manifest="manifest.mpd", hls_master="master.m3u8")
    return title_record("premiere", Path("premiere.mov"), "0" * 64, info, report, shot_list, [], pkg,  # type: ignore[arg-type]
                        store, "titles/premiere", "qc.json", dt.datetime.now(dt.UTC), {"mode": "fixed"},
                        sidecar=load_sidecar(path))


def test_the_sidecar_release_and_expected_plays_reach_the_title_record_and_the_fill(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    record = _record(store, {"release_at": "2031-05-01T20:00:00+02:00", "expected_plays": 1500.5}, tmp_path)
    assert record["release_at"] == "2031-05-01T18:00:00+00:00" and record["expected_plays"] == 1500.5
    store.put_bytes(bytes(100), "titles/premiere/v-1/video/720p/1.m4s")
    publish.write_title_record(store, "titles/premiere", {**record, "package": "/x/titles/premiere/v-1"})
    title = read_packages(store)["premiere"].title
    assert title.release_at == dt.datetime(2031, 5, 1, 18, tzinfo=dt.UTC).timestamp()
    assert title.expected_plays == 1500.5


def test_without_them_the_record_says_null(tmp_path: Path) -> None:
    record = _record(LocalStorage(tmp_path / "store"), {"countries": ["NL"]}, tmp_path)
    assert record["release_at"] is None and record["expected_plays"] is None
