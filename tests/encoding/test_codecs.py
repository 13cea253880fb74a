"""HEVC and AV1 ladders through the same machinery: settings, encoder options, per-shot joins, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from reelflow.encoding.codecs import CODECS
from reelflow.encoding.encode import ShotCrf, encode_rung_per_shot, keyframe_frames, read_keyframes
from reelflow.encoding.probe import probe
from reelflow.errors import ConfigError
from reelflow.infra.settings import load_settings


def test_unset_presets_and_trial_crfs_follow_the_codec() -> None:
    av1 = load_settings(None, encode={"codec": "av1"})
    assert (av1.encode.preset, av1.trials.preset, av1.trials.final_preset) == ("8", "12", "8")
    assert av1.trials.crfs == (28, 38, 48) and av1.trials.codec == "av1" and av1.trials.x264_params == ""
    hevc = load_settings(None, encode={"codec": "hevc", "preset": "fast"})
    assert (hevc.encode.preset, hevc.trials.preset, hevc.trials.final_preset) == ("fast", "ultrafast", "fast")
    h264 = load_settings(None)
    assert (h264.encode.codec, h264.encode.preset, h264.trials.preset) == ("h264", "medium", "superfast")
    assert h264.trials.x264_params == "mbtree=1:rc-lookahead=40"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"encode": {"codec": "vp9"}}, "encode.codec"),
    ({"encode": {"codec": "av1", "preset": "medium"}}, "'medium' is not a libsvtav1 preset"),
    ({"encode": {"codecs": ["h264", "av1", "h264"]}}, "must be distinct and start with codec"),
    ({"encode": {"codec": "hevc"}, "trials": {"codec": "av1"}}, "trials.codec (av1) must be encode.codec"),
    ({"encode": {"codec": "h264"}, "trials": {"crfs": [20, 55]}}, "above libx264's CRF 51"),
])
def test_bad_codec_settings_are_refused_by_name(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(None, **overrides)


def test_encoder_options_give_closed_gops_with_forced_keyframes_only() -> None:
    h264 = CODECS["h264"].args("medium", 23.456, 97)
    assert h264[h264.index("-crf") + 1] == "23.46" and "scenecut=0:open-gop=0:stitchable=1" in h264
    assert "-profile:v" not in CODECS["h264"].args("superfast", 20, 97, threads=1, final=False)
    hevc = CODECS["hevc"].args("medium", 27.5, 97)
    assert hevc[hevc.index("-crf") + 1] == "27.5" and hevc[hevc.index("-forced-idr") + 1] == "1"
    params = hevc[hevc.index("-x265-params") + 1].split(":")
    assert {"keyint=97", "scenecut=0", "no-open-gop=1", "repeat-headers=1"} <= set(params)
    assert hevc[-2:] == ["-tag:v", "hev1"]                     # parameter sets in band: pieces join
    assert "-tag:v" not in CODECS["hevc"].args("ultrafast", 20, 97, threads=1, final=False)   # NUT trials
    svt = CODECS["av1"].args("8", 40.6, 97, threads=1)
    assert svt[svt.index("-crf") + 1] == "41"                  # SVT-AV1 takes whole CRFs
    assert svt[svt.index("-svtav1-params") + 1] == "scd=0:lp=1" and svt[svt.index("-g") + 1] == "97"
    assert CODECS["av1"].crf(70) == "63" and CODECS["h264"].crf(-1) == "0"


@pytest.mark.parametrize(("name", "preset", "family"), [("hevc", "ultrafast", "hev1"), ("av1", "12", "av01")])
def test_a_rung_encoded_shot_by_shot_at_two_crfs_joins_into_one_stream(
        name: str, preset: str, family: str, sintel_fight: Path, tmp_path: Path) -> None:
    info = probe(sintel_fight)
    frames = info.video.frames
    keyframes = keyframe_frames([0, 100], frames, info.video.fps, 4.0)
    low, high = (22.0, 36.0) if name == "hevc" else (30.0, 50.0)
    pieces = [ShotCrf(0, 100, low), ShotCrf(100, frames, high)]
    rendition = encode_rung_per_shot(sintel_fight, info, 640, 360, pieces, keyframes, preset,
                                     tmp_path / f"rung-{name}.mp4", codec=name,  # type: ignore[arg-type]
                                     preroll=6)        # the second piece's encode starts 6 frames early
    assert rendition.codec == name and rendition.frames == frames
    assert read_keyframes(rendition.path) == (frames, list(keyframes))
    with av.open(str(rendition.path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.codec_tag == family
        decoded = sum(1 for _ in container.decode(stream))
    assert decoded == frames                                   # every frame of both pieces decodes, none twice


def _reelflow(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "reelflow.toml"
    config.write_text(f'[storage]\nwork_dir = "{tmp_path / "work"}"\n')
    return subprocess.run([sys.executable, "-m", "reelflow.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "REELFLOW_CONFIG": str(config)}, check=False)


def test_cli_ladder_with_av1(caminandes: Path, tmp_path: Path) -> None:
    done = _reelflow("ladder", str(caminandes), "--codec", "av1", "--json", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["codec"] == "av1" and len(result["rungs"]) >= 2
    assert all(28 <= c <= 48 for r in result["rungs"] for c in r["crfs"])   # within the AV1 probes
    assert 93 <= result["rungs"][-1]["vmaf"] <= 95 and result["analysis_cpu_s"] > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--codec", "vp9"], "'vp9' is not one of h264, hevc, av1"),
    (["--codec", "h264,vp9"], "'vp9' is not one of h264, hevc, av1"),
])
def test_cli_refuses_a_bad_codec_in_one_line(args: list[str], message: str, caminandes: Path,
                                             tmp_path: Path) -> None:
    done = _reelflow("ladder", str(caminandes), *args, tmp_path=tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
