"""DASH MPDs and HLS playlists as a ladder of tracks with per-segment URLs, durations and key ids.

Pure parsing: the HTTP session fetches the text (and, for HLS, the media playlists through the
``fetch`` callback). What is read, as Shaka Packager writes it:

- DASH: MPD-level ``BaseURL``s (the service puts one per ranked CDN there, origin last);
  ``SegmentTemplate`` with a ``SegmentTimeline`` (``$Number$`` or ``$Time$``) or with a fixed
  ``@duration``; ``SegmentBase`` (one file per track, segments from its ``sidx`` box, see
  ``with_sidx``); ``cenc:default_KID`` and the ``mp4protection`` scheme (cenc / cbcs).
- HLS: the master's variants (bandwidth, resolution, codecs) and its audio rendition; per media
  playlist ``EXT-X-MAP``, ``EXTINF`` durations, ``BYTERANGE``s, and the key line: an ``identity``
  key URI (what the service rewrites to its key delivery) and the key id from ``KEYID`` or the URI.
"""

from __future__ import annotations

import math
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urljoin, urlsplit

from reelflow.errors import PlayerError

__all__ = ["Presentation", "Segment", "Track", "display_url", "parse_dash", "parse_hls", "parse_sidx", "with_sidx"]

_NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011", "cenc": "urn:mpeg:cenc:2013"}
_KID_ATTR = "{urn:mpeg:cenc:2013}default_KID"
_MP4_PROTECTION = "urn:mpeg:dash:mp4protection:2011"


@dataclass(frozen=True)
class Segment:
    """One media segment: where it is (relative to the track's base) and which media time it covers."""

    number: int
    start_s: float
    duration_s: float
    path: str
    byte_range: tuple[int, int] | None = None      # inclusive, as in an HTTP Range header

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class Track:
    """One rung (video) or audio track: its init segment, its segments and its content key id."""

    kind: str                                       # "video" or "audio"
    id: str
    bandwidth_bps: int
    codecs: str
    init_path: str
    segments: tuple[Segment, ...]
    width: int | None = None
    height: int | None = None
    kid: bytes | None = None
    key_url: str | None = None                      # HLS identity key delivery URI, absolute
    base: str = ""                                  # what paths resolve against (HLS: the media playlist)
    init_range: tuple[int, int] | None = None
    index_range: tuple[int, int] | None = None      # SegmentBase: the sidx box, until ``with_sidx``
    language: str | None = None                     # audio: DASH lang / HLS LANGUAGE
    channels: int = 0                               # audio: AudioChannelConfiguration / CHANNELS; 0 unknown

    @property
    def kbps(self) -> float:
        return self.bandwidth_bps / 1000

    @property
    def label(self) -> str:
        return f"{self.height}p" if self.kind == "video" and self.height else self.id


@dataclass(frozen=True)
class Presentation:
    """What a manifest offers: video rungs by ascending bandwidth, audio tracks, the CDN bases."""

    format: str                                     # "dash" or "hls"
    url: str
    duration_s: float
    video: tuple[Track, ...]
    audio: tuple[Track, ...]
    bases: tuple[str, ...]                          # DASH: ranked BaseURLs (absolute); HLS: ("",)
    scheme: str | None = None                       # cenc, cbcs, ... or None when clear

    def segment_url(self, track: Track, path: str, base_index: int = 0) -> str:
        base = track.base or self.bases[min(base_index, len(self.bases) - 1)]
        return urljoin(base, path)

    @property
    def encrypted(self) -> bool:
        return any(t.kid is not None or t.key_url for t in (*self.video, *self.audio))


def _seconds(duration: str | None) -> float:
    """ISO 8601 duration as MPDs use it (PT1H2M3.5S, P1DT...)."""
    if not duration:
        return 0.0
    m = re.fullmatch(r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?",
                     duration.strip())
    if not m:
        raise PlayerError(f"the MPD has a duration that is not ISO 8601: {duration!r}")
    d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def _kid(text: str | None) -> bytes | None:
    if not text:
        return None
    raw = text.replace("-", "").strip().lower().removeprefix("0x")
    try:
        kid = bytes.fromhex(raw)
    except ValueError:
        raise PlayerError(f"key id {text!r} in the manifest is not hex") from None
    if len(kid) != 16:
        raise PlayerError(f"key id {text!r} in the manifest is not 16 bytes")
    return kid


