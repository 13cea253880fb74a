"""Studio masters with many sound tracks, made once per session with the bundled ffmpeg.

Every channel that is not speech is a sine of its own frequency, so a test can tell by the
spectrum which source channel ended where. Import the fixtures into a test module
(``from audio_masters import mov_master, ...``); the ``talking_head`` clip gives the speech.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from reelflow.infra.tools import ffmpeg_exe

SECONDS = 2.5
# 5.1 of the MOV master: FL FR FC LFE BL BR (FC is speech, LFE a 50 Hz rumble)
MOV_51_TONES = {"FL": 440.0, "FR": 550.0, "LFE": 50.0, "BL": 660.0, "BR": 770.0}
# The MXF master's 8 mono tracks: 1-6 = 5.1 with a silent LFE, 7-8 = Lt/Rt
MXF_TONES = {1: 440.0, 2: 550.0, 5: 660.0, 6: 770.0, 7: 330.0, 8: 880.0}


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True)


def _sines(freqs: list[float]) -> list[str]:
    out: list[str] = []
    for f in freqs:
        out += ["-f", "lavfi", "-t", f"{SECONDS}", "-i", f"sine=f={f:g}:r=48000" if f else
                "anullsrc=r=48000:cl=mono"]
    return out


@pytest.fixture(scope="session")
def audio_masters_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio-masters")


@pytest.fixture(scope="session")
def mov_master(talking_head: Path, audio_masters_dir: Path) -> Path:
    """MOV, 426x240 H.264, 2.5 s: English 5.1 PCM (speech on C, tones elsewhere), French stereo whose
    right channel is the left inverted (a phase-inverted pair), and an untagged stereo speech track."""
    out = audio_masters_dir / "feature.mov"
    tones = [MOV_51_TONES[c] for c in ("FL", "FR", "LFE", "BL", "BR")] + [600.0]
    _ffmpeg("-t", f"{SECONDS}", "-i", str(talking_head), *_sines(tones),
            "-filter_complex",
            "[0:a]aresample=48000,pan=mono|c0=0.5*c0+0.5*c1,asplit=2[sp][sp2];"
            "[1:a][2:a][sp][3:a][4:a][5:a]join=inputs=6:channel_layout=5.1(side)"
            ":map=0.0-FL|1.0-FR|2.0-FC|3.0-LFE|4.0-SL|5.0-SR[m51];"
            "[6:a]pan=stereo|c0=c0|c1=-1*c0[fr];"
            "[sp2]pan=stereo|c0=c0|c1=c0[es];"
            "[0:v]scale=426:240[v]",
            "-map", "[v]", "-map", "[m51]", "-map", "[fr]", "-map", "[es]",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "pcm_s24le",
            "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra",
            "-t", f"{SECONDS}", str(out))
    return out


@pytest.fixture(scope="session")
def mxf_master(talking_head: Path, audio_masters_dir: Path) -> Path:
    """MXF OP1a, MPEG-2 426x240 25 fps, 2.5 s, eight mono 24-bit PCM tracks: 1-6 = L R C LFE Ls Rs
    (speech on C, a silent LFE), 7-8 = Lt/Rt (tones)."""
    out = audio_masters_dir / "feature.mxf"
    freqs = [MXF_TONES.get(t, 0.0) for t in (1, 2, 5, 6, 7, 8)] + [0.0]
    _ffmpeg("-t", f"{SECONDS}", "-i", str(talking_head), *_sines(freqs),
            "-filter_complex", "[0:a]aresample=48000,pan=mono|c0=0.5*c0+0.5*c1[sp];[0:v]scale=426:240,fps=25[v]",
            "-map", "[v]", "-map", "1:a", "-map", "2:a", "-map", "[sp]", "-map", "7:a", "-map", "3:a",
            "-map", "4:a", "-map", "5:a", "-map", "6:a",
            "-c:v", "mpeg2video", "-q:v", "4", "-c:a", "pcm_s24le", "-t", f"{SECONDS}", str(out))
    return out


@pytest.fixture(scope="session")
def lfe_fullband_master(talking_head: Path, audio_masters_dir: Path) -> Path:
    """MOV, six mono tracks where track 4 (LFE) carries speech: a main channel patched to the LFE."""
    out = audio_masters_dir / "lfe-fullband.mov"
    _ffmpeg("-t", f"{SECONDS}", "-i", str(talking_head), *_sines([440.0, 550.0, 1000.0, 660.0, 770.0]),
            "-filter_complex", "[0:a]aresample=48000,pan=mono|c0=0.5*c0+0.5*c1[sp];[0:v]scale=426:240[v]",
            "-map", "[v]", "-map", "1:a", "-map", "2:a", "-map", "3:a", "-map", "[sp]", "-map", "4:a",
            "-map", "5:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "pcm_s16le",
            "-t", f"{SECONDS}", str(out))
    return out


def decoded(path: Path | str, stream: int = 0) -> tuple[np.ndarray, int]:
    """(samples as channels x frames float array, sample rate) of an audio file or a concatenated CMAF track."""
    with av.open(str(path)) as container:
        audio = container.streams.audio[stream]
        chunks = [frame.to_ndarray().astype(np.float64).reshape(audio.codec_context.channels, -1)
                  if frame.format.is_planar else
                  frame.to_ndarray().astype(np.float64).reshape(-1, audio.codec_context.channels).T
                  for frame in container.decode(audio)]
        return np.concatenate(chunks, axis=1), audio.codec_context.sample_rate


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    """The frequency of the strongest spectral peak of one channel (0 for silence)."""
    if not np.any(np.abs(samples) > 1e-4):
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def level_db(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(samples ** 2)))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def ebur128_lufs(path: Path | str, stream: str = "0:a:0") -> float:
    """Integrated loudness of a file's audio, measured by ffmpeg's ebur128 (not by loudnorm)."""
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", stream,
                           "-af", "ebur128=framelog=quiet", "-f", "null", "-"],
                          capture_output=True, text=True, check=True)
    summary = done.stderr[done.stderr.rfind("Summary:"):]
    line = next(ln for ln in summary.splitlines() if ln.strip().startswith("I:"))
    return float(line.split()[1])
