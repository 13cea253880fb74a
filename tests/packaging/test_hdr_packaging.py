"""HDR rungs packaged encrypted: HDR10 boxes in every init segment, CICP and VIDEO-RANGE in the manifests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hdr_masters import MAX_CLL, hdr10_360p  # noqa: F401  (fixture)
from reelflow.encoding.encode import Rendition, encode_video_rung, keyframe_frames
from reelflow.encoding.probe import probe
from reelflow.infra.settings import DrmConfig, EncodeConfig, Rung
from reelflow.packaging.keys import generate_keys
from reelflow.packaging.packager import Encryption, carry_hdr_boxes, hdr_boxes, package, tier_of

RUNG = Rung(width=320, height=180, kbps=300)


@pytest.fixture(scope="module")
def hdr_rungs(hdr10_360p: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Rendition]:  # noqa: F811
    info = probe(hdr10_360p)
    work = tmp_path_factory.mktemp("hdr-rungs")
    keyframes = keyframe_frames([0], info.video.frames, info.video.fps, 2.0)
    out = []
    for name, preset in (("hevc", "ultrafast"), ("av1", "12")):
        made = encode_video_rung(hdr10_360p, RUNG, keyframes, info, EncodeConfig(codec=name, preset=preset,
                                                                                 segment_s=2.0),
                                 work / f"{name}.mp4", codec=name)  # type: ignore[arg-type]
        out.append(dataclasses.replace(made, ladder=f"{name}_hdr", range="pq"))
    return out


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_encrypted_hdr_rungs_keep_their_signalling(hdr_rungs: list[Rendition], tmp_path: Path, scheme: str) -> None:
    keys = generate_keys({tier_of(r) for r in hdr_rungs})
    pkg = package(hdr_rungs, tmp_path / "out", segment_s=2.0,
                  encryption=Encryption.from_config(keys, DrmConfig(scheme=scheme)))  # type: ignore[arg-type]
    for r in hdr_rungs:
        boxes = hdr_boxes(pkg.root / f"video/{r.name}/init.mp4")
        assert b"mdcv" in boxes and b"clli" in boxes, r.name
        assert boxes[boxes.index(b"clli") + 4:][:4] == MAX_CLL[0].to_bytes(2, "big") + MAX_CLL[1].to_bytes(2, "big")
    mpd = (pkg.root / "manifest.mpd").read_text()
    assert mpd.count('cicp:TransferCharacteristics" value="16"') == 2            # one set per codec
    assert 'codecs="av01.0.00M.10.0.110.09.16.09.0"' in mpd and 'codecs="hvc1.2.4.' in mpd
    master = (pkg.root / "master.m3u8").read_text()
    assert master.count("VIDEO-RANGE=PQ") == 2


def test_carrying_hdr_boxes_keeps_the_init_segment_readable(hdr_rungs: list[Rendition], tmp_path: Path) -> None:
    pkg = package(hdr_rungs[:1], tmp_path / "out", segment_s=2.0)
    init = pkg.root / f"video/{hdr_rungs[0].name}/init.mp4"
    assert not carry_hdr_boxes(hdr_rungs[0].path, init)                       # already there: written once
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(init.read_bytes() + (init.parent / "1.m4s").read_bytes())
    v = probe(joined).video
    assert v.frames == 30 and v.bit_depth == 10 and v.color_transfer == "smpte2084"
