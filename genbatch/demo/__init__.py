"""The embedded default: `genbatch demo`, a local Redis server, and the sample manifest."""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).parent / "samples"
