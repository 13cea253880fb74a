"""WebVTT subtitles: checked line by line before the packager sees them, and copied in a clean form.

The packager turns each file into CMAF text segments (``wvtt``) for DASH and HLS. It is lenient
with broken files (a bad timing line silently drops cues), so a studio's file is checked here and
refused with its file name and line number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from reelflow.errors import ConfigError

_TIME = r"(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_TIMING = re.compile(rf"^{_TIME}[ \t]+-->[ \t]+{_TIME}(?:[ \t]+.*)?$")


@dataclass(frozen=True)
class SubtitleTrack:
    """One WebVTT subtitle track for the packager: the file, its BCP-47 language and its role."""

    path: Path
    language: str
    role: str = "subtitle"      # subtitle, caption or forced

    @property
    def name(self) -> str:
        """Folder name in the package: text/en, text/en_caption."""
        return self.language + ("" if self.role == "subtitle" else f"_{self.role}")


def _seconds(hours: str | None, minutes: str, seconds: str, millis: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def check_webvtt(path: Path) -> int:
    """Check that ``path`` is WebVTT the packager will read fully; returns the number of cues.

    Refuses (one ConfigError naming the file and the line of every problem): a file that is not
    UTF-8, a missing ``WEBVTT`` header, a malformed timing line, a cue that ends before it starts,
    cues out of start-time order, and a file without any cue.
    """
    cues, problems = webvtt_problems(path)
    if problems:
        raise ConfigError("; ".join(problems))
    return cues


def webvtt_problems(path: Path) -> tuple[int, list[str]]:
    """(cues, every problem as "file:line: what"), reading the whole file."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        return 0, [f"subtitle file {path} cannot be read: {exc.strerror or exc}"]
    except UnicodeDecodeError as exc:
        at = path.read_bytes()[: exc.start].count(b"\n") + 1
        return 0, [f"{path}:{at}: not UTF-8 text (WebVTT is UTF-8)"]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    problems = []
    if not re.match(r"^WEBVTT(?:[ \t].*)?$", lines[0]):
        problems.append(f"{path}:1: a WebVTT file starts with a 'WEBVTT' line, not {lines[0][:40]!r}")
    cues = 0
    last_start = 0.0
    for number, row in enumerate(lines[1:], start=2):
        if "-->" not in row:
            continue
        match = _TIMING.match(row.strip())
        if not match:
            problems.append(f"{path}:{number}: malformed cue timing {row.strip()[:60]!r} "
                            "(expected e.g. '00:00:01.000 --> 00:00:02.500')")
            continue
        start = _seconds(*match.groups()[:4])
        end = _seconds(*match.groups()[4:])
        if end <= start:
            problems.append(f"{path}:{number}: the cue ends ({end:.3f} s) before it starts ({start:.3f} s)")
        if start < last_start:
            problems.append(f"{path}:{number}: the cue starts at {start:.3f} s, before the previous cue "
                            f"({last_start:.3f} s); WebVTT cues are in start-time order")
        last_start = max(last_start, start)
        cues += 1
    if cues == 0 and not problems:
        problems.append(f"{path}: no cues (no 'start --> end' timing line)")
    return cues, problems


def copy_webvtt(src: Path, out: Path) -> Path:
    """Check ``src`` and write it to ``out`` as UTF-8 without a byte-order mark, with LF line ends."""
    check_webvtt(src)
    text = src.read_bytes().decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return out
