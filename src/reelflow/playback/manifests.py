"""Device-filtered manifests: the packaged DASH MPD (mpegdash) and HLS playlists (m3u8), cut to a device.

What a device gets:

- only representations/variants whose codecs it declared (by family: ``avc1.64001f`` is ``avc1``);
- of a title with several video ladders (codec x range: HEVC HDR, AV1 SDR, H.264 SDR ...), only the
  best one left after these filters (``best_ladder``): HDR before SDR on a device that shows HDR,
  then the codec that needs the fewest bits for the same picture (AV1, HEVC, VP9, H.264). A player
  never switches codec or range mid-stream, and giving it one ladder keeps its ABR on the rungs of
  one hull;
- video no taller than its cap (the device's own, lowered to ``software_drm_max_height`` for
  software DRM on encrypted titles), and no HDR unless it said it has HDR;
- audio only in codecs it declared (``mp4a``, ``ec-3``) and with no more channels than its
  ``audio_channels`` (DASH AudioChannelConfiguration, HLS CHANNELS), but never all of a language's
  audio: its narrowest rendition stays (the stage makes a stereo one for every language);
- on cellular, video rungs above ``cellular_max_kbps`` are left out, but never all of them: the
  lowest rung stays if none is under the cap (playing something beats refusing);
- an encrypted package has one AdaptationSet per key tier; a set left with no representation is
  dropped, and adaptation-set-switching descriptors lose the ids of dropped sets, so the MPD stays valid.

Where URLs point:

- DASH: one ``<BaseURL serviceLocation="edge">`` per ranked CDN base (origin last) on the MPD,
  ``<base>/titles/<id>/<version>/``; the MPD's relative segment templates resolve against the
  first, and players that fail over (Shaka) try the next ones;
- HLS: variant and rendition URIs go to the service's own ``/api/titles/<id>/hls/<path>?token=``
  (media playlists are filtered and rewritten too); segment and init URIs become absolute URLs on
  the first-ranked CDN; key URIs of the form ``keys/<kid hex>`` (the packager's HLS ClearKey
  identity keys, relative to the playlist) become ``<service>/api/keys/<kid>?token=``, so key
  delivery works from any CDN and carries the token; other key lines (data: URIs with a PSSH) stay.

The filters work on copies of the parsed packages and their results are cached, keyed by the
title's package folder, the limits and the CDN bases. HLS results are cached with a placeholder
for the token, which is put in per request.
"""

from __future__ import annotations

import copy
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

import m3u8
import mpegdash.parser
from mpegdash.nodes import AdaptationSet, BaseURL, Descriptor, Representation

from reelflow.errors import NotFound, Unplayable
from reelflow.playback.catalog import Title

TOKEN_PLACEHOLDER = "__REELFLOW_TOKEN__"
KEY_URI = re.compile(r"(?:^|/)keys/([0-9a-fA-F]{32})$")
_ALIASES = {"hev1": "hvc1", "avc3": "avc1", "dvhe": "dvh1", "av1": "av01", "vp9": "vp09", "aac": "mp4a",
            "ac3": "ac-3", "eac3": "ec-3"}
_HDR_TRANSFER = {"16", "18"}  # CICP transfer characteristics: PQ, HLG
_SWITCHING = "urn:mpeg:dash:adaptation-set-switching:2016"
_TRANSFER = "urn:mpeg:mpegB:cicp:TransferCharacteristics"


# Codec families, most efficient first (bits for the same VMAF: AV1 about 30% and HEVC about 25%
# under H.264 in the field's reports; VP9 between HEVC and H.264).
_EFFICIENCY = ("av01", "hvc1", "vp09", "avc1")
_AUDIO_FAMILIES = {"mp4a", "ac-3", "ec-3", "opus", "flac", "alac"}
Ladder = tuple[str, bool]   # (video codec family, HDR)


def video_family(codecs: str | None) -> str:
    """The video codec family of a CODECS string (audio codecs of a muxed variant skipped)."""
    families = [codec_family(c) for c in (codecs or "").split(",") if c.strip()]
    return next((f for f in families if f not in _AUDIO_FAMILIES), families[0] if families else "")


def best_ladder(ladders: set[Ladder], limits: Limits) -> Ladder:
    """The ladder a device gets among those it can play: HDR first if it shows HDR, then efficiency."""
    def rank(ladder: Ladder) -> tuple[bool, int]:
        family, hdr = ladder
        order = _EFFICIENCY.index(family) if family in _EFFICIENCY else len(_EFFICIENCY)
        return (not (hdr and limits.hdr), order)

    return min(ladders, key=rank)


