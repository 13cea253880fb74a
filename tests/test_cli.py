"""cli.py: one line and an exit code for every kind of bad input, checked before the work; --json always JSON."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import reelflow
from reelflow.errors import DiskFull
from reelflow.infra import tools
from reelflow.infra.outputs import check_free_space


def reelflow_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reelflow.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False, timeout=120)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The error line; fails the test on a traceback or more than one line."""
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("reelflow: error: ")
    return lines[0]


def test_version() -> None:
    done = reelflow_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"reelflow {reelflow.__version__}"


def test_json_error_document_for_a_missing_source(tmp_path: Path) -> None:
    done = reelflow_cli("ingest", str(tmp_path / "missing.mov"), "--json")
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document["error"]["type"] == "SourceNotFound" and document["error"]["exit_code"] == 1
    assert "missing.mov" in one_line(done)


def test_usage_errors_are_one_line_with_the_help_to_read() -> None:
    done = reelflow_cli("probe", "--json", "--frobnicate", "x")
    assert done.returncode == 2
    assert "--frobnicate" in one_line(done) and "reelflow probe --help" in done.stderr
    assert json.loads(done.stdout)["error"]["type"] == "NoSuchOption"


def test_serve_refuses_a_port_out_of_range_before_announcing_one() -> None:
    done = reelflow_cli("serve", "--port", "99999")
    assert done.returncode == 2 and "--port" in one_line(done)


def test_serve_and_edge_refuse_storage_they_cannot_serve_from(tmp_path: Path) -> None:
    missing = reelflow_cli("serve", "--storage", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "does not exist" in one_line(missing)
    a_file = tmp_path / "titles.txt"
    a_file.write_text("not a folder")
    edge = reelflow_cli("edge", "--storage", str(a_file))
    assert edge.returncode == 1 and "is a file" in one_line(edge)


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = reelflow_cli("serve", "--port", str(port), "--storage", str(tmp_path))
    assert done.returncode == 2 and f"127.0.0.1:{port}" in one_line(done)


def test_simulate_on_a_binary_trace_names_the_file(tmp_path: Path) -> None:
    traces, sizes = tmp_path / "traces", tmp_path / "sizes"
    traces.mkdir()
    sizes.mkdir()
    (traces / "capture.pcap").write_bytes(bytes(range(256)) * 20)
    (sizes / "video_size_0").write_text("1000\n2000\n")
    done = reelflow_cli("simulate", "--traces", str(traces), "--sizes", str(sizes))
    assert done.returncode == 1 and "capture.pcap is not text" in one_line(done)


def test_output_paths_are_checked_before_the_work(tmp_path: Path, sintel_fight: Path) -> None:
    """A --plot or --save that cannot be written fails at once, before analysis or playback."""
    plot = reelflow_cli("ladder", str(sintel_fight), "--plot", "/proc/ladder.png")
    assert plot.returncode == 2 and "/proc" in one_line(plot)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    into_folder = reelflow_cli("ladder", str(sintel_fight), "--plot", str(folder))
    assert into_folder.returncode == 2 and "is a folder" in one_line(into_folder)
    (tmp_path / "file.txt").write_text("x")
    simulate = reelflow_cli("simulate", "--traces", str(tmp_path), "--sizes", str(tmp_path), "--plot",
                            str(tmp_path / "file.txt"))
    assert simulate.returncode == 2 and "is a file" in one_line(simulate)
    # No service answers on port 9: the --save check must come first, or the error would be the connection.
    save = reelflow_cli("play", "demo", "--service", "http://127.0.0.1:9", "--save", "/proc/played.mp4")
    assert save.returncode == 2 and "--save" in one_line(save)


def test_a_full_disk_names_the_path_and_the_fix() -> None:
    """ffmpeg writing to /dev/full gets ENOSPC, as on a full work disk: DiskFull, not 'exit 228'."""
    argv = [tools.ffmpeg_exe(), "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
            "-c:v", "libx264", "-preset", "ultrafast", "-f", "mp4", "/dev/full"]
    with pytest.raises(DiskFull) as caught:
        tools.run(argv)
    assert "/dev/full" in str(caught.value) and "storage.work_dir" in str(caught.value)


def test_free_space_is_checked_with_a_margin(tmp_path: Path) -> None:
    check_free_space(tmp_path / "work", 1, "the work folder")  # a byte is always there
    with pytest.raises(DiskFull, match="needs about"):
        check_free_space(tmp_path / "work", 10**18, "the work folder")
