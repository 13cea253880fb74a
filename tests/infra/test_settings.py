"""settings: defaults, TOML file, environment, and unknown keys refused with the key's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelflow.errors import ConfigError
from reelflow.infra.settings import APPLE_HLS_LADDER, load_settings


def test_defaults_are_the_embedded_ones() -> None:
    settings = load_settings()
    assert settings.encode.ladder == APPLE_HLS_LADDER


def test_state_lives_in_reelflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys, database, work files and default output: one folder, whatever the working directory."""
    monkeypatch.setenv("REELFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    home = tmp_path / "home"
    assert settings.storage.output == str(home / "output")
    assert settings.storage.work_dir == home / "work"
    assert settings.database.url == f"sqlite:///{home / 'service.db'}"
    assert settings.service.token_secret_file == home / "service-token.key"
    assert settings.watch.state_dir == home / "watch"
    monkeypatch.chdir(tmp_path / "..")
    assert load_settings().storage.work_dir == home / "work"  # not relative to where a command runs
    monkeypatch.delenv("REELFLOW_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert load_settings().storage.output == str(tmp_path / "xdg" / "reelflow" / "output")


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
    config.write_text('[encode]\npreset = "slow"\n[trials]\nfinal_preset = "medium"\n')
    with pytest.raises(ConfigError, match=r"trials\.final_preset \(medium\) must be encode\.preset \(slow\)"):
        load_settings(config)
    assert load_settings(config, ladder={"mode": "fixed"}).encode.preset == "slow"  # nothing is predicted
    both = load_settings(config, trials={"final_preset": "slow"})
    assert (both.ladder.mode, both.trials.final_preset) == ("per-shot", "slow")
    # left unset, the trials predict whatever the final encodes use
    config.write_text('[encode]\npreset = "slow"\n')
    assert load_settings(config).trials.final_preset == "slow"


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
    with pytest.raises(ConfigError, match="first_check_subsample 9 shares a factor"):
        load_settings(ladder={"first_check_subsample": 9})
    broken = tmp_path / "broken.toml"
    broken.write_text("[encode\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_binary_overrides_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELFLOW_FFMPEG", "/usr/bin/ffmpeg")
    load_settings()  # not refused as an unknown key


def test_drm_defaults_drop_fairplay_for_cenc_only() -> None:
    drm = load_settings().drm
    assert drm.enabled and drm.scheme == "cenc" and drm.master_key is None
    assert drm.systems == ("Widevine", "PlayReady", "CommonSystem")
    assert load_settings(drm={"scheme": "cbcs"}).drm.systems == ("Widevine", "PlayReady", "FairPlay", "CommonSystem")


def test_drm_refuses_fairplay_named_with_cenc_and_key_uris_without_key_id() -> None:
    with pytest.raises(ConfigError, match="FairPlay needs scheme 'cbcs'"):
        load_settings(drm={"protection_systems": ["FairPlay", "CommonSystem"]})
    with pytest.raises(ConfigError, match=r"drm\.hls_key_uri.*must contain \{key_id\}"):
        load_settings(drm={"hls_key_uri": "keys/fixed"})
    with pytest.raises(ConfigError, match=r"drm\.protection_systems"):
        load_settings(drm={"protection_systems": ["ClearKey"]})


def test_master_key_from_env_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    import os

    raw = os.urandom(32)
    monkeypatch.setenv("REELFLOW_DRM__MASTER_KEY", base64.b64encode(raw).decode())
    settings = load_settings()
    assert settings.drm.master_key_bytes() == raw
    assert base64.b64encode(raw).decode() not in repr(settings) + str(settings.model_dump(mode="json"))
    monkeypatch.delenv("REELFLOW_DRM__MASTER_KEY")
    assert load_settings(drm={"master_key": raw.hex()}).drm.master_key_bytes() == raw
    wrong = "ab" * 31  # 31 bytes: refused, and the message does not repeat the value
    with pytest.raises(ConfigError, match="must be 32 bytes") as caught:
        load_settings(drm={"master_key": wrong})
    assert wrong not in str(caught.value)
