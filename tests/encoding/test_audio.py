"""The audio stage on generated studio masters: the plan, routing, layout QC, loudness, packaging."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import m3u8
import mpegdash.parser
import numpy as np
import pytest

from audio_masters import (
    MOV_51_TONES,
    MXF_TONES,
    audio_masters_dir,
    decoded,
    dominant_hz,
    ebur128_lufs,
    level_db,
    lfe_fullband_master,
    mov_master,
    mxf_master,
)
from reelflow.encoding.audio import (
    AudioPlan,
    AudioSource,
    check_layouts,
    encode_track,
    infer_role,
    plan_audio,
)
from reelflow.encoding.encode import encode_video_rung, keyframe_frames
from reelflow.encoding.probe import AudioStream, MediaInfo, probe
from reelflow.errors import ConfigError
from reelflow.infra.settings import AudioConfig, EncodeConfig, QCConfig, Rung
from reelflow.packaging.packager import Package, package
from reelflow.packaging.sidecar import load_sidecar

__all__ = ["audio_masters_dir", "lfe_fullband_master", "mov_master", "mxf_master"]  # fixtures used here

FAST = EncodeConfig(preset="ultrafast")
TARGET = AudioConfig().loudness_lufs


def names(plan: AudioPlan) -> list[str]:
    return [t.name for t in plan.tracks]


# --- the plan (pure) ------------------------------------------------------------------------------

def test_mov_plan_publishes_every_stream_and_a_bs775_stereo_of_the_51(mov_master: Path) -> None:
    plan = plan_audio(probe(mov_master))
    assert names(plan) == ["aac_eng_51", "aac_fra", "aac_und", "aac_eng"]
    by_name = {t.name: t for t in plan.tracks}
    assert by_name["aac_eng_51"].channels == 6 and by_name["aac_eng_51"].source.layout == "5.1"
    assert by_name["aac_eng"].downmix == "bs775" and by_name["aac_eng"].source.streams == (0,)
    assert by_name["aac_und"].language == "und"           # the untagged second stereo stream
    assert plan.left_out == ()


def test_eac3_setting_names_the_51_ec3(mov_master: Path) -> None:
    plan = plan_audio(probe(mov_master), AudioConfig(multichannel_codec="eac3"))
    assert names(plan)[0] == "ec3_eng_51" and plan.tracks[0].codec == "eac3"
    assert "aac_eng" in names(plan)                       # the stereo stays AAC


def test_71_stays_aac_with_a_bs775_stereo(mov_master: Path) -> None:
    info = probe(mov_master)
    wide = MediaInfo(**{**info.__dict__, "audio": (_stream(0, channels=8, layout="7.1", language="de"),)})
    plan = plan_audio(wide, AudioConfig(multichannel_codec="eac3"))
    assert [(t.name, t.codec, t.channels, t.downmix) for t in plan.tracks] == [
        ("aac_de_71", "aac", 8, "none"), ("aac_de", "aac", 2, "bs775")]


def test_mxf_mono_tracks_group_into_51_and_stereo(mxf_master: Path) -> None:
    info = probe(mxf_master)
    assert len(info.audio) == 8 and all(a.channels == 1 for a in info.audio)
    plan = plan_audio(info)
    assert names(plan) == ["aac_und_51", "aac_und"]
    assert plan.tracks[0].source == AudioSource((0, 1, 2, 3, 4, 5), "5.1")
    assert plan.tracks[1].source == AudioSource((6, 7), "stereo") and plan.tracks[1].downmix == "none"


def test_sidecar_groups_and_leaves_out_what_it_does_not_list(mxf_master: Path, tmp_path: Path) -> None:
    side = tmp_path / "m.json"
    side.write_text(json.dumps({"audio": [{"tracks": [1, 2, 3, 4, 5, 6], "layout": "5.1", "language": "en"}]}))
    plan = plan_audio(probe(mxf_master), sidecar=load_sidecar(side).audio)
    assert names(plan) == ["aac_en_51", "aac_en"]        # no stereo of its own: a BS.775 downmix
    assert [(x.track, x.reason) for x in plan.left_out] == [
        (7, "not listed in the sidecar's audio: excluded by the sidecar"),
        (8, "not listed in the sidecar's audio: excluded by the sidecar")]


def test_a_layout_that_does_not_fit_is_one_error_naming_each_entry(mxf_master: Path, tmp_path: Path) -> None:
    side = tmp_path / "m.json"
    side.write_text(json.dumps({"audio": [
        {"tracks": [1, 2, 3, 4, 5], "layout": "5.1", "language": "en"},
        {"tracks": [7, 8, 9], "layout": "stereo", "language": "fr"},
        {"stream": 12, "language": "de"}]}))
    with pytest.raises(ConfigError) as caught:
        plan_audio(probe(mxf_master), sidecar=load_sidecar(side).audio)
    text = str(caught.value)
    assert "audio[0]: layout 5.1 needs 6 channels, tracks [1, 2, 3, 4, 5] hold 5" in text
    assert "audio[1].tracks: the media has 8 audio stream(s): no track [9]" in text
    assert "audio[2].stream: the media has 8 audio stream(s)" in text


def _stream(pos: int, **kw: Any) -> AudioStream:
    fields: dict[str, Any] = {"index": pos + 1, "codec": "pcm_s24le", "channels": 2, "layout": "stereo",
                              "sample_rate": 48000, "duration_s": 2.0, "start_s": 0.0, "language": "eng"}
    return AudioStream(**{**fields, **kw})


@pytest.mark.parametrize(("kw", "role"), [
    ({}, "main"),
    ({"dispositions": ("visual_impaired",)}, "description"),
    ({"dispositions": ("comment",)}, "commentary"),
    ({"dispositions": ("dub",)}, "dub"),
    ({"title": "English Audio Description"}, "description"),
    ({"title": "Director's Commentary"}, "commentary"),
    ({"title": "Stereo Mix"}, "main"),
])
def test_role_from_disposition_or_title(kw: dict[str, Any], role: str) -> None:
    assert infer_role(_stream(0, **kw)) == role


def test_two_untagged_streams_get_unique_names_and_a_warning(mov_master: Path) -> None:
    info = probe(mov_master)
    twin = MediaInfo(**{**info.__dict__, "audio": (_stream(0, language=None), _stream(1, language=None),
                                                     _stream(2, dispositions=("visual_impaired",)))})
    plan = plan_audio(twin)
    assert names(plan) == ["aac_und", "aac_und_t2", "aac_eng_description"]
    assert len(plan.warnings) == 1 and "tracks 1 and 2" in plan.warnings[0]


# --- encodes: routing, channel counts, loudness -----------------------------------------------------

@pytest.fixture(scope="module")
def mov_tracks(mov_master: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    info = probe(mov_master)
    work = tmp_path_factory.mktemp("mov-audio")
    return {t.name: encode_track(mov_master, info, t, work / f"{t.name}.mp4") for t in plan_audio(info).tracks}


def test_51_keeps_every_channel_where_it_was(mov_tracks: dict[str, Any]) -> None:
    samples, rate = decoded(mov_tracks["aac_eng_51"].path)
    assert samples.shape[0] == 6
    order = ("FL", "FR", "FC", "LFE", "BL", "BR")
    for channel, hz in MOV_51_TONES.items():
        assert dominant_hz(samples[order.index(channel)], rate) == pytest.approx(hz, abs=3), channel


def test_bs775_downmix_mixes_centre_and_surrounds_but_not_the_lfe(mov_tracks: dict[str, Any]) -> None:
    samples, rate = decoded(mov_tracks["aac_eng"].path)
    assert samples.shape[0] == 2

    left = np.abs(np.fft.rfft(samples[0]))
    freqs = np.fft.rfftfreq(samples.shape[1], 1 / rate)

    def band(hz: float) -> float:
        return float(left[(freqs > hz - 5) & (freqs < hz + 5)].max())

    assert band(440) > 10 * band(550)        # FL in left, FR not
    assert band(660) > 0.5 * band(440)       # Ls at -3 dB in left
    assert band(50) < 0.1 * band(440)        # the LFE left out (its tone would be at 0.7; speech has a little 50 Hz)


def test_every_track_is_at_the_target_loudness(mov_tracks: dict[str, Any]) -> None:
    for name, rendition in mov_tracks.items():
        figures = dict(rendition.loudness)
        assert figures["input_i"] > -30 and figures["output_i"] == pytest.approx(TARGET, abs=1), name
        assert ebur128_lufs(rendition.path) == pytest.approx(TARGET, abs=1), name
        assert figures["output_tp"] <= AudioConfig().true_peak_dbtp + 0.5, name


def test_mxf_grouping_routes_tracks_to_channels(mxf_master: Path, tmp_path: Path) -> None:
    info = probe(mxf_master)
    plan = plan_audio(info)
    surround = encode_track(mxf_master, info, plan.tracks[0], tmp_path / "51.mp4")
    samples, rate = decoded(surround.path)
    assert samples.shape[0] == 6
    for track, channel in ((1, 0), (2, 1), (5, 4), (6, 5)):
        assert dominant_hz(samples[channel], rate) == pytest.approx(MXF_TONES[track], abs=3), track
    assert level_db(samples[3]) < -60                     # the silent LFE stays silent
    stereo = encode_track(mxf_master, info, plan.tracks[1], tmp_path / "20.mp4")
    samples, rate = decoded(stereo.path)
    assert [round(dominant_hz(c, rate)) for c in samples] == [330, 880]
    assert ebur128_lufs(surround.path) == pytest.approx(TARGET, abs=1)
    assert ebur128_lufs(stereo.path) == pytest.approx(TARGET, abs=1)


# --- layout QC ---------------------------------------------------------------------------------------

def _failed(found: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {layout["rendition"]: [c["name"].split(":")[1] for c in layout["checks"] if not c["passed"]]
            for layout in found}


def test_layout_qc_finds_silent_lfe_phase_inversion_and_full_band_lfe(
        mov_master: Path, mxf_master: Path, lfe_fullband_master: Path) -> None:
    mov = probe(mov_master)
    assert _failed(check_layouts(mov_master, plan_audio(mov), mov, QCConfig())) == {
        "aac_eng_51": [], "aac_fra": ["phase_FL_FR"], "aac_und": []}
    mxf = probe(mxf_master)
    found = check_layouts(mxf_master, plan_audio(mxf), mxf, QCConfig())
    assert _failed(found) == {"aac_und_51": ["silent_channels"], "aac_und": []}
    assert "LFE" in found[0]["checks"][0]["message"]
    assert found[0]["measurements"]["integrated_lufs"] > -30
    full = probe(lfe_fullband_master)
    assert _failed(check_layouts(lfe_fullband_master, plan_audio(full), full, QCConfig())) == {
        "aac_und_51": ["lfe_band"]}


# --- packaged: both manifests, decoded channels, loudness of the published segments --------------------

@pytest.fixture(scope="module")
def mov_package(mov_master: Path, mov_tracks: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Package:
    info = probe(mov_master)
    work = tmp_path_factory.mktemp("mov-pkg")
    keys = keyframe_frames([0], info.video.frames, info.video.fps, FAST.segment_s)
    video = encode_video_rung(mov_master, Rung(width=320, height=180, kbps=300), keys, info, FAST, work / "v.mp4")
    eac3 = plan_audio(info, AudioConfig(multichannel_codec="eac3")).tracks[0]
    extra = encode_track(mov_master, info, eac3, work / "ec3.mp4")
    return package([video, *mov_tracks.values(), extra], work / "out", segment_s=FAST.segment_s)


def _joined(root: Path, name: str, out: Path) -> Path:
    """A rendition's init segment and media segments as one file ffmpeg reads."""
    folder = root / "audio" / name
    parts = sorted(folder.glob("*.m4s"), key=lambda p: int(p.stem))
    out.write_bytes((folder / "init.mp4").read_bytes() + b"".join(p.read_bytes() for p in parts))
    return out


