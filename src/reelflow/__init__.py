"""reelflow: per-title video ingestion (QC, shots, encode, package, publish) and its playback side."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reelflow")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
