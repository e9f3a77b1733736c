"""Acme passes genbatch's conformance kit against its own simulated protocol (served
under /acme by genbatch's simulator, found by the `genbatch.simulators` entry point)."""

from __future__ import annotations

import httpx
import pytest

from genbatch.testing import ProviderConformance, Target


def webhook_secret(base_url: str, api_key: str) -> str:
    """The account's callback signing secret, as Acme hands it out."""
    answer = httpx.get(f"{base_url}/v1/account/webhook-secret",
                       headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    answer.raise_for_status()
    secret: str = answer.json()["secret"]
    return secret


class TestAcme(ProviderConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def conformance_target(cls) -> Target:
        return Target("acme", callback_secret=webhook_secret)
