"""Shaka Packager: CMAF segments, a DASH MPD and an HLS master playlist in one run, clear or encrypted.

The package layout (relative to the output folder), shared by DASH and HLS since both point at
the same CMAF segments:

    manifest.mpd, master.m3u8
    video/<rung>/init.mp4, video/<rung>/<n>.m4s, video/<rung>.m3u8
    audio/<codec>_<lang>[_<role>][_51|_71]/init.mp4, .../<n>.m4s, audio/<name>.m3u8   (encoding/audio.py names)
    text/<lang>[_<role>]/init.mp4, .../<n>.m4s, text/<lang>[_<role>].m3u8   (WebVTT in CMAF, wvtt)

Encrypted packages use raw keys, one per tier (``keys.py``): each stream's ``drm_label`` is its
tier, so each video tier gets its own DASH AdaptationSet with its own ``cenc:default_KID``, and
ContentProtection (PSSH) for every configured system. In HLS, each media playlist gets
``#EXT-X-KEY`` lines per system; the ``identity`` line (what Shaka Player's ClearKey path uses)
and the FairPlay line point at per-key URIs from ``settings.drm`` (``hls_key_uri``,
``fairplay_key_uri``). The packager's own ``--hls_key_uri`` is one URI for every playlist and it
writes no identity line for cenc at all, so those lines are written here after the run.

HDR and multi-ladder titles (video renditions with a ``ladder`` and ``range``): the packager itself
writes the DASH CICP descriptors (``ColourPrimaries``, ``TransferCharacteristics``,
``MatrixCoefficients`` as SupplementalProperty, from the bitstream's colour description) on each
HDR AdaptationSet and ``VIDEO-RANGE=PQ|HLG|SDR`` on every HLS variant, with ``hvc1``/``av01``
codec strings (the AV1 one with its 10-bit profile, level and colour); ``check_hdr_signalling``
makes sure of it after the run. It splits AdaptationSets by codec and transfer, and by key tier
when encrypted: one set per (codec, range, tier). It drops the ``mdcv``/``clli`` boxes of the
input's sample entry, so ``carry_hdr_boxes`` puts them back into each HDR init segment: a player
that reads HDR10's static metadata from the container finds it there as well as in the bitstream.
Encrypting AV1, Packager v3.8 fails to parse metadata OBUs ("trailing_one_bit"), so an encrypted
AV1 HDR rung is packaged from a stream copy without them (``filter_units``), its HDR10 metadata
then only in the init segment's boxes.

HDR and SDR rungs of one height tier share that tier's key: a key tier says which resolutions a
device's DRM level may decrypt (keys.py), and an HDR picture of a tier is no more valuable than the
SDR one of the same size; the service gives HDR only to devices that declare it, so a separate HDR
key would add a tier to every license policy without protecting anything the height tiers do not.
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reelflow.encoding.encode import Rendition
from reelflow.errors import StageError
from reelflow.infra.settings import DrmConfig, PackageConfig, ProtectionScheme, ProtectionSystem
from reelflow.infra.tools import ffmpeg_exe, packager_exe, run
from reelflow.packaging.keys import ContentKey, Tier, tier_for_height
from reelflow.packaging.subtitles import SubtitleTrack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Package:
    """What the packager made: the folder and the manifests in it (relative paths)."""

    root: Path
    dash_manifest: str
    hls_master: str
    files: tuple[str, ...]
    encryption: dict[str, Any] | None = None    # {scheme, systems, key_ids: {tier: kid hex}}; never keys


@dataclass(frozen=True)
class Encryption:
    """What an encrypted package needs: the title's keys by tier, the scheme, the systems, HLS key URIs."""

    keys: Mapping[Tier, ContentKey] = field(repr=False)
    scheme: ProtectionScheme = "cenc"
    systems: tuple[ProtectionSystem, ...] = ("Widevine", "PlayReady", "CommonSystem")
    hls_key_uri: str = "keys/{key_id}"
    fairplay_key_uri: str = "skd://{key_id}"

    @classmethod
    def from_config(cls, keys: Mapping[Tier, ContentKey], config: DrmConfig) -> Encryption:
        if config.systems != config.protection_systems:
            log.info("FairPlay left out: it needs the cbcs scheme and this package is %s", config.scheme)
        return cls(keys=keys, scheme=config.scheme, systems=config.systems, hls_key_uri=config.hls_key_uri,
                   fairplay_key_uri=config.fairplay_key_uri)

    def summary(self, tiers: Sequence[Tier]) -> dict[str, Any]:
        """What a title record says about the encryption: no key, only key ids."""
        return {"scheme": self.scheme, "systems": list(self.systems),
                "key_ids": {t: self.keys[t].key_id_hex for t in tiers}}


