"""tokens: signed claims round-trip; forged, altered, malformed and expired tokens are refused; the secret file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from reelflow.errors import ConfigError, Unauthorized
from reelflow.infra.settings import ServiceConfig
from reelflow.playback.tokens import Claims, TokenSigner, load_secret

CLAIMS = Claims(session="s1", title="film", profile="p1", security="software", max_height=720,
                codecs=("avc1", "mp4a"), max_kbps=0, hdr=False, edges=("e1",), expires=2_000_000_000)
SIGNER = TokenSigner(b"0123456789abcdef0123456789abcdef")


def test_round_trip_and_url_safe() -> None:
    token = SIGNER.issue(CLAIMS)
    assert SIGNER.verify(token, now=1_000_000_000) == CLAIMS
    assert all(c.isalnum() or c in "-_." for c in token)


@pytest.mark.parametrize("tamper", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
    lambda t: "v1." + SIGNER.issue(CLAIMS.__class__(**{**CLAIMS.__dict__, "security": "hardware"})).split(".")[1]
    + "." + t.split(".")[2],
    lambda t: "v2" + t[2:],
    lambda t: t.split(".")[0],
    lambda t: "",
])
def test_tampered_tokens_are_refused(tamper: object) -> None:
    with pytest.raises(Unauthorized):
        SIGNER.verify(tamper(SIGNER.issue(CLAIMS)), now=1_000_000_000)  # type: ignore[operator]


def test_other_secret_and_expiry() -> None:
    token = SIGNER.issue(CLAIMS)
    with pytest.raises(Unauthorized, match="signature"):
        TokenSigner(b"another secret, also 32 bytes !!").verify(token, now=1_000_000_000)
    with pytest.raises(Unauthorized, match="expired"):
        SIGNER.verify(token, now=CLAIMS.expires)


def test_secret_file_is_made_once_with_mode_600(tmp_path: Path) -> None:
    config = ServiceConfig(token_secret_file=tmp_path / "sub" / "token.key")
    first = load_secret(config)
    assert len(first) == 64 and load_secret(config) == first
    assert stat.S_IMODE((tmp_path / "sub" / "token.key").stat().st_mode) == 0o600
    assert load_secret(ServiceConfig(token_secret="x" * 40)) == b"x" * 40  # type: ignore[arg-type]
    (tmp_path / "short.key").write_text("abc")
    with pytest.raises(ConfigError, match="less than 32"):
        load_secret(ServiceConfig(token_secret_file=tmp_path / "short.key"))


def test_service_config_validates_license_duration_and_edges() -> None:
    with pytest.raises(ValueError, match="license_duration_h"):
        ServiceConfig(license_duration_h=12)
    with pytest.raises(ValueError, match="license_duration_h"):
        ServiceConfig(license_duration_h=72)
    with pytest.raises(ValueError, match="distinct"):
        ServiceConfig.model_validate({"edges": [{"name": "a", "base_url": "http://x"},
                                                {"name": "a", "base_url": "http://y"}]})
    assert ServiceConfig(port=9000).base_url == "http://127.0.0.1:9000"
