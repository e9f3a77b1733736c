"""A worker builds its provider clients when it starts (Runtime.warm), not in its first
submits: every submit thread would wait behind the one building (a TLS context each)."""

from __future__ import annotations

import pytest

from genbatch import providers
from genbatch.config import Settings
from genbatch.providers.base import Provider
from genbatch.worker.runtime import Runtime


def test_warm_builds_each_keyed_account_once_and_skips_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    real = providers.make_provider

    def counting(ps: object, *args: object, **kwargs: object) -> Provider:
        built.append(ps.name)  # type: ignore[attr-defined]
        return real(ps, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(providers, "make_provider", counting)
    rt = Runtime(Settings(redis_url="redis://127.0.0.1:1/0", kling_access_key="ak",
                          kling_secret_key="sk", novita_api_key="nv"))
    rt.warm()  # no Redis needed, and the providers without a key are left alone
    assert sorted(built) == ["kling", "novita"]
    first = rt.provider("kling")
    assert rt.provider("kling") is first
    assert sorted(built) == ["kling", "novita"]  # the first submit finds it built
