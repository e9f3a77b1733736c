"""What BytePlus accepts in a create-task body (docs/wire/byteplus.md §5.2): per-model top-level
parameters, the `content[]` items, and the task parameters the simulator keeps from them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from genbatch.simulator.rules import (
    Bad,
    Check,
    Problem,
    Rule,
    boolean,
    check_body,
    check_value,
    given,
    image,
    integer,
    one_of,
)
from genbatch.simulator.rules import string as text
from genbatch.simulator.tasks import pick_seed

RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9")
ROLES = ("first_frame", "last_frame", "reference_image")


@dataclass(frozen=True, slots=True)
class ModelRules:
    duration: Check
    audio: bool
    needs_image: bool
    default_resolution: str


def _unsupported(value: Any) -> None:
    raise Bad("is only supported by seedance-1-5-pro")


def _frames(value: Any) -> None:
    integer(29, 289)(value)
    if (value - 25) % 4:
        raise Bad(f"must be 25 + 4n, got {value}")


MODELS = {
    # Duration -1 ("smart", 3P-ACE) is unconfirmed for image-to-video: refused.
    "seedance-1-5-pro-251215": ModelRules(integer(4, 12), True, False, "720p"),
    "seedance-1-0-pro-250528": ModelRules(integer(2, 12), False, False, "1080p"),
    "seedance-1-0-pro-fast-251015": ModelRules(integer(2, 12), False, False, "1080p"),
    "seedance-1-0-lite-i2v-250428": ModelRules(integer(2, 12), False, True, "720p"),
}


def _rules(model: ModelRules) -> dict[str, Rule]:
    return {
        "model": Rule(text(), required=True),
        "content": Rule(lambda value: None, required=True),  # checked by _content_problems
        "resolution": Rule(one_of(("480p", "720p", "1080p"))),
        "ratio": Rule(one_of((*RATIOS, "adaptive"))),
        "duration": Rule(model.duration),
        "frames": Rule(_frames),
        "seed": Rule(integer(-1, 4294967295)),
        "camera_fixed": Rule(boolean()),
        "watermark": Rule(boolean()),
        "generate_audio": Rule(boolean() if model.audio else _unsupported),
        "return_last_frame": Rule(boolean()),
        "service_tier": Rule(one_of(("default", "flex"))),
        "execution_expires_after": Rule(integer(3600, 259200)),
        "callback_url": Rule(text()),
        "draft": Rule(boolean()),
        "safety_identifier": Rule(text()),
        "priority": Rule(integer(-(2**31), 2**31 - 1)),
        "output_format": Rule(text()),  # in the Ark SDK 3.0.63 (§9); values unpublished
    }


RULES = {name: _rules(model) for name, model in MODELS.items()}
_IMAGE = image(data_uri=True, bare_base64=False)


def request_problems(body: dict[str, Any]) -> list[Problem]:
    name = body.get("model")
    if name is None or name == "":
        return [Problem("model", "is required", missing=True)]
    if not isinstance(name, str):
        return [Problem("model", "must be a string")]
    model = MODELS[name]  # unknown names were answered with 404 already
    problems = check_body(body, RULES[name])
    problems += content_problems(body.get("content"), model.needs_image)
    if body.get("duration") is not None and body.get("frames") is not None:
        problems.append(Problem("frames", "frames and duration are mutually exclusive"))
    return problems


def content_problems(content: Any, needs_image: bool) -> list[Problem]:
    if content is None:
        return []  # already reported as missing
    if not isinstance(content, list) or not content:
        return [Problem("content", "must be a non-empty array")]
    problems: list[Problem] = []
    roles: list[str] = []
    texts = 0
    for i, item in enumerate(content):
        where = f"content[{i}]"
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            texts += 1
            found = check_value(f"{where}.text", item.get("text"), text())
        elif kind == "image_url":
            url = item["image_url"].get("url") if isinstance(item.get("image_url"), dict) else None
            role = item.get("role", "first_frame")
            found = check_value(f"{where}.image_url.url", url, _IMAGE)
            found = found or check_value(f"{where}.role", role, one_of(ROLES))
            roles.append(role)
        else:
            found = Problem(f"{where}.type", f"unsupported content type {kind!r}")
        if found is not None:
            problems.append(found)
    if texts > 1:
        problems.append(Problem("content", "at most one text item"))
    if roles.count("first_frame") > 1 or roles.count("last_frame") > 1:
        problems.append(Problem("content", "at most one first_frame and one last_frame image"))
    if "last_frame" in roles and "first_frame" not in roles:
        problems.append(Problem("content", "a last_frame image needs a first_frame image"))
    if needs_image and not roles:
        problems.append(Problem("content", "this model needs an image_url item", missing=True))
    return problems


def task_params(rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    model = MODELS[body["model"]]
    params: dict[str, Any] = {
        "seed": pick_seed(rng, body.get("seed")),
        "resolution": given(body, "resolution", model.default_resolution),
        "ratio": given(body, "ratio", "adaptive"),
        "service_tier": given(body, "service_tier", "default"),
        "execution_expires_after": given(body, "execution_expires_after", 172800),
        "return_last_frame": given(body, "return_last_frame", False),
    }
    if body.get("frames") is not None:
        params["frames"] = body["frames"]
    else:
        params["duration"] = given(body, "duration", 5)
    if model.audio:
        params["generate_audio"] = given(body, "generate_audio", True)
    return params
