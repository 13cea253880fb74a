"""The audio stage: which tracks of a master are published and how, then their loudness-normalised encodes.

``plan_audio`` is pure: from the probe (and a sidecar's audio entries, when there is one) it
decides every rendition to make and lists every audio stream it leaves out, with the reason, so
no track of a studio's master is lost without a word:

- without a sidecar every audio stream is published, with its language tag (``und`` when
  untagged) and a role read from its disposition flags (``visual_impaired`` -> description,
  ``comment`` -> commentary, ``dub``) or its title/handler tag ("Audio Description",
  "Commentary"). A master made only of mono streams (MXF/MOV discrete tracks) is grouped into
  layouts, by default tracks 1-6 = L R C LFE Ls Rs and 7-8 = Lt/Rt (``audio.mono_layout``);
- with a sidecar, exactly its entries are published (``"tracks": [1, ..., 6], "layout": "5.1"``
  groups mono tracks), and every stream of the master no entry uses is left out;
- 5.1 and 7.1 sources become multichannel renditions *and* each language and role gets a stereo
  rendition: the master's own stereo mix of that language when it has one, else an ITU-R BS.775
  downmix with the explicit coefficients of ``_DOWNMIX`` (the LFE is left out, as BS.775 says).

Multichannel codec: AAC-LC 5.1 by default, because it is the 5.1 codec every browser decodes:
Debian's chromium (the browser the tests drive) accepts 6-channel ``mp4a.40.2`` in Media Source
Extensions and refuses ``ec-3`` and ``ac-3``; E-AC-3 is licensed Dolby technology that
Edge, Safari and TV/set-top platforms carry, Chrome and Firefox on desktop do not. E-AC-3 (the
bundled ffmpeg's native ``eac3`` encoder, up to 5.1) is ``audio.multichannel_codec = "eac3"``
for living-room deliveries; its renditions go to an HLS group of their own (``audio-ec3``) so a
player that cannot decode it still has whole AAC variants. 7.1 is always AAC: ffmpeg's eac3
encoder stops at 5.1 (asked for 7.1 it silently writes 5.1(side)).

Loudness: every rendition is normalised in two passes of ``loudnorm`` (measure, then a linear gain
with the measured values) to ``audio.loudness_lufs`` with true peak at most ``audio.true_peak_dbtp``
(pass 1 is ebur128; pass 2 a plain gain when that keeps the true peak under the limit, as
loudnorm's linear mode would, else loudnorm's true-peak limiter);
the surround and stereo renditions of one language are normalised separately to the same target,
so a player switching between them hears no jump. Integrated loudness is ITU-R BS.1770's
level-gated measure, not dialogue-gated: dialogue gating needs a speech classifier (Dolby's
Dialogue Intelligence) that ffmpeg does not have, and a gate guessed from levels would be worse
than the standard one. The measured input and output values are returned with each rendition.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import av

from reelflow.encoding.encode import Rendition, _kbps
from reelflow.encoding.probe import AudioStream, MediaInfo
from reelflow.encoding.qc import _json_ready, judge_layout, layout_filters, parse_layout_log
from reelflow.errors import ConfigError, StageError
from reelflow.infra.settings import AudioConfig, EncodeConfig, QCConfig
from reelflow.infra.tools import ffmpeg_exe, run

log = logging.getLogger(__name__)

Layout = Literal["mono", "stereo", "5.1", "7.1"]
Downmix = Literal["none", "bs775", "mono", "matrix"]

LAYOUT_CHANNELS: dict[str, int] = {"mono": 1, "stereo": 2, "5.1": 6, "7.1": 8}
# ffmpeg's channel names in ffmpeg's (and SMPTE's) order: the order of discrete tracks 1..N.
CHANNEL_NAMES: dict[str, tuple[str, ...]] = {
    "mono": ("FC",),
    "stereo": ("FL", "FR"),
    "5.1": ("FL", "FR", "FC", "LFE", "BL", "BR"),
    "7.1": ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}
_BY_CHANNELS: dict[int, Layout] = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}
# ITU-R BS.775 stereo downmix: L0 = L + 0.707 C + 0.707 Ls, R0 = R + 0.707 C + 0.707 Rs, LFE dropped.
# 7.1 puts side and back surrounds each at -3 dB relative to 5.1's single pair (0.707 * 0.707 = 0.5).
_DOWNMIX: dict[str, str] = {
    "5.1": "pan=stereo|FL=FL+0.7071*FC+0.7071*BL|FR=FR+0.7071*FC+0.7071*BR",
    "7.1": "pan=stereo|FL=FL+0.7071*FC+0.5*BL+0.5*SL|FR=FR+0.7071*FC+0.5*BR+0.5*SR",
}
_SHORT = {"5.1": "51", "7.1": "71"}
_PREFIX = {"aac": "aac", "eac3": "ec3"}
# Words in a track's title or handler name that say its role (lower case, whole words).
_ROLE_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("description", re.compile(r"\b(audio description|described|description|ad|dvs|visually impaired)\b")),
    ("commentary", re.compile(r"\b(commentary|comment)\b")),
    ("dub", re.compile(r"\b(dub|dubbed)\b")),
)


class SidecarTrack(Protocol):
    """What the planner reads from a sidecar's audio entry (packaging/sidecar.py's SidecarAudio)."""

    @property
    def path(self) -> Path | None: ...
    @property
    def stream(self) -> int | None: ...
    @property
    def tracks(self) -> tuple[int, ...] | None: ...
    @property
    def layout(self) -> str | None: ...
    @property
    def language(self) -> str: ...
    @property
    def role(self) -> str: ...


@dataclass(frozen=True)
class AudioSource:
    """Channels of a master (or of a sidecar's file) that form one mix."""

    streams: tuple[int, ...]       # 0-based positions among the audio streams of ``file`` (None: the master)
    layout: str                    # mono, stereo, 5.1, 7.1, or ffmpeg's name of another layout
    file: Path | None = None

    @property
    def channels(self) -> int:
        return LAYOUT_CHANNELS.get(self.layout, 0)

    @property
    def grouped(self) -> bool:
        """Several mono streams joined into one layout."""
        return len(self.streams) > 1


@dataclass(frozen=True)
class PlannedTrack:
    """One rendition to make."""

    name: str                      # the package folder: aac_en, aac_en_51, ec3_en_51, aac_en_description
    source: AudioSource
    codec: Literal["aac", "eac3"]
    layout: Layout                 # of the rendition
    downmix: Downmix               # how a stereo rendition was made from a wider source
    language: str
    role: str
    kbps: int
    loudness_lufs: float
    true_peak_dbtp: float

    @property
    def channels(self) -> int:
        return LAYOUT_CHANNELS[self.layout]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "codec": self.codec, "layout": self.layout, "channels": self.channels,
                "downmix": self.downmix, "language": self.language, "role": self.role, "kbps": self.kbps,
                "loudness_lufs": self.loudness_lufs, "true_peak_dbtp": self.true_peak_dbtp,
                "source": {"tracks": [s + 1 for s in self.source.streams], "layout": self.source.layout,
                           "file": str(self.source.file) if self.source.file else None}}