def tier_of(rendition: Rendition) -> Tier:
    """The key tier of a rendition: AUDIO for audio, by its short side for video."""
    # the short side: a portrait 1080x1920 rung is HD, as its landscape turn is
    return "AUDIO" if rendition.kind == "audio" else tier_for_height(min(rendition.width, rendition.height))


def _hls_label(language: str, role: str, plain: str) -> str:
    return language if role == plain else f"{language} ({role})"


def stream_descriptor(rendition: Rendition, *, drm_label: str | None = None) -> str:
    """One packager stream descriptor: input, stream selector, CMAF output names, HLS names, roles."""
    folder = f"{rendition.kind}/{rendition.name}"
    fields = [
        f"in={rendition.path}",
        f"stream={rendition.kind}",
        f"init_segment={folder}/init.mp4",
        f"segment_template={folder}/$Number$.m4s",
        f"playlist_name={folder}.m3u8",
    ]
    if rendition.kind == "audio":
        # One HLS group per codec: a variant lists its group's codec, and a player that cannot decode
        # E-AC-3 must still find whole AAC variants. AAC stereo and 5.1 share a group; CHANNELS tells
        # them apart. DASH: a label per rendition keeps stereo and 5.1 in AdaptationSets of their own
        # (the packager would otherwise put them in one set and switch between them on bandwidth).
        group = "audio" if rendition.codec == "aac" else f"audio-{rendition.codec.replace('eac3', 'ec3')}"
        label = _hls_label(rendition.language, rendition.role, "main")
        if rendition.layout in ("5.1", "7.1"):
            label += f" {rendition.layout}"
        repeat = re.search(r"_t(\d+)$", rendition.name)
        if repeat:
            label += f" (track {repeat.group(1)})"
        fields += [f"hls_group_id={group}", f"hls_name={label}", f"dash_label={label}"]
        if rendition.language != "und":  # the packager refuses "und"; no tag means undetermined
            fields.append(f"language={rendition.language}")
        fields.append(f"roles={rendition.role}")  # explicit: --default_language would add "main" to every track
        if rendition.role == "description":
            # DASH-IF: audio description is Role "description" plus this Accessibility; HLS: CHARACTERISTICS.
            fields += ["accessibilities=urn:tva:metadata:cs:AudioPurposeCS:2007=1",
                       "hls_characteristics=public.accessibility.describes-video"]
    if drm_label is not None:
        fields.append(f"drm_label={drm_label}")    # the key of this stream's tier (a label of --keys)
    return ",".join(fields)


def text_descriptor(track: SubtitleTrack) -> str:
    """A WebVTT input as CMAF text (wvtt) for DASH and an HLS SUBTITLES rendition."""
    folder = f"text/{track.name}"
    fields = [
        f"in={track.path}", "stream=text", "input_format=webvtt",
        f"init_segment={folder}/init.mp4",
        f"segment_template={folder}/$Number$.m4s",
        f"playlist_name={folder}.m3u8",
        "hls_group_id=subtitles", f"hls_name={_hls_label(track.language, track.role, 'subtitle')}",
        f"language={track.language}",
        "skip_encryption=1",                           # text is never encrypted (and needs no key)
    ]
    if track.role == "forced":
        fields.append("forced_subtitle=1")             # DASH Role forced-subtitle, HLS FORCED=YES
    else:
        fields.append(f"roles={track.role}")
    if track.role == "caption":
        fields.append("hls_characteristics=public.accessibility.transcribes-spoken-dialog;"
                      "public.accessibility.describes-music-and-sound")
    return ",".join(fields)


