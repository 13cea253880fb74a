"""The one exception tree of reelflow: every error a user can see is one of these.

    ReelflowError                      base; the CLI prints str(exc) and exits non-zero
    ├── ConfigError(ValueError)        a setting or config file is wrong (names the key)
    ├── ToolError                      an external binary
    │   ├── ToolMissing(FileNotFoundError)   not found, or lacks a needed feature (says how to fix)
    │   └── ToolFailed                 ran and failed (keeps argv, exit code, stderr tail)
    ├── MediaError                     a source file cannot be used
    │   ├── SourceNotFound(FileNotFoundError)
    │   └── InvalidMedia(ValueError)   not a video, truncated, zero length, undecodable
    ├── QCFailed                       QC found errors; carries the report; the source is quarantined
    ├── StageError                     a pipeline stage got inputs it cannot work with
    ├── KeyStoreError                  content keys: cannot be stored or decrypted (wrong master key)
    │   └── KeyNotFound(KeyError)      no key for this title or key id
    ├── StorageError                   the output store refused an operation
    │   ├── TransientStorageError      worth retrying (throttling, 5xx, connection reset)
    │   └── DiskFull                   a local disk (work folder, output) has no room; names the path
    ├── PlaybackError                  a playback service request that cannot be served (has .status)
    │   ├── NotFound(LookupError)      404: unknown title, key id, file
    │   ├── Unauthorized               401: missing, forged or expired play token
    │   ├── Forbidden(PermissionError) 403: the device may not have this key (tier) or file
    │   ├── UnavailableInCountry       451: the title is not licensed where the player is
    │   ├── Unplayable                 422: nothing in the title fits the device
    │   └── NotConfigured              501: e.g. no Widevine license proxy registered
    ├── PlayerError                    the CLI player cannot go on (service down, bad manifest, missing segment)
    │   └── CdnUnavailable             a CDN failed a download (refused, 5xx, timeout, short): try the next one
    └── OrchestrationError             the local orchestration service cannot be started or reached

Foreign exceptions (av, botocore, subprocess) are translated once, at the boundary where they are
raised, with ``raise ... from`` so the cause stays in the traceback for debugging.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class ReelflowError(Exception):
    """Base of every error reelflow raises on purpose."""


class ConfigError(ReelflowError, ValueError):
    """A setting, a config file or a command-line value is not valid."""


class ToolError(ReelflowError):
    """An external binary (ffmpeg, Shaka Packager) could not do its job."""


class ToolMissing(ToolError, FileNotFoundError):
    """A binary is not installed, or lacks a feature reelflow needs."""

    def __init__(self, tool: str, fix: str) -> None:
        self.tool = tool
        self.fix = fix
        super().__init__(f"{tool} is not usable: {fix}")

    def __str__(self) -> str:  # FileNotFoundError would otherwise format errno-style
        return f"{self.tool} is not usable: {self.fix}"


class ToolFailed(ToolError):
    """A binary exited non-zero; keeps what is needed to reproduce it."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        last = next((ln for ln in reversed(stderr.strip().splitlines()) if ln.strip()), "no output")
        super().__init__(f"{Path(self.argv[0]).name} exited with code {returncode}: {last.strip()}")


class MediaError(ReelflowError):
    """A source file cannot be used as media."""

    def __init__(self, path: Path | str, problem: str, fix: str = "") -> None:
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        message = f"{self.path}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)

    def __str__(self) -> str:
        message = f"{self.path}: {self.problem}"
        return f"{message} ({self.fix})" if self.fix else message


class SourceNotFound(MediaError, FileNotFoundError):
    """The source path does not exist or is not a file."""


class InvalidMedia(MediaError, ValueError):
    """The file exists but is not usable video: empty, not media, truncated or undecodable."""


class QCFailed(ReelflowError):
    """QC found at least one error; the ingest stops and the source is quarantined."""

    def __init__(self, source: Path | str, errors: Sequence[str], report: Any = None,
                 quarantined_at: str | None = None) -> None:
        self.source = str(source)
        self.errors = list(errors)
        self.report = report
        self.quarantined_at = quarantined_at
        where = f"; source and report quarantined at {quarantined_at}" if quarantined_at else ""
        super().__init__(f"{self.source} failed QC: {'; '.join(self.errors)}{where}")


class StageError(ReelflowError):
    """A pipeline stage was given inputs it cannot work with."""


class KeyStoreError(ReelflowError):
    """Content keys cannot be stored or read back (wrong master key, tampered row, database down)."""


class KeyNotFound(KeyStoreError, KeyError):
    """No content key for a title or a key id."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else "no such content key"


class StorageError(ReelflowError):
    """The output storage refused an operation (missing bucket, no permission, bad URL)."""


class TransientStorageError(StorageError):
    """A storage failure that a retry may cure (throttling, 5xx, dropped connection)."""


class DiskFull(StorageError):
    """A disk has no room for what must be written there: which path, how much is free, what to do."""

    def __init__(self, path: Path | str, free_bytes: int | None, needed: str = "") -> None:
        self.path = str(path)
        self.free_bytes = free_bytes
        free = f"{free_bytes / 1e9:.2f} GB free" if free_bytes is not None else "free space unknown"
        super().__init__(f"no space left on the disk of {self.path} ({free}{needed}): free space there, or point "
                         "storage.work_dir (REELFLOW_STORAGE__WORK_DIR) or the output at a larger disk")


class PlaybackError(ReelflowError):
    """A request to the playback service that cannot be served; ``status`` is its HTTP status."""

    status = 400
    code = "bad_request"


class NotFound(PlaybackError, LookupError):
    status = 404
    code = "not_found"


class Unauthorized(PlaybackError):
    status = 401
    code = "unauthorized"


class Forbidden(PlaybackError, PermissionError):
    status = 403
    code = "forbidden"


class UnavailableInCountry(PlaybackError):
    status = 451
    code = "unavailable_in_country"


class Unplayable(PlaybackError):
    status = 422
    code = "unplayable"


class NotConfigured(PlaybackError):
    status = 501
    code = "not_configured"


class PlayerError(ReelflowError):
    """The player cannot go on: the service or a CDN is unreachable, a manifest or segment is unusable.

    The service's own refusals (401, 403, 404 ...) reach the player as the matching ``PlaybackError``.
    """


class CdnUnavailable(PlayerError):
    """A CDN (edge or origin) could not deliver a file: connection refused or reset, 5xx, timeout, a
    short body. The player moves to the next ranked CDN; ``reason`` is the short form for QoE."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class OrchestrationError(ReelflowError):
    """The machine's Prefect API (flows/server.py) could not be started, found or reached."""
