"""tools: binaries found in the wheels, overridable, and failures that say what to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reelflow.errors import ToolFailed, ToolMissing
from reelflow.infra import tools


@pytest.fixture
def fresh_lookup() -> Iterator[None]:
    """Forget cached binary lookups before and after, so env overrides take effect."""
    tools.ffmpeg_exe.cache_clear()
    tools.packager_exe.cache_clear()
    yield
    tools.ffmpeg_exe.cache_clear()
    tools.packager_exe.cache_clear()


def test_bundled_binaries_have_what_reelflow_needs(fresh_lookup: None) -> None:
    assert Path(tools.ffmpeg_exe()).is_file()
    assert tools.ffmpeg_has_encoder("libx264") and tools.ffmpeg_has_encoder("libx265")
    assert "packager" in Path(tools.packager_exe()).name


def test_env_override_that_is_not_a_file(fresh_lookup: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(tools.FFMPEG_ENV, str(tmp_path / "no-ffmpeg"))
    with pytest.raises(ToolMissing, match=r"REELFLOW_FFMPEG=.* is not an executable file"):
        tools.ffmpeg_exe()


def test_ffmpeg_without_libvmaf_is_refused(fresh_lookup: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A stand-in ffmpeg that lists libx264 but no filters, like a distribution build without libvmaf."""
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho ' V....D libx264  H.264'\necho ' A....D aac  AAC'\n")
    fake.chmod(0o755)
    monkeypatch.setenv(tools.FFMPEG_ENV, str(fake))
    with pytest.raises(ToolMissing, match="lacks libvmaf"):
        tools.ffmpeg_exe()


def test_packager_override_must_be_v3(fresh_lookup: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "packager"
    fake.write_text("#!/bin/sh\necho 'packager version v2.6.1-release'\n")
    fake.chmod(0o755)
    monkeypatch.setenv(tools.PACKAGER_ENV, str(fake))
    with pytest.raises(ToolMissing, match="not Shaka Packager v3"):
        tools.packager_exe()


def test_failure_keeps_the_tools_last_words() -> None:
    with pytest.raises(ToolFailed) as caught:
        tools.run([tools.ffmpeg_exe(), "-hide_banner", "-i", "/no/such/input.mp4", "-f", "null", "-"])
    assert caught.value.returncode != 0
    assert "No such file or directory" in str(caught.value)
    assert caught.value.argv[0] == tools.ffmpeg_exe()


def test_missing_binary_is_tool_missing() -> None:
    with pytest.raises(ToolMissing):
        tools.run(["/no/such/binary", "--version"])


def test_progress_reports_media_seconds() -> None:
    seen: list[float] = []
    tools.run([tools.ffmpeg_exe(), "-f", "lavfi", "-i", "testsrc2=d=2:s=160x90", "-f", "null", "-"],
              progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(2.0, abs=0.1)


def test_cpu_time_is_measured_per_process() -> None:
    """Two runs at once each report their own CPU, not each other's."""
    import threading

    argv = [tools.ffmpeg_exe(), "-f", "lavfi", "-i", "testsrc2=d=4:s=640x360", "-c:v", "libx264", "-preset",
            "medium", "-threads", "1", "-f", "null", "-"]
    light = [tools.ffmpeg_exe(), "-f", "lavfi", "-i", "testsrc2=d=0.2:s=64x36", "-f", "null", "-"]
    results: dict[str, tools.ToolResult] = {}
    heavy_thread = threading.Thread(target=lambda: results.__setitem__("heavy", tools.run(argv)))
    heavy_thread.start()
    results["light"] = tools.run(light)
    heavy_thread.join()
    # Relations, not absolute seconds: the machine is shared. Process-wide accounting would give
    # the light run most of the heavy run's CPU, since they overlap.
    assert results["heavy"].cpu_s > 0
    assert results["light"].cpu_s < results["heavy"].cpu_s / 5


def test_timeout_kills_and_says_so() -> None:
    with pytest.raises(ToolFailed, match=r"timed out after 0\.5 s"):
        tools.run([tools.ffmpeg_exe(), "-re", "-f", "lavfi", "-i", "testsrc2=d=30", "-f", "null", "-"], timeout=0.5)


def test_redacted_secrets_stay_out_of_the_log_and_the_error(caplog: pytest.LogCaptureFixture) -> None:
    """A secret in the argv (a content key) is replaced in the + cmd line, ToolFailed and the result."""
    import logging

    secret = "00112233445566778899aabbccddeeff"
    caplog.set_level(logging.DEBUG, logger="reelflow.infra.tools")
    with pytest.raises(ToolFailed) as caught:
        tools.run([tools.ffmpeg_exe(), "-hide_banner", "-i", f"/no/such/{secret}.mp4", "-f", "null", "-"],
                   redact=[secret.upper()])
    text = f"{caught.value} {caught.value.argv} {caught.value.stderr}"
    assert secret not in text.lower() and "<redacted>" in text
    assert "No such file or directory" in caught.value.stderr
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "+ " in logged and secret not in logged.lower() and "<redacted>" in logged
    done = tools.run([tools.ffmpeg_exe(), "-hide_banner", "-f", "lavfi", "-i", "anullsrc=d=0.1",
                      "-metadata", f"title={secret}", "-f", "null", "-"], redact=[secret])
    assert secret not in " ".join(done.args) + done.stdout + done.stderr


def test_an_optional_encoder_is_checked_with_the_fix_in_the_message() -> None:
    tools.require_encoder("libx265")   # the bundled build has the optional codecs' encoders
    tools.require_encoder("libsvtav1")
    with pytest.raises(ToolMissing, match=r"has no libnonesuch encoder; .*or choose --codec h264"):
        tools.require_encoder("libnonesuch")
