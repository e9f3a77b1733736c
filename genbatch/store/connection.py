"""The job store's Redis connection: redis-py's errors translated, and the server's facts.

Redis errors are translated here, once, for every command the store sends (its pipelines
and Lua scripts included): a lost connection, a timeout or a Redis still loading its data
raises `StoreUnavailable`, any other Redis error `StoreError`. The raised exception is also
an instance of redis-py's own class (a subclass of both), so the store's modules, and
redis-py's Script (which loads a script on NoScriptError), still catch what they caught;
the rest of genbatch catches `StoreUnavailable` / `StoreError` and imports no redis. A
StoreUnavailable says what to check ("cannot reach Redis (...); is it running, ..."), as the
CLI prints it.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
import redis.sentinel
from redis.client import Pipeline

from genbatch.config import RedisTarget
from genbatch.errors import ConfigError, StoreError, StoreUnavailable

CONNECT_TIMEOUT_S = 5.0  # a Redis that does not accept a connection in this is down
PING_TIMEOUT_S = 3.0  # the entry points' first check (`ping`)
REPLICAS_RECHECK_S = 5.0  # how long a count of connected replicas is trusted (auto)


_TRANSLATED: dict[type[redis.RedisError], type[Exception]] = {}
_TRANSLATING = threading.Lock()


def _unavailable(cls: type[redis.RedisError]) -> bool:
    """Errors of reaching Redis (BusyLoadingError, a Redis loading its data, included)."""
    return issubclass(cls, redis.ConnectionError | redis.TimeoutError)


def _translated_class(cls: type[redis.RedisError]) -> type[Exception]:
    """`cls` made a StoreUnavailable (connection lost, timeout, loading) or a StoreError.
    It keeps redis-py's name (logs say `ConnectionError`); it is a global of this module
    under `Store<name>`, so it pickles (Celery's pool sends exceptions between processes)."""
    with _TRANSLATING:
        made = _TRANSLATED.get(cls)
        if made is not None:
            return made
        base = StoreUnavailable if _unavailable(cls) else StoreError
        qualname = f"Store{cls.__name__}"
        made = type(cls.__name__, (base, cls), {"__module__": __name__,
                                                "__qualname__": qualname})
        _TRANSLATED[cls] = globals()[qualname] = made
        return made


def translate(exc: redis.RedisError) -> Exception:
    """`exc` as the same error that is also a StoreUnavailable or StoreError."""
    if isinstance(exc, StoreError):
        return exc
    args = exc.args
    if isinstance(exc, redis.sentinel.MasterNotFoundError):
        args = (no_primary(str(exc)),)
    elif _unavailable(type(exc)):
        args = (f"cannot reach Redis ({exc}); is it running, and is GENBATCH_REDIS_URL "
                "right?",)
    return _translated_class(type(exc))(*args)


def no_primary(message: str) -> str:
    """redis-py's MasterNotFoundError (a repr of each Sentinel's client, then its error) as
    one line: the name asked for and each Sentinel's error."""
    name = message.partition(" : ")[0].removeprefix("No master found for ")
    reasons = "; ".join(re.findall(r"\)>\)>\)> - (?:\w+:)?([^,]+)", message))
    return (f"cannot reach Redis: no Sentinel of GENBATCH_REDIS_SENTINELS names a primary "
            f"{name}{f' ({reasons})' if reasons else ''}; are they running, and is "
            "GENBATCH_REDIS_MASTER_NAME right?")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise redis-py's errors in the block as StoreUnavailable / StoreError."""
    try:
        yield
    except redis.RedisError as exc:
        raise translate(exc) from exc


class StorePipeline(Pipeline):
    """A pipeline whose errors are translated (see the module docstring)."""

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with translated():
            return super().execute(raise_on_error)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        with translated():
            return super().immediate_execute_command(  # type: ignore[no-untyped-call]
                *args, **options)


class StoreClient(redis.Redis):
    """A redis-py client whose errors are translated (see the module docstring)."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        with translated():
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> StorePipeline:
        return StorePipeline(self.connection_pool, self.response_callbacks, transaction,
                             shard_hint)


def connect(url: str) -> StoreClient:
    """A client for the job store at `url` (pooled, kept alive, retried on a timeout)."""
    return StoreClient.from_url(  # type: ignore[return-value]
        url, decode_responses=True, health_check_interval=30, socket_keepalive=True,
        retry_on_timeout=True, socket_connect_timeout=CONNECT_TIMEOUT_S,
    )


def connect_target(target: RedisTarget) -> StoreClient:
    """A client for the job store at `target`: its URL, or the primary its Sentinels name.
    With Sentinels, every new connection asks them where the primary is, so a promoted
    replica is found without a restart: the connections to a primary that died fail (a
    StoreUnavailable, as a restart's would) and the next ones go to the new one; a primary
    that came back as a replica answers READONLY, which closes the connection the same way."""
    if target.url:
        return connect(target.url)
    sentinel_auth = {"password": target.sentinel_password} if target.sentinel_password else {}
    manager = redis.sentinel.Sentinel(
        list(target.sentinels), socket_timeout=PING_TIMEOUT_S,
        socket_connect_timeout=PING_TIMEOUT_S, sentinel_kwargs=sentinel_auth)
    return manager.master_for(  # type: ignore[no-any-return]
        target.master_name, redis_class=StoreClient, db=target.db,
        username=target.username, password=target.password, decode_responses=True,
        health_check_interval=30, socket_keepalive=True, retry_on_timeout=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S)


def primary_address(client: redis.Redis) -> tuple[str, int] | None:
    """The primary a Sentinel-managed client uses now (asking its Sentinels); None for a
    client of one URL."""
    pool = client.connection_pool
    if not isinstance(pool, redis.sentinel.SentinelConnectionPool):
        return None
    with translated():
        host, port = pool.get_master_address()  # type: ignore[no-untyped-call]
    return str(host), int(port)


def wrap(client: redis.Redis) -> StoreClient:
    """`client` itself when it translates errors, else one sharing its connection pool."""
    if isinstance(client, StoreClient):
        return client
    return StoreClient(connection_pool=client.connection_pool)


def ping(client: redis.Redis) -> None:
    """Fail now rather than at first use: StoreUnavailable when nothing answers,
    ConfigError when what answers is not Redis (or not in PING_TIMEOUT_S)."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": PING_TIMEOUT_S,
              "socket_connect_timeout": PING_TIMEOUT_S, "retry_on_timeout": False}
    probe = StoreClient(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **kwargs))
    try:
        probe.ping()
    except (redis.TimeoutError, redis.ResponseError, redis.exceptions.InvalidResponse) as exc:
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        raise ConfigError(f"GENBATCH_REDIS_URL points at {where}, which does not answer "
                          f"like Redis ({type(exc).__name__}: {exc})") from None
    finally:
        probe.close()


