"""HDR10 and HLG masters through the ingest flow: HDR ladders, a tone-mapped SDR fallback, signalling.

Both titles use the fixed ladder cut to two rungs (360p, 720p) and ultrafast presets, so each
ingest costs seconds; what is checked is the published package: the bitstream of every rung read
back from its init segment and first media segment, both manifests, and the service's choice of
ladder per device.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import av
import pytest

from hdr_masters import MAX_CLL, hdr10_2160p, hlg_1080p  # noqa: F401  (fixtures)
from reelflow.encoding.probe import VideoStream, probe
from reelflow.flows.ingest import ingest_flow
from reelflow.infra.settings import load_settings
from reelflow.infra.storage import LocalStorage
from reelflow.packaging.packager import hdr_boxes
from reelflow.playback import manifests
from reelflow.playback.catalog import load_title

pytestmark = pytest.mark.slow

LADDER = 'ladder = [{width = 640, height = 360, kbps = 365}, {width = 1280, height = 720, kbps = 3000}]\n'


def _config(folder: Path, hdr_codecs: str, codecs: str) -> Path:
    config = folder / "hdr.toml"
    config.write_text(
        '[ladder]\nmode = "fixed"\n'
        f'[encode]\npreset = "ultrafast"\ncodecs = {codecs}\nhdr_codecs = {hdr_codecs}\n{LADDER}'
        f'[storage]\nkeep_work = true\nwork_dir = "{folder / "work"}"\n'
        f'[database]\nurl = "sqlite:///{folder / "service.db"}"\n'
        '[drm]\nenabled = false\n')
    return config


def _ingest(source: Path, title: str, hdr_codecs: str, codecs: str, folder: Path) -> tuple[Path, dict[str, Any]]:
    config = _config(folder, hdr_codecs, codecs)
    store = folder / "store"
    record = ingest_flow(load_settings(config))(str(source), title_id=title, storage=str(store),
                                                config_file=str(config))
    return store, record


@pytest.fixture(scope="module")
def hdr10_title(hdr10_2160p: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:  # noqa: F811
    """The 2160p HDR10 master with HEVC and AV1 HDR ladders and H.264 and AV1 SDR fallbacks."""
    return _ingest(hdr10_2160p, "hdr10", '["hevc", "av1"]', '["h264", "av1"]', tmp_path_factory.mktemp("hdr10"))


@pytest.fixture(scope="module")
def hlg_title(hlg_1080p: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:  # noqa: F811
    """The 1080p HLG master with an HEVC HLG ladder and an H.264 SDR fallback."""
    return _ingest(hlg_1080p, "hlg", '["hevc"]', '["h264"]', tmp_path_factory.mktemp("hlg"))


def _published(record: dict[str, Any], rendition: dict[str, Any], tmp: Path) -> VideoStream:
    """A rung as a player gets it: its init segment and first media segment, probed (first frame decoded)."""
    folder = Path(record["package"]) / rendition["init"].rpartition("/")[0]
    joined = tmp / f"{rendition['name']}.mp4"
    joined.write_bytes((folder / "init.mp4").read_bytes() + (folder / "1.m4s").read_bytes())
    return probe(joined).video


def _video(record: dict[str, Any], ladder: str) -> list[dict[str, Any]]:
    return [r for r in record["renditions"] if r["kind"] == "video" and r["ladder"] == ladder]


def test_hdr10_rungs_carry_10_bit_bt2020_pq_and_the_mastering_metadata(
        hdr10_title: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    _, record = hdr10_title
    assert [ld["ladder"] for ld in record["ladders"]] == ["hevc_hdr", "av1_hdr", "h264", "av1"]
    for ladder, codec in (("hevc_hdr", "hevc"), ("av1_hdr", "av1")):
        rungs = _video(record, ladder)
        assert [r["height"] for r in rungs] == [360, 720] and all(r["range"] == "pq" for r in rungs)
        for rung in rungs:
            assert rung["name"].startswith(f"{ladder}_") and rung["codec"] == codec
            v = _published(record, rung, tmp_path)
            assert (v.bit_depth, v.pix_fmt) == (10, "yuv420p10le"), rung["name"]
            assert (v.color_primaries, v.color_transfer, v.color_matrix, v.color_range) == \
                ("bt2020", "smpte2084", "bt2020nc", "tv"), rung["name"]
            md = v.mastering_display
            assert md is not None and md.max_luminance == pytest.approx(1000) and \
                md.min_luminance == pytest.approx(0.0001, abs=5e-5), rung["name"]
            assert md.green == pytest.approx((0.265, 0.69), abs=1e-3)         # P3-D65 primaries, as mastered
            assert v.content_light is not None and (v.content_light.max_cll, v.content_light.max_fall) == MAX_CLL
            # and in the init segment's sample entry (mdcv: G, B, R, white point, max, min; clli)
            boxes = hdr_boxes(Path(record["package"]) / rung["init"])
            mdcv, clli = boxes[boxes.index(b"mdcv") + 4:][:24], boxes[boxes.index(b"clli") + 4:][:4]
            assert struct.unpack(">8H2I", mdcv) == (13250, 34500, 7500, 3000, 34000, 16000, 15635, 16450,
                                                    10000000, 1), rung["name"]
            assert struct.unpack(">2H", clli) == MAX_CLL, rung["name"]
    # the HEVC rungs are Main10 ("hvc1.2": general_profile_idc 2)
    master = (Path(record["package"]) / "master.m3u8").read_text()
    assert re.search(r'CODECS="hvc1\.2\.', master) and re.search(r'CODECS="av01\.0\.\d\dM\.10\.', master)


def test_the_sdr_fallback_is_8_bit_bt709_without_hdr_metadata(hdr10_title: tuple[Path, dict[str, Any]],
                                                                  tmp_path: Path) -> None:
    _, record = hdr10_title
    rungs = _video(record, "h264") + _video(record, "av1")
    assert [r["height"] for r in rungs] == [360, 720] * 2 and all(r["range"] == "sdr" for r in rungs)
    for rung in rungs:
        v = _published(record, rung, tmp_path)
        assert (v.bit_depth, v.color_primaries, v.color_transfer, v.color_matrix) == (8, "bt709", "bt709", "bt709")
        assert v.mastering_display is None and v.content_light is None
        # tone-mapped, not clipped or black: a mid-grey average like the dark source's
        folder = Path(record["package"]) / rung["init"].rpartition("/")[0]
        with av.open(str(tmp_path / f"{rung['name']}.mp4")) as c:
            luma = next(c.decode(video=0)).to_ndarray(format="gray")
        assert 5 < luma.mean() < 120 and luma.max() > 40, folder


def test_both_manifests_signal_hdr_and_sdr(hdr10_title: tuple[Path, dict[str, Any]]) -> None:
    _, record = hdr10_title
    package = Path(record["package"])
    mpd = (package / "manifest.mpd").read_text()
    sets = re.findall(r"<AdaptationSet.*?</AdaptationSet>", mpd, re.S)
    hdr_sets = [s for s in sets if 'codecs="hvc1' in s or re.search(r'codecs="av01[^"]*\.09\.16\.09', s)]
    assert len(hdr_sets) == 2
    for aset in hdr_sets:
        assert 'cicp:ColourPrimaries" value="9"' in aset and 'cicp:TransferCharacteristics" value="16"' in aset
        assert 'cicp:MatrixCoefficients" value="9"' in aset
    sdr = [s for s in sets if s not in hdr_sets]
    assert len(sdr) == 2 and all('TransferCharacteristics" value="16"' not in s for s in sdr)
    variants = [ln for ln in (package / "master.m3u8").read_text().splitlines() if ln.startswith("#EXT-X-STREAM-INF")]
    assert len(variants) == 8 and all("VIDEO-RANGE=" in v for v in variants)
    assert sum("VIDEO-RANGE=PQ" in v for v in variants) == 4 and sum("VIDEO-RANGE=SDR" in v for v in variants) == 4
    assert all("VIDEO-RANGE=SDR" in v for v in variants if "avc1" in v)


def test_ladder_reports_list_the_ladders_and_the_hdr_metric(hdr10_title: tuple[Path, dict[str, Any]]) -> None:
    _, record = hdr10_title
    index = json.loads(Path(record["ladder"]["index"]).read_text())
    assert [ld["ladder"] for ld in index["ladders"]] == ["hevc_hdr", "av1_hdr", "h264", "av1"]
    assert "no open VMAF model is validated on PQ" in index["hdr_quality_metric"]
    fallback = index["ladders"][2]
    assert fallback["source"] == "tone-mapped SDR intermediate" and fallback["tonemap"]["operator"] == "hable"
    assert fallback["tonemap"]["peak_nits"] == MAX_CLL[0]                   # MaxCLL sets the curve's peak
    assert fallback["tonemap"]["size"] == "1920x1080"                       # 2160p scaled down before the curve
    assert json.loads(Path(index["ladders"][0]["report"]).read_text())["range"] == "pq"


@pytest.mark.parametrize(("codecs", "hdr", "expected"), [
    (("hvc1", "avc1", "mp4a"), True, ("hvc1", True)),     # an HDR TV with HEVC: the HEVC HDR ladder
    (("hvc1", "av01", "avc1"), True, ("av01", True)),     # ... that also decodes AV1: AV1 HDR
    (("avc1", "av01", "mp4a"), False, ("av01", False)),   # no HDR display: the AV1 SDR fallback ...
    (("avc1", "mp4a"), False, ("avc1", False)),           # ... or the H.264 one
    (("hvc1", "avc1"), False, ("avc1", False)),           # (no HEVC SDR ladder in this title)
])
def test_each_device_gets_one_ladder(hdr10_title: tuple[Path, dict[str, Any]], codecs: tuple[str, ...],
                                     hdr: bool, expected: tuple[str, bool]) -> None:
    store, _ = hdr10_title
    title = load_title(LocalStorage(store), "hdr10")
    limits = manifests.Limits(codecs=frozenset(codecs), max_height=2160, hdr=hdr)
    mpd = manifests.filter_dash(title, limits, [("origin", "http://origin")])
    reps = re.findall(r'<Representation[^>]*codecs="([^"."]+)', mpd)
    family = {manifests.codec_family(c) for c in reps}
    hdr_in_mpd = 'TransferCharacteristics" value="16"' in mpd
    assert (family, hdr_in_mpd) == ({expected[0]}, expected[1])
    assert len(reps) == 2
    hls = manifests.filter_hls_master(title, limits, "http://service")
    variants = [ln for ln in hls.splitlines() if ln.startswith("#EXT-X-STREAM-INF")]
    assert len(variants) == 2 and all(expected[0] in v for v in variants)
    assert all(("VIDEO-RANGE=PQ" in v) == expected[1] for v in variants)
    chosen = manifests.chosen_ladder(title, limits)
    assert (chosen["codec"], chosen["range"] != "SDR") == expected


def test_hlg_gets_an_hlg_ladder_and_a_fallback(hlg_title: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    _, record = hlg_title
    assert [ld["ladder"] for ld in record["ladders"]] == ["hevc_hdr", "h264"]
    for rung in _video(record, "hevc_hdr"):
        v = _published(record, rung, tmp_path)
        assert (v.bit_depth, v.color_primaries, v.color_transfer, v.color_matrix) == \
            (10, "bt2020", "arib-std-b67", "bt2020nc")
        assert v.mastering_display is None                    # HLG carries no static metadata
    for rung in _video(record, "h264"):
        assert _published(record, rung, tmp_path).color_transfer == "bt709"
    package = Path(record["package"])
    assert 'cicp:TransferCharacteristics" value="18"' in (package / "manifest.mpd").read_text()
    master = (package / "master.m3u8").read_text()
    assert master.count("VIDEO-RANGE=HLG") == 2 and master.count("VIDEO-RANGE=SDR") == 2
    assert record["qc"]["verdict"] != "error"
