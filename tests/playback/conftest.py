"""Playback fixtures: one real clip packaged twice (clear, and encrypted with one key per tier), a store.

The clip is the first 4 s of Sintel's fight (640x360, cut at 2 s) with a 440 Hz tone, encoded to
three rungs, 234p (SD), 720p (HD720) and 1080p (HD; upscaled, so a device cap has something to
remove), plus AAC, with 2 s segments. Encodes and packages are made once per session.

Encrypted packaging (issue 4 item 2) lives on the drm branch; until it lands, ``encrypted_title``
runs Shaka Packager with raw keys here, the way the drm branch describes its output: one
AdaptationSet per key tier, ``cenc``, CommonSystem + Widevine PSSH, and HLS key lines
``#EXT-X-KEY:...,URI="keys/<kid hex>",KEYFORMAT="identity"`` relative to each media playlist
(added by this fixture), with the keys in a ``MemoryKeySource`` instead of the key store.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reelflow.encoding.encode import Rendition, encode_audio, encode_video_rung, keyframe_frames
from reelflow.encoding.probe import probe
from reelflow.infra.settings import EncodeConfig, Rung
from reelflow.infra.storage import LocalStorage
from reelflow.infra.tools import packager_exe
from reelflow.packaging import publish
from reelflow.packaging.packager import package, stream_descriptor
from reelflow.playback.license import MemoryKey, MemoryKeySource, Tier

FAST = EncodeConfig(preset="ultrafast", segment_s=2.0)
RUNGS = (Rung(width=416, height=234, kbps=300), Rung(width=1280, height=720, kbps=1200),
         Rung(width=1920, height=1080, kbps=2500))
TIER_OF = {234: "SD", 720: "HD720", 1080: "HD"}
CLEAR_ID, ENC_ID = "sintel-clear", "sintel-enc"
VERSION = "v-test0001"


@dataclass(frozen=True)
class PackagedTitle:
    title_id: str
    root: Path                      # the store's root
    keys: dict[Tier, MemoryKey]     # empty when clear


@pytest.fixture(scope="session")
def clip(sintel_fight: Path, ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip") / "sintel4s.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(sintel_fight),
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "4",
                    "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
                    "-c:a", "aac", "-ac", "2", str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def renditions(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Rendition]:
    info = probe(clip)
    work = tmp_path_factory.mktemp("encodes")
    keyframes = keyframe_frames([0], info.video.frames, info.video.fps, FAST.segment_s)
    out = [encode_video_rung(clip, r, keyframes, info, FAST, work / f"{r.name}.mp4") for r in RUNGS]
    out.append(encode_audio(clip, info, FAST, work / "audio.mp4"))
    return out


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


def _record(store: LocalStorage, title_id: str, renditions: list[Rendition], *,
            encryption: dict[str, Any] | None, countries: list[str] | None) -> dict[str, Any]:
    prefix = f"titles/{title_id}/{VERSION}"
    return {
        "title_id": title_id, "status": "published", "package": store.url_for(prefix),
        "source": {"probe": {"duration_s": 4.0}},
        "renditions": [{"kind": r.kind, "name": r.name, "codec": r.codec, "kbps": r.kbps, "height": r.height}
                       for r in renditions],
        "manifests": {"dash": store.url_for(f"{prefix}/manifest.mpd"), "hls": store.url_for(f"{prefix}/master.m3u8")},
        "encryption": encryption, "countries": countries,
    }


@pytest.fixture(scope="session")
def clear_title(renditions: list[Rendition], store_root: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> PackagedTitle:
    """The clip packaged in the clear by the project's packager, published, no country limits."""
    store = LocalStorage(store_root)
    pkg = package(renditions, tmp_path_factory.mktemp("clear") / "out", segment_s=FAST.segment_s)
    publish.publish_package(pkg.root, store, f"titles/{CLEAR_ID}/{VERSION}")
    publish.write_title_record(store, f"titles/{CLEAR_ID}",
                               _record(store, CLEAR_ID, renditions, encryption=None, countries=None))
    return PackagedTitle(CLEAR_ID, store_root, {})


def _tier(rendition: Rendition) -> Tier:
    tier: Tier = "AUDIO" if rendition.kind == "audio" else TIER_OF[rendition.height]  # type: ignore[assignment]
    return tier


@pytest.fixture(scope="session")
def encrypted_title(renditions: list[Rendition], store_root: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> PackagedTitle:
    """The clip packaged with cenc and a key per tier (stand-in for the drm branch), licensed in US and CA."""
    keys: dict[Tier, MemoryKey] = {}
    for rendition in renditions:
        tier = _tier(rendition)
        keys[tier] = MemoryKey(tier, secrets.token_bytes(16), secrets.token_bytes(16))
    out = tmp_path_factory.mktemp("enc") / "out"
    out.mkdir()
    ordered = sorted(renditions, key=lambda r: (r.kind != "video", r.target_kbps))
    argv = [
        packager_exe(),
        *(f"{stream_descriptor(r)},drm_label={_tier(r)}" for r in ordered),
        "--enable_raw_key_encryption",
        "--keys", ",".join(f"label={t}:key_id={k.key_id.hex()}:key={k.key.hex()}" for t, k in keys.items()),
        "--protection_scheme", "cenc", "--protection_systems", "Widevine,CommonSystem", "--clear_lead", "0",
        "--segment_duration", "2", "--mpd_output", "manifest.mpd", "--hls_master_playlist_output", "master.m3u8",
        "--hls_playlist_type", "VOD", "--generate_static_live_mpd",
    ]
    subprocess.run(argv, cwd=out, check=True, capture_output=True)
    for rendition in ordered:  # the drm branch's HLS ClearKey key line, relative to the media playlist
        playlist = out / f"{rendition.kind}/{rendition.name}.m3u8"
        kid = keys[_tier(rendition)].key_id.hex()
        text = playlist.read_text().replace(
            "#EXTINF", f'#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI="keys/{kid}",KEYFORMAT="identity"\n#EXTINF', 1)
        playlist.write_text(text)
    store = LocalStorage(store_root)
    publish.publish_package(out, store, f"titles/{ENC_ID}/{VERSION}")
    encryption = {"scheme": "cenc", "systems": ["widevine", "clearkey"],
                  "key_ids": {t: k.key_id.hex() for t, k in keys.items()}}
    publish.write_title_record(store, f"titles/{ENC_ID}",
                               _record(store, ENC_ID, renditions, encryption=encryption, countries=["US", "CA"]))
    return PackagedTitle(ENC_ID, store_root, keys)


@pytest.fixture(scope="session")
def key_source(encrypted_title: PackagedTitle) -> MemoryKeySource:
    return MemoryKeySource({encrypted_title.title_id: encrypted_title.keys})


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    return tmp_path
