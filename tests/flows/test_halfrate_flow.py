"""A 59.94 fps master ingested with a measured ladder: low rungs at 29.97, keyframes at the same times in every rung."""
# ruff: noqa: F811  (the masters are session fixtures imported from tests/picture_masters.py)

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from picture_masters import hfr_cut_5994, masters_dir  # noqa: F401  (session fixtures)
from reelflow.flows.ingest import ingest_flow
from reelflow.infra.settings import load_settings

pytestmark = pytest.mark.slow

FPS = Fraction(60000, 1001)
FRAMES = 90
# The cut at frame 45 moves to 46 (even); the 1 s grid is every 60 frames.
KEYFRAMES = (0, 46, 60)


@pytest.fixture(scope="module")
def hfr_ingest(hfr_cut_5994: Path, ladder_config: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The master ingested once, per-shot ladder, 1 s segments, rungs up to 432 lines at half rate."""
    folder = tmp_path_factory.mktemp("hfr-config")
    config = folder / "reelflow.toml"
    # its own work folder: other tests count the encodes in ladder_config's
    text = re.sub(r'work_dir = "[^"]*"', f'work_dir = "{folder / "work"}"', ladder_config.read_text())
    config.write_text(text.replace('[encode]\n', '[encode]\nsegment_s = 1.0\nhalf_rate_max_height = 432\n'))
    flow = ingest_flow(load_settings(config))
    record: dict[str, Any] = flow(str(hfr_cut_5994), title_id="hfr", storage=str(tmp_path_factory.mktemp("store")),
                                  config_file=str(config))
    return record


def _video(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in record["renditions"] if r["kind"] == "video"]


def _joined(package: Path, rendition: dict[str, Any], out: Path) -> Path:
    folder = package / Path(rendition["init"]).parent
    segments = sorted(folder.glob("*.m4s"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    out.write_bytes((folder / "init.mp4").read_bytes() + b"".join(p.read_bytes() for p in segments))
    return out


def test_rungs_up_to_the_bound_are_half_rate_and_the_others_full(hfr_ingest: dict[str, Any], tmp_path: Path) -> None:
    video = _video(hfr_ingest)
    half = [r for r in video if r["height"] <= 432]
    full = [r for r in video if r["height"] > 432]
    assert half and full, [(r["name"], r["frame_rate"]) for r in video]
    for r in half:
        assert (r["frame_rate"], r["frames"], r["half_rate"]) == ("30000/1001", FRAMES // 2, True)
    for r in full:
        assert (r["frame_rate"], r["frames"], r["half_rate"]) == ("60000/1001", FRAMES, False)
    package = Path(hfr_ingest["package"])
    for r in (half[0], full[-1]):            # what the packager published decodes to that many frames
        with av.open(str(_joined(package, r, tmp_path / f"{r['name']}.mp4"))) as published:
            assert sum(1 for _ in published.decode(video=0)) == r["frames"]
    step = next(s for s in hfr_ingest["conform"] if s["step"] == "half_rate")
    assert "1 of 2 shot starts moved" in step["action"] and step["filter"] == "select='not(mod(n,2))'"
    shots = json.loads((package / "shots.json").read_text())
    assert [s["start_frame"] for s in shots["shots"]] == [0, 46]


def test_every_rung_has_its_keyframes_and_segments_at_the_same_times(hfr_ingest: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    package = Path(hfr_ingest["package"])
    wanted = [float(k / FPS) for k in KEYFRAMES]
    durations = []
    for r in _video(hfr_ingest):
        with av.open(str(_joined(package, r, tmp_path / f"{r['name']}.mp4"))) as published:
            stream = published.streams.video[0]
            assert stream.time_base is not None
            keys = sorted(float(p.pts * stream.time_base) for p in published.demux(stream)
                          if p.size and p.is_keyframe and p.pts is not None)
        start = keys[0]
        assert [k - start for k in keys] == pytest.approx(wanted, abs=1e-3), r["name"]
        playlist = (package / r["playlist"]).read_text()
        durations.append([float(d) for d in re.findall(r"#EXTINF:([\d.]+)", playlist)])
    assert all(d == pytest.approx(durations[0], abs=2e-3) for d in durations), durations
    assert len(durations[0]) >= 2


def test_manifests_declare_each_rungs_frame_rate(hfr_ingest: dict[str, Any]) -> None:
    package = Path(hfr_ingest["package"])
    declared = {}
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    for rep in ET.parse(package / "manifest.mpd").getroot().iterfind(".//d:Representation", ns):
        if rep.get("height"):
            rate = rep.get("frameRate") or rep.find("..").get("frameRate")  # type: ignore[union-attr]
            declared[int(rep.get("height", 0)), int(rep.get("bandwidth", 0))] = Fraction(rate)
    video = _video(hfr_ingest)
    assert len(declared) == len(video)
    for (height, _), rate in declared.items():
        assert rate == (FPS / 2 if height <= 432 else FPS), (height, rate)
    master = (package / "master.m3u8").read_text()
    hls = re.findall(r"RESOLUTION=\d+x(\d+).*?FRAME-RATE=([\d.]+)", master)
    assert {int(h) for h, _ in hls} == {r["height"] for r in video}
    for height, rate in hls:
        assert float(rate) == pytest.approx(float(FPS / 2 if int(height) <= 432 else FPS), abs=1e-3)


def test_delivered_vmaf_scores_every_source_frame_and_says_how_half_rate_was_planned(
        hfr_ingest: dict[str, Any]) -> None:
    report = json.loads(Path(hfr_ingest["ladder"]["report"]).read_text())
    assert report["half_rate"]["max_height"] == 432 and "full-rate" in report["half_rate"]["planned"]
    half = [r for r in report["rungs"] if r["half_rate"]]
    assert report["half_rate"]["rungs"] == [r["name"] for r in half]
    for rung in report["rungs"]:
        assert rung["delivered"]["frames_scored"] == FRAMES
        assert ("vmaf_below_full_rate_plan" in rung) == rung["half_rate"] != ("vmaf_error" in rung)
        assert rung["frame_rate"] == ("30000/1001" if rung["half_rate"] else "60000/1001")
    assert report["planned_vs_delivered"]["rungs_measured"] == len(report["rungs"]) - len(half)
    assert report["units"]["frames"] == [[0, 46], [46, 60], [60, FRAMES]]
    assert {c["rung"] for c in report["checks"]}.isdisjoint(r["name"] for r in half)