def _range(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    first, _, last = text.partition("-")
    return int(first), int(last)


def _fill(template: str, rep_id: str, bandwidth: int, number: int | None = None, time: int | None = None) -> str:
    """Substitute $RepresentationID$, $Bandwidth$, $Number$ and $Time$ (with %0Nd widths)."""
    values = {"RepresentationID": rep_id, "Bandwidth": bandwidth, "Number": number, "Time": time}

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        value = values.get(m.group(1))
        if value is None:
            raise PlayerError(f"segment template {template!r} uses ${m.group(1)}$, which this player cannot fill")
        return (m.group(2) or "%d") % value if isinstance(value, int) else str(value)

    return re.sub(r"\$\$|\$(\w+)(%0\d+d)?\$", sub, template)


def _inherited(nodes: list[ET.Element], tag: str) -> ET.Element | None:
    """The innermost of Representation / AdaptationSet / Period that has ``tag``."""
    for node in nodes:
        found = node.find(f"mpd:{tag}", _NS)
        if found is not None:
            return found
    return None


def _template_segments(tpl: ET.Element, rep_id: str, bandwidth: int, period_s: float) -> tuple[str, list[Segment]]:
    timescale = int(tpl.get("timescale", "1"))
    start_number = int(tpl.get("startNumber", "1"))
    media = tpl.get("media")
    if not media:
        raise PlayerError("a SegmentTemplate has no media attribute")
    init = _fill(tpl.get("initialization", ""), rep_id, bandwidth)
    offset = int(tpl.get("presentationTimeOffset", "0"))
    segments: list[Segment] = []
    timeline = tpl.find("mpd:SegmentTimeline", _NS)
    if timeline is not None:
        number, t = start_number, 0
        for s in timeline.findall("mpd:S", _NS):
            t = int(s.get("t", t))
            d = int(s.get("d", "0"))
            repeat = int(s.get("r", "0"))
            if repeat < 0:
                raise PlayerError("open-ended SegmentTimeline repeats (r=-1) are for live streams, not played here")
            for _ in range(repeat + 1):
                segments.append(Segment(number, (t - offset) / timescale, d / timescale,
                                        _fill(media, rep_id, bandwidth, number, t)))
                number, t = number + 1, t + d
    else:
        duration = int(tpl.get("duration", "0"))
        if not duration or not period_s:
            raise PlayerError("a SegmentTemplate has neither a SegmentTimeline nor a duration to count segments by")
        seg_s = duration / timescale
        for i in range(math.ceil(period_s / seg_s - 1e-9)):
            segments.append(Segment(start_number + i, i * seg_s, min(seg_s, period_s - i * seg_s),
                                    _fill(media, rep_id, bandwidth, start_number + i, i * duration)))
    return init, segments


def parse_dash(text: str, url: str) -> Presentation:
    """The first Period of a static MPD, with BaseURLs resolved against ``url``."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise PlayerError(f"{display_url(url)} is not an MPD: {exc}") from exc
    if root.tag != f"{{{_NS['mpd']}}}MPD":
        raise PlayerError(f"{display_url(url)} is not a DASH MPD (root element {root.tag})")
    if root.get("type", "static") != "static":
        raise PlayerError(f"{display_url(url)} is a live (dynamic) MPD; this player plays VOD")
    period = root.find("mpd:Period", _NS)
    if period is None:
        raise PlayerError(f"{display_url(url)} has no Period")
    duration_s = _seconds(root.get("mediaPresentationDuration")) or _seconds(period.get("duration"))
    bases = tuple(urljoin(url, (b.text or "").strip()) for b in root.findall("mpd:BaseURL", _NS)) or (url,)
    video: list[Track] = []
    audio: list[Track] = []
    scheme: str | None = None
    for aset in period.findall("mpd:AdaptationSet", _NS):
        kid = None
        for cp in aset.findall("mpd:ContentProtection", _NS):
            if cp.get("schemeIdUri", "").lower() == _MP4_PROTECTION:
                scheme = cp.get("value") or scheme
                kid = _kid(cp.get(_KID_ATTR)) or kid
        for rep in aset.findall("mpd:Representation", _NS):
            track = _dash_track(aset, rep, period, duration_s, kid)
            (audio if track.kind == "audio" else video).append(track)
    if not video:
        raise PlayerError(f"{display_url(url)} has no video representation")
    video.sort(key=lambda t: t.bandwidth_bps)
    return Presentation("dash", url, duration_s, tuple(video), tuple(audio), bases, scheme)


# CICP ChannelConfiguration index -> channels (the packager writes it for E-AC-3)
_CICP_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 9: 3, 10: 4, 11: 7, 12: 8, 14: 8}


def _dash_channels(rep: ET.Element, aset: ET.Element) -> int:
    for node in (rep, aset):
        for config in node.findall("mpd:AudioChannelConfiguration", _NS):
            scheme, value = config.get("schemeIdUri", ""), config.get("value", "")
            if not value.isdigit():
                continue
            if scheme.endswith("23003:3:audio_channel_configuration:2011"):
                return int(value)
            if scheme == "urn:mpeg:mpegB:cicp:ChannelConfiguration":
                return _CICP_CHANNELS.get(int(value), 0)
    return 0


def _same_language(tag: str, wanted: str) -> bool:
    """``fr`` matches ``fr`` and ``fr-CA``; case does not matter."""
    tag, wanted = tag.lower(), wanted.lower()
    return tag == wanted or tag.split("-")[0] == wanted


def select_audio(p: Presentation, language: str | None = None, channels: int | None = None) -> Presentation:
    """The presentation with one audio track: of ``language`` (any when None), the widest with at most
    ``channels`` channels (the narrowest when none is that narrow); PlayerError if no track has the language."""
    if not p.audio:
        if language:
            raise PlayerError(f"{display_url(p.url)} has no audio track, so none in {language!r}")
        return p
    pool = list(p.audio)
    if language:
        pool = [t for t in pool if t.language and _same_language(t.language, language)]
        if not pool:
            offered = sorted({t.language or "und" for t in p.audio})
            raise PlayerError(f"no audio track in {language!r}: this title offers {', '.join(offered)}")
    if channels:
        fit = [t for t in pool if t.channels <= channels]
        pool = fit or [min(pool, key=lambda t: t.channels)]
    chosen = max(pool, key=lambda t: t.channels)  # the first of the widest: manifest order breaks ties
    return replace(p, audio=(chosen,))


def _dash_track(aset: ET.Element, rep: ET.Element, period: ET.Element, period_s: float, kid: bytes | None) -> Track:
    def attr(name: str) -> str | None:
        return rep.get(name) or aset.get(name)

    mime = attr("mimeType") or ""
    kind = aset.get("contentType") or mime.split("/")[0]
    rep_id = rep.get("id", "")
    bandwidth = int(rep.get("bandwidth", "0"))
    for cp in rep.findall("mpd:ContentProtection", _NS):
        kid = _kid(cp.get(_KID_ATTR)) or kid
    chain = [rep, aset, period]
    rep_base = rep.find("mpd:BaseURL", _NS)
    tpl = _inherited(chain, "SegmentTemplate")
    common = {"kind": kind, "id": rep_id, "bandwidth_bps": bandwidth, "codecs": attr("codecs") or "",
              "width": int(w) if (w := attr("width")) else None, "height": int(h) if (h := attr("height")) else None,
              "kid": kid, "language": aset.get("lang"), "channels": _dash_channels(rep, aset)}
    if tpl is not None:
        init, segments = _template_segments(tpl, rep_id, bandwidth, period_s)
        return Track(init_path=init, segments=tuple(segments), **common)  # type: ignore[arg-type]
    base = _inherited(chain, "SegmentBase")
    if base is not None and rep_base is not None and rep_base.text:
        init_node = base.find("mpd:Initialization", _NS)
        index_range = _range(base.get("indexRange"))
        if index_range is None:
            raise PlayerError(f"representation {rep_id}: SegmentBase without an indexRange")
        init_range = _range(init_node.get("range")) if init_node is not None else (0, index_range[0] - 1)
        return Track(init_path=rep_base.text.strip(), segments=(), init_range=init_range, index_range=index_range,
                     **common)  # type: ignore[arg-type]
    raise PlayerError(f"representation {rep_id} has neither a SegmentTemplate nor a SegmentBase with a BaseURL")


def parse_sidx(data: bytes, index_range: tuple[int, int]) -> list[tuple[int, int, float]]:
    """(first byte, last byte, seconds) of each subsegment that a ``sidx`` box at ``index_range`` lists."""
    pos = 0
    while pos + 8 <= len(data):
        size, box = struct.unpack_from(">I4s", data, pos)
        if box == b"sidx":
            break
        if size < 8:
            raise PlayerError("the segment index is not an ISO BMFF box sequence")
        pos += size
    else:
        raise PlayerError("no sidx box where the MPD's indexRange points")
    version = data[pos + 8]
    timescale = struct.unpack_from(">I", data, pos + 16)[0]
    if version == 0:
        first_offset = struct.unpack_from(">I", data, pos + 24)[0]
        at = pos + 28
    else:
        first_offset = struct.unpack_from(">Q", data, pos + 28)[0]
        at = pos + 36
    count = struct.unpack_from(">H", data, at + 2)[0]
    at += 4
    offset = index_range[0] + pos + size + first_offset
    out = []
    for i in range(count):
        ref, duration = struct.unpack_from(">II", data, at + 12 * i)
        if ref >> 31:
            raise PlayerError("hierarchical sidx (references to other sidx boxes) is not supported")
        length = ref & 0x7FFFFFFF
        out.append((offset, offset + length - 1, duration / timescale))
        offset += length
    return out


def with_sidx(track: Track, index: bytes) -> Track:
    """A SegmentBase track with its segments, from the bytes of its ``indexRange``."""
    if track.index_range is None:
        return track
    segments, start = [], 0.0
    for number, (first, last, seconds) in enumerate(parse_sidx(index, track.index_range), start=1):
        segments.append(Segment(number, start, seconds, track.init_path, (first, last)))
        start += seconds
    return replace(track, segments=tuple(segments), index_range=None)


def display_url(url: str) -> str:
    """A URL without its query (the play token) for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else url


def parse_hls(text: str, url: str, fetch: Callable[[str], str]) -> Presentation:
    """A master playlist and the media playlists it names (fetched with ``fetch(absolute_url)``)."""
    import m3u8

    if not text.lstrip().startswith("#EXTM3U"):
        raise PlayerError(f"{display_url(url)} is not an HLS playlist")
    master = m3u8.loads(text, uri=url)
    if not master.is_variant:
        track = _hls_track("video", "0", 0, "", None, None, url, text)
        return Presentation("hls", url, _hls_duration(track), (track,), (), ("",), _hls_scheme(text))
    video, audio, scheme = [], [], None
    for i, playlist in enumerate(master.playlists):
        info = playlist.stream_info
        resolution = info.resolution or (None, None)
        media_url = urljoin(url, playlist.uri)
        media_text = fetch(media_url)
        scheme = scheme or _hls_scheme(media_text)
        video.append(_hls_track("video", str(i), int(info.bandwidth or 0), info.codecs or "", resolution[0],
                                resolution[1], media_url, media_text))
    seen: set[str] = set()
    for media in master.media:
        if media.type == "AUDIO" and media.uri and media.uri not in seen:
            seen.add(media.uri)
            media_url = urljoin(url, media.uri)
            track = _hls_track("audio", media.name or media.uri, 0, "", None, None, media_url, fetch(media_url))
            wide = str(media.channels or "").split("/")[0]
            audio.append(replace(track, language=media.language, channels=int(wide) if wide.isdigit() else 0))
    if not video:
        raise PlayerError(f"{display_url(url)} has no variant streams")
    video.sort(key=lambda t: t.bandwidth_bps)
    duration = max(_hls_duration(t) for t in video)
    return Presentation("hls", url, duration, tuple(video), tuple(audio), ("",), scheme)


_SCHEMES = {"SAMPLE-AES-CTR": "cenc", "SAMPLE-AES": "cbcs"}


def _hls_scheme(text: str) -> str | None:
    m = re.search(r"#EXT-X-KEY:METHOD=([A-Z0-9-]+)", text)
    return _SCHEMES.get(m.group(1), m.group(1).lower()) if m and m.group(1) != "NONE" else None


def _hls_duration(track: Track) -> float:
    return track.segments[-1].end_s if track.segments else 0.0


def _hls_track(kind: str, track_id: str, bandwidth: int, codecs: str, width: int | None, height: int | None,
               url: str, text: str) -> Track:
    import m3u8

    playlist = m3u8.loads(text, uri=url)
    if not playlist.is_endlist:
        raise PlayerError(f"{display_url(url)} has no EXT-X-ENDLIST: live playlists are not played here")
    kid: bytes | None = None
    key_url: str | None = None
    for key in playlist.keys:
        if key is None or key.method == "NONE":
            continue
        if key.keyformat in (None, "identity") and key.uri:
            key_url = urljoin(url, key.uri)
            tail = urlsplit(key_url).path.rstrip("/").rsplit("/", 1)[-1]
            if re.fullmatch(r"[0-9a-fA-F]{32}", tail):
                kid = kid or bytes.fromhex(tail)
    if kid is None and (m := re.search(r"#EXT-X-KEY:[^\n]*KEYID=(0x[0-9a-fA-F]{32})", text)):
        kid = _kid(m.group(1))  # m3u8 does not parse KEYID (Widevine/FairPlay lines carry it)
    init_path, init_range = "", None
    if playlist.segment_map:
        first_map = playlist.segment_map[0]
        init_path = first_map.uri
        init_range = _hls_range(first_map.byterange, None)
    segments, start, last_end = [], 0.0, -1
    for number, seg in enumerate(playlist.segments, start=1):
        byte_range = _hls_range(seg.byterange, last_end) if seg.byterange else None
        if byte_range:
            last_end = byte_range[1]
        segments.append(Segment(number, start, float(seg.duration), seg.uri, byte_range))
        start += float(seg.duration)
    if not segments:
        raise PlayerError(f"{display_url(url)} lists no segments")
    return Track(kind, track_id, bandwidth, codecs, init_path, tuple(segments), width, height, kid, key_url,
                 base=url, init_range=init_range)


def _hls_range(spec: str | None, last_end: int | None) -> tuple[int, int] | None:
    """``length[@offset]``; without an offset the range follows the previous one."""
    if not spec:
        return None
    length, _, offset = spec.partition("@")
    first = int(offset) if offset else (last_end + 1 if last_end is not None else 0)
    return first, first + int(length) - 1