@dataclass(frozen=True)
class LeftOut:
    """An audio stream of the master that is not published, and why."""

    stream: int                    # container stream index
    track: int                     # 1-based position among the audio streams
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "track": self.track, "reason": self.reason}


@dataclass(frozen=True)
class AudioPlan:
    tracks: tuple[PlannedTrack, ...]
    left_out: tuple[LeftOut, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"tracks": [t.to_dict() for t in self.tracks], "left_out": [x.to_dict() for x in self.left_out],
                "warnings": list(self.warnings)}


@dataclass(frozen=True)
class _Mix:
    """A source with the language and role it is published under."""

    source: AudioSource
    language: str
    role: str


def layout_of(stream: AudioStream) -> str:
    """The layout a stream's channels form: by count where ffmpeg's name is one of 5.1's variants."""
    return _BY_CHANNELS.get(stream.channels, stream.layout)


def infer_role(stream: AudioStream) -> str:
    """A role from the stream's disposition flags, else from words in its title or handler name."""
    flags = set(stream.dispositions)
    if flags & {"visual_impaired", "descriptions"}:
        return "description"
    if "comment" in flags:
        return "commentary"
    if "dub" in flags:
        return "dub"
    title = (stream.title or "").lower()
    for role, words in _ROLE_WORDS:
        if words.search(title):
            return role
    return "main"