def package_argv(
    renditions: Sequence[Rendition], segment_s: float, config: PackageConfig, *,
    subtitles: Sequence[SubtitleTrack] = (), encryption: Encryption | None = None,
) -> list[str]:
    """Packager argv; run with the output folder as working directory so paths stay relative.

    With ``encryption`` the argv holds the keys: run it with ``redact=key_secrets(encryption)``.
    """
    labels = {tier_of(r) for r in renditions} if encryption else set()
    argv = [
        packager_exe(),
        *(stream_descriptor(r, drm_label=tier_of(r) if encryption else None) for r in renditions),
        *(text_descriptor(t) for t in subtitles),
        "--segment_duration", f"{segment_s:g}",      # cut at the first keyframe at or after each grid point
        "--mpd_output", config.dash_manifest,
        "--hls_master_playlist_output", config.hls_master,
        "--hls_playlist_type", "VOD",
        "--generate_static_live_mpd",                # static (VOD) MPD with SegmentTemplate, not type="dynamic"
    ]
    main_audio = next((r.language for r in renditions if r.kind == "audio" and r.role == "main"
                       and r.language != "und"), None)
    if main_audio:
        argv += ["--default_language", main_audio]   # HLS DEFAULT=YES on the main audio track
        if subtitles:
            # Otherwise the subtitles in that language become DEFAULT=YES too and players show them
            # unasked. "zxx" (no linguistic content) is a tag the sidecar refuses, so it matches no track.
            argv += ["--default_text_language", "zxx"]
    if encryption is not None:
        missing = sorted(labels - set(encryption.keys))
        if missing:
            raise StageError(f"no content key for tier(s) {', '.join(missing)}")
        argv += [
            "--enable_raw_key_encryption",
            "--keys", ",".join(f"label={t}:key_id={k.key_id.hex()}:key={k.key.hex()}"
                               for t, k in encryption.keys.items() if t in labels),
            "--protection_scheme", encryption.scheme,
            "--protection_systems", ",".join(encryption.systems),
            "--clear_lead", "0",                     # else the first seconds stay in the clear
        ]
    return argv


def key_secrets(encryption: Encryption | None) -> list[str]:
    """The strings to redact from a packager run's logs and errors: each key in hex."""
    return [k.key.hex() for k in encryption.keys.values()] if encryption else []


def package(renditions: Sequence[Rendition], out_dir: Path, *, segment_s: float,
            config: PackageConfig = PackageConfig(), subtitles: Sequence[SubtitleTrack] = (),
            encryption: Encryption | None = None) -> Package:
    """Package the renditions and subtitles into ``out_dir`` (emptied first), encrypted with ``encryption``."""
    if not any(r.kind == "video" for r in renditions):
        raise StageError("nothing to package: no video rendition")
    names = [f"{r.kind}/{r.name}" for r in renditions] + [f"text/{t.name}" for t in subtitles]
    if len(set(names)) != len(names):
        raise StageError(f"two renditions share a name: {sorted(names)}")
    inputs = [r.path.resolve() for r in renditions]
    if len(set(inputs)) != len(inputs):  # the packager would give both the first one's language
        raise StageError("two renditions read the same file; each needs a file of its own")
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a re-run must not mix segments from an older package
    out_dir.mkdir(parents=True)
    # Video by ascending bitrate first: manifests list representations in this order.
    ordered = sorted(renditions, key=lambda r: (r.kind != "video", r.target_kbps, r.name))
    texts = [replace(t, path=t.path.resolve()) for t in subtitles]
    inputs_dir = out_dir.parent / f".{out_dir.name}-inputs"
    packaged = [_packager_input(_absolute(r), inputs_dir, encryption is not None) for r in ordered]
    argv = package_argv(packaged, segment_s, config, subtitles=texts, encryption=encryption)
    try:
        run(argv, cwd=out_dir, redact=key_secrets(encryption))
    finally:
        shutil.rmtree(inputs_dir, ignore_errors=True)
    hdr = [r for r in ordered if r.kind == "video" and r.range != "sdr"]
    for r in hdr:
        carry_hdr_boxes(r.path, out_dir / f"video/{r.name}/init.mp4")
    if hdr:
        check_hdr_signalling(out_dir, config, ordered)
    files = tuple(sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file()))
    for manifest in (config.dash_manifest, config.hls_master):
        if manifest not in files:
            raise StageError(f"the packager did not write {manifest} in {out_dir}")
    summary = None
    if encryption is not None:
        tiers = sorted({tier_of(r) for r in renditions}, key=list(encryption.keys).index)
        for r in ordered:
            write_hls_key_lines(out_dir, f"{r.kind}/{r.name}.m3u8", encryption.keys[tier_of(r)], encryption)
        summary = encryption.summary(tiers)
    log.info("packaged %d renditions and %d subtitle tracks into %d files in %s%s", len(renditions),
             len(subtitles), len(files), out_dir, f" ({encryption.scheme})" if encryption else " (clear)")
    return Package(root=out_dir, dash_manifest=config.dash_manifest, hls_master=config.hls_master, files=files,
                   encryption=summary)


