"""Classification of every failure into the genbatch error tree (genbatch/providers/http.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr

from genbatch.config import ProviderSettings
from genbatch.errors import (
    AmbiguousSubmit,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RetryableProviderError,
)
from genbatch.models import GenerationRequest
from genbatch.providers import make_provider
from genbatch.providers.base import Provider

from .conftest import FakeProvider

Build = Callable[..., Provider]
Req = Callable[..., GenerationRequest]
V15 = "seedance-v1.5-pro-i2v"
NOVITA_400 = {
    "code": 400,
    "reason": "INVALID_REQUEST_BODY",
    "message": "duration out of range",
    "metadata": {},
}


def submit(adapter: Build, req: Req, provider: str = "novita") -> str:
    return adapter(provider).submit(V15, req())


def poll(adapter: Build, provider: str = "novita") -> object:
    return adapter(provider).poll(V15, "task-1")


# -- HTTP statuses ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_submit_is_ambiguous(
    adapter: Build, req: Req, fake: FakeProvider, status: int
) -> None:
    fake.reply(status, {"code": status, "reason": "CREATE_TASK_FAILED", "message": "boom"})
    with pytest.raises(AmbiguousSubmit) as info:
        submit(adapter, req)
    assert (info.value.code, info.value.message, info.value.status_code) == (
        "CREATE_TASK_FAILED",
        "boom",
        status,
    )


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_on_poll_is_retryable(adapter: Build, fake: FakeProvider, status: int) -> None:
    fake.reply(status, {"code": status, "reason": "GET_RESULT_FAILED", "message": "later"})
    with pytest.raises(RetryableProviderError) as info:
        poll(adapter)
    assert not isinstance(info.value, RateLimited)
    assert info.value.code == "GET_RESULT_FAILED"


def test_408_is_ambiguous_on_submit_and_retryable_on_poll(
    adapter: Build, req: Req, fake: FakeProvider
) -> None:
    fake.reply(408, text="timeout")
    fake.reply(408, text="timeout")
    with pytest.raises(AmbiguousSubmit):
        submit(adapter, req)
    with pytest.raises(RetryableProviderError):
        poll(adapter)


@pytest.mark.parametrize("call", ["submit", "poll"])
def test_429_is_rate_limited_with_retry_after_seconds(
    adapter: Build, req: Req, fake: FakeProvider, call: str
) -> None:
    body = {"code": 429, "reason": "RATE_LIMIT_EXCEEDED", "message": "slow down"}
    fake.reply(429, body, headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as info:
        submit(adapter, req) if call == "submit" else poll(adapter)
    assert info.value.retry_after == 7.0
    assert info.value.code == "RATE_LIMIT_EXCEEDED"
    assert info.value.status_code == 429


def test_429_retry_after_as_http_date(adapter: Build, req: Req, fake: FakeProvider) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    fake.reply(429, text="Too Many Requests", headers={"Retry-After": when})
    with pytest.raises(RateLimited) as info:
        submit(adapter, req)
    assert info.value.retry_after is not None
    assert 100 < info.value.retry_after <= 120


@pytest.mark.parametrize("header", [None, "soon", "nan"])
def test_429_without_a_usable_retry_after(
    adapter: Build, req: Req, fake: FakeProvider, header: str | None
) -> None:
    fake.reply(429, text="rpm limit exceeded", headers={"Retry-After": header} if header else {})
    with pytest.raises(RateLimited) as info:
        submit(adapter, req)
    assert info.value.retry_after is None
    assert info.value.code == "HTTP_429"
    assert info.value.message == "rpm limit exceeded"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_on_submit_is_permanent(
    adapter: Build, req: Req, fake: FakeProvider, status: int
) -> None:
    fake.reply(status, {"code": status, "reason": "INVALID_API_KEY", "message": "no"})
    with pytest.raises(PermanentProviderError) as info:
        submit(adapter, req)
    assert info.value.status_code == status


def test_404_on_poll_is_permanent(adapter: Build, fake: FakeProvider) -> None:
    fake.reply(404, {"code": 404, "reason": "TASK_NOT_FOUND", "message": "task not found"})
    with pytest.raises(PermanentProviderError) as info:
        poll(adapter)
    assert info.value.code == "TASK_NOT_FOUND"


# -- transport failures -----------------------------------------------------------------------


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_a_submit_that_never_left_is_retryable(
    adapter: Build, req: Req, fake: FakeProvider, exc: type[httpx.TransportError]
) -> None:
    fake.fail(exc)
    with pytest.raises(RetryableProviderError) as info:
        submit(adapter, req)
    assert "request not sent" in info.value.message


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ReadTimeout, "READ_TIMEOUT"),
        (httpx.WriteTimeout, "WRITE_TIMEOUT"),
        (httpx.RemoteProtocolError, "REMOTE_PROTOCOL_ERROR"),
        (httpx.ReadError, "READ_ERROR"),
        (httpx.WriteError, "WRITE_ERROR"),
    ],
)
def test_a_submit_that_may_have_arrived_is_ambiguous(
    adapter: Build, req: Req, fake: FakeProvider, exc: type[httpx.TransportError], code: str
) -> None:
    fake.fail(exc)
    with pytest.raises(AmbiguousSubmit) as info:
        submit(adapter, req)
    assert info.value.code == code
    assert "may have been created" in info.value.message


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout, httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError]
)
def test_transport_failures_on_poll_are_retryable(
    adapter: Build, fake: FakeProvider, exc: type[httpx.TransportError]
) -> None:
    fake.fail(exc)
    with pytest.raises(RetryableProviderError):
        poll(adapter)


def test_a_non_http_base_url_is_permanent(req: Req) -> None:
    settings = ProviderSettings("novita", "ftp://api.novita.test", SecretStr("k-123456"), 1)
    with httpx.Client() as client, pytest.raises(PermanentProviderError, match="bad base URL"):
        make_provider(settings, client).submit(V15, req())


# -- malformed 2xx answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        {"text": "<html>ok</html>"},
        {"text": '{"task_id": '},
        {"json": ["task-1"]},
        {"json": {"id": "task-1"}},
        {"json": {"task_id": ""}},
        {"json": {"task_id": None}},
    ],
)
def test_a_2xx_submit_without_a_readable_task_id_is_ambiguous(
    adapter: Build, req: Req, fake: FakeProvider, reply: dict[str, object]
) -> None:
    fake.replies.append(httpx.Response(200, **reply))  # type: ignore[arg-type]
    with pytest.raises(AmbiguousSubmit) as info:
        submit(adapter, req)
    assert info.value.code in ("MALFORMED_RESPONSE", "MISSING_TASK_ID")


def test_a_malformed_poll_answer_is_retryable(adapter: Build, fake: FakeProvider) -> None:
    fake.reply(200, text="not json")
    with pytest.raises(RetryableProviderError) as info:
        poll(adapter)
    assert info.value.code == "MALFORMED_RESPONSE"
    assert not isinstance(info.value, AmbiguousSubmit)


# -- error envelopes --------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["novita", "highwayapi"])
def test_novita_envelope(adapter: Build, req: Req, fake: FakeProvider, provider: str) -> None:
    fake.reply(400, NOVITA_400)
    with pytest.raises(PermanentProviderError) as info:
        submit(adapter, req, provider)
    err = info.value
    assert (err.provider, err.code, err.message, err.status_code) == (
        provider,
        "INVALID_REQUEST_BODY",
        "duration out of range",
        400,
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"code": 401, "message": "Invalid API key", "error_code": "UNAUTHORIZED"}, "UNAUTHORIZED"),
        ({"code": 401, "message": "Invalid API key"}, "401"),
    ],
)
def test_wavespeed_envelope(
    adapter: Build, req: Req, fake: FakeProvider, body: dict[str, object], code: str
) -> None:
    fake.reply(401, body)
    with pytest.raises(PermanentProviderError) as info:
        submit(adapter, req, "wavespeed")
    assert (info.value.code, info.value.message) == (code, "Invalid API key")


def test_byteplus_envelope(adapter: Build, req: Req, fake: FakeProvider) -> None:
    error = {
        "code": "InvalidParameter",
        "message": "the parameter `execution_expires_after` is invalid. Request id: 0217",
        "param": "execution_expires_after",
        "type": "BadRequest",
    }
    fake.reply(400, {"error": error})
    with pytest.raises(PermanentProviderError) as info:
        submit(adapter, req, "byteplus")
    assert info.value.code == "InvalidParameter"
    assert info.value.message == error["message"]


def test_byteplus_envelope_adds_the_param_when_the_message_lacks_it(
    adapter: Build, req: Req, fake: FakeProvider
) -> None:
    fake.reply(400, {"error": {"code": "MissingParameter", "message": "missing", "param": "model"}})
    with pytest.raises(PermanentProviderError) as info:
        submit(adapter, req, "byteplus")
    assert (info.value.code, info.value.message) == ("MissingParameter", "missing (param: model)")


@pytest.mark.parametrize("provider", ["novita", "wavespeed", "byteplus"])
def test_a_body_of_another_shape_falls_back_to_status_and_excerpt(
    adapter: Build, req: Req, fake: FakeProvider, provider: str
) -> None:
    fake.reply(502, text="<html>\n  <body>Bad   Gateway</body>\n</html>" + "x" * 500)
    with pytest.raises(AmbiguousSubmit) as info:
        submit(adapter, req, provider)
    assert info.value.code == "HTTP_502"
    assert info.value.message.startswith("<html> <body>Bad Gateway</body> </html>xxx")
    assert len(info.value.message) <= 200


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, PermanentProviderError),
        (1401, PermanentProviderError),
        (429, RateLimited),
        (500, AmbiguousSubmit),
        (5003, AmbiguousSubmit),
    ],
)
def test_wavespeed_200_with_an_error_code_is_an_error_on_submit(
    adapter: Build, req: Req, fake: FakeProvider, code: int, error: type[ProviderError]
) -> None:
    fake.reply(200, {"code": code, "message": "nope", "data": {"id": "pred-1"}})
    with pytest.raises(error) as info:
        submit(adapter, req, "wavespeed")
    assert (info.value.code, info.value.message) == (str(code), "nope")


def test_wavespeed_200_with_a_5xx_code_on_poll_is_retryable(
    adapter: Build, fake: FakeProvider
) -> None:
    fake.reply(200, {"code": 500, "message": "internal", "data": {}})
    with pytest.raises(RetryableProviderError):
        poll(adapter, "wavespeed")


# -- the request itself and secrecy -----------------------------------------------------------


@pytest.mark.parametrize("provider", ["novita", "highwayapi", "wavespeed", "byteplus"])
def test_auth_and_content_type_headers_on_submit_and_poll(
    adapter: Build, req: Req, fake: FakeProvider, api_key: str, provider: str
) -> None:
    ok = {
        "novita": {"task_id": "t-1"},
        "highwayapi": {"task_id": "t-1"},
        "wavespeed": {"code": 200, "message": "success", "data": {"id": "t-1"}},
        "byteplus": {"id": "t-1"},
    }[provider]
    fake.reply(200, ok)
    fake.reply(200, {})
    made = adapter(provider)
    made.submit(V15, req())
    made.poll(V15, "t-1")
    for sent in fake.requests:
        assert sent.headers["Authorization"] == f"Bearer {api_key}"
        assert sent.headers["Content-Type"] == "application/json"


def test_submit_timeout_applies_to_submits_only(
    adapter: Build, req: Req, fake: FakeProvider
) -> None:
    fake.reply(200, {"task_id": "t-1"})
    fake.reply(200, {})
    made = adapter("novita", submit_timeout_s=90.0)
    made.submit(V15, req())
    made.poll(V15, "t-1")
    post, get = fake.requests
    assert post.extensions["timeout"]["read"] == 90.0
    assert post.extensions["timeout"]["connect"] == 7.0
    assert get.extensions["timeout"]["read"] == 7.0


def _echo_key(status: int, as_json: bool) -> Callable[[httpx.Request], httpx.Response]:
    def reply(request: httpx.Request) -> httpx.Response:
        auth = request.headers["Authorization"]
        if as_json:
            body = {"code": status, "reason": auth, "message": f"bad key {auth}"}
            return httpx.Response(status, json=body)
        return httpx.Response(status, text=f"denied for {auth}")

    return reply


@pytest.mark.parametrize("status", [400, 401, 429, 500])
@pytest.mark.parametrize("as_json", [True, False])
@pytest.mark.parametrize("call", ["submit", "poll"])
def test_the_api_key_never_appears_in_an_error(
    adapter: Build,
    req: Req,
    fake: FakeProvider,
    api_key: str,
    status: int,
    as_json: bool,
    call: str,
) -> None:
    fake.replies.append(_echo_key(status, as_json))
    with pytest.raises(ProviderError) as info:
        submit(adapter, req) if call == "submit" else poll(adapter)
    err = info.value
    for text in (str(err), repr(err), err.code, err.message):
        assert api_key not in text
    assert "***" in err.message


def test_the_api_key_is_scrubbed_from_transport_errors(
    adapter: Build, req: Req, fake: FakeProvider, api_key: str
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"proxy refused {request.headers['Authorization']}")

    fake.replies.append(reply)
    with pytest.raises(RetryableProviderError) as info:
        submit(adapter, req)
    assert api_key not in str(info.value)