_AUDIO = AudioConfig()
_ENCODE = EncodeConfig()


def plan_audio(info: MediaInfo, config: AudioConfig = _AUDIO, encode: EncodeConfig = _ENCODE,
               sidecar: Sequence[SidecarTrack] | None = None,
               file_layouts: dict[tuple[Path, int], str] | None = None) -> AudioPlan:
    """Every rendition to make from the master's audio (and a sidecar's entries), and what is left out.

    ``file_layouts`` gives the layout of each (file, stream) a sidecar names beside the master;
    a layout that does not fit its tracks is one ConfigError listing every such entry.
    """
    if sidecar:
        mixes, left_out, warnings = _sidecar_mixes(info, sidecar, file_layouts or {})
    else:
        mixes, left_out, warnings = _default_mixes(info, config)
    tracks = _renditions(mixes, config, encode)
    return AudioPlan(tracks=tracks, left_out=tuple(left_out), warnings=tuple(warnings))


def _default_mixes(info: MediaInfo, config: AudioConfig) -> tuple[list[_Mix], list[LeftOut], list[str]]:
    mixes: list[_Mix] = []
    left_out: list[LeftOut] = []
    streams = list(info.audio)
    if len(streams) > 1 and all(s.channels == 1 for s in streams):
        # Discrete mono tracks: each layout of audio.mono_layout takes the next tracks in order.
        at = 0
        for layout in config.mono_layout:
            size = LAYOUT_CHANNELS[layout]
            if at + size > len(streams):
                break
            group = streams[at:at + size]
            mixes.append(_Mix(AudioSource(tuple(range(at, at + size)), layout),
                              next((s.language for s in group if s.language), None) or "und",
                              infer_role(group[0])))
            at += size
        if at == 0 and len(streams) >= 2:            # too few tracks for the first layout: 1-2 as stereo
            mixes.append(_Mix(AudioSource((0, 1), "stereo"), streams[0].language or "und", infer_role(streams[0])))
            at = 2
        for pos in range(at, len(streams)):          # the rest, each as a mono track of its own
            mixes.append(_Mix(AudioSource((pos,), "mono"), streams[pos].language or "und", infer_role(streams[pos])))
    else:
        for pos, stream in enumerate(streams):
            if stream.channels < 1:
                left_out.append(LeftOut(stream.index, pos + 1, "the stream has no channels"))
                continue
            mixes.append(_Mix(AudioSource((pos,), layout_of(stream)), stream.language or "und", infer_role(stream)))
    warnings = _same_language_warnings(mixes)
    return mixes, left_out, warnings


def _same_language_warnings(mixes: Sequence[_Mix]) -> list[str]:
    """QC's warning: two mixes of one language, neither with a role, and of the same width."""
    seen: dict[tuple[str, str, bool], _Mix] = {}
    out = []
    for mix in mixes:
        key = (mix.language, mix.role, mix.source.channels > 2)
        if key in seen and mix.role == "main":
            first = seen[key].source.streams[0] + 1
            out.append(f"audio tracks {first} and {mix.source.streams[0] + 1} are both language "
                       f"{mix.language!r} with no role: both are published; say which is which in a sidecar")
        seen.setdefault(key, mix)
    return out


