"""A bad setting or a Redis URL that leads nowhere useful: one line naming the variable, exit
2, within seconds — never a traceback or a hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from genbatch.config import load_settings, redact_url
from genbatch.errors import ConfigError
from genbatch.store import JobStore


def test_a_bad_value_names_its_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(novita_max_in_flight="abc", wavespeed_submit_rpm=-1)
    text = str(err.value)
    assert "GENBATCH_NOVITA_MAX_IN_FLIGHT=abc: " in text
    assert "GENBATCH_WAVESPEED_SUBMIT_RPM=-1: Input should be greater than 0" in text
    assert "\n" not in text and "pydantic" not in text


def test_a_redis_url_without_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"GENBATCH_REDIS_URL=localhost:6379: must start "
                                          r"with redis://"):
        load_settings(redis_url="localhost:6379")


def test_secrets_are_never_echoed() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(redis_url="localhost://:hunter2@x", webhook_safety_poll_s="soon")
    assert "hunter2" not in str(err.value)
    assert redact_url("redis://:hunter2@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (not Redis)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_ping_names_a_port_that_is_not_redis(silent_port: int) -> None:
    store = JobStore.from_url(f"redis://127.0.0.1:{silent_port}/0")
    with pytest.raises(ConfigError, match=f"127.0.0.1:{silent_port}, which does not answer "
                                          "like Redis"):
        store.ping()


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    return subprocess.run([sys.executable, "-m", "genbatch", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("env", "expected"), [
    ({"GENBATCH_REDIS_URL": "localhost:6379"}, "GENBATCH_REDIS_URL=localhost:6379: must start"),
    ({"GENBATCH_NOVITA_MAX_IN_FLIGHT": "abc"}, "GENBATCH_NOVITA_MAX_IN_FLIGHT=abc: "),
])
def test_the_cli_says_one_line_and_exits_2(env: dict[str, str], expected: str) -> None:
    done = cli("status", **env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_the_cli_names_a_port_that_is_not_redis(silent_port: int) -> None:
    done = cli("status", GENBATCH_REDIS_URL=f"redis://127.0.0.1:{silent_port}/0")
    assert done.returncode == 2
    assert "does not answer like Redis" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("setting", "expected"), [
    ({"redis_url": "redis://h:abc/0"},
     "GENBATCH_REDIS_URL=redis://h:abc/0: the port must be a number from 1 to 65535"),
    ({"redis_url": "redis://:pw@h:99999/0"},
     "GENBATCH_REDIS_URL=redis://:***@h:99999/0: the port must be a number from 1 to 65535"),
    ({"redis_url": "redis://h:6379/abc"},
     "GENBATCH_REDIS_URL=redis://h:6379/abc: the database after the last / must be a number"),
    ({"log_level": "LOUD"},
     "GENBATCH_LOG_LEVEL=LOUD: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ({"storage_url": "ftp://files/out"}, "GENBATCH_STORAGE_URL=ftp://files/out: must be a "
                                         "folder, file:///absolute/path or s3://bucket/prefix"),
    ({"poll_min_interval_s": 90, "poll_max_interval_s": 30},
     "GENBATCH_POLL_MIN_INTERVAL_S (90) is above GENBATCH_POLL_MAX_INTERVAL_S (30)"),
])
def test_settings_that_would_fail_later_are_refused_when_read(
        setting: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(**setting)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    assert "pw" not in str(err.value)


def test_a_log_level_in_lower_case_is_read() -> None:
    assert load_settings(log_level="debug").log_level == "DEBUG"


def test_a_long_running_process_warns_of_probable_mistakes_before_it_starts() -> None:
    """The worker's start checks every setting: a misspelt variable is named with the
    closest real one (one line), and the worker still starts (here: refuses for want of
    Redis, with its own one-line error)."""
    done = cli("scheduler", GENBATCH_NOVTA_API_KEY="k",
               GENBATCH_REDIS_URL="redis://127.0.0.1:1/0")
    lines = done.stderr.strip().splitlines()
    assert lines[0] == ("warning: GENBATCH_NOVTA_API_KEY is not a genbatch setting and is "
                        "ignored; did you mean GENBATCH_NOVITA_API_KEY?")
    assert done.returncode == 2 and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["simulate", "--port"], ["redis", "--port"]])
def test_a_busy_port_is_one_line_before_any_banner(silent_port: int, tmp_path: Path,
                                                   command: list[str]) -> None:
    done = cli(*command, str(silent_port), *(["--data", str(tmp_path)]
                                             if command[0] == "redis" else []))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: cannot serve {'the simulator' if command[0] == 'simulate' else 'Redis'} on "
        f"127.0.0.1:{silent_port}: Address already in use; is another one running? choose a "
        "port with --port"]