def _packager_input(rendition: Rendition, folder: Path, encrypted: bool) -> Rendition:
    """The file the packager reads: the rendition, or for an encrypted AV1 HDR rung a copy without its
    metadata OBUs (type 5), which Packager v3.8 cannot parse when it encrypts."""
    if not (encrypted and rendition.kind == "video" and rendition.codec == "av1" and rendition.range != "sdr"):
        return rendition
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / rendition.path.name
    run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-i", str(rendition.path), "-map", "0:v:0",
         "-c", "copy", "-bsf:v", "filter_units=remove_types=5",   # OBU_METADATA: HDR10 CLL/MDCV, HDR10+
         "-movflags", "+faststart", str(out)])
    return replace(rendition, path=out)


# --- HDR10 static metadata in the init segment ---------------------------------------------------

_CONTAINERS = {"moov", "trak", "mdia", "minf", "stbl"}
_VISUAL_ENTRY_FIELDS = 78      # a VisualSampleEntry's fixed fields after its box header
_HDR_BOXES = ("mdcv", "clli")


def _boxes(data: bytes | bytearray, start: int, end: int) -> list[tuple[str, int, int]]:
    """(type, offset, size) of the boxes between ``start`` and ``end``."""
    out = []
    at = start
    while at + 8 <= end:
        size = int.from_bytes(data[at:at + 4], "big")
        kind = bytes(data[at + 4:at + 8]).decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[at + 8:at + 16], "big")
        elif size == 0:
            size = end - at
        if size < 8 or at + size > end:
            raise StageError(f"malformed MP4 box {kind!r} at {at}")
        out.append((kind, at, size))
        at += size
    return out


def _sample_entry(data: bytes | bytearray) -> tuple[list[int], int, int]:
    """The offsets of the boxes enclosing the first video sample entry, and its offset and size."""
    path: list[int] = []
    start, end = 0, len(data)
    while True:
        found = None
        for kind, at, size in _boxes(data, start, end):
            if kind in _CONTAINERS or kind == "stsd":
                found = (kind, at, size)
                break
        if found is None:
            raise StageError("no video sample entry in the MP4 file")
        kind, at, size = found
        path.append(at)
        if kind == "stsd":
            entries = _boxes(data, at + 16, at + size)       # header, version/flags, entry_count
            if not entries:
                raise StageError("an empty sample description")
            return path, entries[0][1], entries[0][2]
        start, end = at + 8, at + size


def hdr_boxes(path: Path) -> bytes:
    """The raw ``mdcv`` and ``clli`` boxes of a file's video sample entry (b"" without them)."""
    data = path.read_bytes()
    _, entry, size = _sample_entry(data)
    return b"".join(bytes(data[at:at + n]) for kind, at, n in
                    _boxes(data, entry + 8 + _VISUAL_ENTRY_FIELDS, entry + size) if kind in _HDR_BOXES)


