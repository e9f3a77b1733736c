"""Static validation: every problem, naming the field, the allowed values, model and provider."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from genbatch.errors import FieldProblem
from genbatch.models import GenerationRequest
from genbatch.providers import model_specs, names, validate_request

Req = Callable[..., GenerationRequest]
V15, V1_PRO, V1_LITE = "seedance-v1.5-pro-i2v", "seedance-v1-pro-i2v", "seedance-v1-lite-i2v"
DATA_URI = "data:image/png;base64,iVBORw0KGgo="
SEEDANCE = tuple(p for p in names() if V15 in model_specs(p))  # Kling, Veo: own tests


def fields(problems: list[FieldProblem]) -> list[str]:
    return [p.field for p in problems]


@pytest.mark.parametrize(("provider", "model"), [(p, m) for p in SEEDANCE for m in model_specs(p)])
def test_a_plain_request_is_valid_everywhere(req: Req, provider: str, model: str) -> None:
    assert validate_request(provider, model, req(duration=5, resolution="720p", seed=-1)) == []


def test_duration_7_on_v1_names_the_allowed_values(req: Req) -> None:
    assert validate_request("novita", V1_PRO, req(duration=7)) == [
        FieldProblem("duration", "must be 5 or 10 for seedance-v1-pro-i2v on novita, got 7")
    ]


@pytest.mark.parametrize("duration", [3, 13])
def test_duration_outside_4_to_12_on_15_pro(req: Req, duration: int) -> None:
    (problem,) = validate_request("novita", V15, req(duration=duration))
    assert problem.field == "duration"
    assert problem.message.startswith("must be between 4 and 12 for seedance-v1.5-pro-i2v")


@pytest.mark.parametrize(
    ("provider", "model"),
    [("novita", V1_PRO), ("novita", V1_LITE), ("highwayapi", V1_PRO), ("wavespeed", V15)],
)
def test_adaptive_ratio_is_refused_where_the_enum_lacks_it(
    req: Req, provider: str, model: str
) -> None:
    (problem,) = validate_request(provider, model, req(ratio="adaptive"))
    assert problem.field == "ratio"
    assert "16:9" in problem.message
    assert "got 'adaptive'" in problem.message


@pytest.mark.parametrize(
    ("provider", "model"), [("novita", V15), ("highwayapi", V15), ("byteplus", V1_PRO)]
)
def test_adaptive_ratio_is_accepted_where_documented(req: Req, provider: str, model: str) -> None:
    assert validate_request(provider, model, req(ratio="adaptive")) == []


@pytest.mark.parametrize(
    ("provider", "accepted"),
    [("novita", False), ("wavespeed", False), ("highwayapi", True), ("byteplus", True)],
)
def test_1080p_on_15_pro_per_provider(req: Req, provider: str, accepted: bool) -> None:
    problems = validate_request(provider, V15, req(resolution="1080p"))
    if accepted:
        assert problems == []
    else:
        assert problems == [
            FieldProblem("resolution", f"must be 480p or 720p for {V15} on {provider}, got '1080p'")
        ]


def test_flex_on_wavespeed_says_there_is_no_flex_tier(req: Req) -> None:
    (problem,) = validate_request("wavespeed", V15, req(service_tier="flex"))
    assert problem.field == "service_tier"
    assert problem.message.startswith("WaveSpeed has no flex tier")


def test_service_tier_values_where_supported(req: Req) -> None:
    assert validate_request("novita", V15, req(service_tier="flex")) == []
    assert validate_request("byteplus", V15, req(service_tier="default")) == []
    (problem,) = validate_request("novita", V15, req(service_tier="batch"))
    assert problem.message == f"must be default or flex for {V15} on novita, got 'batch'"


@pytest.mark.parametrize(
    ("provider", "model", "seed", "ok"),
    [
        ("novita", V15, 4294967295, True),
        ("novita", V15, 4294967296, False),
        ("novita", V15, -2, False),
        ("novita", V1_PRO, 2147483647, True),
        ("novita", V1_PRO, 2147483648, False),
        ("wavespeed", V15, 2147483648, False),
        ("byteplus", V15, 4294967295, True),
    ],
)
def test_seed_range(req: Req, provider: str, model: str, seed: int, ok: bool) -> None:
    problems = validate_request(provider, model, req(seed=seed))
    assert fields(problems) == ([] if ok else ["seed"])
    if not ok:
        assert f"got {seed}" in problems[0].message
        assert "-1" in problems[0].message


@pytest.mark.parametrize("field", ["image", "last_image"])
@pytest.mark.parametrize("ref", [DATA_URI, "/srv/images/cat.png"])
def test_wavespeed_takes_local_images_and_data_uris_for_upload(
        req: Req, field: str, ref: str) -> None:
    assert validate_request("wavespeed", V15, req(**{field: ref})) == []


@pytest.mark.parametrize("field", ["image", "last_image"])
def test_wavespeed_refuses_images_over_its_20_mb_upload_limit(
        req: Req, field: str, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as f:
        f.truncate(20 * 1024 * 1024 + 1)
    exact = tmp_path / "exact.png"
    with exact.open("wb") as f:
        f.truncate(20 * 1024 * 1024)
    huge_uri = "data:image/png;base64," + "A" * (28 * 1024 * 1024)

    assert validate_request("wavespeed", V15, req(**{field: str(exact)})) == []
    for ref in (str(big), huge_uri):
        (problem,) = validate_request("wavespeed", V15, req(**{field: ref}))
        assert problem.field == field
        assert "WaveSpeed uploads images up to 20 MB, got" in problem.message
        assert "AAAA" not in problem.message  # never echo the (huge) data URI
    assert validate_request("novita", V15, req(**{field: str(big)})) == []


@pytest.mark.parametrize("provider", ["novita", "highwayapi", "byteplus"])
def test_data_uris_are_fine_elsewhere(req: Req, provider: str) -> None:
    assert validate_request(provider, V15, req(image=DATA_URI, last_image=DATA_URI)) == []


@pytest.mark.parametrize("provider", SEEDANCE)
@pytest.mark.parametrize("prompt", ["", "   "])
def test_15_pro_requires_a_prompt(req: Req, provider: str, prompt: str) -> None:
    assert validate_request(provider, V15, req(prompt=prompt)) == [
        FieldProblem("prompt", f"is required for {V15} on {provider}")
    ]


def test_v1_prompt_is_optional_but_bounded(req: Req) -> None:
    assert validate_request("novita", V1_LITE, req(prompt="")) == []
    (problem,) = validate_request("novita", V1_LITE, req(prompt="x" * 2001))
    assert problem == FieldProblem(
        "prompt", f"must be at most 2000 characters for {V1_LITE} on novita, got 2001"
    )


def test_fields_a_model_does_not_take_are_each_reported(req: Req) -> None:
    request = req(
        fps=24,
        watermark=False,
        generate_audio=True,
        service_tier="default",
        execution_expires_after=7200,
    )
    problems = validate_request("novita", V1_PRO, request)
    assert fields(problems) == [
        "fps",
        "generate_audio",
        "watermark",
        "service_tier",
        "execution_expires_after",
    ]
    by_field = {p.field: p.message for p in problems}
    assert by_field["fps"] == f"{V1_PRO} on novita does not take fps; leave it unset"
    assert by_field["service_tier"].startswith("Novita has no flex tier")


def test_wavespeed_15_takes_audio_but_not_watermark_fps_or_expiry(req: Req) -> None:
    request = req(generate_audio=False, watermark=True, fps=24, execution_expires_after=3600)
    problems = validate_request("wavespeed", V15, request)
    assert fields(problems) == ["fps", "watermark", "execution_expires_after"]


def test_fps_must_be_24_on_15_pro(req: Req) -> None:
    assert validate_request("novita", V15, req(fps=24)) == []
    assert validate_request("novita", V15, req(fps=30)) == [
        FieldProblem("fps", f"must be 24 for {V15} on novita, got 30")
    ]


@pytest.mark.parametrize(
    ("value", "ok"), [(3599, False), (3600, True), (259200, True), (259201, False)]
)
def test_execution_expires_after_range(req: Req, value: int, ok: bool) -> None:
    problems = validate_request("byteplus", V15, req(execution_expires_after=value))
    assert fields(problems) == ([] if ok else ["execution_expires_after"])


def test_every_problem_is_reported_at_once(req: Req) -> None:
    request = req(
        prompt="",
        image="data:image/png;base64," + "A" * (28 * 1024 * 1024),
        resolution="1080p",
        ratio="adaptive",
        duration=20,
        seed=-5,
        service_tier="flex",
    )
    problems = validate_request("wavespeed", V15, request)
    assert fields(problems) == [
        "prompt",
        "image",
        "resolution",
        "ratio",
        "duration",
        "seed",
        "service_tier",
    ]
    assert all("wavespeed" in p.message or "WaveSpeed" in p.message for p in problems)