def _sidecar_mixes(info: MediaInfo, entries: Sequence[SidecarTrack], file_layouts: dict[tuple[Path, int], str],
                   ) -> tuple[list[_Mix], list[LeftOut], list[str]]:
    mixes: list[_Mix] = []
    problems: list[str] = []
    used: set[int] = set()
    for number, entry in enumerate(entries):
        where = f"audio[{number}]"
        if entry.tracks:
            positions = tuple(t - 1 for t in entry.tracks)
            count = len(info.audio) if entry.path is None else None
            if count is not None:
                missing = [t for t in entry.tracks if not 1 <= t <= count]
                if missing:
                    problems.append(f"{where}.tracks: the media has {count} audio stream(s): no track {missing}")
                    continue
            layout = entry.layout or _BY_CHANNELS.get(len(positions), "")
            if layout not in LAYOUT_CHANNELS:
                problems.append(f"{where}.layout: give the layout of {len(positions)} tracks (mono, stereo, "
                                "5.1 or 7.1)")
                continue
            widths = [info.audio[p].channels for p in positions] if entry.path is None else [1] * len(positions)
            if sum(widths) != LAYOUT_CHANNELS[layout]:
                problems.append(f"{where}: layout {layout} needs {LAYOUT_CHANNELS[layout]} channels, tracks "
                                f"{list(entry.tracks)} hold {sum(widths)}; list one mono track per channel in the "
                                f"order {' '.join(CHANNEL_NAMES[layout])}")
                continue
            source = AudioSource(positions, layout, entry.path)
        else:
            pos = entry.stream or 0
            if entry.path is None:
                if pos >= len(info.audio):
                    problems.append(f"{where}.stream: the media has {len(info.audio)} audio stream(s), so there is "
                                    f"no audio stream {pos}")
                    continue
                layout = layout_of(info.audio[pos])
            else:
                layout = file_layouts.get((entry.path, pos), "stereo")
            if entry.layout and LAYOUT_CHANNELS.get(entry.layout) != LAYOUT_CHANNELS.get(layout):
                problems.append(f"{where}.layout: the stream is {layout}, not {entry.layout}")
                continue
            source = AudioSource((pos,), layout, entry.path)
        if entry.path is None:
            used.update(source.streams)
        mixes.append(_Mix(source, entry.language, entry.role))
    if problems:
        raise ConfigError("the sidecar's audio does not fit the media:\n  " + "\n  ".join(problems))
    left_out = [LeftOut(s.index, pos + 1, "not listed in the sidecar's audio: excluded by the sidecar")
                for pos, s in enumerate(info.audio) if pos not in used]
    return mixes, left_out, []


def _renditions(mixes: Sequence[_Mix], config: AudioConfig, encode: EncodeConfig) -> tuple[PlannedTrack, ...]:
    def planned(mix: _Mix, layout: Layout, downmix: Downmix) -> PlannedTrack:
        codec: Literal["aac", "eac3"] = "aac"
        kbps = encode.audio_kbps
        if layout == "5.1":
            codec, kbps = config.multichannel_codec, config.surround_kbps
        elif layout == "7.1":
            kbps = config.surround_71_kbps
        name = f"{_PREFIX[codec]}_{mix.language}" + ("" if mix.role == "main" else f"_{mix.role}")
        name += f"_{_SHORT[layout]}" if layout in _SHORT else ""
        return PlannedTrack(name=name, source=mix.source, codec=codec, layout=layout, downmix=downmix,
                            language=mix.language, role=mix.role, kbps=kbps, loudness_lufs=config.loudness_lufs,
                            true_peak_dbtp=config.true_peak_dbtp)

    out: list[PlannedTrack] = []
    for mix in mixes:
        layout = mix.source.layout
        if layout in ("5.1", "7.1"):
            out.append(planned(mix, layout, "none"))  # type: ignore[arg-type]
        elif layout == "stereo":
            out.append(planned(mix, "stereo", "none"))
        elif layout == "mono":
            out.append(planned(mix, "stereo", "mono"))
        else:                                             # 3-5 or 7 channels: ffmpeg's default matrix
            out.append(planned(mix, "stereo", "matrix"))
    # A stereo rendition for every language and role that only has a surround mix.
    with_stereo = {(t.language, t.role) for t in out if t.layout == "stereo"}
    for mix in mixes:
        if mix.source.layout in _DOWNMIX and (mix.language, mix.role) not in with_stereo:
            out.append(planned(mix, "stereo", "bs775"))
            with_stereo.add((mix.language, mix.role))
    # Names unique and stable: a repeat gets the 1-based track number of its first channel.
    seen: set[str] = set()
    unique = []
    for track in out:
        name = track.name
        if name in seen:
            name = f"{name}_t{track.source.streams[0] + 1}"
        seen.add(name)
        unique.append(replace(track, name=name))
    return tuple(unique)


