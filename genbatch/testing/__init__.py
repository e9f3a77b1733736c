"""The conformance kit for provider plugins: one suite every provider runs against its
simulated protocol, on genbatch's simulator served on loopback.

    ProviderConformance   the suite: subclass it and give a `conformance_target` fixture
    Target                the provider under test (its name, where its simulator serves it,
                          how to get a callback signing secret, ...)
    Harness               what each test drives: adapters per fault, the simulator's stats,
                          a callback receiver, genbatch's own download into a folder
    running_harness       the same outside pytest

See docs/writing-a-provider.md and examples/provider-plugin/.
"""

from __future__ import annotations

from genbatch.testing.faults import FAULTS, Keys
from genbatch.testing.harness import Harness, Target, expect, running_harness
from genbatch.testing.suite import ProviderConformance

__all__ = ["FAULTS", "Harness", "Keys", "ProviderConformance", "Target", "expect",
           "running_harness"]
