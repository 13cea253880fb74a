"""Encrypted packaging: raw keys per tier, cenc and cbcs, four protection systems, several audio
languages with roles, WebVTT subtitles, HLS key lines the playback service serves, and proof by
decryption that the segments are encrypted with exactly the stored keys.

What Shaka Packager v3.8 writes, as these tests record it:
- DASH: per AdaptationSet a ``urn:mpeg:dash:mp4protection:2011`` ContentProtection with
  ``value`` = the scheme and ``cenc:default_KID`` = the tier's key id, then one ContentProtection
  with a ``cenc:pssh`` per system: CommonSystem (1077efec-...), PlayReady (9a04f079-..., also an
  ``mspr:pro``) and Widevine (edef8ba9-...). FairPlay never appears in the MPD (no DASH for it):
  it is an HLS key line only. Each video tier is an AdaptationSet of its own; text is clear.
- HLS media playlists: ``#EXT-X-KEY`` per system, METHOD=SAMPLE-AES-CTR (cenc) or SAMPLE-AES (cbcs):
  PlayReady and Widevine with data: URIs (Widevine with KEYID=0x<kid>), an ``identity`` line with
  URI "../keys/<kid hex>" (the default ``hls_key_uri`` "keys/{key_id}" made relative to the
  playlist's folder), and with cbcs a FairPlay line (KEYFORMAT com.apple.streamingkeydelivery)
  with URI "skd://<kid hex>".
"""

from __future__ import annotations

import base64
import logging
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import m3u8
import pytest

from reelflow.encoding.audio import encode_audio
from reelflow.encoding.encode import Rendition, encode_video_rung, keyframe_frames
from reelflow.encoding.probe import probe
from reelflow.errors import StageError, ToolFailed
from reelflow.infra.settings import DrmConfig, EncodeConfig, Rung
from reelflow.packaging.keys import ContentKey, Tier, generate_keys
from reelflow.packaging.packager import Encryption, Package, key_uri, package, package_argv
from reelflow.packaging.subtitles import SubtitleTrack

FAST = EncodeConfig(preset="ultrafast", segment_s=2.0)
NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011", "cenc": "urn:mpeg:cenc:2013"}
WIDEVINE = "urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
PLAYREADY = "urn:uuid:9a04f079-9840-4286-ab92-e65be0885f95"
CLEARKEY = "urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"
FAIRPLAY = "urn:uuid:94ce86fb-07ff-4f43-adb8-93d2fa968ca2"
MP4PROTECTION = "urn:mpeg:dash:mp4protection:2011"
VTT = "WEBVTT\n\n00:00:00.500 --> 00:00:01.500\n{text} one\n\n00:00:02.000 --> 00:00:03.500\n{text} two\n"


@dataclass(frozen=True)
class Inputs:
    renditions: list[Rendition]
    subtitles: list[SubtitleTrack]
    keys: dict[Tier, ContentKey]
    work: Path


