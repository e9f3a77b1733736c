"""Fixtures: `sim` (the simulator on a loopback port, module-scoped, reset before each test;
defined in helpers so the contract tests share it) and `local` (simulators of their own on a
hand-moved clock, for tests about time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from genbatch.simulator import SimProfile, running_simulator
from tests.simulator.helpers import FAST, FakeClock, Sim, sim, sim_url  # noqa: F401


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def local(clock: FakeClock) -> Iterator[Callable[..., Sim]]:
    """A simulator of its own, on the fake clock; profile fields as keyword arguments."""
    with ExitStack() as stack:

        def start(**fields: Any) -> Sim:
            profile = SimProfile.model_validate({**FAST, **fields})
            url = stack.enter_context(running_simulator(profile, clock=clock))
            return Sim(url)

        yield start