def test_both_manifests_list_every_rendition_with_language_role_and_channels(mov_package: Package) -> None:
    expected = {  # name: (lang in DASH, channels, codec family)
        "aac_eng_51": ("en", 6, "mp4a"), "aac_eng": ("en", 2, "mp4a"), "aac_fra": ("fr", 2, "mp4a"),
        "aac_und": (None, 2, "mp4a"), "ec3_eng_51": ("en", 6, "ec-3")}
    mpd = mpegdash.parser.MPEGDASHParser.parse(str(mov_package.root / "manifest.mpd"))
    found = {}
    for aset in mpd.periods[0].adaptation_sets:
        if aset.content_type != "audio":
            continue
        assert len(aset.representations) == 1             # stereo and 5.1 never share a set
        rep = aset.representations[0]
        name = rep.segment_templates[0].media.split("/")[1] if rep.segment_templates else \
            aset.segment_templates[0].media.split("/")[1]
        config = (rep.audio_channel_configurations or aset.audio_channel_configurations)[0]
        roles = [r.value for r in aset.roles or []]
        found[name] = (aset.lang, int(config.value), rep.codecs.split(".")[0])
        assert roles == ["main"], name
    assert found == expected
    master = m3u8.load(str(mov_package.root / "master.m3u8"))
    media = {m.uri.removeprefix("audio/").removesuffix(".m3u8"): m for m in master.media if m.type == "AUDIO"}
    assert {n: int(m.channels) for n, m in media.items()} == {n: v[1] for n, v in expected.items()}
    assert media["ec3_eng_51"].group_id == "audio-ec3" and media["aac_eng_51"].group_id == "audio"
    assert media["aac_fra"].language == "fr"
    groups = {p.stream_info.audio: p.stream_info.codecs for p in master.playlists}
    assert "ec-3" in groups["audio-ec3"] and "ec-3" not in groups["audio"]


