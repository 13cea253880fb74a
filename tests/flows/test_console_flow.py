"""The console over real ingests: a published title with its QC and rungs, a quarantined source with
its reason, and both flow runs with their state from the Prefect API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reelflow.errors import QCFailed
from reelflow.flows.ingest import ingest_flow
from reelflow.infra.settings import Settings, load_settings
from reelflow.playback.api import create_app


@pytest.mark.slow
def test_console_shows_ingested_and_refused_titles_and_their_runs(
        lavfi_clip: Any, fast_config: Path, tmp_path: Path, prefect_server: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    good = lavfi_clip("console-good.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=24:duration=2",
                      "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-preset",
                      "ultrafast", "-c:a", "aac", "-shortest")
    late = lavfi_clip("console-late.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=3",
                      "-itsoffset", "2", "-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=48000",
                      "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac")
    store = tmp_path / "store"
    flow = ingest_flow(load_settings(fast_config))
    flow(str(good), title_id="console-good", storage=str(store), config_file=str(fast_config))
    with pytest.raises(QCFailed):
        flow(str(late), title_id="console-late", storage=str(store), config_file=str(fast_config))

    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    settings = Settings.model_validate({"storage": {"output": str(store)}, "drm": {"enabled": False},
                                        "database": {"url": f"sqlite:///{tmp_path / 'service.db'}"}})
    with TestClient(create_app(settings, load_keys=False)) as client:
        titles = client.get("/api/console/titles").json()
        [good_title] = [t for t in titles["titles"] if t["title_id"] == "console-good"]
        assert good_title["qc_verdict"] in ("pass", "warning") and good_title["video_rungs"] >= 2
        assert good_title["audio_tracks"] >= 1
        [refused] = [q for q in titles["quarantined"] if q["title_id"] == "console-late"]
        assert any("av_start_offset" in e for e in refused["errors"])

        runs = client.get("/api/console/runs").json()["runs"]
        states = {r["title_id"]: r["type"] for r in runs if r["title_id"] in ("console-good", "console-late")}
        assert states == {"console-good": "COMPLETED", "console-late": "FAILED"}
        assert any("av_start_offset" in (r["message"] or "") for r in runs if r["title_id"] == "console-late")

        index = client.get("/console").text
        assert "console-good" in index and "console-late" in index and "av_start_offset" in index
        page = client.get("/console/titles/console-good")
        assert page.status_code == 200
        assert "<table id='rungs'>" in page.text and "<table id='renditions'>" in page.text
        assert "/play/console-good" in page.text and "<h2>Left out of the package</h2>" in page.text
        assert client.get("/console/titles/no-such-title").status_code == 404
