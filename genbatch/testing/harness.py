"""What the conformance suite runs on: the provider under test (`Target`), genbatch's
simulator on loopback with the kit's profile (one API key per fault, `faults.py`), a
callback receiver, and helpers that drive the provider's adapter through genbatch's own
parts: account settings as the worker builds them, the download checks of the worker
(`policy_for`, `open_video`, `video_chunks`) and a real storage folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from genbatch import providers
from genbatch.config import ProviderSettings, Settings
from genbatch.errors import ProviderError
from genbatch.models import GenerationRequest, PollResult
from genbatch.providers.accounts import env_account
from genbatch.providers.base import Provider
from genbatch.providers.plugin import Capability, ProviderPlugin
from genbatch.simulator import SimulatorPlugin, running_simulator
from genbatch.storage import LocalStorage, StoredObject
from genbatch.testing.faults import Keys, make_keys, profile
from genbatch.testing.receiver import Receiver, running_receiver
from genbatch.worker.fetch import open_video, policy_for, video_chunks

E = TypeVar("E", bound=BaseException)
SAMPLE_IMAGE = "/_sim/assets/landscape.png"  # served by the simulator (a 1280x720 PNG)
WAIT_S = 15.0


@dataclass(frozen=True)
class Target:
    """The provider under test, as its author describes it to the kit.

    `provider`: the plugin's name (installed under `genbatch.providers`). `prefix`: where
    the simulator serves its protocol (default `/<provider>`, where `create_app` mounts a
    simulator plugin). `model`: the model the suite uses (default the plugin's first).
    `request`: a valid request given the simulator's URL (default: a prompt, the
    simulator's sample image as a URL, and the model's default resolution where it needs
    one). `callback_secret`: for signed callbacks, the account's signing secret given the
    base URL and the API key (as the provider's simulator hands it out). `settings`: the
    plugin's own further settings (its `ProviderPlugin.settings`, without the
    GENBATCH_<PROVIDER>_ prefix), or a function of the base URL giving them: e.g. Kling's
    `secret_key`, which signs each request with the access key; they are secrets to the
    kit, checked never to leak like the keys. `simulators`: simulator plugins to serve
    besides the installed ones.
    """

    provider: str
    prefix: str | None = None
    model: str | None = None
    request: Callable[[str], GenerationRequest] | None = None
    callback_secret: Callable[[str, str], str] | None = None
    settings: Mapping[str, str] | Callable[[str], Mapping[str, str]] | None = None
    simulators: Sequence[SimulatorPlugin] = ()


class Harness:
    """One running simulator and receiver for one `Target`."""

    def __init__(self, target: Target, sim_url: str, receiver: Receiver, keys: Keys,
                 workdir: Path) -> None:
        self.target = target
        self.plugin: ProviderPlugin = providers.plugin(target.provider)
        self.sim_url = sim_url
        self.base_url = sim_url + (f"/{target.provider}" if target.prefix is None
                                   else target.prefix)
        self.receiver = receiver
        self.keys = keys
        self.workdir = workdir
        self.http = httpx.Client(timeout=10)
        self.model = target.model or next(iter(self.plugin.models))
        self.extra_settings = _extra_settings(target, self.plugin, self.base_url)

    # -- the provider, as the worker sees it -----------------------------------------------

    def settings(self, key: str) -> Settings:
        name = self.target.provider
        values: dict[str, Any] = {f"{name}_{setting}": value
                                  for setting, value in self.extra_settings.items()}
        values |= {f"{name}_base_url": self.base_url, f"{name}_{self.plugin.key_setting}": key}
        return Settings(_env_file=None, **values)

    def secrets(self) -> tuple[str, ...]:
        """Every value that must never show: the keys and the target's own settings."""
        return (*self.keys.all(), *self.extra_settings.values())

    def account(self, key: str) -> ProviderSettings:
        return env_account(self.settings(key), self.target.provider)

    def adapter(self, fault: str = "happy", *, key: str | None = None,
                submit_timeout_s: float | None = None) -> Provider:
        """The adapter of the account holding `fault`'s key (or `key`)."""
        account = self.account(key or self.keys[fault])
        return self.plugin.make(account, self.http, submit_timeout_s=submit_timeout_s)

    def request(self) -> GenerationRequest:
        if self.target.request is not None:
            return self.target.request(self.sim_url)
        spec = self.plugin.models[self.model]
        return GenerationRequest(
            prompt="a red sneaker turns slowly on a white table",
            image=self.sim_url + SAMPLE_IMAGE,
            resolution=spec.default_resolution if spec.resolution_required else None,
        )

    def submit(self, fault: str = "happy", *, webhook_url: str | None = None
               ) -> tuple[Provider, str]:
        adapter = self.adapter(fault)
        return adapter, adapter.submit(self.model, self.request(), webhook_url=webhook_url)

    def poll_until(self, adapter: Provider, remote_id: str,
                   done: Callable[[PollResult], bool], timeout: float = WAIT_S) -> PollResult:
        """Poll until `done`; AssertionError with the last result when time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            result = adapter.poll(self.model, remote_id)
            if done(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"task {remote_id} still {result.status} after {timeout} s")
            time.sleep(0.02)

    def poll_to_end(self, adapter: Provider, remote_id: str) -> PollResult:
        return self.poll_until(adapter, remote_id, lambda r: r.status.terminal)

    # -- the simulator's view --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.http.get(self.sim_url + "/_sim/stats").json()
        return stats

    def has_tasks(self, key: str) -> bool:
        """Whether the simulator created any task for `key` (under any provider name): an
        account's ledger exists only once a task was created for it."""
        per_provider: dict[str, dict[str, int]] = self.stats()["max_in_flight"]
        return any(keys.get(key, 0) > 0 for keys in per_provider.values())

    # -- genbatch's own download and storage -------------------------------------------------

    def download(self, result: PollResult, name: str) -> StoredObject:
        """Fetch the finished task's video as the worker does (host allow-list, loopback
        only for a loopback base URL, an MP4 head, a size cap; the adapter's
        `download_headers` for a provider declaring Capability.KEYED_DOWNLOAD) into a
        storage folder."""
        assert result.video_url, f"a succeeded task without a video URL: {result}"
        settings = self.settings(self.keys["happy"])
        policy = policy_for(settings, self.target.provider)
        storage = LocalStorage(self.workdir / "storage")
        keyed = self.plugin.has(Capability.KEYED_DOWNLOAD)
        headers = self.adapter("happy").download_headers if keyed else None
        with open_video(self.http, result.video_url, policy, timeout=30,
                        headers=headers) as response:
            return storage.put_stream(f"conformance/{name}.mp4", video_chunks(response, policy))

    def close(self) -> None:
        self.http.close()


