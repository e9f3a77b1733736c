"""What every request to a real provider carries: genbatch's own User-Agent, the key in its
Authorization header, and nothing meant for the simulator."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import genbatch
from genbatch.models import GenerationRequest
from genbatch.providers.base import Provider

from .conftest import API_KEY, FakeProvider

V15 = "seedance-v1.5-pro-i2v"
SUBMITTED = {"task_id": "t-1", "id": "t-1", "code": 200, "data": {"id": "t-1"}}


@pytest.mark.parametrize("provider", ["novita", "highwayapi", "wavespeed", "byteplus"])
def test_requests_say_genbatch_and_carry_nothing_for_the_simulator(
        adapter: Callable[..., Provider], req: Callable[..., GenerationRequest],
        fake: FakeProvider, provider: str) -> None:
    fake.reply(200, SUBMITTED)

    adapter(provider).submit(V15, req())

    headers = fake.last.headers
    assert headers["user-agent"] == f"genbatch/{genbatch.__version__}"
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert not [name for name in headers if name.lower().startswith("x-genbatch")]


def test_the_version_requests_name_is_the_packages() -> None:
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == genbatch.__version__
