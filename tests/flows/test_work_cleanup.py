"""A title's work folder goes after publish (unless kept), never while another ingest of it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reelflow.flows.ingest import ingest_flow
from reelflow.infra.settings import load_settings
from reelflow.infra.workfolder import finish_with_work_folder, use_work_folder


def test_a_folder_in_use_by_another_run_is_kept(tmp_path: Path) -> None:
    work = tmp_path / "work" / "0123456789abcdef"
    first, second = use_work_folder(work), use_work_folder(work)
    (work / "encode.mp4").write_bytes(b"x" * 1000)
    assert not finish_with_work_folder(first, work, keep=False)   # the second run still uses it
    assert (work / "encode.mp4").exists()
    assert finish_with_work_folder(second, work, keep=False)      # the last one out removes it
    assert not work.exists()
    kept = use_work_folder(work)
    assert not finish_with_work_folder(kept, work, keep=True) and work.is_dir()


@pytest.mark.slow
def test_work_folder_is_removed_after_publish(lavfi_clip: Any, fast_config: Path, tmp_path: Path) -> None:
    clip = lavfi_clip("cleanup.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=24:duration=2",
                      "-c:v", "libx264", "-preset", "ultrafast")
    config = tmp_path / "reelflow.toml"
    config.write_text(fast_config.read_text().replace("keep_work = true", "keep_work = false")
                      .replace(str(fast_config.parent / "work"), str(tmp_path / "work")))
    settings = load_settings(config)
    assert not settings.storage.keep_work and settings.storage.work_dir == tmp_path / "work"
    record = ingest_flow(settings)(str(clip), title_id="cleanup", storage=str(tmp_path / "store"),
                                   config_file=str(config))
    assert record["status"] == "published"
    assert json.loads((tmp_path / "store" / "titles" / "cleanup" / "title.json").read_text())["status"] == "published"
    assert not (tmp_path / "work" / record["source"]["sha256"][:16]).exists()
    assert Path(record["manifests"]["dash"]).is_file()  # the package itself is not in the work folder