def test_published_segments_decode_with_their_channels_at_the_target(mov_package: Package, tmp_path: Path) -> None:
    for name, channels in (("aac_eng_51", 6), ("aac_eng", 2), ("aac_fra", 2), ("aac_und", 2), ("ec3_eng_51", 6)):
        joined = _joined(mov_package.root, name, tmp_path / f"{name}.mp4")
        samples, _ = decoded(joined)
        assert samples.shape[0] == channels, name
        assert samples.shape[1] / 48000 == pytest.approx(2.5, abs=0.1), name
        assert ebur128_lufs(joined) == pytest.approx(TARGET, abs=1), name


# --- a sidecar with many mistakes: every one in one run -------------------------------------------

def test_a_sidecar_with_many_errors_reports_them_all(tmp_path: Path) -> None:
    (tmp_path / "bad.vtt").write_text("WEBVTT\n\n00:00:01.000 --> 00:00:00.500\nhello\n\n"
                                      "00:00:02.000 --> 00:00:3.000\nbroken\n")
    side = tmp_path / "title.json"
    side.write_text(json.dumps({
        "countries": ["NLD"],
        "audio": [{"language": "english"}, {"language": "en", "role": "karaoke"},
                  {"tracks": [0, 2], "language": "fr"}, {"file": "missing.wav", "language": "de"}],
        "subtitles": [{"file": "bad.vtt", "language": "nl"}, {"file": "x.srt", "language": "en"}],
        "colour": "red"}))
    with pytest.raises(ConfigError) as caught:
        load_sidecar(side)
    text = str(caught.value)
    assert re.search(r"(\d+) problems", text) and int(re.search(r"(\d+) problems", text).group(1)) >= 8
    for where in ("countries:", "audio[0].language:", "audio[1].role:", "audio[2].tracks:", "audio[3].file:",
                  "subtitles[1].file:", "colour:"):
        assert where in text, where
    assert f"{tmp_path / 'bad.vtt'}:3: the cue ends" in text
    assert "bad.vtt:6: malformed cue timing" in text


