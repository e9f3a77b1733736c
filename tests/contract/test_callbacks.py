"""Contract: callbacks, uploads and model ids, adapters and simulator, against docs/wire §9.

A recording receiver on loopback stands in for `genbatch webhooks`; each callback the
simulator sends is read by the parser the receiver uses for that provider, and compared value
by value with what the provider's GET returns. WaveSpeed's signature is checked with
genbatch's own verifier (the simulator signs with a copy of the scheme)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from genbatch.config import ProviderSettings
from genbatch.errors import PermanentProviderError
from genbatch.models import GenerationRequest, TaskStatus
from genbatch.providers import make_provider
from genbatch.providers.signing import verify
from genbatch.providers.wavespeed import WaveSpeedProvider
from genbatch.webhooks.receiver import parse_callback
from tests.contract.test_contract import adapter, data_uri, valid_request
from tests.simulator.helpers import KEY, TLS, Sim, wait_until

V15 = "seedance-v1.5-pro-i2v"


class Recorder:
    """Records every POST; answers `fail_first` of them 500, the rest 200."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                recorder.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failed = len(recorder.calls) <= recorder.fail_first
                self.send_response(500 if failed else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/x"

    def wait(self, n: int) -> list[tuple[dict[str, str], bytes]]:
        wait_until(lambda: len(self.calls), lambda k: k >= n)
        return self.calls


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


@pytest.mark.parametrize("provider", ["novita", "highwayapi", "wavespeed", "byteplus"])
def test_each_provider_calls_back_in_its_documented_shape(
        sim: Sim, recorder: Recorder, provider: str) -> None:
    sim.profile(fresh_url_per_poll=False)  # one URL per task, so callback and GET match
    client = adapter(sim, provider)
    remote_id = client.submit(V15, valid_request(sim, client.models[V15]),
                              webhook_url=recorder.url)

    [(headers, raw)] = recorder.wait(1)

    parsed = parse_callback(provider, json.loads(raw))
    assert parsed is not None
    task_id, result = parsed
    assert (task_id, result.status) == (remote_id, TaskStatus.SUCCEEDED)
    assert result == client.poll(V15, remote_id)  # the same report a poll gives
    body, got = json.loads(raw), _get(sim, provider, remote_id)
    if provider in ("novita", "highwayapi"):
        assert body == {"event_type": "ASYNC_TASK_RESULT", "payload": got}
    elif provider == "wavespeed":
        assert body == got["data"]
        secret = sim.client().get("/api/v3/webhook/secret").json()["data"]["secret"]
        assert secret.startswith("whsec_")
        assert verify(secret, headers, raw, time.time()) == headers["webhook-id"]
        assert headers["webhook-signature"].startswith("v3,")
    else:
        assert body == got
    assert sim.stats()["webhooks_delivered"] == 1


def _get(sim: Sim, provider: str, remote_id: str) -> dict[str, Any]:
    http = sim.client(prefix={"novita": "/novita", "highwayapi": "/highwayapi"}.get(provider, ""))
    path = {"wavespeed": f"/api/v3/predictions/{remote_id}/result",
            "byteplus": f"/api/v3/contents/generations/tasks/{remote_id}"}.get(
        provider, f"/v3/async/task-result?task_id={remote_id}")
    got: dict[str, Any] = http.get(path).json()
    return got


@pytest.mark.parametrize(("provider", "attempts"), [("novita", 6), ("wavespeed", 4)])
def test_failed_deliveries_are_retried_like_the_provider(
        sim: Sim, recorder: Recorder, provider: str, attempts: int) -> None:
    recorder.fail_first = 100
    client = adapter(sim, provider)
    client.submit(V15, valid_request(sim, client.models[V15]), webhook_url=recorder.url)

    calls = recorder.wait(attempts)

    wait_until(lambda: sim.stats()["webhooks_sent"], lambda n: n == attempts)
    assert len({raw for _, raw in calls}) == 1  # the same body every time
    if provider == "wavespeed":
        assert len({h["webhook-id"] for h, _ in calls}) == 1
    assert sim.stats()["webhooks_retried"] == attempts - 1


def test_a_retry_that_succeeds_ends_the_deliveries(sim: Sim, recorder: Recorder) -> None:
    recorder.fail_first = 2
    client = adapter(sim, "byteplus")
    client.submit(V15, valid_request(sim, client.models[V15]), webhook_url=recorder.url)

    recorder.wait(3)

    wait_until(lambda: sim.stats(), lambda s: s["webhooks_delivered"] == 1)
    assert sim.stats()["webhook_statuses"] == {"500": 2, "200": 1}


def test_wavespeed_upload_gives_a_url_its_submit_takes(sim: Sim) -> None:
    client = adapter(sim, "wavespeed")
    assert isinstance(client, WaveSpeedProvider)
    png = data_uri(640, 480)

    url = client.upload(base64.b64decode(png.partition(",")[2]), "a.png", "image/png")
    remote_id = client.submit(V15, valid_request(sim, client.models[V15], image=url))

    assert url.startswith(f"{sim.url}/_sim/uploads/")
    assert wait_until(lambda: client.poll(V15, remote_id), lambda r: r.status.terminal).status \
        is TaskStatus.SUCCEEDED
    assert sim.stats()["uploads"] == 1
    with pytest.raises(PermanentProviderError) as refused:
        client.upload(b"not an image at all", "a.txt", "text/plain")
    assert refused.value.status_code == 400 and "unsupported file" in refused.value.message


@pytest.mark.parametrize(("provider", "model", "wire"), [
    ("wavespeed", "bytedance/seedance-v1.5-pro/image-to-video",
     "bytedance/seedance-v1.5-pro/image-to-video"),
    ("wavespeed", "bytedance/seedance-v1-lite-i2v-480p", "bytedance/seedance-v1-lite-i2v-480p"),
    ("byteplus", "seedance-1-0-pro-250528", "seedance-1-0-pro-250528"),
    ("byteplus", "seedance-1-5-pro-251215", "seedance-1-5-pro-251215"),
])
def test_provider_model_ids_reach_the_simulator_as_themselves(
        sim: Sim, provider: str, model: str, wire: str) -> None:
    client = adapter(sim, provider)
    request = GenerationRequest(prompt="a cat", image=sim.asset())

    remote_id = client.submit(model, request)

    task = wait_until(lambda: client.poll(model, remote_id), lambda r: r.status.terminal)
    assert task.status is TaskStatus.SUCCEEDED
    log = [e for e in sim.stats()["request_log"] if e["method"] == "POST"]
    assert wire in log[-1]["path"] or json.loads(log[-1]["body"])["model"] == wire


def test_the_highwayapi_prefix_serves_highwayapi_by_its_own_rules(sim: Sim) -> None:
    """Pointed at the simulator's /highwayapi, HighwayAPI's adapter gets HighwayAPI's rules
    (1.5 pro at 1080p, its seed page); the root serves Novita's (no 1080p)."""
    request = GenerationRequest(prompt="a cat", image=sim.asset(), resolution="1080p")
    hw = make_provider(ProviderSettings("highwayapi", sim.url + "/highwayapi", SecretStr(KEY), 10),
                       httpx.Client(timeout=10, verify=TLS))

    remote_id = hw.submit(V15, request)

    assert wait_until(lambda: hw.poll(V15, remote_id), lambda r: r.status.terminal).status \
        is TaskStatus.SUCCEEDED
    plain = sim.client(KEY).post("/v3/async/seedance-v1.5-pro-i2v", json={
        "image": sim.asset(), "prompt": "a cat", "resolution": "1080p"})
    assert plain.status_code == 400 and plain.json()["reason"] == "INVALID_REQUEST_BODY"


@pytest.mark.parametrize("secret", ["whsec_abc123", "abc123", "whsec_"])
def test_the_simulators_copy_of_the_signing_scheme_agrees_with_genbatchs(secret: str) -> None:
    from genbatch.providers import signing
    from genbatch.simulator import webhooks as simulated

    body = b'{"id":"p","status":"completed"}'
    assert simulated.signature(secret, "msg_1", "1700000000", body) == signing.signature(
        secret, "msg_1", "1700000000", body)
    assert simulated.SECRET_PREFIX == signing.SECRET_PREFIX
