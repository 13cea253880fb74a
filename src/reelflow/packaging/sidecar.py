"""The sidecar: a JSON file a studio drops beside the media, listing audio tracks, subtitles and territories.

Example (``<media>.json``; every key optional)::

    {
      "title_id": "sintel",
      "countries": ["NL", "DE", "US"],
      "release_at": "2026-12-24T18:00:00Z",
      "expected_plays": 25000,
      "audio": [
        {"language": "en", "role": "main"},
        {"file": "sintel.de.wav", "language": "de", "role": "dub"},
        {"stream": 1, "language": "en", "role": "description"},
        {"tracks": [3, 4, 5, 6, 7, 8], "layout": "5.1", "language": "fr"}
      ],
      "subtitles": [
        {"file": "sintel.nl.vtt", "language": "nl"},
        {"file": "sintel.en-cc.vtt", "language": "en", "role": "caption"}
      ]
    }

An audio entry without ``file`` is audio stream ``stream`` (0-based among the audio streams,
default 0) of the media file itself; with ``file`` (relative to the sidecar) it is audio stream
``stream`` of that file, which starts at the programme's first frame. ``tracks`` (1-based audio
streams of the media) groups discrete mono tracks into ``layout`` (``stereo``, ``5.1``, ``7.1``),
one track per channel in SMPTE order (L R C LFE Ls Rs [Lss Rss]). With a sidecar, exactly its
entries are published and every other audio stream of the media is listed as left out.

A bad sidecar is refused with every problem at once, each with its JSON path
(``audio[2].language``) and, for a WebVTT file it names, the file's line numbers. ``countries`` are ISO 3166
alpha-2 codes where the title is licensed; absent or null means everywhere. Languages are BCP-47
tags (``en``, ``pt-BR``, ``es-419``). ``release_at`` (ISO 8601; no zone: UTC) is when the title may
first play, and ``expected_plays`` the plays a day the studio expects of it at release: the off-peak
fill (flows/fill.py) places a new title on the edges before its release from them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from reelflow.errors import ConfigError
from reelflow.packaging.subtitles import check_webvtt

AudioRole = Literal["main", "description", "commentary", "dub"]
AudioLayout = Literal["mono", "stereo", "5.1", "7.1"]
SubtitleRole = Literal["subtitle", "caption", "forced"]

# language[-script][-region](-variant)*: enough of BCP-47 for media tracks; extensions are refused.
_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-(?:[A-Za-z]{2}|\d{3}))?(-(?:[A-Za-z\d]{5,8}|\d[A-Za-z\d]{3}))*$")


def _language(value: str) -> str:
    if not _BCP47.match(value):
        raise ValueError(f"{value!r} is not a BCP-47 language tag (e.g. 'en', 'pt-BR', 'es-419')")
    if value.lower() in ("und", "zxx", "mul"):
        raise ValueError(f"{value!r} is not a language a viewer can pick; give the track's language")
    return value


def _existing_file(value: str | None, info: ValidationInfo) -> str | None:
    """Resolve a sidecar-relative path against the sidecar's folder (context "base"); it must exist."""
    if value is None:
        return None
    base = (info.context or {}).get("base")
    path = Path(value) if base is None else Path(base) / value
    if not path.is_file():
        raise ValueError(f"{value!r} does not exist (looked for {path})")
    return str(path.resolve())


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SidecarAudio(_Model):
    """One audio track: from the media file (``stream``) or from a file of its own."""

    file: str | None = Field(None, description="Audio file, relative to the sidecar; none: the media file.")
    stream: int | None = Field(None, ge=0, description="0-based audio stream of that file (default 0).")
    tracks: tuple[int, ...] | None = Field(None, min_length=1, max_length=8, description="1-based audio streams "
                                           "of the media, one mono track per channel of ``layout``.")
    layout: AudioLayout | None = Field(None, description="The layout of ``tracks`` (or of the stream).")
    language: str
    role: AudioRole = "main"

    @field_validator("tracks")
    @classmethod
    def _tracks(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if any(t < 1 for t in value):
            raise ValueError(f"{list(value)}: tracks are numbered from 1")
        if len(set(value)) != len(value):
            raise ValueError(f"{list(value)}: a track is listed twice")
        return value

    @model_validator(mode="after")
    def _stream_or_tracks(self) -> SidecarAudio:
        if self.tracks is not None and (self.stream is not None or self.file is not None):
            raise ValueError("give either tracks (mono tracks of the media) or file/stream, not both")
        return self

    @field_validator("file")
    @classmethod
    def _file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _existing_file(value, info)

    @field_validator("language")
    @classmethod
    def _lang(cls, value: str) -> str:
        return _language(value)

    @property
    def path(self) -> Path | None:
        return Path(self.file) if self.file else None

    @property
    def name(self) -> str:
        wide = {"5.1": "_51", "7.1": "_71"}.get(self.layout or "", "")
        return self.language + ("" if self.role == "main" else f"_{self.role}") + wide


class SidecarSubtitle(_Model):
    """One WebVTT subtitle track."""

    file: str = Field(description="WebVTT file (.vtt), relative to the sidecar.")
    language: str
    role: SubtitleRole = "subtitle"

    @field_validator("language")
    @classmethod
    def _lang(cls, value: str) -> str:
        return _language(value)

    @field_validator("file")
    @classmethod
    def _vtt(cls, value: str, info: ValidationInfo) -> str:
        if not value.lower().endswith(".vtt"):
            raise ValueError(f"{value!r}: subtitles are WebVTT files ending in .vtt")
        resolved = _existing_file(value, info)
        assert resolved is not None
        check_webvtt(Path(resolved))  # ConfigError with file and line, raised through as is
        return resolved

    @property
    def path(self) -> Path:
        return Path(self.file)

    @property
    def name(self) -> str:
        return self.language + ("" if self.role == "subtitle" else f"_{self.role}")


class Sidecar(_Model):
    """What a studio says about a title beyond the media file itself."""

    title_id: str | None = None
    countries: tuple[str, ...] | None = Field(None, description="ISO 3166 alpha-2 codes; null: everywhere.")
    release_at: dt.datetime | None = Field(None, description="When the title may first play (ISO 8601; no "
                                           "zone: UTC); null: at once.")
    expected_plays: float | None = Field(None, ge=0, description="Plays a day expected at release, over every "
                                         "country (the fill's forecast of a title with no plays yet).")
    audio: tuple[SidecarAudio, ...] = ()
    subtitles: tuple[SidecarSubtitle, ...] = ()

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        codes = tuple(c.strip().upper() for c in value)
        bad = [c for c in codes if not re.fullmatch(r"[A-Z]{2}", c)]
        if bad:
            raise ValueError(f"{bad} are not ISO 3166 alpha-2 country codes (two letters, e.g. 'NL')")
        if not codes:
            raise ValueError("an empty list would license the title nowhere; leave it out (or null) for everywhere")
        return tuple(dict.fromkeys(codes))

    @field_validator("release_at")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)

    @model_validator(mode="after")
    def _distinct_tracks(self) -> Sidecar:
        for kind, names in (("audio", [a.name for a in self.audio]), ("subtitles", [s.name for s in self.subtitles])):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"two {kind} tracks share language and role: {', '.join(twice)}")
        return self