# --- the playback service filters audio by codec and channels -------------------------------------------

@pytest.fixture(scope="module")
def mov_title(mov_package: Package, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from reelflow.infra.storage import LocalStorage
    from reelflow.packaging import publish
    from reelflow.playback.catalog import load_title

    store = LocalStorage(tmp_path_factory.mktemp("store"))
    prefix = "titles/feature/v-audio0001"
    publish.publish_package(mov_package.root, store, prefix)
    publish.write_title_record(store, "titles/feature", {
        "title_id": "feature", "status": "published", "package": store.url_for(prefix),
        "manifests": {"dash": store.url_for(f"{prefix}/manifest.mpd"), "hls": store.url_for(f"{prefix}/master.m3u8")},
        "encryption": None, "countries": None})
    return load_title(store, "feature")


def _dash_audio(text: str) -> list[str]:
    from reelflow.playback.manifests import audio_channels

    mpd = mpegdash.parser.MPEGDASHParser.parse(text)
    return sorted(f"{a.lang}:{r.codecs.split('.')[0]}:{audio_channels(a, r)}"
                  for a in mpd.periods[0].adaptation_sets if a.content_type == "audio" for r in a.representations)


@pytest.mark.parametrize(("codecs", "channels", "dash", "hls"), [
    # a device that declares nothing new keeps what it decodes (AAC: stereo and 5.1)
    (("avc1", "mp4a"), 0, ["None:mp4a:2", "en:mp4a:2", "en:mp4a:6", "fr:mp4a:2"], {"2", "6"}),
    (("avc1", "mp4a", "ec-3"), 0, ["None:mp4a:2", "en:ec-3:6", "en:mp4a:2", "en:mp4a:6", "fr:mp4a:2"], {"2", "6"}),
    (("avc1", "mp4a"), 2, ["None:mp4a:2", "en:mp4a:2", "fr:mp4a:2"], {"2"}),
])
def test_service_filters_audio_by_codec_and_channels(mov_title: Any, codecs: tuple[str, ...], channels: int,
                                                     dash: list[str], hls: set[str]) -> None:
    from reelflow.playback.manifests import Limits, filter_dash, filter_hls_master

    limits = Limits(codecs=frozenset(codecs), max_height=1080, audio_channels=channels)
    assert _dash_audio(filter_dash(mov_title, limits, [("origin", "http://127.0.0.1:1")])) == dash
    master = m3u8.loads(filter_hls_master(mov_title, limits, "http://127.0.0.1:1"))
    assert {m.channels for m in master.media if m.type == "AUDIO"} == hls
    assert all(("ec-3" in (p.stream_info.codecs or "")) == ("ec-3" in codecs and p.stream_info.audio == "audio-ec3")
               for p in master.playlists)
    assert {m.language for m in master.media if m.type == "AUDIO"} >= {"en", "fr"}


# --- the CLI player picks a language and its surround or stereo rendition ----------------------------

@pytest.mark.parametrize("fmt", ["dash", "hls"])
def test_player_picks_language_and_channels(mov_package: Package, fmt: str) -> None:
    from reelflow.errors import PlayerError
    from reelflow.player.manifest import parse_dash, parse_hls, select_audio

    root = mov_package.root
    if fmt == "dash":
        p = parse_dash((root / "manifest.mpd").read_text(), (root / "manifest.mpd").as_uri())
    else:
        p = parse_hls((root / "master.m3u8").read_text(), (root / "master.m3u8").as_uri(),
                      lambda url: Path(url.removeprefix("file://")).read_text())
    assert {(t.language, t.channels) for t in p.audio} >= {("en", 6), ("en", 2), ("fr", 2)}

    def picked(language: str | None, channels: int | None) -> tuple[str | None, int, str]:
        track = select_audio(p, language, channels).audio
        assert len(track) == 1
        return track[0].language, track[0].channels, track[0].codecs or track[0].id

    assert picked("en", None)[:2] == ("en", 6)
    assert picked("en", 2)[:2] == ("en", 2)
    assert picked("fr", 6)[:2] == ("fr", 2)         # no French 5.1: its stereo
    with pytest.raises(PlayerError, match="no audio track in 'de': this title offers"):
        select_audio(p, "de")


def test_sidecar_problems_with_the_media_come_with_its_own(tmp_path: Path) -> None:
    side = tmp_path / "title.json"
    side.write_text(json.dumps({"countries": ["NLD"], "audio": [
        {"tracks": [1, 2, 3, 4, 5], "layout": "5.1", "language": "en"},
        {"tracks": [7, 9], "layout": "stereo", "language": "fr"},
        {"stream": 8, "language": "de"}]}))
    with pytest.raises(ConfigError) as caught:
        load_sidecar(side, [1] * 8)        # eight mono tracks, as the MXF master has
    text = str(caught.value)
    assert "4 problems" in text and "countries:" in text
    assert "audio[0]: layout 5.1 needs 6 channels, tracks [1, 2, 3, 4, 5] hold 5" in text
    assert "audio[1].tracks: the media has 8 audio stream(s): no track [9]" in text
    assert "audio[2].stream: the media has 8 audio stream(s), so there is no audio stream 8" in text
