"""Simulator plugins (`genbatch.simulators`): each is served under `/<name>`; a broken one
is named in one line (log and /_sim/health) and left out while the others keep serving."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import EntryPoint

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from genbatch.simulator import SimulatorPlugin, running_simulator
from genbatch.simulator import plugins as sim_plugins


def echo_routes(prefix: str) -> Sequence[BaseRoute]:
    async def hello(request: Request) -> Response:
        return JSONResponse({"prefix": prefix})

    return [Route("/hello", hello, methods=["GET"])]


def broken_routes(prefix: str) -> Sequence[BaseRoute]:
    raise RuntimeError("routes exploded\nsecond line")


GOOD = SimulatorPlugin("good", echo_routes)


def test_plugin_is_served_under_its_name_next_to_the_builtins() -> None:
    with running_simulator(simulators=[GOOD]) as url:
        assert httpx.get(f"{url}/good/hello").json() == {"prefix": "/good"}
        health = httpx.get(f"{url}/_sim/health").json()
        assert "good" in health["simulators"]
        assert httpx.get(f"{url}/_sim/assets/landscape.png").status_code == 200


@pytest.mark.parametrize(("plugin", "reason"), [
    (SimulatorPlugin("boom", broken_routes), "RuntimeError: routes exploded"),
    (SimulatorPlugin("novita", echo_routes), "the name 'novita' is taken"),
    (SimulatorPlugin("Bad-Name", echo_routes), "must equal the entry point's"),
])
def test_broken_plugin_is_named_in_one_line_and_the_others_serve(
        plugin: SimulatorPlugin, reason: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_plugins, "entry_points", lambda group: [])  # only these two
    with caplog.at_level(logging.WARNING, logger=sim_plugins.__name__):
        found = sim_plugins.mounts([plugin, GOOD])
    assert found.names == ("good",)
    [bad] = found.broken
    assert reason in bad.line() and "\n" not in bad.line()
    assert [r.getMessage() for r in caplog.records] == [bad.line()]


def test_entry_point_that_fails_to_load_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [EntryPoint("ghost", "no_such_module_here:SIMULATOR", sim_plugins.GROUP),
              EntryPoint("thing", "builtins:len", sim_plugins.GROUP)]
    monkeypatch.setattr(sim_plugins, "entry_points", lambda group: points)
    with running_simulator(simulators=[GOOD]) as url:
        health = httpx.get(f"{url}/_sim/health").json()
        assert httpx.get(f"{url}/good/hello").status_code == 200
    assert health["simulators"] == ["good"]
    assert [line.split(":")[0] for line in health["broken"]] == [
        "simulator plugin 'ghost' (package no_such_module_here) left out",
        "simulator plugin 'thing' (package builtins) left out"]
