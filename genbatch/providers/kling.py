"""Kling's official API: image-to-video with `kling-v2-1` (wire format in `kling_wire.py`).

Submit `POST {base}/v1/videos/image2video` → `data.task_id`; poll `GET
/v1/videos/image2video/{task_id}`; the same GET takes our `external_task_id` in place of the
task id ("Query Task (Single)": path `{id}` = task_id or external_task_id), which is how an
ambiguous submit is looked up exactly: every submit carries the attempt's id as
`external_task_id` (DESIGN.md principle 10).

Limits as Kling defines them ("Concurrency Rules"): one concurrency per account, shared by
all its keys, a task holding a slot from `submitted` until it ends; over it the submit is
refused with code 1303 (SlotFull: back to the queue, no failure, no rate cut); no request
rate limit (we keep a generous submit RPM only as a safety valve). Kling sells prepaid
resource packs; the prices below are per-second references (fal's Kling 2.1 pages, see
video-apis.md §1.1) for estimates only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePath
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from genbatch.errors import FieldProblem, PermanentProviderError, RateLimited
from genbatch.images import is_data_uri, is_remote
from genbatch.models import GenerationRequest, PollResult
from genbatch.providers import kling_wire as wire
from genbatch.providers import registry
from genbatch.providers.adapter import Adapter, as_dict
from genbatch.providers.base import ModelSpec
from genbatch.providers.plugin import (
    AccountCodes,
    Callbacks,
    Capability,
    Limits,
    Outputs,
    Prices,
    ProviderPlugin,
)
from genbatch.providers.validation import common_rules, no_flex

PATH = "/v1/videos/image2video"
PROMPT_MAX_CHARS = 2500  # prompt and negative_prompt, spec changelog 2024-09-19
IMAGE_FORMATS = frozenset({"jpeg", "jpg", "png"})  # "supports .jpg / .jpeg / .png"

KLING_V2_1 = ModelSpec(
    name="kling-v2-1",
    wire_model="kling-v2-1",
    ratio_field="aspect_ratio",
    ratios=frozenset(),  # image2video takes the image's aspect ratio
    resolutions=frozenset(wire.MODES),  # std = 720p, pro = 1080p
    durations=frozenset({5, 10}),
    seed_min=0,
    seed_max=None,
    prompt_required=False,
    prompt_max_chars=PROMPT_MAX_CHARS,
    supports_last_image=True,  # image_tail: pro mode only (capability map), checked below
    supports_expires_after=True,  # kept by us: a client-side deadline, never sent
    default_resolution="720p",
    default_duration=5,
    typical_seconds=120.0,  # "30-120 s std, 60-300 s pro" (video-apis.md §5)
    extra={"tail_modes": frozenset({"pro"}), "usd_per_s": {"std": 0.056, "pro": 0.098},
           "rules": lambda spec, request: kling_problems(spec, request)},
)
MODELS = MappingProxyType({KLING_V2_1.name: KLING_V2_1})


class KlingProvider(Adapter):
    """Kling: `kling-v2-1` image-to-video, with an end frame (`image_tail`) in pro mode."""

    name = "kling"
    specs = MODELS
    envelope = wire.ENVELOPE
    auth = wire.jwt_auth

    def build_body(self, model: str, request: GenerationRequest) -> dict[str, Any]:
        spec, request = self.checked(model, request)
        return wire.body(spec, request, client_ref=None, callback_url=None)

    def submit(self, model: str, request: GenerationRequest, *, webhook_url: str | None = None,
               client_ref: str | None = None) -> str:
        spec, request = self.submittable(model, request)
        body = wire.body(spec, request, client_ref=client_ref, callback_url=webhook_url)
        with _account_refusals():
            return self.api.submit(PATH, body,
                                   task_id=lambda a: as_dict(a.get("data")).get("task_id"))

    def poll(self, model: str, remote_id: str) -> PollResult:
        with _account_refusals():
            answer = self.api.get(f"{PATH}/{quote(remote_id, safe='')}")
        return wire.parse_task(as_dict(answer.get("data")))

    def lookup(self, model: str, client_ref: str) -> str | None:
        """The task id of the submit that carried `client_ref` as its external_task_id; None
        when Kling answers that no such task exists (404, or code 1203 "resource does not
        exist"). Raises RetryableProviderError when it cannot tell."""
        try:
            with _account_refusals():
                answer = self.api.get(f"{PATH}/{quote(client_ref, safe='')}")
        except PermanentProviderError as exc:
            if exc.status_code == 404 or exc.code == "1203":
                return None
            raise
        task = as_dict(answer.get("data"))
        found = task.get("task_id")
        return str(found) if found else None


    def recent(self, model: str, limit: int) -> list[tuple[str, PollResult]]:
        """Kling's Query Task (List), page 1: the account's newest image-to-video tasks,
        each a task object as a single query returns it (`pageSize` 1-500)."""
        size = str(max(1, min(wire.LIST_PAGE_MAX, limit)))
        with _account_refusals():
            answer = self.api.get(PATH, params={"pageNum": "1", "pageSize": size})
        tasks = answer.get("data")
        return [(str(task["task_id"]), wire.parse_task(task))
                for task in (tasks if isinstance(tasks, list) else [])
                if isinstance(task, dict) and task.get("task_id")]


@contextmanager
def _account_refusals() -> Iterator[None]:
    """Kling answers an exhausted or unpaid account (1100-1102) with HTTP 429: that is not
    a request rate to slow down for but an account to pause (PermanentProviderError with
    the code, so `failures.py` reads it as BALANCE through the plugin's account codes)."""
    try:
        yield
    except RateLimited as exc:
        if exc.code not in wire.BALANCE_CODES:
            raise
        raise PermanentProviderError(exc.provider, exc.code, exc.message,
                                     exc.status_code) from None


def kling_problems(spec: ModelSpec, request: GenerationRequest) -> list[FieldProblem]:
    """The common rules, then Kling's own: no ratio (the image decides), no seed, no
    camera_fixed; an end frame in pro mode (1080p) only; no flex tier."""
    where = f"{spec.name} on kling"
    problems = common_rules("kling", spec, request.model_copy(
        update={"ratio": None, "seed": None, "camera_fixed": None, "service_tier": None}))
    for field, why in (("ratio", "the video takes the image's aspect ratio"),
                       ("seed", "Kling documents no seed"),
                       ("camera_fixed", "Kling documents no camera_fixed")):
        if getattr(request, field) is not None:
            problems.append(FieldProblem(field, f"{where} does not take {field} ({why}); "
                                         "leave it unset"))
    mode = wire.MODES.get(request.resolution or spec.default_resolution or "720p")
    if request.last_image is not None and mode not in spec.extra["tail_modes"]:
        problems.append(FieldProblem("last_image", f"an end frame (image_tail) needs pro "
                                     f"mode on {where}: set resolution 1080p"))
    problems += _image_formats(request)
    if request.service_tier is not None:
        problems.append(no_flex("Kling", "kling", request.service_tier,
                                 registry.with_flex_tier()))
    return problems


def _image_formats(request: GenerationRequest) -> list[FieldProblem]:
    """Kling takes JPEG and PNG (.jpg/.jpeg/.png) only: a data URI or a local file of another
    format is refused here (by its declared type or file name; URLs are Kling's to check)."""
    found = []
    for field in ("image", "last_image"):
        ref = getattr(request, field)
        if not ref or is_remote(ref) or ref.startswith("s3://"):
            continue
        kind = (ref[5:].split(";")[0].split(",")[0].removeprefix("image/") if is_data_uri(ref)
                else PurePath(ref).suffix.lower().lstrip("."))
        if kind and kind not in IMAGE_FORMATS:
            found.append(FieldProblem(field, f"Kling takes JPEG or PNG images, got {kind}"))
    return found


def estimate(spec: ModelSpec, request: GenerationRequest) -> float:
    mode = wire.MODES[request.resolution or spec.default_resolution or "720p"]
    per_second: float = spec.extra["usd_per_s"][mode]
    return round(per_second * (request.duration or spec.default_duration), 4)


PLUGIN = ProviderPlugin(
    name="kling",
    summary="Kling's official API: kling-v2-1 image-to-video (end frame in pro mode)",
    adapter=KlingProvider,
    models=MODELS,
    # Concurrency only (per account, all keys together); 1303 refuses, nothing queues.
    limits=Limits(base_url="https://api-singapore.klingai.com", max_in_flight=5,
                  submit_rpm=600, poll_rpm=600, queues=False),
    outputs=Outputs(video_hosts=("*.klingai.com", "*.kuaishou.com", "*.kwai.com",
                                 "*.kwaicdn.com", "*.inkwai.com"),
                    url_ttl_s=float(wire.VIDEO_TTL_S)),
    prices=Prices(estimate=estimate),  # no usage reported: the estimate
    callbacks=Callbacks(parse=wire.parse_callback),  # unsigned: each only wakes the item
    account_codes=AccountCodes(auth=wire.AUTH_CODES, balance=wire.BALANCE_CODES),
    capabilities=frozenset({Capability.CALLBACKS, Capability.LOOKUP, Capability.LIST_POLL}),
    settings={wire.SECRET_SETTING: "the secret key that signs each request's JWT "
              "(GENBATCH_KLING_SECRET_KEY)"},
    key_setting="access_key",
)
