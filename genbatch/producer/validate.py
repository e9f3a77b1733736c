"""Turn one manifest row into a validated generation request, or say exactly what is wrong.

Checks, in order: unknown columns, custom_id (default `line-<n>`, unique), the row's own
values (a variant's applied, the prompt template filled: templates.py), provider and
model, the row's types (pydantic), the provider/model's parameter rules, and images (local
files and data URIs, past the header where cheap: genbatch/image_data.py). A row gets every
problem it has, not only the first.

Local images are confined to the manifest's folder and the `input_roots` (inputs.py);
`s3://` images to the manifest's bucket prefix and the `object_roots` (storage/roots.py),
checked before the object is read, so a refusal says nothing of what exists there.

custom_id uniqueness takes memory that grows with the manifest, so it is kept out of the
producer's RAM: a real ingest checks it in Redis as it writes each chunk (ADD_ITEMS, see
ingest.py; the validator is built with `check_ids=False`), and a dry run (or resume, which
validates the whole manifest before changing anything) keeps the ids in a private
temporary SQLite file (`SeenIds`: a few MB of page cache at most, the rest on disk) — exact,
with the line of the first occurrence, and flat in RSS whatever the number of rows.
"""

from __future__ import annotations

import hashlib
import operator
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from genbatch import providers
from genbatch.errors import ConfigError, ManifestError
from genbatch.images import ImageProblem, is_chained, is_data_uri, is_remote, probe_data_uri
from genbatch.models import REQUEST_FIELDS, GenerationRequest
from genbatch.producer.inputs import LocalImages
from genbatch.producer.manifest import IMAGE_FIELDS, VARIANT, Row, unknown_column_reason
from genbatch.producer.objects import object_image_problem
from genbatch.producer.templates import resolved
from genbatch.storage.roots import batch_roots, inside, outside_message
from genbatch.storage.urls import ObjectUrls, is_object_url, sibling_url

MAX_CUSTOM_ID = 256
# Per-row results that repeat across a manifest are cached; caches keyed by a row's own
# values (image references) are cleared past this size so memory stays flat.
MAX_CACHED_REFS = 4096
# Request fields that vary per row and play no part in the price estimate.
_UNPRICED_FIELDS = frozenset({"prompt", "image", "last_image", "seed"})
_PRICED_FIELDS = tuple(f for f in REQUEST_FIELDS if f not in _UNPRICED_FIELDS)
_priced = operator.attrgetter(*_PRICED_FIELDS)
_REQUEST_FIELD_SET = frozenset(REQUEST_FIELDS)
# GenerationRequest(**values) without the keyword-argument wrapper: same validation.
_new_request = GenerationRequest.__pydantic_validator__.validate_python


@dataclass(frozen=True, slots=True)
class ValidRow:
    line: int
    custom_id: str
    provider: str
    model: str
    request: GenerationRequest  # local image paths made absolute
    row: dict[str, Any]
    est_cost: float | None
    text: str | None = None  # the row as JSON text when the manifest gave it so (JSONL)


def duplicate_reason(custom_id: str, first_line: int | None) -> str:
    where = "" if first_line is None else f" (first on line {first_line})"
    why = " (a variant's id is its row's custom_id, ~ and its values)" \
        if "~" in custom_id else ""
    return f"duplicate custom_id {custom_id!r}{where}; each must be unique{why}"