def codec_family(codec: str) -> str:
    """``avc1.64001f`` -> ``avc1``; aliases folded (``hev1`` -> ``hvc1``)."""
    family = codec.strip().split(".", 1)[0].lower()
    return _ALIASES.get(family, family)


@dataclass(frozen=True)
class Limits:
    """What one device may get; a value type, so it keys the caches."""

    codecs: frozenset[str]        # codec families
    max_height: int
    max_kbps: int = 0             # 0: no cap
    hdr: bool = False
    audio_channels: int = 0       # 0: no cap

    def codec_ok(self, codecs: str | None) -> bool:
        if not codecs:
            return True
        return all(codec_family(c) in self.codecs for c in codecs.split(",") if c.strip())


# --- DASH --------------------------------------------------------------------------------------

def _kind(aset: AdaptationSet, rep: Representation) -> str:
    if aset.content_type:
        return str(aset.content_type)
    mime = rep.mime_type or aset.mime_type or ""
    return str(mime).split("/", 1)[0] or "other"


def _descriptors(node: Any, name: str) -> list[Descriptor]:
    return list(getattr(node, name, None) or [])


def _is_hdr(aset: AdaptationSet, rep: Representation) -> bool:
    for node in (aset, rep):
        for prop in _descriptors(node, "supplemental_properties") + _descriptors(node, "essential_properties"):
            if prop.scheme_id_uri == _TRANSFER and str(prop.value) in _HDR_TRANSFER:
                return True
    return False


def _lines(width: int | str | None, height: int | str | None) -> int:
    """The lines a cap on "height" limits: a portrait rung's short side, as for the ladder (1080x1920 is 1080p)."""
    w, h = int(width or 0), int(height or 0)
    return min(w, h) if w and h else h


def _video_ok(aset: AdaptationSet, rep: Representation, limits: Limits) -> bool:
    height = _lines(rep.width or aset.width, rep.height or aset.height)
    return (limits.codec_ok(rep.codecs or aset.codecs) and height <= limits.max_height
            and (limits.hdr or not _is_hdr(aset, rep)))


# CICP ChannelConfiguration (ISO/IEC 23091-3) index -> channels; the packager writes it for E-AC-3.
_CICP_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 9: 3, 10: 4, 11: 7, 12: 8, 13: 24, 14: 8}
_CHANNELS_23003 = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
_CHANNELS_CICP = "urn:mpeg:mpegB:cicp:ChannelConfiguration"


def audio_channels(aset: AdaptationSet, rep: Representation) -> int:
    """Channels of an audio representation from its AudioChannelConfiguration (0: not said)."""
    for node in (rep, aset):
        for config in getattr(node, "audio_channel_configurations", None) or []:
            try:
                value = int(str(config.value))
            except (TypeError, ValueError):
                continue                      # e.g. Dolby's hex channel mask: not counted
            if config.scheme_id_uri == _CHANNELS_23003:
                return value
            if config.scheme_id_uri == _CHANNELS_CICP:
                return _CICP_CHANNELS.get(value, 0)
    return 0


def _cap_audio(found: list[tuple[AdaptationSet, Representation, int]], cap: int) -> None:
    """Remove audio wider than ``cap`` channels, keeping each language's narrowest if none fits."""
    by_language: dict[str, list[tuple[AdaptationSet, Representation, int]]] = {}
    for item in found:
        by_language.setdefault(str(item[0].lang or ""), []).append(item)
    for items in by_language.values():
        over = [i for i in items if i[2] > cap]
        if len(over) == len(items):
            over.remove(min(items, key=lambda i: i[2]))
        for aset, rep, _ in over:
            aset.representations.remove(rep)


