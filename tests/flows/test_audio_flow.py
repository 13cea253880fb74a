"""Studio masters through the whole ingest flow: every sound track published or accounted for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import m3u8
import mpegdash.parser
import pytest

from audio_masters import audio_masters_dir, decoded, ebur128_lufs, mov_master, mxf_master
from reelflow.flows.ingest import ingest_flow
from reelflow.infra.settings import load_settings

__all__ = ["audio_masters_dir", "mov_master", "mxf_master"]  # fixtures used here

TARGET = -24.0


def ingest(source: Path, store: Path, config: Path, title_id: str, sidecar: Path | None = None) -> dict[str, Any]:
    flow = ingest_flow(load_settings(config))
    record: dict[str, Any] = flow(str(source), title_id=title_id, storage=str(store), config_file=str(config),
                                  sidecar=str(sidecar) if sidecar else None)
    return record


def published(record: dict[str, Any], tmp: Path) -> dict[str, dict[str, Any]]:
    """Per audio rendition: its DASH and HLS entries, the decoded channels and the loudness of its segments."""
    package = Path(record["package"])
    mpd = mpegdash.parser.MPEGDASHParser.parse(str(package / "manifest.mpd"))
    dash = {}
    for aset in mpd.periods[0].adaptation_sets:
        if aset.content_type == "audio":
            rep = aset.representations[0]
            media = (rep.segment_templates or aset.segment_templates)[0].media
            config = (rep.audio_channel_configurations or aset.audio_channel_configurations)[0]
            dash[media.split("/")[1]] = {"lang": aset.lang, "channels": int(config.value),
                                         "roles": [r.value for r in aset.roles or []]}
    hls = {m.uri.removeprefix("audio/").removesuffix(".m3u8"): m
           for m in m3u8.load(str(package / "master.m3u8")).media if m.type == "AUDIO"}
    out = {}
    for name in dash:
        folder = package / "audio" / name
        joined = tmp / f"{name}.mp4"
        segments = sorted(folder.glob("*.m4s"), key=lambda p: int(p.stem))
        joined.write_bytes((folder / "init.mp4").read_bytes() + b"".join(p.read_bytes() for p in segments))
        samples, _ = decoded(joined)
        out[name] = {**dash[name], "hls_language": hls[name].language, "hls_channels": int(hls[name].channels),
                     "decoded_channels": samples.shape[0], "lufs": ebur128_lufs(joined)}
    assert set(hls) == set(dash)
    return out


@pytest.mark.slow
def test_mov_master_publishes_every_track(mov_master: Path, fast_config: Path, tmp_path: Path) -> None:
    record = ingest(mov_master, tmp_path / "store", fast_config, "feature-mov")
    assert [(a["name"], a["channels"], a["language"], a["role"]) for a in record["audio"]] == [
        ("aac_eng_51", 6, "eng", "main"), ("aac_fra", 2, "fra", "main"), ("aac_und", 2, "und", "main"),
        ("aac_eng", 2, "eng", "main")]
    assert record["audio_left_out"] == []
    report = record["audio_report"]
    assert {t["name"]: t["downmix"] for t in report["tracks"]}["aac_eng"] == "bs775"
    phase = [c for layout in report["qc"] for c in layout["checks"] if not c["passed"]]
    assert [c["name"] for c in phase] == ["aac_fra:phase_FL_FR"]
    assert "audio:aac_fra:phase_FL_FR" in record["qc"]["warnings"]      # in qc.json and the record too
    assert record["qc"]["verdict"] == "warning"
    for name, figures in report["loudness"].items():
        assert figures["output_i"] == pytest.approx(TARGET, abs=1), name
        assert figures["input_i"] > -30, name
    found = published(record, tmp_path)
    assert {n: (f["lang"], f["channels"], f["hls_channels"], f["decoded_channels"], f["roles"])
            for n, f in found.items()} == {
        "aac_eng_51": ("en", 6, 6, 6, ["main"]), "aac_eng": ("en", 2, 2, 2, ["main"]),
        "aac_fra": ("fr", 2, 2, 2, ["main"]), "aac_und": (None, 2, 2, 2, ["main"])}
    for name, f in found.items():
        assert f["lufs"] == pytest.approx(TARGET, abs=1), name


@pytest.mark.slow
def test_mxf_mono_tracks_grouped_by_the_sidecar(mxf_master: Path, fast_config: Path, tmp_path: Path) -> None:
    side = tmp_path / "feature.json"
    side.write_text(json.dumps({"audio": [{"tracks": [1, 2, 3, 4, 5, 6], "layout": "5.1", "language": "en"}]}))
    record = ingest(mxf_master, tmp_path / "store", fast_config, "feature-mxf", sidecar=side)
    assert [(a["name"], a["channels"]) for a in record["audio"]] == [("aac_en_51", 6), ("aac_en", 2)]
    assert [(x["track"], x["reason"]) for x in record["audio_left_out"]] == [
        (7, "not listed in the sidecar's audio: excluded by the sidecar"),
        (8, "not listed in the sidecar's audio: excluded by the sidecar")]
    silent = [c for layout in record["audio_report"]["qc"] for c in layout["checks"] if not c["passed"]]
    assert [c["name"] for c in silent] == ["aac_en_51:silent_channels"] and "LFE" in silent[0]["message"]
    assert "audio:aac_en_51:silent_channels" in record["qc"]["warnings"]
    found = published(record, tmp_path)
    assert {n: (f["lang"], f["decoded_channels"], f["hls_language"]) for n, f in found.items()} == {
        "aac_en_51": ("en", 6, "en"), "aac_en": ("en", 2, "en")}
    for name, f in found.items():
        assert f["lufs"] == pytest.approx(TARGET, abs=1), name


def test_cli_refuses_a_layout_that_does_not_fit_before_the_flow(mxf_master: Path, fast_config: Path,
                                                                tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    side = tmp_path / "bad.json"
    side.write_text(json.dumps({"audio": [{"tracks": [1, 2, 3, 4, 5], "layout": "5.1", "language": "en"},
                                          {"tracks": [7, 9], "language": "fr"}]}))
    done = subprocess.run([sys.executable, "-m", "reelflow.cli", "ingest", str(mxf_master), "--sidecar", str(side),
                           "--storage", str(tmp_path / "out")], capture_output=True, text=True, check=False,
                          env={**os.environ, "REELFLOW_CONFIG": str(fast_config)}, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "audio[0]: layout 5.1 needs 6 channels" in done.stderr and "audio[1].tracks" in done.stderr
    assert "Prefect flow run" not in done.stderr and not (tmp_path / "out" / "titles").exists()
