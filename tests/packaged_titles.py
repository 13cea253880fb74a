"""Packaged titles for the playback and browser tests: one real clip, in the clear, with cenc and with cbcs.

The clip is the first 6 s of Sintel's fight (640x360, cuts at 2 s and 4.6 s) with a 440 Hz tone,
encoded to three rungs, 234p (SD), 720p (HD720) and 1080p (HD; upscaled, so a device cap has
something to remove), plus AAC, with 2 s segments. 6 s so a browser can play 5 s of it.

The switching titles (clear and cenc) hold one per-shot-resolution rung of the same clip, made the
way a per-shot rung is (encode_rung_per_shot): 640x360, then 384x216, then 640x360 again, switching
at the keyframes of 2 s and 4 s, with the clip's audio.

Encrypted titles are made the way ingest makes them: keys from ``generate_keys``, put in the real
``KeyStore`` (sealed in an SQLite database under a test master key), and the project's
``package`` with ``Encryption.from_config`` (one AdaptationSet per tier, CommonSystem and the other
systems, HLS identity key lines ``keys/<kid>`` relative to the package root). Encodes and packages
are made once per session (per xdist worker); these fixtures are imported by ``tests/conftest.py``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reelflow.encoding.audio import encode_audio
from reelflow.encoding.encode import Rendition, ShotCrf, encode_rung_per_shot, encode_video_rung, keyframe_frames
from reelflow.encoding.probe import probe
from reelflow.infra.database import open_database
from reelflow.infra.settings import DrmConfig, EncodeConfig, ProtectionScheme, Rung
from reelflow.infra.storage import LocalStorage
from reelflow.packaging import publish
from reelflow.packaging.keys import ContentKey, KeyStore, Tier, generate_keys
from reelflow.packaging.packager import Encryption, package, tier_of

FAST = EncodeConfig(preset="ultrafast", segment_s=2.0)
CLIP_S = 6.0
RUNGS = (Rung(width=416, height=234, kbps=300), Rung(width=1280, height=720, kbps=1200),
         Rung(width=1920, height=1080, kbps=2500))
CLEAR_ID, ENC_ID, CBCS_ID = "sintel-clear", "sintel-enc", "sintel-cbcs"
SWITCH_CLEAR_ID, SWITCH_ENC_ID = "sintel-switch-clear", "sintel-switch-enc"
# The per-shot-resolution rung: (first frame, end frame, size) of each piece of the 144-frame clip
SWITCH_SIZES = ((0, 48, (640, 360)), (48, 96, (384, 216)), (96, 144, (640, 360)))
VERSION = "v-test0001"
# The key store's master key in these tests (64 hex digits); settings take it as drm.master_key.
MASTER_KEY_HEX = "5eed" * 16


@dataclass(frozen=True)
class PackagedTitle:
    title_id: str
    root: Path                          # the store's root
    keys: dict[Tier, ContentKey]        # empty when clear
    scheme: ProtectionScheme | None = None


@dataclass(frozen=True)
class KeyDatabase:
    """The service database holding the encrypted titles' keys, and the master key that seals them."""

    url: str
    master_key_hex: str
    store: KeyStore


