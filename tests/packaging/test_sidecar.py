"""sidecar: the studio's JSON beside the media, checked with one clear error per problem; WebVTT checks."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from reelflow.errors import ConfigError
from reelflow.packaging.sidecar import load_sidecar
from reelflow.packaging.subtitles import check_webvtt, copy_webvtt

GOOD_VTT = "WEBVTT\n\n1\n00:00:00.500 --> 00:00:02.000 align:start\nHello\n\n00:03.000 --> 00:04.000\nWorld\n"


def write(folder: Path, data: Any, name: str = "title.json") -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_full_sidecar_resolves_files_beside_it(tmp_path: Path) -> None:
    (tmp_path / "dub.wav").write_bytes(b"RIFF")
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "nl.vtt").write_text(GOOD_VTT)
    sidecar = load_sidecar(write(tmp_path, {
        "title_id": "sintel", "countries": ["nl", "DE", "NL"],
        "audio": [{"language": "en"}, {"stream": 1, "language": "en", "role": "description"},
                  {"file": "dub.wav", "language": "pt-BR", "role": "dub"}],
        "subtitles": [{"file": "subs/nl.vtt", "language": "nl"},
                      {"file": "subs/nl.vtt", "language": "nl", "role": "forced"}],
    }))
    assert sidecar.title_id == "sintel"
    assert sidecar.countries == ("NL", "DE")
    assert [(a.language, a.role, a.stream, a.path) for a in sidecar.audio] == [
        ("en", "main", None, None), ("en", "description", 1, None),
        ("pt-BR", "dub", None, (tmp_path / "dub.wav").resolve())]
    assert [s.path for s in sidecar.subtitles] == [(tmp_path / "subs" / "nl.vtt").resolve()] * 2


def test_empty_sidecar_means_defaults(tmp_path: Path) -> None:
    sidecar = load_sidecar(write(tmp_path, {}))
    assert sidecar.countries is None and sidecar.audio == () and sidecar.subtitles == ()
    assert sidecar.release_at is None and sidecar.expected_plays is None


def test_release_time_is_utc_and_expected_plays_a_number(tmp_path: Path) -> None:
    zoned = load_sidecar(write(tmp_path, {"release_at": "2026-12-24T18:00:00+01:00", "expected_plays": 2500}))
    assert zoned.release_at == dt.datetime(2026, 12, 24, 17, 0, tzinfo=dt.UTC) and zoned.expected_plays == 2500
    naive = load_sidecar(write(tmp_path, {"release_at": "2026-12-24T18:00:00"}))
    assert naive.release_at == dt.datetime(2026, 12, 24, 18, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("data", "message"), [
    ("{not json", r"is not valid JSON: .* at line 1"),
    ({"audio": [{"language": "english"}]}, r"audio\[0\]\.language: 'english' is not a BCP-47 language tag"),
    ({"audio": [{"language": "und"}]}, r"audio\[0\]\.language: 'und' is not a language a viewer can pick"),
    ({"audio": [{"language": "en", "role": "karaoke"}]}, r"audio\[0\]\.role: Input should be 'main'"),
    ({"audio": [{"file": "missing.wav", "language": "de"}]}, r"audio\[0\]\.file: 'missing.wav' does not exist"),
    ({"audio": [{"language": "en", "stream": -1}]}, r"audio\[0\]\.stream: Input should be greater than or equal"),
    ({"audio": [{"language": "en"}, {"language": "en", "stream": 1}]}, r"two audio tracks share language and role"),
    ({"subtitles": [{"file": "a.srt", "language": "en"}]}, r"subtitles\[0\]\.file: 'a.srt': subtitles are WebVTT"),
    ({"countries": ["NLD"]}, r"countries: \['NLD'\] are not ISO 3166 alpha-2"),
    ({"countries": []}, r"countries: an empty list would license the title nowhere"),
    ({"languages": ["en"]}, r"languages: Extra inputs are not permitted"),
    ({"release_at": "at Christmas"}, r"release_at: Input should be a valid datetime"),
    ({"expected_plays": -5}, r"expected_plays: Input should be greater than or equal to 0"),
    ({"expected_views": 5}, r"expected_views: Extra inputs are not permitted"),
])
def test_bad_sidecar_names_file_and_field(tmp_path: Path, data: Any, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=message) as caught:
        load_sidecar(path)
    assert str(caught.value).startswith(f"sidecar {path}")


def test_missing_sidecar(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_sidecar(tmp_path / "nope.json")


def test_malformed_vtt_in_a_sidecar_is_refused_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nok\n\n00:00:03,000 --> 00:00:04,000\nsrt commas\n",
          "bad.vtt")
    with pytest.raises(ConfigError, match=r"subtitles\[0\]\.file: .*bad\.vtt:6: malformed cue timing"):
        load_sidecar(write(tmp_path, {"subtitles": [{"file": "bad.vtt", "language": "en"}]}))


@pytest.mark.parametrize(("text", "message"), [
    ("1\n00:00:01.000 --> 00:00:02.000\nx\n", r":1: a WebVTT file starts with a 'WEBVTT' line"),
    ("WEBVTT\n\n00:00:02.000 --> 00:00:01.000\nx\n", r":3: the cue ends \(1\.000 s\) before it starts"),
    ("WEBVTT\n\n00:00:05.000 --> 00:00:06.000\nx\n\n00:00:01.000 --> 00:00:02.000\ny\n",
     r":6: the cue starts at 1\.000 s, before the previous cue"),
    ("WEBVTT\n\nNOTE nothing here\n", r"no cues"),
    ("WEBVTT\n\n00:00:01.000 --> 00:00:99.000\nx\n", r":3: malformed cue timing"),
])
def test_check_webvtt_refusals(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text, "s.vtt")
    with pytest.raises(ConfigError, match=message):
        check_webvtt(path)


def test_vtt_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.vtt"
    path.write_bytes("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nd\xe9j\xe0 vu\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.vtt:4: not UTF-8"):
        check_webvtt(path)


def test_copy_webvtt_normalises_bom_and_line_ends(tmp_path: Path) -> None:
    src = tmp_path / "in.vtt"
    src.write_bytes(b"\xef\xbb\xbf" + GOOD_VTT.replace("\n", "\r\n").encode())
    out = copy_webvtt(src, tmp_path / "out" / "en.vtt")
    assert out.read_bytes() == GOOD_VTT.encode()
    assert check_webvtt(out) == 2