def load_sidecar(path: Path | str, media_channels: Sequence[int] | None = None) -> Sidecar:
    """Read and check a sidecar; one ConfigError naming the file and every problem, each with its field.

    With ``media_channels`` (the channel count of each audio stream of the media), entries that
    name streams or tracks the media does not have, or a layout their tracks do not fill, are
    reported in the same error (a valid sidecar gets those checks from the audio planner).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"sidecar {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sidecar {path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"sidecar {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    try:
        return Sidecar.model_validate(data, context={"base": path.resolve().parent})
    except ValidationError as exc:
        problems = [f"{json_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        problems += [p for p in _raw_duplicates(data) if p not in problems]
        if media_channels is not None:
            problems += [p for p in _raw_media_problems(data, media_channels) if p not in problems]
        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        raise ConfigError(f"sidecar {path}: {count}:\n  " + "\n  ".join(problems)) from exc


def json_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """pydantic's error location as a JSON path: ('audio', 2, 'language') -> audio[2].language."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "5.1": 6, "7.1": 8}


def _raw_media_problems(data: object, channels: Sequence[int]) -> list[str]:
    """Audio entries of the media that do not fit it, read from the raw JSON (as the planner words them)."""
    entries = data.get("audio") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    out = []
    count = len(channels)
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("file") is not None:
            continue
        where = f"audio[{number}]"
        tracks = entry.get("tracks")
        if isinstance(tracks, list) and tracks and all(isinstance(t, int) for t in tracks):
            missing = [t for t in tracks if not 1 <= t <= count]
            if missing:
                out.append(f"{where}.tracks: the media has {count} audio stream(s): no track {missing}")
                continue
            wanted = _LAYOUT_CHANNELS.get(str(entry.get("layout")))
            held = sum(channels[t - 1] for t in tracks)
            if wanted is not None and held != wanted:
                out.append(f"{where}: layout {entry.get('layout')} needs {wanted} channels, tracks {tracks} hold "
                           f"{held}")
        elif tracks is None:
            stream = entry.get("stream", 0)
            if isinstance(stream, int) and stream >= count:
                out.append(f"{where}.stream: the media has {count} audio stream(s), so there is no audio stream "
                           f"{stream}")
    return out


def _raw_duplicates(data: object) -> list[str]:
    """The duplicate-track check on the raw JSON, so it is reported beside field errors (pydantic runs
    the model's own check only when every field is valid)."""
    if not isinstance(data, dict):
        return []
    out = []
    for kind, plain in (("audio", "main"), ("subtitles", "subtitle")):
        entries = data.get(kind)
        if not isinstance(entries, list):
            continue
        names = [f"{e.get('language')}" + ("" if e.get("role", plain) == plain else f"_{e.get('role')}")
                 + {"5.1": "_51", "7.1": "_71"}.get(str(e.get("layout")), "")
                 for e in entries if isinstance(e, dict)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            out.append(f"{kind}: two {kind} tracks share language and role: {', '.join(twice)}")
    return out
