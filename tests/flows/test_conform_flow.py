"""Conform in the ingest flow: what is published from a rotated phone clip and a 1080i25 broadcast master."""
# ruff: noqa: F811  (the masters are session fixtures imported from tests/picture_masters.py)

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import av
import pytest

from picture_masters import (  # noqa: F401  (session fixtures)
    idet_counts,
    interlaced_1080i25,
    masters_dir,
    rotated_phone,
)
from reelflow.flows.ingest import ingest_flow
from reelflow.infra.settings import load_settings

pytestmark = pytest.mark.slow


def _ingest(source: Path, store: Path, config: Path, title: str) -> dict[str, Any]:
    flow = ingest_flow(load_settings(config))
    record: dict[str, Any] = flow(str(source), title_id=title, storage=str(store), config_file=str(config))
    return record


def _joined(package: Path, rendition: dict[str, Any], out: Path) -> Path:
    """A published (clear) rendition's init segment and media segments as one decodable file."""
    folder = package / Path(rendition["init"]).parent
    segments = sorted(folder.glob("*.m4s"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    out.write_bytes((folder / "init.mp4").read_bytes() + b"".join(p.read_bytes() for p in segments))
    return out


def test_rotated_phone_clip_is_published_as_portrait_rungs(rotated_phone: Path, fast_config: Path,
                                                           tmp_path: Path) -> None:
    record = _ingest(rotated_phone, tmp_path / "store", fast_config, "phone")
    video = [r for r in record["renditions"] if r["kind"] == "video"]
    assert [(r["width"], r["height"]) for r in video] == [(234, 416), (360, 640)]
    assert [s["step"] for s in record["conform"]] == ["rotation", "timecode"]
    assert record["conform"][0]["filter"] == "transpose=cclock"
    package = Path(record["package"])
    top = _joined(package, video[-1], tmp_path / "top.mp4")
    with av.open(str(top)) as published:
        stream = published.streams.video[0]
        frame = next(published.decode(stream))
        assert (frame.width, frame.height) == (360, 640) and not frame.rotation
        frames = 1 + sum(1 for _ in published.decode(stream))
    assert frames == video[-1]["frames"] == 45          # 1.5 s at 29.97: nothing dropped or added
    audio = [r for r in record["renditions"] if r["kind"] == "audio"]
    assert len(audio) == 1 and audio[0]["duration_s"] == pytest.approx(video[-1]["duration_s"], abs=0.05)
    qc = json.loads((package / "qc.json").read_text())
    assert qc["measurements"]["conform"]["steps"][0]["step"] == "rotation"


def test_1080i25_master_is_published_progressive(interlaced_1080i25: Path, fast_config: Path, ffmpeg: str,
                                                 tmp_path: Path) -> None:
    record = _ingest(interlaced_1080i25, tmp_path / "store", fast_config, "broadcast")
    assert record["conform"][0]["step"] == "deinterlace"
    assert record["conform"][0]["filter"] == "bwdif=mode=send_frame:parity=tff:deint=all"
    assert "interlacing" in record["qc"]["warnings"]   # fired, as an info finding naming the conform
    package = Path(record["package"])
    qc = json.loads((package / "qc.json").read_text())
    check = next(c for c in qc["checks"] if c["name"] == "interlacing")
    assert check["severity"] == "info" and "bwdif" in check["message"]
    video = [r for r in record["renditions"] if r["kind"] == "video"]
    top = video[-1]
    assert (top["width"], top["height"], top["frames"]) == (1920, 1080, 25)
    counts = idet_counts(ffmpeg, _joined(package, top, tmp_path / "top.mp4"))
    assert counts["tff"] + counts["bff"] <= 2 and counts["progressive"] >= 20
