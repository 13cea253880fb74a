"""QC warns when two audio streams share a language and neither has a role (both are still published)."""

from __future__ import annotations

from typing import Any

from reelflow.encoding import audio
from reelflow.encoding.probe import probe
from reelflow.flows.ingest import with_audio_checks


def test_two_english_streams_without_roles_warn_in_qc(lavfi_clip: Any) -> None:
    master = lavfi_clip("two-english.mov", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1",
                        "-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=48000",
                        "-f", "lavfi", "-i", "sine=frequency=660:duration=1:sample_rate=48000",
                        "-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast",
                        "-c:a", "pcm_s16le", "-ac", "2", "-metadata:s:a:0", "language=eng",
                        "-metadata:s:a:1", "language=eng")
    plan = audio.plan_audio(probe(master))
    assert len([t for t in plan.tracks if t.language.startswith("en")]) == 2  # both published
    assert plan.warnings and "both language" in plan.warnings[0]
    report = with_audio_checks({"checks": [], "verdict": "pass"}, [], plan.warnings)
    [check] = [c for c in report["checks"] if c["name"] == "audio:same_language"]
    assert not check["passed"] and check["severity"] == "warning" and report["verdict"] == "warning"
    clean = with_audio_checks({"checks": [], "verdict": "pass"}, [{"checks": []}], ())
    assert clean["verdict"] == "pass"
