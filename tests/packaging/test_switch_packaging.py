"""A per-shot-resolution rung (640x360, 384x216, 640x360) through Shaka Packager, clear and cenc.

The packager keeps the ``avc3`` sample entry and the in-band parameter sets of the joined rung (it
strips parameter sets only from Annex B input), declares the size of the rung's sample entry (its
largest piece) in the MPD, the HLS master and the init segment, and ffmpeg decodes every frame of
the init segment and media segments at its piece's size, after decrypting the cenc one.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from packaged_titles import SWITCH_SIZES, VERSION, PackagedTitle
from reelflow.encoding.encode import Rendition

pytestmark = pytest.mark.slow

PLANNED = [size for start, end, size in SWITCH_SIZES for _ in range(start, end)]


def _package(title: PackagedTitle) -> Path:
    return title.root / f"titles/{title.title_id}/{VERSION}"


def _rung(folder: Path) -> Path:
    """The package's one video rung's folder (its init and media segments)."""
    (rung,) = [p for p in (folder / "video").iterdir() if p.is_dir()]
    return rung


def _track(folder: Path, out: Path) -> Path:
    """The video track as one file: the init segment, then the media segments in order."""
    rung = _rung(folder)
    segments = sorted(rung.glob("*.m4s"), key=lambda p: int(p.stem))
    out.write_bytes((rung / "init.mp4").read_bytes() + b"".join(p.read_bytes() for p in segments))
    return out


def _decoded_sizes(ffmpeg: str, path: Path, *key: str) -> list[tuple[int, int]]:
    """The size of every decoded frame (showinfo), failing on any decoder error."""
    done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", *key, "-i", str(path), "-map", "0:v",
                           "-vf", "showinfo", "-f", "null", "-"], capture_output=True, text=True, check=True)
    assert "error" not in done.stderr.lower(), done.stderr[-2000:]
    return [(int(w), int(h)) for w, h in re.findall(r"\bs:(\d+)x(\d+)\b", done.stderr)]


def test_manifests_declare_the_largest_size_and_the_bandwidth(switch_clear_title: PackagedTitle,
                                                              switching_renditions: list[Rendition]) -> None:
    folder = _package(switch_clear_title)
    mpd = (folder / "manifest.mpd").read_text()
    video = re.search(r'<AdaptationSet[^>]*contentType="video"[^>]*>', mpd)
    assert video and 'width="640"' in video.group(0) and 'height="360"' in video.group(0), mpd
    representation = re.search(r'<Representation[^>]*codecs="(avc3\.[0-9a-f]+)"[^>]*>', mpd)
    assert representation, mpd
    bandwidth = int(re.search(r'bandwidth="(\d+)"', representation.group(0)).group(1))  # type: ignore[union-attr]
    master = (folder / "master.m3u8").read_text()
    variant = next(line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF"))
    assert "RESOLUTION=640x360" in variant, master
    average = int(re.search(r"AVERAGE-BANDWIDTH=(\d+)", variant).group(1))  # type: ignore[union-attr]
    rung, audio = switching_renditions
    assert bandwidth >= rung.kbps * 1000                    # the video's peak segment rate, at least its mean
    assert average == pytest.approx((rung.kbps + audio.kbps) * 1000, rel=0.05)   # a variant's rate has its audio
    init = _rung(folder) / "init.mp4"
    data = init.read_bytes()
    at = data.index(b"avc3", data.index(b"stsd")) + 4   # the sample entry (ftyp has an avc3 brand too)
    assert (int.from_bytes(data[at + 24:at + 26], "big"), int.from_bytes(data[at + 26:at + 28], "big")) == (640, 360)


def test_ffmpeg_decodes_every_packaged_frame_at_its_size(switch_clear_title: PackagedTitle,
                                                         switch_encrypted_title: PackagedTitle, ffmpeg: str,
                                                         tmp_path: Path) -> None:
    clear = _track(_package(switch_clear_title), tmp_path / "clear.mp4")
    assert _decoded_sizes(ffmpeg, clear) == PLANNED
    encrypted = _track(_package(switch_encrypted_title), tmp_path / "cenc.mp4")
    key = switch_encrypted_title.keys["SD"].key.hex()     # 640x360: the SD tier
    assert _decoded_sizes(ffmpeg, encrypted, "-decryption_key", key) == PLANNED
