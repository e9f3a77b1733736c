"""Declarative body checks: each provider module lists its fields as `Rule`s built from the
small checkers here, and `check_body` reports every problem (unknown fields included).

Images are checked without any network access: http(s) URLs are taken on trust; data URIs
(and bare base64, where a provider takes it) are decoded and measured with Pillow.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError


class Bad(Exception):
    """Raised by a checker when a value is not acceptable; `reason` is a Novita-style code."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


Check = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class Rule:
    check: Check
    required: bool = False


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    message: str
    missing: bool = False
    reason: str = ""  # a Novita-style reason for image problems, else ""

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def check_body(body: Mapping[str, Any], rules: Mapping[str, Rule]) -> list[Problem]:
    """Every problem with `body` under `rules`; a JSON null counts as absent, even for a
    field the rules do not know (official clients send every parameter they know, null
    when unset, e.g. BytePlus's Ark runtime)."""
    problems = [
        Problem(name, "is required", missing=True)
        for name, rule in rules.items()
        if rule.required and body.get(name) is None
    ]
    for name, value in body.items():
        rule = rules.get(name)
        if value is None:
            continue
        if rule is None:
            problems.append(Problem(name, "unknown field"))
        else:
            problem = check_value(name, value, rule.check)
            if problem is not None:
                problems.append(problem)
    return problems


def given(body: Mapping[str, Any], name: str, default: Any) -> Any:
    """`body[name]`, or `default` when it is absent or null (null means "not set")."""
    value = body.get(name)
    return default if value is None else value


def check_value(name: str, value: Any, check: Check) -> Problem | None:
    try:
        check(value)
    except Bad as bad:
        return Problem(name, bad.message, reason=bad.reason)
    return None


def string(*, max_len: int | None = None, non_empty: bool = False) -> Check:
    def check(value: Any) -> None:
        if not isinstance(value, str):
            raise Bad("must be a string")
        if non_empty and not value.strip():
            raise Bad("must not be empty")
        if max_len is not None and len(value) > max_len:
            raise Bad(f"must be at most {max_len} characters")

    return check


def boolean() -> Check:
    def check(value: Any) -> None:
        if not isinstance(value, bool):
            raise Bad("must be a boolean")

    return check


def obj() -> Check:
    def check(value: Any) -> None:
        if not isinstance(value, dict):
            raise Bad("must be an object")

    return check


def integer(lo: int, hi: int) -> Check:
    def check(value: Any) -> None:
        if not _is_int(value):
            raise Bad("must be an integer")
        if not lo <= value <= hi:
            raise Bad(f"must be in [{lo}, {hi}], got {value}")

    return check


def integer_in(values: Collection[int]) -> Check:
    def check(value: Any) -> None:
        if not _is_int(value) or value not in values:
            raise Bad(f"must be one of {', '.join(map(str, sorted(values)))}, got {value!r}")

    return check


def one_of(values: Collection[str]) -> Check:
    def check(value: Any) -> None:
        if value not in values:
            raise Bad(f"must be one of {', '.join(sorted(values))}, got {value!r}")

    return check


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


IMAGE_FORMATS = frozenset({"jpeg", "jpg", "png", "webp", "bmp", "tiff", "gif"})
MAX_IMAGE_BYTES = 30 * 1024 * 1024


def image(*, data_uri: bool = True, bare_base64: bool = False) -> Check:
    """An input image: an http(s) URL, or (where allowed) a data URI or bare base64 that
    decodes to an image with sides in (300, 6000) px and aspect ratio in (0.4, 2.5)."""

    def check(value: Any) -> None:
        if not isinstance(value, str) or not value:
            raise Bad("must be a non-empty string")
        if value.startswith(("http://", "https://")):
            return
        if value.startswith("data:"):
            if not data_uri:
                raise Bad("must be an http(s) URL", "INVALID_IMAGE_FORMAT")
            header, _, payload = value.partition(",")
            fmt = header.removeprefix("data:image/").removesuffix(";base64")
            if not header.startswith("data:image/") or not header.endswith(";base64"):
                raise Bad("data URI must look like data:image/<format>;base64,<data>",
                          "INVALID_IMAGE_FORMAT")
            if fmt.lower() not in IMAGE_FORMATS:
                raise Bad(f"unsupported image format {fmt!r}", "INVALID_IMAGE_FORMAT")
        elif bare_base64:
            payload = value
        else:
            raise Bad("must be an http(s) URL or a data:image/<format>;base64, URI",
                      "INVALID_IMAGE_FORMAT")
        _check_image_bytes(payload)

    return check


def _check_image_bytes(payload: str) -> None:
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise Bad("is not valid base64", "INVALID_IMAGE_FORMAT") from None
    if len(raw) >= MAX_IMAGE_BYTES:
        raise Bad("image must be smaller than 30 MB", "IMAGE_FILE_EXCEEDS_MAX_SIZE")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt = (img.format or "").lower()
            width, height = img.size
    except (UnidentifiedImageError, OSError):
        raise Bad("is not a decodable image", "INVALID_IMAGE_FORMAT") from None
    if fmt not in IMAGE_FORMATS:
        raise Bad(f"unsupported image format {fmt!r}", "INVALID_IMAGE_FORMAT")
    if min(width, height) <= 300:
        raise Bad(f"image sides must exceed 300 px, got {width}x{height}", "INVALID_IMAGE_SIZE")
    if max(width, height) >= 6000:
        raise Bad(f"image sides must be under 6000 px, got {width}x{height}",
                  "IMAGE_EXCEEDS_MAX_RESOLUTION")
    if not 0.4 < width / height < 2.5:
        raise Bad(f"image aspect ratio must be in (0.4, 2.5), got {width}x{height}",
                  "INVALID_IMAGE_SIZE")
