"""Where the real clips are: ../shared/media beside the repo, or $SHARED_MEDIA_DIR.

A module of its own (not conftest) so tests can import it at collection time unambiguously.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA_DIR = Path(os.environ.get("SHARED_MEDIA_DIR", REPO.parent / "shared" / "media"))
