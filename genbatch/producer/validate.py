"""Turn one manifest row into a validated generation request, or say exactly what is wrong.

Checks, in order: the row's types (pydantic), custom_id (default `line-<n>`, unique),
provider and model, the provider/model's parameter rules, and local images (header only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from genbatch import providers
from genbatch.errors import ConfigError, ManifestError
from genbatch.images import ImageProblem, is_data_uri, is_remote, probe_image
from genbatch.models import REQUEST_FIELDS, GenerationRequest
from genbatch.producer.manifest import Row

MAX_CUSTOM_ID = 256
IMAGE_FIELDS = ("image", "last_image")
# Per-row results that repeat across a manifest are cached; caches keyed by a row's own
# values (image references) are cleared past this size so memory stays flat.
MAX_CACHED_REFS = 4096
# Request fields that vary per row and play no part in the price estimate.
_UNPRICED_FIELDS = frozenset({"prompt", "image", "last_image", "seed"})
_PRICED_FIELDS = tuple(f for f in REQUEST_FIELDS if f not in _UNPRICED_FIELDS)


@dataclass(frozen=True, slots=True)
class ValidRow:
    line: int
    custom_id: str
    provider: str
    model: str
    request: GenerationRequest  # local image paths made absolute
    row: dict[str, Any]
    est_cost: float | None


@dataclass
class RowValidator:
    """Validates rows of one manifest; remembers custom_ids and image checks across rows."""

    path: Path
    default_provider: str | None
    default_model: str | None
    # Request fields a row gets when it leaves them out (batch options: --tier, ...).
    request_defaults: dict[str, Any] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)
    _image_checks: dict[Path, str | None] = field(default_factory=dict)
    # image reference as written -> (absolute path, or None for a URL / data URI; problem)
    _refs: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    _costs: dict[tuple[Any, ...], float | None] = field(default_factory=dict)

    def validate(self, row: Row) -> ValidRow | list[ManifestError]:
        if row.problem is not None:
            return [row.problem]
        errors: list[ManifestError] = []
        data = row.data

        def err(field_name: str | None, reason: str) -> None:
            errors.append(ManifestError(str(self.path), row.line, field_name, reason))

        custom_id = self._custom_id(data.get("custom_id"), row.line, err)
        provider = _text(data.get("provider")) or self.default_provider
        model = _text(data.get("model")) or self.default_model
        if not provider:
            err("provider", "no provider: pass --provider or add a provider column")
        if not model:
            err("model", "no model: pass --model or add a model column")
        request = self._request(data, err)
        if request is None or errors or provider is None or model is None:
            return errors
        try:
            problems = providers.validate_request(provider, model, request)
        except ConfigError as exc:
            err("model" if provider in providers.PROVIDERS else "provider", str(exc))
            return errors
        for p in problems:
            err(p.field, p.message)
        request = self._check_images(request, err)
        if errors or request is None:
            return errors
        assert custom_id is not None
        return ValidRow(
            line=row.line, custom_id=custom_id, provider=provider, model=model,
            request=request, row=data,
            est_cost=self._estimate(provider, model, request),
        )

    def _estimate(self, provider: str, model: str, request: GenerationRequest) -> float | None:
        """The price estimate, computed once per (provider, model, priced fields)."""
        key = (provider, model, request.last_image is not None,
               *(getattr(request, f) for f in _PRICED_FIELDS))
        if key not in self._costs:
            self._costs[key] = providers.estimate_cost(provider, model, request)
        return self._costs[key]

    def _custom_id(self, value: Any, line: int, err: Any) -> str | None:
        custom_id = _text(value) or f"line-{line}"
        if len(custom_id) > MAX_CUSTOM_ID:
            err("custom_id", f"longer than {MAX_CUSTOM_ID} characters")
            return None
        if custom_id in self.seen_ids:
            err("custom_id", f"duplicate custom_id {custom_id!r}; each must be unique")
            return None
        self.seen_ids.add(custom_id)
        return custom_id

    def _request(self, data: dict[str, Any], err: Any) -> GenerationRequest | None:
        values = {k: _blank_to_none(data[k]) for k in REQUEST_FIELDS if k in data}
        values = {k: v for k, v in values.items() if v is not None}
        for k, v in self.request_defaults.items():
            values.setdefault(k, v)
        try:
            return GenerationRequest(**values)
        except ValidationError as exc:
            for e in exc.errors():
                name = str(e["loc"][0]) if e["loc"] else None
                msg = "is required" if e["type"] == "missing" else _short(e["msg"])
                if name == "image" and e["type"] in ("missing", "string_too_short"):
                    msg = "is required (a file path or an http(s) URL)"
                err(name, f"{msg} (got {_show(values.get(name or ''))})"
                    if name in values else msg)
            return None

    def _check_images(self, request: GenerationRequest, err: Any) -> GenerationRequest | None:
        updates: dict[str, str] = {}
        for name in IMAGE_FIELDS:
            ref = getattr(request, name)
            if ref is None:
                continue
            local, problem = self._ref(ref)
            if problem:
                err(name, problem)
            elif local is not None:
                updates[name] = local
        if not updates:
            return request
        return request.model_copy(update=updates)

    def _ref(self, ref: str) -> tuple[str | None, str | None]:
        """(absolute path or None when not a local file, problem) for one image reference."""
        known = self._refs.get(ref)
        if known is not None:
            return known
        if is_remote(ref) or is_data_uri(ref):
            known = (None, None)
        else:
            path = Path(ref).expanduser()
            if not path.is_absolute():
                path = (self.path.parent / path).resolve()
            known = (str(path), self._probe(path))
        if len(self._refs) >= MAX_CACHED_REFS:
            self._refs.clear()
        self._refs[ref] = known
        return known

    def _probe(self, path: Path) -> str | None:
        if path not in self._image_checks:
            problem: str | None = None
            if not path.is_file():
                problem = f"file not found: {path}"
            else:
                try:
                    probe_image(path)
                except ImageProblem as exc:
                    problem = str(exc)
            self._image_checks[path] = problem
        return self._image_checks[path]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _short(msg: str) -> str:
    return msg[0].lower() + msg[1:] if msg else msg


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