def carry_hdr_boxes(source: Path, init: Path) -> bool:
    """Put the source's ``mdcv``/``clli`` boxes into the init segment's sample entry if it lacks them.

    The init segment has no sample data, so growing the boxes on the way down (moov ... stsd, the
    entry) is all it takes; offsets in moof/mdat live in the media segments. Returns whether it wrote.
    """
    extra = hdr_boxes(source)
    if not extra:
        return False
    data = bytearray(init.read_bytes())
    parents, entry, size = _sample_entry(data)
    present = {kind for kind, _, _ in _boxes(data, entry + 8 + _VISUAL_ENTRY_FIELDS, entry + size)}
    if present & set(_HDR_BOXES):
        return False
    for at in [*parents, entry]:
        if int.from_bytes(data[at:at + 4], "big") == 1:
            raise StageError(f"{init}: 64-bit box sizes are not handled")
        data[at:at + 4] = (int.from_bytes(data[at:at + 4], "big") + len(extra)).to_bytes(4, "big")
    data[entry + size:entry + size] = extra
    init.write_bytes(bytes(data))
    return True


_CICP = "urn:mpeg:mpegB:cicp:"


def check_hdr_signalling(out_dir: Path, config: PackageConfig, renditions: Sequence[Rendition]) -> None:
    """The manifests say which rungs are HDR, or StageError (a player would show PQ as SDR)."""
    lines = (out_dir / config.hls_master).read_text().splitlines()
    variants = {uri: line for line, uri in itertools.pairwise(lines) if line.startswith("#EXT-X-STREAM-INF")}
    for r in renditions:
        if r.kind != "video":
            continue
        want = {"sdr": "SDR", "pq": "PQ", "hlg": "HLG"}[r.range]
        if f"VIDEO-RANGE={want}" not in variants.get(f"video/{r.name}.m3u8", ""):
            raise StageError(f"the HLS variant of {r.name} does not say VIDEO-RANGE={want}")
    mpd = (out_dir / config.dash_manifest).read_text()
    for transfer in {{"pq": "16", "hlg": "18"}.get(r.range, "") for r in renditions if r.kind == "video"} - {""}:
        if f'{_CICP}TransferCharacteristics" value="{transfer}"' not in mpd:
            raise StageError(f"the DASH manifest has no CICP TransferCharacteristics {transfer} for its HDR rungs")


_KEY_LINE = "#EXT-X-KEY:"
_URI = re.compile(r'URI="[^"]*"')


def key_uri(template: str, key: ContentKey, playlist: str) -> str:
    """A key URI from its template; a relative one (to the package root) is made relative to ``playlist``."""
    uri = template.format(key_id=key.key_id_hex)
    if "://" in uri or uri.startswith("/"):
        return uri
    return "../" * playlist.count("/") + uri


def write_hls_key_lines(root: Path, relative: str, key: ContentKey, encryption: Encryption) -> None:
    """Point the identity and FairPlay key lines of the media playlist ``root/relative`` at this key's URIs.

    The packager writes no identity line for cenc ("handled by a specific DRM system"), but
    Shaka Player plays HLS with ClearKey only from an identity line, so one is added there.
    """
    playlist = root / relative
    identity = key_uri(encryption.hls_key_uri, key, relative)
    fairplay = key_uri(encryption.fairplay_key_uri, key, relative)
    lines = playlist.read_text().splitlines()
    out: list[str] = []
    has_identity = False
    for line in lines:
        if line.startswith(_KEY_LINE) and 'KEYFORMAT="identity"' in line:
            line = _URI.sub(f'URI="{identity}"', line)
            has_identity = True
        elif line.startswith(_KEY_LINE) and 'KEYFORMAT="com.apple.streamingkeydelivery"' in line:
            line = _URI.sub(f'URI="{fairplay}"', line)
        out.append(line)
    if not has_identity and "CommonSystem" in encryption.systems:
        method = "SAMPLE-AES-CTR" if encryption.scheme == "cenc" else "SAMPLE-AES"
        added = f'{_KEY_LINE}METHOD={method},URI="{identity}",KEYFORMAT="identity",KEYFORMATVERSIONS="1"'
        at = next((i for i, ln in enumerate(out) if ln.startswith(_KEY_LINE)), None)
        if at is None:
            at = next(i for i, ln in enumerate(out) if ln.startswith("#EXT-X-MAP")) + 1
        out.insert(at, added)
    playlist.write_text("\n".join(out) + "\n")


def _absolute(rendition: Rendition) -> Rendition:
    return replace(rendition, path=rendition.path.resolve())
