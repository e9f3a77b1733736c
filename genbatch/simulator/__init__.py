"""A loopback server speaking Novita's, HighwayAPI's, WaveSpeed's and BytePlus's Seedance
image-to-video protocols, fal's queue (`/fal`), Runway's API (`/runway`), Kling's (`/kling`)
and Veo's on the Gemini API (`/veo`), with configurable latency, limits and failure injection.

    create_app(profile)                  the Starlette app (state in memory)
    serve(host, port, profile)           run it in the foreground
    running_simulator(profile)           run it on a background thread; yields the base URL
    load_profile(path)                   a `SimProfile` from a JSON file (None = defaults;
                                         ProfileError when unreadable or invalid)
    request_fingerprint(provider, model, body)   the key of `/_sim/stats` submit counters
    SimulatorPlugin(name, routes)        another provider's protocol, found by the entry-point
                                         group `genbatch.simulators` and served under
                                         `/<name>` (plugins.py; built on gate.py)

Routes: see `app.py`; control routes: see `control.py`; profile fields: see `profile.py`.
Comments cite the provider wire notes, docs/wire/ (the simulator checklist is §7 of
docs/wire/notes.md), and their sources by tag (WS-HOOK, NOV-TR, …: docs/wire/index.md §0).
"""

from __future__ import annotations

from genbatch.simulator.app import create_app
from genbatch.simulator.plugins import SimulatorPlugin
from genbatch.simulator.profile import (
    Behaviour,
    ModelLimit,
    ProfileError,
    SimProfile,
    load_profile,
)
from genbatch.simulator.server import running_simulator, serve
from genbatch.simulator.stats import request_fingerprint

__all__ = [
    "Behaviour",
    "ModelLimit",
    "ProfileError",
    "SimProfile",
    "SimulatorPlugin",
    "create_app",
    "load_profile",
    "request_fingerprint",
    "running_simulator",
    "serve",
]
