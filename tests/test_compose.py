"""docker-compose.yml, .env.example and the Dockerfile agree with the code: every service
runs a real command, every variable is a real setting and is documented, nothing listens
beyond loopback, and the compose CLI itself accepts the file (`docker compose config`, or
Debian's `docker-compose`, which `.ci/run` installs)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py
import typer
import yaml

from genbatch.cli import app
from genbatch.config import NOT_VARIABLES, Settings
from genbatch.demo.redis_server import free_port, redis_server_binary
from genbatch.providers import registry
from genbatch.providers.accounts import provider_variables

ROOT = Path(__file__).parents[1]
GENBATCH_SERVICES = ("worker", "scheduler", "simulator", "dashboard", "webhooks")
SENTINEL_SERVICES = ("redis-replica", "sentinel1", "sentinel2", "sentinel3")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.lstrip("# ").strip()
        if re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", line):
            name, value = line.split("=", 1)
            pairs[name] = value
    return pairs


def test_the_services_are_all_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", "worker", "scheduler", "simulator", "dashboard",
                                        "webhooks", "flower", "minio", "createbucket",
                                        *SENTINEL_SERVICES}
    redis = compose["services"]["redis"]
    assert "--appendonly yes --appendfsync always" in " ".join(redis["command"])
    assert redis["healthcheck"]


def test_redis_gets_its_password_without_showing_it_on_a_command_line(
        compose: dict[str, Any], tmp_path: Path) -> None:
    """The compose command run as the container would (a real redis-server): it asks for the
    password, and no process's arguments hold it."""
    redis = compose["services"]["redis"]
    shell, flag, script = redis["command"]
    script = script.replace("$$", "$").replace("exec redis-server",
                                               f"exec {redis_server_binary()}")
    script = script.replace("/tmp/redis-auth.conf", str(tmp_path / "auth.conf"))
    port = free_port()
    script += f" --port {port} --dir {tmp_path} --save ''"
    secret = "compose-secret-0123456789"
    server = subprocess.Popen([shell, flag, script], env={**os.environ, "REDIS_PASSWORD": secret},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis_py.Redis(port=port, password=secret, socket_timeout=5)
        for _ in range(100):
            try:
                if client.ping():
                    break
            except redis_py.ConnectionError:
                time.sleep(0.05)
        with pytest.raises(redis_py.AuthenticationError):
            redis_py.Redis(port=port, password="wrong").ping()
        args = proc_args(server.pid)  # the shell became redis-server (exec): one process
        assert "redis-server" in args and secret not in args
    finally:
        server.terminate()
        server.wait(10)


def test_the_sentinel_profile_is_opt_in_with_a_volume_each(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SENTINEL_SERVICES:
        assert services[name]["profiles"] == ["sentinel"]
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
    volumes = [services[name]["volumes"][0].split(":")[0] for name in SENTINEL_SERVICES]
    assert len(set(volumes)) == 4 and set(volumes) <= set(compose["volumes"])
    assert "--replicaof redis 6379" in services["redis-replica"]["command"][2]
    assert "sentinel monitor genbatch redis 6379 2" in services["sentinel1"]["command"][2]


class Shell:
    """Compose commands run as their containers would, on loopback with the bundled
    redis-server (service names and fixed paths replaced); stopped at the end."""

    def __init__(self, compose: dict[str, Any], folder: Path, env: dict[str, str]) -> None:
        self.compose, self.folder, self.env = compose, folder, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def run(self, service: str, port: int, replace: dict[str, str]) -> subprocess.Popen[bytes]:
        shell, flag, script = self.compose["services"][service]["command"]
        script = script.replace("$$", "$").replace("exec redis-server",
                                                   f"exec {redis_server_binary()}")
        for old, new in replace.items():
            script = script.replace(old, new)
        script += f" --port {port} --dir {self.folder} --save ''"
        proc = subprocess.Popen([shell, flag, script], env={**os.environ, **self.env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def wait_for(check: Any, what: str, timeout: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except redis_py.RedisError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_sentinel_profile_fails_over_with_its_own_commands(
        compose: dict[str, Any], tmp_path: Path) -> None:
    """The profile's primary, replica and one Sentinel (quorum 1 here, 2 of 3 in compose)
    as real processes: the replica connects with the shared password, the Sentinel asks
    for its own and names the primary, and promotes the replica when the primary dies."""
    secret, own = "compose-secret-0123456789", "sentinel-secret-9876543210"
    primary, replica, sentinel = free_port(), free_port(), free_port()
    shell = Shell(compose, tmp_path, {"REDIS_PASSWORD": secret, "SENTINEL_PASSWORD": own})
    try:
        for n, (name, port) in enumerate((("redis", primary), ("redis-replica", replica))):
            (tmp_path / str(n)).mkdir()
            shell.folder = tmp_path / str(n)
            shell.run(name, port, {"/tmp/redis-auth.conf": str(tmp_path / f"auth{n}.conf"),
                                   "--replica-announce-ip redis-replica": "",
                                   "--replica-announce-ip redis": "",
                                   "--replicaof redis 6379": f"--replicaof 127.0.0.1 {primary}"})
        shell.folder = tmp_path
        conf = str(tmp_path / "sentinel.conf")
        watcher = shell.run("sentinel1", sentinel, {
            "/data/sentinel.conf": conf, "port 26379": f"port {sentinel}",
            "genbatch redis 6379 2": f"genbatch 127.0.0.1 {primary} 1",
            "down-after-milliseconds genbatch 5000": "down-after-milliseconds genbatch 1000"})
        first = redis_py.Redis(port=primary, password=secret, socket_timeout=5)
        wait_for(lambda: first.info("replication")["connected_slaves"] == 1, "the replica")
        asked = redis_py.Redis(port=sentinel, password=own, socket_timeout=5)
        assert wait_for(lambda: asked.sentinel_get_master_addr_by_name("genbatch"),
                        "the Sentinel")[1] == primary
        with pytest.raises(redis_py.AuthenticationError):
            redis_py.Redis(port=sentinel, password="wrong").ping()
        assert own not in proc_args(watcher.pid) and secret not in proc_args(watcher.pid)
        wait_for(lambda: asked.sentinel_slaves("genbatch"), "the Sentinel to see the replica")

        shell.procs[0].kill()  # the primary dies
        shell.procs[0].wait()
        wait_for(lambda: asked.sentinel_get_master_addr_by_name("genbatch") == (
            b"127.0.0.1", replica), "the replica's promotion")
        promoted = redis_py.Redis(port=replica, password=secret, socket_timeout=5)
        assert wait_for(lambda: promoted.role()[0] == b"master", "the promoted primary")
    finally:
        shell.stop()


def proc_args(pid: int) -> str:
    """The command line of a process as `ps` shows it."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_genbatch_services_run_real_commands_with_valid_options(compose: dict[str, Any]) -> None:
    cli: Any = typer.main.get_command(app)
    for name in GENBATCH_SERVICES:
        service = compose["services"][name]
        command, *args = service["command"]
        assert command in cli.commands, f"{name}: no `genbatch {command}`"
        cli.commands[command].make_context(command, list(args))  # raises on a bad option
        assert service["build"] == "."


def test_genbatch_services_share_redis_storage_and_keys(compose: dict[str, Any]) -> None:
    for name in ("worker", "scheduler", "dashboard", "webhooks"):
        service = compose["services"][name]
        env = service["environment"]
        assert env["GENBATCH_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD")
        assert env["GENBATCH_REDIS_URL"].endswith("@redis:6379/0")
        assert env["GENBATCH_STORAGE_URL"].startswith("${GENBATCH_STORAGE_URL:-s3://")
        assert service["env_file"] == ".env"
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert compose["services"]["worker"]["stop_grace_period"]


def test_flower_has_basic_auth_and_no_provider_keys(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert flower["entrypoint"] == ["celery"]
    assert "flower" in flower["command"]
    # Both passwords come from the environment: a command line shows in `ps` to every user.
    assert not any("REDIS_PASSWORD" in arg or "auth" in arg for arg in flower["command"])
    assert flower["environment"]["CELERY_BROKER_URL"].startswith("redis://:${REDIS_PASSWORD")
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert "env_file" not in flower
    assert not any("API_KEY" in k for k in flower.get("environment", {}))


def test_every_variable_is_a_setting_and_documented(compose: dict[str, Any]) -> None:
    example = env_example()
    fields = {f"GENBATCH_{name.upper()}" for name in set(Settings.model_fields) - NOT_VARIABLES}
    # A provider plugin's variables are no Settings field: the registry knows them.
    plugin_variables = {v for name in registry.names() for v in provider_variables(name)}
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    environment_keys = {k for s in compose["services"].values()
                        for k in (s.get("environment") or {})}
    unknown = {k for k in example if k.startswith("GENBATCH_")} - fields - plugin_variables
    assert not unknown, f"in .env.example but read by nothing: {sorted(unknown)}"
    assert fields <= set(example), f"settings missing from .env.example: {fields - set(example)}"
    assert {k for k in environment_keys if k.startswith("GENBATCH_")} <= fields
    assert used <= set(example), f"not in .env.example: {used - set(example)}"
    for key in ("GENBATCH_NOVITA_API_KEY", "GENBATCH_PRESIGN_RESULTS_S", "FLOWER_BASIC_AUTH"):
        assert key in example


def test_every_provider_s_key_settings_and_base_url_are_in_the_example() -> None:
    """Each built-in provider's key, its plugin's own settings (Kling's secret key) and
    its base URL, with the plugin's default base URL (a plugin installed from another
    package, such as the example's acme, documents its own)."""
    example = env_example()
    for name in registry.names():
        plugin = registry.get(name)
        if plugin.package != "genbatch":
            continue
        prefix = f"GENBATCH_{name.upper()}_"
        for setting in (plugin.key_setting, *plugin.settings, "base_url"):
            assert prefix + setting.upper() in example, f"{prefix}{setting.upper()} missing"
        assert example[prefix + "BASE_URL"] == plugin.limits.base_url, name


def test_ports_listen_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping}"


def test_image_runs_as_a_non_root_user() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["genbatch"]' in lines


def test_webhook_receiver_is_opt_in_and_its_settings_documented(compose: dict[str, Any]) -> None:
    hooks = compose["services"]["webhooks"]
    assert hooks["profiles"] == ["webhooks"]  # needs a public URL and a secret: opt in
    assert hooks["command"][:1] == ["webhooks"] and "0.0.0.0" in hooks["command"]
    assert any("/healthz" in part for part in hooks["healthcheck"]["test"])
    example = env_example()
    for key in ("GENBATCH_WEBHOOK_BASE_URL", "GENBATCH_WEBHOOK_SECRET",
                "GENBATCH_WEBHOOK_SAFETY_POLL_S", "COMPOSE_PROFILES"):
        assert key in example
    assert example["GENBATCH_WEBHOOK_SECRET"] == ""  # never a default secret


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_the_compose_cli_accepts_the_file(tmp_path: Path) -> None:
    """`config` parses and interpolates the file as `up` would: with the documented .env,
    with the webhooks profile, and a clear refusal without the passwords."""
    cli = compose_cli()
    if cli is None:
        pytest.skip("no docker compose CLI here (.ci/run installs Debian's docker-compose)")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")

    def config(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args, "config"], cwd=tmp_path, capture_output=True,
                              text=True, check=False, stdin=subprocess.DEVNULL)

    plain = config()
    assert plain.returncode == 0, plain.stderr
    rendered = yaml.safe_load(plain.stdout)
    # opt-in (compose v2 leaves it out of `config`; v1 lists it with its profile)
    assert rendered["services"].get("webhooks", {"profiles": ["webhooks"]})["profiles"] == [
        "webhooks"]
    worker_env = rendered["services"]["worker"]["environment"]
    assert worker_env["GENBATCH_REDIS_URL"] == "redis://:change-me@redis:6379/0"
    with_hooks = config("--profile", "webhooks")
    assert with_hooks.returncode == 0, with_hooks.stderr
    assert "webhooks" in yaml.safe_load(with_hooks.stdout)["services"]
    with_sentinels = config("--profile", "sentinel")
    assert with_sentinels.returncode == 0, with_sentinels.stderr
    assert set(SENTINEL_SERVICES) <= set(yaml.safe_load(with_sentinels.stdout)["services"])

    (tmp_path / ".env").write_text("")  # no passwords: refused, naming the variable
    empty = config()
    assert empty.returncode != 0
    assert "REDIS_PASSWORD" in empty.stderr