@functools.cache
def code_digest() -> str:
    """This module's code (argv and filters live here): part of every audio encode's cache name."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


# --- ffmpeg argv ---------------------------------------------------------------------------------

def timeline_filter(info: MediaInfo, source: AudioSource) -> str:
    """Put the audio on the video's timeline: 0 is the first video frame, the end is the last.

    Audio that starts before the video is trimmed, audio that starts after it is delayed with
    silence, and the tail is trimmed or padded so the track lasts exactly as long as the video.
    A sidecar's file starts at the first video frame by definition, so only its length is fitted.
    """
    offset = 0.0 if source.file else info.audio[source.streams[0]].start_s - info.video.start_s
    chain = ["asetpts=PTS-STARTPTS", "aresample=async=1"]   # own timeline; fill holes inside it
    if offset < 0:
        chain += [f"atrim=start={-offset:.6f}", "asetpts=PTS-STARTPTS"]
    elif offset > 0:
        chain.append(f"adelay=delays={round(offset * 1000)}:all=1")
    chain += ["apad", f"atrim=end={info.video.duration_s:.6f}"]
    return ",".join(chain)


def source_graph(info: MediaInfo, source: AudioSource) -> str:
    """The filter graph head that makes the source's channels one stream in its canonical layout.

    Mono tracks are merged in track order (``amerge``: input i is channel i) and the channels named
    by position with ``channelmap``. Not ``join``: its default map matches channel names (every
    mono track is "FC"), and join followed by ebur128 hangs this ffmpeg (9.0.2) on some inputs. A
    single multichannel stream is renamed by position too (5.1(side) -> 5.1), which keeps SMPTE
    order without any remix.
    """
    def label(pos: int) -> str:
        return f"[0:a:{pos}]" if source.file else f"[0:{info.audio[pos].index}]"

    if source.grouped:
        count = LAYOUT_CHANNELS[source.layout]
        order = "|".join(map(str, range(count)))
        head = (f"{''.join(label(p) for p in source.streams)}amerge=inputs={len(source.streams)},"
                f"channelmap=map={order}:channel_layout={source.layout}")
    elif source.layout in CHANNEL_NAMES:
        count = LAYOUT_CHANNELS[source.layout]
        order = "|".join(map(str, range(count)))
        head = f"{label(source.streams[0])}channelmap=map={order}:channel_layout={source.layout}"
    else:
        head = f"{label(source.streams[0])}anull"
    return head + ",aformat=sample_fmts=fltp"   # float from here on: downmix sums never clip


def track_chain(info: MediaInfo, track: PlannedTrack) -> str:
    """Downmix (if any) and timeline, after the source graph."""
    steps = []
    if track.downmix == "bs775":
        steps.append(_DOWNMIX[track.source.layout])
    elif track.downmix == "mono":
        steps.append("pan=stereo|FL=c0|FR=c0")   # a mono mix heard from both speakers
    elif track.downmix == "matrix":
        steps.append("aformat=channel_layouts=stereo")   # ffmpeg's default rematrix of an odd layout
    steps.append(timeline_filter(info, track.source))
    return ",".join(steps)


def track_argv(src: Path, info: MediaInfo, track: PlannedTrack, rate: int, out: Path,
               loudnorm: str | None = None) -> list[str]:
    """ffmpeg argv for one rendition; ``loudnorm`` is appended to the chain (``out`` "-" measures only)."""
    chain = f"{source_graph(info, track.source)},{track_chain(info, track)}"
    if loudnorm:
        chain += f",{loudnorm}"
    chain += f",aresample={rate}[a]"                # loudnorm works at 192 kHz; back to the delivery rate
    head = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-i", str(track.source.file or src),
            "-filter_complex", chain, "-map", "[a]",
            "-map_metadata", "-1", "-map_chapters", "-1"]   # nothing of the source's tags leaks out
    if str(out) == "-":
        return [*head, "-f", "null", "-"]
    return [*head,
            "-c:a", track.codec, "-b:a", f"{track.kbps}k",
            "-ar", str(rate),
            "-movflags", "+faststart",
            str(out)]


def _loudnorm_filter(track: PlannedTrack, config: AudioConfig, measured: dict[str, float] | None = None) -> str:
    base = f"loudnorm=I={track.loudness_lufs:g}:TP={track.true_peak_dbtp:g}:LRA={config.lra_lu:g}:print_format=json"
    if measured is None:
        return base
    return (f"{base}:linear=true:measured_I={measured['input_i']}:measured_TP={measured['input_tp']}"
            f":measured_LRA={measured['input_lra']}:measured_thresh={measured['input_thresh']}"
            f":offset={measured['target_offset']}")


_SUMMARY = {
    "input_i": re.compile(r"^\s*I:\s+(-?[\d.]+|-inf) LUFS$"),
    "input_thresh": re.compile(r"^\s*Threshold:\s+(-?[\d.]+|-inf) LUFS$"),
    "input_lra": re.compile(r"^\s*LRA:\s+(-?[\d.]+) LU$"),
    "input_tp": re.compile(r"^\s*Peak:\s+(-?[\d.]+|-inf) dBFS$"),
}


def _ebur128_summary(stderr: str, what: str) -> dict[str, float]:
    """ebur128's summary as loudnorm's measured_* values (the first Threshold is the integrated gate's)."""
    found: dict[str, float] = {}
    for line in stderr[stderr.rfind("Summary:"):].splitlines():
        for key, pattern in _SUMMARY.items():
            match = pattern.match(line)
            if match and key not in found:
                found[key] = float(match.group(1))
    if len(found) != len(_SUMMARY):
        raise StageError(f"loudness of {what} could not be measured (ebur128 printed {sorted(found)})")
    found["target_offset"] = 0.0
    return found


def _loudnorm_json(stderr: str, what: str) -> dict[str, Any]:
    text = stderr[stderr.rfind("{"):stderr.rfind("}") + 1]
    try:
        found: dict[str, Any] = json.loads(text)
        return {k: (float(v) if k != "normalization_type" else v) for k, v in found.items()}
    except (ValueError, TypeError) as exc:
        raise StageError(f"loudness of {what} could not be measured: {text[:200]!r}") from exc


def encode_track(src: Path, info: MediaInfo, track: PlannedTrack, out: Path, *,
                 config: AudioConfig = _AUDIO, rate: int = 48000, reuse: bool = True,
                 progress: Callable[[float], None] | None = None) -> Rendition:
    """Encode one planned rendition, loudness-normalised in two passes; an existing ``out`` is reused.

    The rendition carries the loudness figures of both passes (``loudness``): input_i/tp/lra as
    measured on the source mix, output_i/tp/lra as loudnorm measured its own output.
    """
    figures: dict[str, Any] = {}
    report = out.with_suffix(".loudness.json")
    reused = reuse and out.exists() and report.exists()
    if reused:
        log.info("reusing finished encode %s", out)
        figures = json.loads(report.read_text())
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f"{out.stem}.partial-{os.getpid()}-{threading.get_ident()}{out.suffix}")
        try:
            # Pass 1 measures with ebur128 (BS.1770 integrated loudness, its gate, LRA, true peak): what
            # loudnorm's own first pass prints, far cheaper (loudnorm measures through its 192 kHz
            # dynamic path; docs/benchmarks.md, "Audio stage").
            first = run(track_argv(src, info, track, rate, Path("-"), "ebur128=peak=true:framelog=quiet"))
            measured = _ebur128_summary(first.stderr, track.name)
            cpu = first.cpu_s
            gain = track.loudness_lufs - measured["input_i"]
            if measured["input_i"] > -70 and measured["input_tp"] + gain <= track.true_peak_dbtp:
                # The gain alone keeps the true peak under the limit: what loudnorm's linear mode does,
                # without its 192 kHz round trip; ebur128 measures what comes out.
                second = run(track_argv(src, info, track, rate, partial,
                                        f"volume={gain:.3f}dB,ebur128=peak=true:framelog=quiet"), progress=progress)
                out_figures = _ebur128_summary(second.stderr, track.name)
                result = {"output_i": out_figures["input_i"], "output_tp": out_figures["input_tp"],
                          "output_lra": out_figures["input_lra"], "normalization_type": "linear"}
            elif measured["input_i"] > -70:   # the peak would clip: loudnorm's true-peak limiter
                second = run(track_argv(src, info, track, rate, partial, _loudnorm_filter(track, config, measured)),
                             progress=progress)
                result = _loudnorm_json(second.stderr, track.name)
            else:   # silence (or -inf): no gain makes it a programme level
                log.warning("%s is near-silent (%.1f LUFS): not normalised", track.name, measured["input_i"])
                second = run(track_argv(src, info, track, rate, partial), progress=progress)
                result = {}
            cpu += second.cpu_s
            figures = {k: measured[k] for k in ("input_i", "input_tp", "input_lra", "input_thresh")}
            figures.update({k: result[k] for k in ("output_i", "output_tp", "output_lra", "normalization_type")
                            if k in result})
            figures["target_i"], figures["target_tp"] = track.loudness_lufs, track.true_peak_dbtp
            figures["cpu_s"] = round(cpu, 3)
            partial.replace(out)   # the final name only for a complete file
            report.write_text(json.dumps(figures))
        finally:
            partial.unlink(missing_ok=True)
    with av.open(str(out)) as container:
        stream = container.streams.audio[0]
        duration = (float(stream.duration * stream.time_base)
                    if stream.duration and stream.time_base else info.video.duration_s)
        channels = stream.codec_context.channels
    if channels != track.channels:
        raise StageError(f"{track.name}: encoded {channels} channels, planned {track.channels}")
    cpu_s = float(figures.pop("cpu_s", 0.0))
    if reused:
        cpu_s = 0.0                       # a finished encode of an earlier run costs this run nothing
    return Rendition(kind="audio", path=out, codec=track.codec, kbps=_kbps(out, duration), duration_s=duration,
                     target_kbps=track.kbps, channels=channels, sample_rate=rate, language=track.language,
                     role=track.role, track_name=track.name, layout=track.layout,
                     loudness=tuple(sorted(figures.items())), cpu_s=cpu_s)


