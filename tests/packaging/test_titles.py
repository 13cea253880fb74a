"""Title ids: studio ids (upper case, EIDR) map to safe, distinct storage keys; traversal is refused."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from playback_helpers import play_body, service_settings
from reelflow.errors import ConfigError
from reelflow.packaging.titles import check_title_id, is_title_id, title_key
from reelflow.playback.api import create_app

EIDR = "10.5240/7791-8534-2C23-9030-8610-5"


def test_legacy_ids_are_their_own_key() -> None:
    assert title_key("sintel-clear") == "sintel-clear"
    assert title_key("a.b_c-1") == "a.b_c-1"


def test_studio_ids_get_a_slug_and_hash_key() -> None:
    key = title_key(EIDR)
    assert key.startswith("10.5240-7791-8534-2c23-9030-8610-5--") and len(key.rsplit("--", 1)[1]) == 10
    assert "/" not in key and title_key(key) == key          # a key is valid (as an id and as a key)
    assert title_key("ABC") != title_key("abc") and title_key("ABC") != title_key("Abc")
    assert title_key("urn:eidr:10.5240:ABCD") != title_key("urn-eidr-10.5240-abcd")


@pytest.mark.parametrize("bad", ["../etc", "a/../b", "a//b", "a/", "/a", ".hidden", "a\\b", "a b", "x" * 129,
                                 "a/./b", ""])
def test_traversal_and_junk_are_refused(bad: str) -> None:
    assert not is_title_id(bad)
    with pytest.raises(ConfigError, match="is not valid"):
        check_title_id(bad)
    with pytest.raises(ConfigError):
        title_key(bad)


@pytest.fixture
def eidr_client(clear_title: Any, tmp_path: Path) -> Iterator[TestClient]:
    """The clear test title published again under an EIDR id, at that id's key."""
    root = clear_title.root / "titles"
    key = title_key(EIDR)
    if not (root / key).exists():
        shutil.copytree(root / clear_title.title_id, root / key)
        record = json.loads((root / key / "title.json").read_text())
        record["title_id"] = EIDR
        for field in ("package",):
            record[field] = record[field].replace(f"/titles/{clear_title.title_id}/", f"/titles/{key}/")
        record["manifests"] = {k: v.replace(f"/titles/{clear_title.title_id}/", f"/titles/{key}/")
                               for k, v in record["manifests"].items()}
        (root / key / "title.json").write_text(json.dumps(record))
    settings = service_settings(clear_title.root, tmp_path)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8700") as client:
        yield client


def test_an_eidr_title_plays_through_the_service(eidr_client: TestClient) -> None:
    response = eidr_client.post("/api/play", json=play_body(EIDR, drm="none"))
    assert response.status_code == 200, response.text
    data = response.json()
    key = title_key(EIDR)
    assert data["title_id"] == key and f"/api/titles/{key}/manifest.mpd" in data["manifests"]["dash"]
    mpd = eidr_client.get(data["manifests"]["dash"].removeprefix("http://127.0.0.1:8700"))
    assert mpd.status_code == 200 and f"titles/{key}/" in mpd.text
    assert eidr_client.post("/api/play", json=play_body("10.5240/../sintel-clear", drm="none")).status_code in (
        404, 422)
