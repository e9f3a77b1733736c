"""Fixtures: the simulator on a real loopback port (module-scoped, reset before each test),
and simulators of their own on a hand-moved clock for tests about time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from genbatch.simulator import SimProfile, running_simulator
from tests.simulator.helpers import FAST, FakeClock, Sim


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with running_simulator(SimProfile.model_validate(FAST)) as url:
        yield url


@pytest.fixture
def sim(sim_url: str) -> Iterator[Sim]:
    handle = Sim(sim_url)
    handle.profile()
    handle.control.post("/_sim/reset")
    yield handle
    handle.control.close()


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