@dataclass(frozen=True, slots=True)
class Durability:
    """How this Redis keeps what it is told (see Server.durability)."""

    aof: bool
    fsync: str | None
    waitaof: bool
    version: str
    run_id: str = ""  # this server process's id (INFO server): a restart or failover changes it


class Server:
    """Facts about the Redis server itself: its clock and how durable its writes are."""

    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._replicas_checked: tuple[float, int] | None = None

    def time(self) -> float:
        """Redis's clock (`TIME`), in Unix seconds."""
        seconds, micros = self._r.time()
        return seconds + micros / 1_000_000

    def durability(self) -> Durability:
        """Whether this Redis keeps an append-only file, how it fsyncs, and whether it has
        WAITAOF (7.2+). `fsync` is None when CONFIG is not allowed."""
        persistence, server = self._r.info("persistence"), self._r.info("server")
        version = str(server.get("redis_version", "0"))
        try:
            fsync = self._r.config_get("appendfsync").get("appendfsync")
        except redis.ResponseError:
            fsync = None
        major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        return Durability(aof=bool(int(persistence.get("aof_enabled", 0))), fsync=fsync,
                          waitaof=major_minor >= (7, 2), version=version,
                          run_id=str(server.get("run_id", "")))

    def wait_durable(self, timeout_ms: int = 1000, replicas: int | None = 0) -> bool:
        """After a write that must survive (a submit's record): with WAITAOF (Redis 7.2+),
        wait until the local append-only file has it; then, with `replicas` above 0, until
        that many replicas acknowledge it (`WAIT`: a replica has it, so the one Sentinel
        promotes when this primary dies does too). `replicas` None = auto: 1 when the
        primary has a connected replica, else 0. True when all of that came in time (or when
        the server cannot say whether its file has it: see worker/durable.py)."""
        if self._waitaof:
            local, _ = self._r.execute_command("WAITAOF", 1, 0, timeout_ms)  # type: ignore[no-untyped-call]
            if int(local) < 1:
                return False
        needed = self.connected_replicas_needed() if replicas is None else replicas
        if needed <= 0:
            return True
        acked = self._r.execute_command("WAIT", needed, timeout_ms)  # type: ignore[no-untyped-call]
        if int(acked) < needed:
            self._replicas_checked = None  # a replica gone: auto counts again next time
            return False
        return True

    def connected_replicas_needed(self) -> int:
        """Auto's replica count: 1 when this primary has a connected replica, else 0 (looked
        at once every REPLICAS_RECHECK_S: a replica lost or joined counts from then on)."""
        now = time.monotonic()
        if self._replicas_checked is None or now - self._replicas_checked[0] > REPLICAS_RECHECK_S:
            self._replicas_checked = (now, min(1, self.connected_replicas()))
        return self._replicas_checked[1]

    def connected_replicas(self) -> int:
        """The replicas connected to this primary now (INFO replication)."""
        return int(self._r.info("replication").get("connected_slaves", 0))

    def promoted(self) -> bool:
        """Whether this server was a replica promoted to primary (a failover): it keeps the
        old primary's replication id with the offset it took over at."""
        offset = self._r.info("replication").get("second_repl_offset", -1)
        return int(offset) >= 0

    @functools.cached_property
    def _waitaof(self) -> bool:
        return self.durability().waitaof