def encode_audio(src: Path, info: MediaInfo, config: EncodeConfig, out: Path, *,
                 progress: Callable[[float], None] | None = None, reuse: bool = True,
                 stream: int = 0, audio_file: Path | None = None, language: str | None = None, role: str = "main",
                 loudness_lufs: float | None = None, true_peak_dbtp: float = -1.0) -> Rendition:
    """One stereo AAC rendition of one stream (a shortcut beside ``plan_audio``/``encode_track``).

    ``stream`` is an audio stream of the master, or of ``audio_file``; it is downmixed (BS.775 for
    5.1/7.1) or doubled (mono) to stereo and, with ``loudness_lufs``, normalised to it.
    """
    if audio_file is not None:
        layout = file_layout(audio_file, stream)
        lang = language or "und"
    else:
        if not 0 <= stream < len(info.audio):
            raise StageError(f"{src} has {len(info.audio)} audio stream(s): there is no audio stream {stream} to "
                             "encode")
        layout = layout_of(info.audio[stream])
        lang = language or info.audio[stream].language or "und"
    downmix: Downmix = {"stereo": "none", "mono": "mono"}.get(layout, "bs775" if layout in _DOWNMIX else "matrix")  # type: ignore[assignment]
    target = loudness_lufs if loudness_lufs is not None else 0.0
    track = PlannedTrack(name=f"aac_{lang}" + ("" if role == "main" else f"_{role}"),
                         source=AudioSource((stream,), layout, audio_file), codec="aac", layout="stereo",
                         downmix=downmix, language=lang, role=role, kbps=config.audio_kbps,
                         loudness_lufs=target, true_peak_dbtp=true_peak_dbtp)
    if loudness_lufs is not None:
        return encode_track(src, info, track, out, rate=config.audio_rate, reuse=reuse, progress=progress)
    if not (reuse and out.exists()):
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f"{out.stem}.partial-{os.getpid()}{out.suffix}")
        try:
            run(track_argv(src, info, track, config.audio_rate, partial), progress=progress)
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
    with av.open(str(out)) as container:
        a = container.streams.audio[0]
        duration = float(a.duration * a.time_base) if a.duration and a.time_base else info.video.duration_s
    return Rendition(kind="audio", path=out, codec="aac", kbps=_kbps(out, duration), duration_s=duration,
                     target_kbps=config.audio_kbps, channels=2, sample_rate=config.audio_rate, language=lang,
                     role=role, track_name=track.name, layout="stereo")