@pytest.fixture(scope="module")
def inputs(lavfi_clip: Any, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """4 s of 1280x720 25 fps with two audio streams (programme, description), a German dub in a
    file of its own, two WebVTT files; encoded to 360p (SD) and 720p (HD720) plus three AAC tracks."""
    source = lavfi_clip(
        "drm_source.mp4", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=4",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-f", "lavfi", "-i", "sine=frequency=660:duration=4",
        "-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
        "-shortest")
    dub = lavfi_clip("drm_dub.wav", "-f", "lavfi", "-i", "sine=frequency=330:duration=4.5")
    work = tmp_path_factory.mktemp("drm")
    info = probe(source)
    frames = keyframe_frames([0], info.video.frames, info.video.fps, FAST.segment_s)
    rungs = [Rung(width=640, height=360, kbps=500), Rung(width=1280, height=720, kbps=1200)]
    renditions = [encode_video_rung(source, r, frames, info, FAST, work / f"{r.name}.mp4") for r in rungs]
    renditions += [
        encode_audio(source, info, FAST, work / "en.mp4", language="en", loudness_lufs=-23.0),
        encode_audio(source, info, FAST, work / "en_ad.mp4", stream=1, language="en", role="description"),
        encode_audio(source, info, FAST, work / "de.mp4", audio_file=dub, language="de", role="dub"),
    ]
    (work / "en.vtt").write_text(VTT.format(text="Hello"))
    (work / "fr.vtt").write_text(VTT.format(text="[musique]"))
    subtitles = [SubtitleTrack(work / "en.vtt", "en"), SubtitleTrack(work / "fr.vtt", "fr", "caption")]
    return Inputs(renditions, subtitles, generate_keys(["AUDIO", "SD", "HD720"]), work)


def make(inputs: Inputs, name: str, scheme: str | None) -> Package:
    encryption = None
    if scheme is not None:
        encryption = Encryption.from_config(inputs.keys, DrmConfig(scheme=scheme))  # type: ignore[arg-type]
    return package(inputs.renditions, inputs.work / name, segment_s=FAST.segment_s, subtitles=inputs.subtitles,
                   encryption=encryption)


@pytest.fixture(scope="module")
def cenc(inputs: Inputs) -> Package:
    return make(inputs, "cenc", "cenc")


@pytest.fixture(scope="module")
def cbcs(inputs: Inputs) -> Package:
    return make(inputs, "cbcs", "cbcs")


@pytest.fixture(scope="module")
def clear(inputs: Inputs) -> Package:
    return make(inputs, "clear", None)


def adaptation_sets(pkg: Package) -> list[ET.Element]:
    root = ET.parse(pkg.root / pkg.dash_manifest).getroot()
    return root.findall("mpd:Period/mpd:AdaptationSet", NS)


def protection(aset: ET.Element) -> tuple[str | None, str | None, set[str]]:
    """(scheme value, default_KID as hex, system scheme ids with a pssh) of an AdaptationSet."""
    scheme = kid = None
    systems = set()
    for cp in aset.findall("mpd:ContentProtection", NS):
        if cp.get("schemeIdUri") == MP4PROTECTION:
            scheme = cp.get("value")
            kid = (cp.get(f"{{{NS['cenc']}}}default_KID") or "").replace("-", "")
        else:
            assert cp.find("cenc:pssh", NS) is not None and (cp.find("cenc:pssh", NS).text or "").strip()
            systems.add(cp.get("schemeIdUri") or "")
    return scheme, kid, systems


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_mpd_has_protection_for_every_system_and_a_key_per_tier(
    scheme: str, inputs: Inputs, request: pytest.FixtureRequest
) -> None:
    pkg: Package = request.getfixturevalue(scheme)
    keys = inputs.keys
    seen: dict[str, set[str]] = {}
    for aset in adaptation_sets(pkg):
        kind = aset.get("contentType")
        value, kid, systems = protection(aset)
        if kind == "text":
            assert value is None and not systems  # subtitles stay clear
            continue
        assert value == scheme
        assert systems == {WIDEVINE, PLAYREADY, CLEARKEY}  # FairPlay has no DASH signalling
        if kind == "video":
            tier = "SD" if int(aset.get("height") or 0) <= 576 else "HD720"
            assert kid == keys[tier].key_id_hex, tier
        else:
            assert kid == keys["AUDIO"].key_id_hex
        seen.setdefault(kind or "", set()).add(kid or "")
    assert len(seen["video"]) == 2  # one AdaptationSet and one default_KID per video tier
    assert pkg.encryption == {"scheme": scheme, "systems": list(DrmConfig(scheme=scheme).systems),  # type: ignore[arg-type]
                              "key_ids": {t: k.key_id_hex for t, k in keys.items()}}


def test_mpd_lists_audio_languages_roles_and_subtitles(cenc: Package) -> None:
    tracks = []
    for aset in adaptation_sets(cenc):
        if aset.get("contentType") in ("audio", "text"):
            roles = [r.get("value") for r in aset.findall("mpd:Role", NS)]
            access = [(a.get("schemeIdUri"), a.get("value")) for a in aset.findall("mpd:Accessibility", NS)]
            mime = aset.find("mpd:Representation", NS).get("codecs")  # type: ignore[union-attr]
            tracks.append((aset.get("contentType"), aset.get("lang"), roles, access, mime))
    assert sorted(tracks) == [
        ("audio", "de", ["dub"], [], "mp4a.40.2"),
        ("audio", "en", ["description"], [("urn:tva:metadata:cs:AudioPurposeCS:2007", "1")], "mp4a.40.2"),
        ("audio", "en", ["main"], [], "mp4a.40.2"),
        ("text", "en", ["subtitle"], [], "wvtt"),
        ("text", "fr", ["caption"], [], "wvtt"),
    ]


def test_hls_master_lists_audio_with_characteristics_and_subtitles(cenc: Package) -> None:
    master = m3u8.load(str(cenc.root / cenc.hls_master))
    media = {(m.type, m.language, m.name): m for m in master.media}
    assert set(media) == {("AUDIO", "en", "en"), ("AUDIO", "en", "en (description)"), ("AUDIO", "de", "de (dub)"),
                          ("SUBTITLES", "en", "en"), ("SUBTITLES", "fr", "fr (caption)")}
    assert media["AUDIO", "en", "en"].default == "YES"
    assert [m.default for m in master.media if m.type == "SUBTITLES"] == ["NO", "NO"]  # shown only when asked
    assert media["AUDIO", "en", "en (description)"].characteristics == "public.accessibility.describes-video"
    assert "transcribes-spoken-dialog" in (media["SUBTITLES", "fr", "fr (caption)"].characteristics or "")
    assert all(p.stream_info.subtitles == "subtitles" for p in master.playlists)


def key_lines(playlist: Path) -> list[dict[str, str]]:
    out = []
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXT-X-KEY:"):
            attrs = dict(part.split("=", 1) for part in _split_attrs(line.removeprefix("#EXT-X-KEY:")))
            out.append({k: v.strip('"') for k, v in attrs.items()})
    return out


def _split_attrs(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_hls_media_playlists_point_at_per_key_uris(scheme: str, inputs: Inputs,
                                                  request: pytest.FixtureRequest) -> None:
    pkg: Package = request.getfixturevalue(scheme)
    method = "SAMPLE-AES-CTR" if scheme == "cenc" else "SAMPLE-AES"
    tiers = {"video/360p_500k": "SD", "video/720p_1200k": "HD720", "audio/aac_en": "AUDIO",
             "audio/aac_en_description": "AUDIO", "audio/aac_de_dub": "AUDIO"}
    for name, tier in tiers.items():
        kid = inputs.keys[tier].key_id_hex  # type: ignore[index]
        lines = {line["KEYFORMAT"]: line for line in key_lines(pkg.root / f"{name}.m3u8")}
        expected = {"identity", "com.microsoft.playready", WIDEVINE}
        if scheme == "cbcs":
            expected.add("com.apple.streamingkeydelivery")
        assert set(lines) == expected, name
        assert all(line["METHOD"] == method for line in lines.values())
        assert lines["identity"]["URI"] == f"../keys/{kid}"  # resolves to <package>/keys/<kid>
        assert lines[WIDEVINE]["KEYID"] == f"0x{kid}"
        if scheme == "cbcs":
            assert lines["com.apple.streamingkeydelivery"]["URI"] == f"skd://{kid}"
    assert not key_lines(pkg.root / "text/en.m3u8")


def test_key_uri_forms() -> None:
    key = generate_keys(["SD"])["SD"]
    assert key_uri("keys/{key_id}", key, "video/360p.m3u8") == f"../keys/{key.key_id_hex}"
    assert key_uri("keys/{key_id}", key, "master.m3u8") == f"keys/{key.key_id_hex}"
    assert key_uri("https://lic.example/k/{key_id}", key, "video/a.m3u8") == f"https://lic.example/k/{key.key_id_hex}"
    assert key_uri("/keys/{key_id}", key, "video/a.m3u8") == f"/keys/{key.key_id_hex}"


def joined(pkg: Package, folder: str, out: Path) -> Path:
    """The init segment and media segments of one track as one fragmented MP4 file."""
    parts = [pkg.root / folder / "init.mp4", *sorted((pkg.root / folder).glob("*.m4s"), key=lambda p: int(p.stem))]
    out.write_bytes(b"".join(p.read_bytes() for p in parts))
    return out


def decode_md5(ffmpeg: str, path: Path, key: bytes | None = None) -> tuple[list[str], int]:
    """(per-frame MD5s of the decoded track, number of error lines)."""
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"]
    if key is not None:
        argv += ["-decryption_key", key.hex()]
    done = subprocess.run([*argv, "-i", str(path), "-f", "framemd5", "-"], capture_output=True, text=True,
                          check=False)
    md5s = [line.rsplit(",", 1)[-1].strip() for line in done.stdout.splitlines() if line and line[0] != "#"]
    errors = len([ln for ln in done.stderr.splitlines() if ln.strip()]) + (done.returncode != 0)
    return md5s, errors


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_segments_are_encrypted_with_the_tier_keys(scheme: str, inputs: Inputs, clear: Package, ffmpeg: str,
                                                   tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Without the key the video does not decode; with its tier's key (ffmpeg -decryption_key, both
    cenc and cbcs) every frame is bit-identical to the clear package's; another tier's key fails."""
    pkg: Package = request.getfixturevalue(scheme)
    reference, errors = decode_md5(ffmpeg, joined(clear, "video/360p_500k", tmp_path / "clear.mp4"))
    assert errors == 0 and len(reference) == 100
    encrypted = joined(pkg, "video/360p_500k", tmp_path / "enc.mp4")
    plain, errors = decode_md5(ffmpeg, encrypted)
    assert errors > 0 and plain != reference
    right, errors = decode_md5(ffmpeg, encrypted, inputs.keys["SD"].key)
    assert errors == 0 and right == reference
    wrong, _ = decode_md5(ffmpeg, encrypted, inputs.keys["HD720"].key)
    assert wrong != reference
    audio_ref, _ = decode_md5(ffmpeg, joined(clear, "audio/aac_de_dub", tmp_path / "clear_a.mp4"))
    audio, errors = decode_md5(ffmpeg, joined(pkg, "audio/aac_de_dub", tmp_path / "enc_a.mp4"),
                               inputs.keys["AUDIO"].key)
    assert errors == 0 and audio == audio_ref


def test_no_key_in_any_packaged_file(cenc: Package, cbcs: Package, inputs: Inputs) -> None:
    for pkg in (cenc, cbcs):
        blobs = [(name, (pkg.root / name).read_bytes()) for name in pkg.files]
        for key in inputs.keys.values():
            forms = [key.key, key.key.hex().encode(), key.key.hex().upper().encode(), base64.b64encode(key.key)]
            for name, data in blobs:
                assert not any(form in data for form in forms), name


def test_packager_argv_keys_are_redacted_from_logs_and_errors(
    inputs: Inputs, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    encryption = Encryption(keys=inputs.keys, scheme="cenc")
    argv = package_argv(inputs.renditions, 2.0, make_config(), encryption=encryption)
    assert any(inputs.keys["SD"].key.hex() in a for a in argv)  # the packager does get the keys
    caplog.set_level(logging.DEBUG, logger="reelflow")
    broken = [*inputs.renditions[:1], replace(inputs.renditions[2], path=tmp_path / "gone.mp4")]
    with pytest.raises(ToolFailed) as caught:
        package(broken, tmp_path / "out", segment_s=2.0, encryption=encryption)
    text = f"{caught.value} {caught.value.argv} {caught.value.stderr} " + " ".join(r.getMessage() for r in
                                                                                  caplog.records)
    assert "--enable_raw_key_encryption" in text and "<redacted>" in text
    for key in inputs.keys.values():
        assert key.key.hex() not in text.lower()


def make_config() -> Any:
    from reelflow.infra.settings import PackageConfig

    return PackageConfig()


def test_clear_package_has_no_protection(clear: Package) -> None:
    assert clear.encryption is None
    assert all(protection(a) == (None, None, set()) for a in adaptation_sets(clear))
    assert not key_lines(clear.root / "video/360p_500k.m3u8")


def test_missing_tier_key_is_refused(inputs: Inputs, tmp_path: Path) -> None:
    keys = {t: k for t, k in inputs.keys.items() if t != "HD720"}
    with pytest.raises(StageError, match="no content key for tier"):
        package(inputs.renditions, tmp_path / "out", segment_s=2.0, encryption=Encryption(keys=keys))


def test_two_tracks_from_one_file_are_refused(inputs: Inputs, tmp_path: Path) -> None:
    """The packager would give both the first one's language: refused before it runs."""
    video, audio = inputs.renditions[0], inputs.renditions[2]
    twin = replace(audio, language="fr", track_name="aac_fr")
    with pytest.raises(StageError, match="same file"):
        package([video, audio, twin], tmp_path / "out", segment_s=2.0)