def _extra_settings(target: Target, plugin: ProviderPlugin, base_url: str
                    ) -> dict[str, str]:
    """The target's own settings, each one the plugin declares (ValueError otherwise)."""
    given = target.settings(base_url) if callable(target.settings) else target.settings
    values = dict(given or {})
    unknown = sorted(set(values) - set(plugin.settings))
    if unknown:
        declared = ", ".join(sorted(plugin.settings)) or "none"
        raise ValueError(f"Target {target.provider!r}: {', '.join(unknown)} is not a "
                         f"setting of the plugin (it declares: {declared})")
    return values


def expect(cls: type[E], call: Callable[[], object]) -> E:
    """The `cls` error `call` raises; AssertionError naming what happened instead."""
    try:
        got = call()
    except cls as exc:
        return exc
    except ProviderError as exc:
        raise AssertionError(f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
                             ) from exc
    raise AssertionError(f"expected {cls.__name__}, got a result: {got!r}")


@contextmanager
def running_harness(target: Target, workdir: Path) -> Iterator[Harness]:
    """The simulator (installed simulator plugins and `target.simulators` mounted) with a
    fresh kit profile, a callback receiver, and the harness over them."""
    keys = make_keys()
    with ExitStack() as stack:
        sim_url = stack.enter_context(
            running_simulator(profile(keys), simulators=target.simulators))
        receiver = stack.enter_context(running_receiver())
        harness = Harness(target, sim_url, receiver, keys, workdir)
        stack.callback(harness.close)
        yield harness