def file_layout(path: Path, stream: int = 0) -> str:
    """The layout of audio stream ``stream`` of a separate audio file (a sidecar's track)."""
    try:
        with av.open(str(path)) as container:
            streams = list(container.streams.audio)
            if not 0 <= stream < len(streams):
                raise StageError(f"{path} has {len(streams)} audio stream(s): there is no audio stream {stream}")
            return _BY_CHANNELS.get(streams[stream].codec_context.channels, streams[stream].codec_context.layout.name)
    except av.error.FFmpegError as exc:
        raise StageError(f"{path} is not an audio file ffmpeg can read ({exc})") from exc


# --- QC of each grouped layout --------------------------------------------------------------------

def layout_qc_argv(src: Path, info: MediaInfo, source: AudioSource, lfe_cutoff_hz: float = 150.0) -> list[str]:
    """One decode of a source mix through the layout checks' filters (qc.layout_filters)."""
    graph = f"{source_graph(info, source)},{layout_filters(source.layout, lfe_cutoff_hz)}"
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(source.file or src),
            "-filter_complex", graph, "-map", "[qc]", "-f", "null", "-"]


def check_layouts(src: Path, plan: AudioPlan, info: MediaInfo, qc_config: QCConfig) -> list[dict[str, Any]]:
    """QC of every source mix the plan publishes: silent channels, LFE content, phase, loudness."""
    out = []
    seen: set[AudioSource] = set()
    for track in plan.tracks:
        source = track.source
        if source in seen or source.layout not in CHANNEL_NAMES or source.layout == "mono":
            continue
        seen.add(source)
        done = run(layout_qc_argv(src, info, source, qc_config.lfe_cutoff_hz))
        stats = parse_layout_log(done.stderr, source.layout)
        checks = judge_layout(track.name, source.layout, stats, qc_config)
        out.append({"tracks": [s + 1 for s in source.streams], "layout": source.layout, "rendition": track.name,
                    "measurements": _json_ready(stats), "checks": [c.to_dict() for c in checks],
                    "cpu_s": round(done.cpu_s, 3)})
    return out


def plan_title_audio(entries: Sequence[SidecarTrack] | None, info: MediaInfo, config: AudioConfig,
                     encode: EncodeConfig, where: Path | None = None) -> AudioPlan:
    """The title's audio plan from the media and a sidecar's audio entries (None: no sidecar, or it
    lists none); a sidecar whose tracks do not fit the media is one ConfigError naming every problem.

    Pure apart from reading the layouts of the sidecar's own audio files: the CLI calls it before
    the flow starts, the flow again before any work.
    """
    layouts = {(t.path, t.stream or 0): file_layout(t.path, t.stream or 0)
               for t in entries or () if t.path is not None and not t.tracks}
    try:
        return plan_audio(info, config, encode, entries or None, layouts)
    except ConfigError as exc:
        raise ConfigError(f"sidecar {where}: {exc}" if where else str(exc)) from exc
