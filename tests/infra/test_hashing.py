"""File hashes and config digests: streamed, stable across runs, sensitive only to what they hash."""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath

import pytest

from reelflow.infra.hashing import DIGEST_CHARS, config_digest, sha256_file
from reelflow.infra.settings import EncodeConfig, QCConfig, Rung


@pytest.mark.parametrize("size", [0, 1, 7, 1000, 3 * 7 + 2])
def test_sha256_file_matches_hashlib_for_any_chunking(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == expected
    assert sha256_file(path, chunk=7) == expected


def test_sha256_file_of_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "nope")


@dataclass(frozen=True)
class Shot:
    start: Fraction
    end: Fraction


class Kind(enum.Enum):
    VIDEO = "video"


def test_config_digest_is_pinned() -> None:
    # A changed value here invalidates every cache in the field: change it only on purpose.
    digest = config_digest({"b": 1, "a": [1.5, "x", None, True]}, Fraction(24000, 1001))
    canonical = '[{"a":[1.5,"x",null,true],"b":1},{"__fraction__":"24000/1001"}]'
    assert digest == hashlib.sha256(canonical.encode()).hexdigest()[:DIGEST_CHARS] == "ca87d2560db1d950"


def test_config_digest_is_short_hex_and_stable() -> None:
    digest = config_digest(QCConfig(), Path("/x"), Shot(Fraction(0), Fraction(5, 2)), Kind.VIDEO, {1, 2})
    assert len(digest) == DIGEST_CHARS
    int(digest, 16)
    again = config_digest(QCConfig(), Path("/x"), Shot(Fraction(0), Fraction(5, 2)), Kind.VIDEO, {2, 1})
    assert digest == again


def test_config_digest_ignores_dict_order_but_not_list_order() -> None:
    assert config_digest({"a": 1, "b": 2}) == config_digest({"b": 2, "a": 1})
    assert config_digest([1, 2]) != config_digest([2, 1])
    assert config_digest(1, 2) != config_digest(2, 1)


def test_config_digest_tells_types_apart() -> None:
    digests = {
        config_digest(Fraction(1, 2)),
        config_digest(0.5),
        config_digest("1/2"),
        config_digest(Path("a")),
        config_digest("a"),
        config_digest(1),
        config_digest(True),
        config_digest("1"),
    }
    assert len(digests) == 8


def test_config_digest_follows_model_values() -> None:
    base = config_digest(EncodeConfig())
    assert config_digest(EncodeConfig()) == base
    assert config_digest(EncodeConfig(preset="slow")) != base
    assert config_digest(EncodeConfig(ladder=(Rung(width=640, height=360, kbps=800),))) != base
    assert config_digest(QCConfig()) != config_digest(EncodeConfig())


def test_config_digest_nests_dataclasses_paths_and_fractions() -> None:
    a = config_digest({"shots": [Shot(Fraction(0), Fraction(10, 3))], "src": PurePosixPath("/m/a.mp4")})
    b = config_digest({"shots": [Shot(Fraction(0), Fraction(10, 3))], "src": PurePosixPath("/m/a.mp4")})
    c = config_digest({"shots": [Shot(Fraction(0), Fraction(10, 4))], "src": PurePosixPath("/m/a.mp4")})
    assert a == b != c


def test_config_digest_refuses_what_it_cannot_hash_stably() -> None:
    with pytest.raises(TypeError, match="cannot hash a object"):
        config_digest(object())
    with open(os.devnull, "rb") as f, pytest.raises(TypeError, match="sha256_file"):
        config_digest(f)