def filter_dash(title: Title, limits: Limits, bases: Sequence[tuple[str, str]]) -> str:
    """The title's MPD for this device; ``bases`` are ranked (name, CDN base URL) pairs."""
    mpd = copy.deepcopy(title.mpd)
    package = f"titles/{title.title_id}/{title.version}/"
    mpd.base_urls = []
    for name, url in bases:
        base = BaseURL()
        base.base_url_value = f"{url.rstrip('/')}/{package}"
        base.service_location = name
        mpd.base_urls.append(base)

    # Pass 1: what the device can decode and may show.
    videos: list[tuple[AdaptationSet, Representation]] = []
    audios: list[tuple[AdaptationSet, Representation, int]] = []
    for period in mpd.periods or []:
        for aset in period.adaptation_sets or []:
            kept = []
            for rep in aset.representations or []:
                kind = _kind(aset, rep)
                if kind == "video":
                    if _video_ok(aset, rep, limits):
                        kept.append(rep)
                        videos.append((aset, rep))
                elif kind == "audio":
                    if limits.codec_ok(rep.codecs or aset.codecs):
                        kept.append(rep)
                        audios.append((aset, rep, audio_channels(aset, rep)))
                else:
                    kept.append(rep)  # text and the like: nothing to decode in hardware
            aset.representations = kept
    if not videos:
        raise Unplayable(f"no video rendition of {title.title_id} fits this device (codecs "
                         f"{', '.join(sorted(limits.codecs))}, up to {limits.max_height} lines)")
    # Pass 1b: one ladder (codec, range) of the ones left.
    ladder_of = {id(rep): (video_family(rep.codecs or aset.codecs), _is_hdr(aset, rep)) for aset, rep in videos}
    best = best_ladder(set(ladder_of.values()), limits)
    for aset, rep in [(a, r) for a, r in videos if ladder_of[id(r)] != best]:
        aset.representations.remove(rep)
    videos = [(a, r) for a, r in videos if ladder_of[id(r)] == best]
    # Pass 2: the bitrate cap, which never removes the last rung.
    if limits.max_kbps:
        over = [(a, r) for a, r in videos if int(r.bandwidth) > limits.max_kbps * 1000]
        if len(over) == len(videos):
            over.remove(min(videos, key=lambda ar: int(ar[1].bandwidth)))
        for aset, rep in over:
            aset.representations.remove(rep)
    if limits.audio_channels:
        _cap_audio(audios, limits.audio_channels)
    # Pass 3: drop emptied adaptation sets and references to them.
    for period in mpd.periods or []:
        period.adaptation_sets = [a for a in period.adaptation_sets or [] if a.representations]
        _fit_sets(period.adaptation_sets)
    return str(mpegdash.parser.MPEGDASHParser.toprettyxml(mpd))


def _fit_sets(sets: list[AdaptationSet]) -> None:
    ids = {str(a.id) for a in sets if a.id is not None}
    for aset in sets:
        props = []
        for prop in aset.supplemental_properties or []:
            if prop.scheme_id_uri == _SWITCHING:
                others = [v for v in str(prop.value or "").split(",") if v.strip() in ids]
                if not others:
                    continue
                prop.value = ",".join(others)
            props.append(prop)
        aset.supplemental_properties = props or None
        heights = [int(r.height) for r in aset.representations if r.height]
        widths = [int(r.width) for r in aset.representations if r.width]
        bandwidths = [int(r.bandwidth) for r in aset.representations if r.bandwidth]
        if aset.max_height is not None and heights:
            aset.max_height = max(heights)
        if aset.max_width is not None and widths:
            aset.max_width = max(widths)
        if aset.max_bandwidth is not None and bandwidths:
            aset.max_bandwidth = max(bandwidths)


# --- HLS ---------------------------------------------------------------------------------------

def _variant_ok(playlist: Any, limits: Limits) -> bool:
    info = playlist.stream_info
    height = _lines(*info.resolution) if info.resolution else 0
    hdr = str(info.video_range or "SDR").upper() in ("PQ", "HLG")
    return limits.codec_ok(info.codecs) and height <= limits.max_height and (limits.hdr or not hdr)


def _variant_ladder(playlist: Any) -> Ladder:
    info = playlist.stream_info
    return video_family(info.codecs), str(info.video_range or "SDR").upper() in ("PQ", "HLG")


def _variant_kbps(playlist: Any) -> float:
    info = playlist.stream_info
    return float(info.average_bandwidth or info.bandwidth or 0) / 1000


def key_url(service_url: str, kid_hex: str) -> str:
    return f"{service_url}/api/keys/{kid_hex.lower()}?token={TOKEN_PLACEHOLDER}"


def hls_playlist_url(service_url: str, title_id: str, path: str) -> str:
    return f"{service_url}/api/titles/{title_id}/hls/{quote(path)}?token={TOKEN_PLACEHOLDER}"


def _rewrite_keys(keys: Sequence[Any], service_url: str) -> None:
    for key in keys:
        if key is not None and key.uri:
            match = KEY_URI.search(str(key.uri))
            if match:
                key.uri = key_url(service_url, match.group(1))


