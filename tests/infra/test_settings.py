"""settings: defaults, TOML file, environment, and unknown keys refused with the key's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelflow.errors import ConfigError
from reelflow.infra.settings import APPLE_HLS_LADDER, load_settings


def test_defaults_are_the_embedded_ones() -> None:
    settings = load_settings()
    assert settings.encode.ladder == APPLE_HLS_LADDER
    assert settings.storage.output == "reelflow-data/reelflow-output"


def test_file_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "reelflow.toml"
    config.write_text('[ladder]\nmode = "fixed"\n[encode]\npreset = "slow"\nsegment_s = 6\n[qc]\nblack_min_s = 1.5\n')
    settings = load_settings(config)
    assert (settings.encode.preset, settings.encode.segment_s, settings.qc.black_min_s) == ("slow", 6.0, 1.5)
    monkeypatch.setenv("REELFLOW_ENCODE__PRESET", "veryfast")
    assert load_settings(config).encode.preset == "veryfast"
    assert load_settings(config).encode.segment_s == 6.0  # the rest of the file still applies
    overridden = load_settings(config, encode={"preset": "fast"})
    assert (overridden.encode.preset, overridden.encode.segment_s) == ("fast", 6.0)  # overrides win, key by key


def test_trials_must_predict_the_final_preset(tmp_path: Path) -> None:
    config = tmp_path / "reelflow.toml"
    config.write_text('[encode]\npreset = "slow"\n')
    with pytest.raises(ConfigError, match=r"trials\.final_preset \(medium\) must be encode\.preset \(slow\)"):
        load_settings(config)
    assert load_settings(config, ladder={"mode": "fixed"}).encode.preset == "slow"  # nothing is predicted
    both = load_settings(config, trials={"final_preset": "slow"})
    assert (both.ladder.mode, both.trials.final_preset) == ("per-shot", "slow")


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "reelflow.toml"
    config.write_text("[encode]\npreset = 'fast'\nprest = 'slow'\n")
    with pytest.raises(ConfigError, match=r"'encode\.prest'.*reelflow\.toml"):
        load_settings(config)


def test_unknown_env_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELFLOW_ENCODE__PRESSET", "fast")
    with pytest.raises(ConfigError, match=r"encode\.presset"):
        load_settings()


def test_bad_value_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="parallel_encodes"):
        load_settings(encode={"parallel_encodes": 0})
    broken = tmp_path / "broken.toml"
    broken.write_text("[encode\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_binary_overrides_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELFLOW_FFMPEG", "/usr/bin/ffmpeg")
    load_settings()  # not refused as an unknown key