@pytest.fixture(scope="session")
def clip(sintel_fight: Path, ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip") / "sintel6s.mp4"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(sintel_fight),
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", f"{CLIP_S:g}",
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


@pytest.fixture(scope="session")
def key_database(tmp_path_factory: pytest.TempPathFactory) -> KeyDatabase:
    url = f"sqlite:///{tmp_path_factory.mktemp('keys') / 'service.db'}"
    return KeyDatabase(url, MASTER_KEY_HEX, KeyStore(open_database(url), bytes.fromhex(MASTER_KEY_HEX)))


def _record(store: LocalStorage, title_id: str, renditions: list[Rendition], *,
            encryption: dict[str, Any] | None, countries: list[str] | None) -> dict[str, Any]:
    prefix = f"titles/{title_id}/{VERSION}"
    return {
        "title_id": title_id, "status": "published", "package": store.url_for(prefix),
        "source": {"probe": {"duration_s": CLIP_S}},
        "renditions": [{"kind": r.kind, "name": r.name, "codec": r.codec, "kbps": r.kbps, "height": r.height}
                       for r in renditions],
        "manifests": {"dash": store.url_for(f"{prefix}/manifest.mpd"), "hls": store.url_for(f"{prefix}/master.m3u8")},
        "encryption": encryption, "countries": countries,
    }


@pytest.fixture(scope="session")
def switching_renditions(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Rendition]:
    """One per-shot-resolution rung of the clip (SWITCH_SIZES, at CRF 24) and the clip's audio."""
    info = probe(clip)
    work = tmp_path_factory.mktemp("switch")
    keyframes = keyframe_frames([start for start, _, _ in SWITCH_SIZES], info.video.frames, info.video.fps,
                                FAST.segment_s)
    pieces = [ShotCrf(start, end, 24, width, height) for start, end, (width, height) in SWITCH_SIZES]
    rung = encode_rung_per_shot(clip, info, 640, 360, pieces, keyframes, FAST.preset, work / "switch.mp4",
                                target_kbps=700)
    return [rung, encode_audio(clip, info, FAST, work / "audio.mp4")]


def _clear(title_id: str, renditions: list[Rendition], store_root: Path, work: Path) -> PackagedTitle:
    """Package and publish ``renditions`` in the clear, no country limits."""
    store = LocalStorage(store_root)
    pkg = package(renditions, work / "out", segment_s=FAST.segment_s)
    publish.publish_package(pkg.root, store, f"titles/{title_id}/{VERSION}")
    publish.write_title_record(store, f"titles/{title_id}",
                               _record(store, title_id, renditions, encryption=None, countries=None))
    return PackagedTitle(title_id, store_root, {})


@pytest.fixture(scope="session")
def switch_clear_title(switching_renditions: list[Rendition], store_root: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> PackagedTitle:
    """The per-shot-resolution rung packaged in the clear."""
    return _clear(SWITCH_CLEAR_ID, switching_renditions, store_root, tmp_path_factory.mktemp("switch-clear"))


@pytest.fixture(scope="session")
def switch_encrypted_title(switching_renditions: list[Rendition], store_root: Path, key_database: KeyDatabase,
                           tmp_path_factory: pytest.TempPathFactory) -> PackagedTitle:
    """The per-shot-resolution rung with cenc, licensed in US and CA."""
    return _encrypted(SWITCH_ENC_ID, "cenc", switching_renditions, store_root, key_database,
                      tmp_path_factory.mktemp("switch-cenc"))


@pytest.fixture(scope="session")
def clear_title(renditions: list[Rendition], store_root: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> PackagedTitle:
    """The clip packaged in the clear by the project's packager, published, no country limits."""
    return _clear(CLEAR_ID, renditions, store_root, tmp_path_factory.mktemp("clear"))


def _encrypted(title_id: str, scheme: ProtectionScheme, renditions: list[Rendition], store_root: Path,
               keys_db: KeyDatabase, work: Path) -> PackagedTitle:
    """Package and publish ``renditions`` encrypted as ingest does, keys in the key store, US and CA only."""
    config = DrmConfig(scheme=scheme)
    keys = generate_keys({tier_of(r) for r in renditions})
    keys_db.store.put_title_keys(title_id, keys)  # before the package, as ingest does
    pkg = package(renditions, work / "out", segment_s=FAST.segment_s, encryption=Encryption.from_config(keys, config))
    assert pkg.encryption is not None
    store = LocalStorage(store_root)
    publish.publish_package(pkg.root, store, f"titles/{title_id}/{VERSION}")
    encryption = {**pkg.encryption, "hls_key_uri": config.hls_key_uri}
    publish.write_title_record(store, f"titles/{title_id}",
                               _record(store, title_id, renditions, encryption=encryption, countries=["US", "CA"]))
    return PackagedTitle(title_id, store_root, dict(keys), scheme)


@pytest.fixture(scope="session")
def encrypted_title(renditions: list[Rendition], store_root: Path, key_database: KeyDatabase,
                    tmp_path_factory: pytest.TempPathFactory) -> PackagedTitle:
    """The clip with cenc (Widevine, PlayReady, CommonSystem), a key per tier, licensed in US and CA."""
    return _encrypted(ENC_ID, "cenc", renditions, store_root, key_database, tmp_path_factory.mktemp("cenc"))


@pytest.fixture(scope="session")
def cbcs_title(renditions: list[Rendition], store_root: Path, key_database: KeyDatabase,
               tmp_path_factory: pytest.TempPathFactory) -> PackagedTitle:
    """The clip with cbcs (Widevine, PlayReady, FairPlay, CommonSystem), a key per tier, US and CA."""
    return _encrypted(CBCS_ID, "cbcs", renditions, store_root, key_database, tmp_path_factory.mktemp("cbcs"))


@pytest.fixture(scope="session")
def key_source(encrypted_title: PackagedTitle, key_database: KeyDatabase) -> KeyStore:
    """The real key store holding the encrypted titles' keys."""
    return key_database.store