def _select_hls(title: Title, master: m3u8.M3U8, limits: Limits) -> tuple[list[Any], list[Any], list[Any]]:
    """The variants, I-frame playlists and renditions of ``master`` this device gets."""
    variants = [p for p in master.playlists if _variant_ok(p, limits)]
    if not variants:
        raise Unplayable(f"no HLS variant of {title.title_id} fits this device (codecs "
                         f"{', '.join(sorted(limits.codecs))}, up to {limits.max_height} lines)")
    best = best_ladder({_variant_ladder(p) for p in variants}, limits)
    variants = [p for p in variants if _variant_ladder(p) == best]
    if limits.max_kbps:
        under = [p for p in variants if _variant_kbps(p) <= limits.max_kbps]
        variants = under or [min(variants, key=_variant_kbps)]
    heights = {p.stream_info.resolution[1] for p in variants if p.stream_info.resolution}
    iframes = [p for p in master.iframe_playlists
               if not p.iframe_stream_info.resolution or p.iframe_stream_info.resolution[1] in heights]
    groups = {g for p in variants for g in (p.stream_info.audio, p.stream_info.subtitles, p.stream_info.video) if g}
    media = [m for m in master.media if m.group_id in groups]
    if limits.audio_channels:
        media = _cap_hls_audio(media, limits.audio_channels)
    return variants, iframes, media


def chosen_ladder(title: Title, limits: Limits) -> dict[str, Any]:
    """The ladder this device gets (from the HLS master, which names each variant's range)."""
    variants, _, _ = _select_hls(title, title.hls_master, limits)
    family, _ = _variant_ladder(variants[0])
    return {"codec": family, "range": str(variants[0].stream_info.video_range or "SDR").upper(),
            "renditions": len(variants)}


def _hls_channels(media: Any) -> int:
    try:
        return int(str(media.channels or "0").split("/")[0])
    except ValueError:
        return 0


def _cap_hls_audio(media: list[Any], cap: int) -> list[Any]:
    """Audio renditions no wider than ``cap``; per group and language the narrowest stays if none fits."""
    keep = [m for m in media if m.type != "AUDIO" or _hls_channels(m) <= cap]
    for m in media:
        if m.type != "AUDIO" or m in keep:
            continue
        same = [o for o in media if o.type == "AUDIO" and o.group_id == m.group_id and o.language == m.language]
        if not any(o in keep for o in same) and m is min(same, key=_hls_channels):
            keep.append(m)
    return [m for m in media if m in keep]


def filter_hls_master(title: Title, limits: Limits, service_url: str) -> str:
    """The master playlist for this device, with the token left as TOKEN_PLACEHOLDER."""
    master = copy.deepcopy(title.hls_master)
    base = title.hls_name.rpartition("/")[0]
    variants, iframes, media = _select_hls(title, master, limits)
    master.playlists[:] = variants
    master.iframe_playlists[:] = iframes
    master.media[:] = media
    for item in [*variants, *iframes, *media]:
        if item.uri:
            item.uri = hls_playlist_url(service_url, title.title_id, _join(base, item.uri))
    _rewrite_keys(master.session_keys, service_url)
    return str(master.dumps())


def allowed_media_playlists(title: Title, limits: Limits) -> frozenset[str]:
    """Paths (in the package) of the media playlists this device's master lists."""
    base = title.hls_name.rpartition("/")[0]
    try:
        variants, iframes, media = _select_hls(title, title.hls_master, limits)
    except Unplayable:
        return frozenset()
    return frozenset(_join(base, item.uri) for item in [*variants, *iframes, *media] if item.uri)


def _join(base: str, uri: str) -> str:
    return f"{base}/{uri}" if base else uri


_URI_ATTR = re.compile(r'URI="([^"]*)"')


def rewrite_hls_media(title: Title, path: str, cdn_base: str, service_url: str) -> str:
    """A media playlist with absolute segment URLs on ``cdn_base`` and key URIs on the service.

    Rewritten line by line, not through m3u8: a packaged playlist has one EXT-X-KEY line per DRM
    system before the first segment, and m3u8 keeps only the last of them per segment, which
    lost the identity line (Shaka Player's ClearKey HLS path) and FairPlay's.
    """
    text = title.media_texts.get(path)
    if text is None:
        raise NotFound(f"{title.title_id} has no playlist {path!r}")
    folder = path.rpartition("/")[0]
    base = f"{cdn_base.rstrip('/')}/titles/{title.title_id}/{title.version}/" + (f"{folder}/" if folder else "")

    def key_uri(match: re.Match[str]) -> str:
        kid = KEY_URI.search(match.group(1))
        return f'URI="{key_url(service_url, kid.group(1))}"' if kid else match.group(0)

    out = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-KEY:"):
            line = _URI_ATTR.sub(key_uri, line)
        elif line.startswith("#EXT-X-MAP:"):
            line = _URI_ATTR.sub(lambda m: f'URI="{urljoin(base, m.group(1))}"', line)
        elif line and not line.startswith("#"):
            line = urljoin(base, line.strip())
        out.append(line)
    return "\n".join(out) + "\n"


# --- caching ------------------------------------------------------------------------------------

class ManifestCache:
    """A small LRU of filtered manifests (thread-safe)."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()  # outside the lock: two threads may both make it, both get the same text
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value
