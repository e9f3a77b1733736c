"""genbatch's own providers pass the conformance kit (genbatch.testing) against the
simulator, exactly as a third-party plugin does."""

from __future__ import annotations

import httpx
import pytest

from genbatch.images import data_uri, sniff_format
from genbatch.models import GenerationRequest
from genbatch.testing import ProviderConformance, Target
from genbatch.testing.harness import SAMPLE_IMAGE


def wavespeed_secret(base_url: str, api_key: str) -> str:
    """The account's webhook secret, as WaveSpeed hands it out (`GET /api/v3/webhook/secret`)."""
    answer = httpx.get(f"{base_url}/api/v3/webhook/secret",
                       headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    answer.raise_for_status()
    secret: str = answer.json()["data"]["secret"]
    return secret


def inline_request(sim_url: str) -> GenerationRequest:
    """The kit's request with the simulator's sample image as a data URI."""
    data = httpx.get(sim_url + SAMPLE_IMAGE, timeout=10).content
    return GenerationRequest(prompt="a red sneaker turns slowly on a white table",
                             image=data_uri(data, sniff_format(data)))


TARGETS = {
    "novita": Target("novita"),
    "highwayapi": Target("highwayapi"),
    "wavespeed": Target("wavespeed", callback_secret=wavespeed_secret),
    "byteplus": Target("byteplus"),
    "fal": Target("fal", callback_secret=lambda base_url, key: f"{base_url}/.well-known/jwks.json"),
    "runway": Target("runway"),
    # Kling signs a JWT per request with the access key (the API key here) and this secret
    # key: the simulator's default for every key of the kit's profile.
    "kling": Target("kling", settings={"secret_key": "sim-kling-secret"}),
    # Its downloads carry the key (Capability.KEYED_DOWNLOAD); its images go inline (the
    # worker fetches a row's image URL first: the adapter takes data URIs only).
    "veo": Target("veo", request=inline_request),
}


@pytest.mark.integration
class TestBuiltinProviders(ProviderConformance):
    @pytest.fixture(scope="class", params=list(TARGETS))
    @classmethod
    def conformance_target(cls, request: pytest.FixtureRequest) -> Target:
        return TARGETS[request.param]