class SeenIds:
    """A set of custom_ids with the line each was first seen on, in a private temporary
    SQLite database on disk (deleted when closed): exact, and flat in memory."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        for pragma in ("cache_size=-4096", "journal_mode=OFF", "synchronous=OFF",
                       "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID")
        self._db.execute("BEGIN")

    def add(self, custom_id: str, line: int) -> int | None:
        """Record `custom_id`; the line it was first seen on when it is a repeat."""
        if self._db.execute("INSERT OR IGNORE INTO ids VALUES (?, ?)",
                            (custom_id, line)).rowcount == 1:
            return None
        first = self._db.execute("SELECT line FROM ids WHERE id = ?", (custom_id,)).fetchone()
        return int(first[0])

    def close(self) -> None:
        self._db.close()


@dataclass
class RowValidator:
    """Validates rows of one manifest; remembers custom_ids and image checks across rows.

    With `check_ids` off the caller checks custom_id uniqueness itself (ingest, in Redis).
    """

    path: Path | str  # a str: the manifest's object URL (relative images sit beside it)
    default_provider: str | None
    default_model: str | None
    # Request fields a row gets when it leaves them out (batch options: --tier, ...).
    request_defaults: dict[str, Any] = field(default_factory=dict)
    check_ids: bool = True
    objects: ObjectUrls | None = None  # reads `s3://` images (their headers only)
    # Folders local images may come from besides the manifest's own.
    input_roots: tuple[Path, ...] = ()
    # Bucket prefixes `s3://` images may come from besides the manifest's own.
    object_roots: tuple[str, ...] = ()
    _ids: SeenIds | None = None
    # image reference as written -> (absolute path, or None for a URL / data URI; problem)
    _refs: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    _costs: dict[tuple[Any, ...], float | None] = field(default_factory=dict)
    _uri_checks: dict[bytes, str | None] = field(default_factory=dict)  # digest -> problem
    _local: LocalImages | None = None
    # the manifest's own prefix and `object_roots`
    allowed_object_roots: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if isinstance(self.path, Path):  # a manifest in object storage names no local file
            self._local = LocalImages(self.path.parent, self.input_roots)
        manifest = self.path if isinstance(self.path, str) else ""
        self.allowed_object_roots = batch_roots(manifest, "", self.object_roots)

    def validate(self, row: Row) -> ValidRow | list[ManifestError]:
        """The row as a request, or every problem it has (not only the first)."""
        if row.problem is not None:
            return [row.problem]
        errors: list[ManifestError] = []
        data = row.data
        variant = data.get("custom_id") if VARIANT in data else None  # named in each error

        def err(field_name: str | None, reason: str) -> None:
            errors.append(ManifestError(str(self.path), row.line, field_name, reason,
                                        variant))

        for name in row.unknown:
            err(name, unknown_column_reason())
        custom_id = self._custom_id(data.get("custom_id"), row.line, err)
        # A variant's values applied, the prompt template filled (the row keeps both).
        values = resolved(data, custom_id or f"line-{row.line}", err)
        provider, model = self._target(values, err)
        image_problems: list[tuple[str, str]] = []
        request = self._request(values, err, image_problems)
        if request is not None and provider is not None and model is not None:
            self._check_rules(provider, model, request, err)
        for name, problem in image_problems:
            err(name, problem)
        if errors or request is None or provider is None or model is None:
            return errors
        assert custom_id is not None
        # Stored under genbatch's name; a provider id's pinned resolution goes in the request.
        model, request = providers.canonical(provider, model, request)
        return ValidRow(
            line=row.line, custom_id=custom_id, provider=provider, model=model,
            request=request, row=data,
            est_cost=self._estimate(provider, model, request), text=row.text,
        )

    def custom_id_of(self, row: Row) -> str | None:
        """The custom_id `validate` gives `row`, or None when it has none (unreadable row,
        custom_id too long): what must be unique across the batch."""
        if row.problem is not None:
            return None
        custom_id = _text(row.data.get("custom_id")) or f"line-{row.line}"
        return custom_id if len(custom_id) <= MAX_CUSTOM_ID else None

    def close(self) -> None:
        if self._ids is not None:
            self._ids.close()
            self._ids = None

    def _target(self, data: dict[str, Any], err: Any) -> tuple[str | None, str | None]:
        """The row's provider and model (or the batch's defaults)."""
        provider = _text(data.get("provider")) or self.default_provider
        model = _text(data.get("model")) or self.default_model
        if not provider:
            err("provider", "no provider: pass --provider or add a provider column")
        if not model:
            err("model", "no model: pass --model or add a model column")
        return provider, model

    @staticmethod
    def _check_rules(provider: str, model: str, request: GenerationRequest, err: Any) -> None:
        """The provider/model's parameter rules."""
        try:
            problems = providers.validate_request(provider, model, request)
        except ConfigError as exc:
            err("model" if provider in providers.names() else "provider", str(exc))
            return
        for p in problems:
            err(p.field, p.message)

    def _estimate(self, provider: str, model: str, request: GenerationRequest) -> float | None:
        """The price estimate, computed once per (provider, model, priced fields)."""
        key = (provider, model, request.last_image is not None, _priced(request))
        if key not in self._costs:
            self._costs[key] = providers.estimate_cost(provider, model, request)
        return self._costs[key]

    def _custom_id(self, value: Any, line: int, err: Any) -> str | None:
        custom_id = _text(value) or f"line-{line}"
        if len(custom_id) > MAX_CUSTOM_ID:
            err("custom_id", f"longer than {MAX_CUSTOM_ID} characters")
            return None
        if self.check_ids:
            if self._ids is None:
                self._ids = SeenIds()
            first = self._ids.add(custom_id, line)
            if first is not None:
                err("custom_id", duplicate_reason(custom_id, first))
                return None
        return custom_id

    def _request(
        self, data: dict[str, Any], err: Any, image_problems: list[tuple[str, str]]
    ) -> GenerationRequest | None:
        """The row's request, local image paths made absolute; their problems (file not
        found, not an image) go to `image_problems`, reported after the model's rules."""
        values: dict[str, Any] = {}
        for k, v in data.items():
            if k in _REQUEST_FIELD_SET:
                if isinstance(v, str):
                    v = v.strip()
                    if v:
                        values[k] = v
                elif v is not None:
                    values[k] = v
        for k, v in self.request_defaults.items():
            values.setdefault(k, v)
        for image_field in IMAGE_FIELDS:
            ref = values.get(image_field)
            if isinstance(ref, str):
                local, problem = self._ref(ref)
                if problem:
                    image_problems.append((image_field, problem))
                elif local is not None:
                    values[image_field] = local
        try:
            request: GenerationRequest = _new_request(values)
            return request
        except ValidationError as exc:
            for e in exc.errors():
                name = str(e["loc"][0]) if e["loc"] else None
                msg = "is required" if e["type"] == "missing" else _short(e["msg"])
                if name == "image" and e["type"] in ("missing", "string_too_short"):
                    msg = "is required (a file path or an http(s) URL)"
                err(name, f"{msg} (got {_show(values.get(name or ''))})"
                    if name in values else msg)
            return None

    def _ref(self, ref: str) -> tuple[str | None, str | None]:
        """(absolute path or None when not a local file, problem) for one image reference."""
        if is_data_uri(ref):
            return None, self._probe_data_uri(ref)
        if is_chained(ref):  # the parent's last frame: it does not exist yet (chains.py)
            return None, None
        known = self._refs.get(ref)
        if known is not None:
            return known
        if is_remote(ref):
            known = (None, None)
        elif is_object_url(ref) or self._local is None:
            known = self._object_ref(ref)
        else:
            known = self._local.check(ref)
        if len(self._refs) >= MAX_CACHED_REFS:
            self._refs.clear()
        self._refs[ref] = known
        return known

    def _probe_data_uri(self, ref: str) -> str | None:
        """The problem with an inline image, decoded and checked like a file; checks are
        remembered by digest, so a manifest that repeats one image decodes it once."""
        digest = hashlib.blake2b(ref.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest not in self._uri_checks:
            if len(self._uri_checks) >= MAX_CACHED_REFS:
                self._uri_checks.clear()
            try:
                probe_data_uri(ref)
                self._uri_checks[digest] = None
            except ImageProblem as exc:
                self._uri_checks[digest] = str(exc)
        return self._uri_checks[digest]

    def _object_ref(self, ref: str) -> tuple[str | None, str | None]:
        """An `s3://` image, or a relative one beside a manifest in object storage; one
        outside the allowed prefixes is refused before anything is read."""
        if is_object_url(ref):
            url = ref
        elif ref.startswith(("/", "~", "..")):
            return None, f"a manifest in object storage cannot name a local file ({ref})"
        else:
            url = sibling_url(str(self.path), ref)
        if not inside(url, self.allowed_object_roots):
            return url, outside_message(url, self.allowed_object_roots)
        return url, object_image_problem(self.objects, url)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _short(msg: str) -> str:
    return msg[0].lower() + msg[1:] if msg else msg


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
