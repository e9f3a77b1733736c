"""Stream rows out of a CSV (with a header row) or JSONL manifest.

Rows come out one at a time with the line number where they start, so memory stays flat
whatever the file's size. Format errors become `ManifestError(path, line, field, reason)`.
Local image paths come out absolute (relative ones resolved against the manifest's folder),
so the row stored with its item — and written back to errors.jsonl — works from anywhere.
A manifest is a local file or an object (`s3://bucket/key`, read as a stream: never
downloaded whole first); `file:///abs/path` names a local file.

Hostile files stay cheap: a line is read with a bounded buffer (a longer one is refused at
MAX_LINE_BYTES without reading the rest), a CSV row spanning lines is bounded the same way,
the header's duplicate check is linear, and a JSONL row nested deeper than MAX_JSON_DEPTH is
a problem of that row (skippable), never a RecursionError.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from genbatch.errors import ManifestError, StorageError
from genbatch.images import is_chained, is_data_uri, is_remote
from genbatch.models import REQUEST_FIELDS
from genbatch.storage.urls import ObjectUrls, is_object_url

ID_FIELDS: tuple[str, ...] = ("custom_id", "provider", "model")
# Columns genbatch itself writes into errors.jsonl; ignored so that file can be resubmitted.
ERROR_FILE_FIELDS: frozenset[str] = frozenset(
    {"line", "status", "error_code", "error_message", "attempts", "possibly_paid_twice"}
)
KNOWN_FIELDS: frozenset[str] = frozenset(REQUEST_FIELDS) | frozenset(ID_FIELDS)
# Fields a row's `variants` may list values for (producer/variants.py), in the order their
# values make up a variant's id suffix. Not the images: those are what a row is (one row each).
VARIABLE_FIELDS: tuple[str, ...] = (
    "provider", "model", *(f for f in REQUEST_FIELDS if f not in ("image", "last_image")))
# Variants and templates (producer/variants.py, templates.py): JSONL objects, which CSV
# spells as `variants.<field>` and `vars.<name>` columns. `variant` (one variant's values)
# is what genbatch writes into errors.jsonl for a variant's row.
VARIANTS, VARIANT, VARS = "variants", "variant", "vars"
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_FIELD_CHARS = 1_000_000  # a cell larger than this is a mistake, not a prompt
MAX_LINE_BYTES = 1_000_000  # a line (or a CSV row over several lines) larger than this: refused
MAX_JSON_DEPTH = 32  # a request is flat; nesting deeper than this is a mistake or an attack
IMAGE_FIELDS = ("image", "last_image")
MAX_CACHED_PATHS = 4096  # distinct image references remembered (cleared past this)


@dataclass(frozen=True, slots=True)
class Row:
    """One manifest row; `problem` is set when the row itself could not be read."""

    line: int
    data: dict[str, Any]
    problem: ManifestError | None = None
    text: str | None = None  # JSONL: the line itself, which is the row as JSON already
    unknown: tuple[str, ...] = ()  # JSONL: keys that are no column (each one a problem)


@dataclass(frozen=True, slots=True)
class ManifestSource:
    """Where a manifest's bytes come from: `location` is the absolute local path, or the
    object URL (read through `objects`). `name` is what messages and the batch show."""

    location: Path | str
    objects: ObjectUrls | None = None

    @property
    def name(self) -> str:
        return str(self.location)

    def __str__(self) -> str:
        return self.name

    def open(self) -> BinaryIO:
        try:
            if isinstance(self.location, Path):
                return self.location.open("rb")
            if self.objects is None:
                raise StorageError("manifests in object storage need the storage settings")
            return self.objects.open_read(self.location)
        except OSError as exc:
            raise ManifestError(self.name, None, None, f"cannot open: {exc.strerror}") from exc
        except StorageError as exc:
            raise ManifestError(self.name, None, None, f"cannot open: {exc}") from exc


def manifest_source(target: str | Path | ManifestSource,
                    objects: ObjectUrls | None = None) -> ManifestSource:
    """The manifest named by `target`: a path, `file:///abs/path` or `s3://bucket/key`."""
    if isinstance(target, ManifestSource):
        return target
    text = str(target)
    if isinstance(target, str) and is_object_url(text):
        return ManifestSource(text.strip(), objects)
    if isinstance(target, str) and text[:7].lower() == "file://":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ManifestError(text, None, None, "a file URL must be file:///absolute/path")
        return ManifestSource(Path(unquote(parts.path)), objects)
    return ManifestSource(Path(target).expanduser().resolve(), objects)


def manifest_format(path: str | Path) -> str:
    suffix = PurePosixPath(str(path)).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ManifestError(str(path), None, None, "unknown manifest type: use a .csv or .jsonl file")


def iter_rows(manifest: str | Path | ManifestSource) -> Iterator[Row]:
    """Yield every data row of the manifest (a path, or a source from `manifest_source`);
    a local manifest's image paths come out absolute."""
    source = manifest_source(manifest)
    fmt = manifest_format(source.name)
    with source.open() as handle:
        name = source.name
        lines = _Lines(name, handle)
        rows = _csv_rows(name, lines) if fmt == "csv" else _jsonl_rows(name, lines)
        absolute = AbsoluteImages(source.location.parent) \
            if isinstance(source.location, Path) else None
        yielded = False
        for row in rows:
            yielded = True
            yield absolute.row(row) if absolute is not None else row
        if not yielded:
            raise ManifestError(name, None, None, "the manifest has no rows")


class AbsoluteImages:
    """Makes a row's local image paths absolute, against the manifest's folder.

    URLs, data URIs and non-text values are left as they are (validation reports them).
    The row's data is the reader's own fresh dict, so it is changed in place; a row that
    changes loses its `text`, so it is stored from its data, paths and all."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self._seen: dict[str, str] = {}

    def row(self, row: Row) -> Row:
        changed = False
        data = row.data
        for name in IMAGE_FIELDS:
            ref = data.get(name)
            if isinstance(ref, str):
                absolute = self.path(ref)
                if absolute != ref:
                    data[name] = absolute
                    changed = True
        if not changed or row.text is None:
            return row
        return Row(row.line, data, row.problem, None, row.unknown)

    def path(self, ref: str) -> str:
        """`ref` as an absolute path when it names a local file, else as given."""
        known = self._seen.get(ref)
        if known is not None:
            return known
        text = ref.strip()
        if not text or is_remote(text) or is_data_uri(text) or is_object_url(text) \
                or is_chained(text):  # the last frame of another row (chains.py)
            known = ref
        else:
            local = Path(text).expanduser()
            known = str(local if local.is_absolute() else (self.folder / local).resolve())
        if len(self._seen) >= MAX_CACHED_PATHS:
            self._seen.clear()
        self._seen[ref] = known
        return known


_ALLOWED_FIELDS = KNOWN_FIELDS | ERROR_FILE_FIELDS
_JSONL_FIELDS = _ALLOWED_FIELDS | {VARIANTS, VARIANT, VARS}


def unknown_column_reason() -> str:
    return (f"unknown column; the known ones are {', '.join(sorted(KNOWN_FIELDS))}, "
            f"{VARIANTS}.<field> and {VARS}.<name> (template values)")


def _csv_column_known(name: str) -> bool:
    """A column of the CSV header: a field, `variants.<field>` or `vars.<name>`."""
    if name in _ALLOWED_FIELDS:
        return True
    prefix, dot, rest = name.partition(".")
    if not dot:
        return False
    return rest in VARIABLE_FIELDS if prefix == VARIANTS else \
        prefix == VARS and VAR_NAME.fullmatch(rest) is not None


def _unknown_column(path: str | Path, line: int, keys: list[str]) -> ManifestError | None:
    unknown = [k for k in keys if not _csv_column_known(k)]
    if not unknown:
        return None
    return ManifestError(str(path), line, unknown[0], unknown_column_reason())


class _Lines:
    """Physical lines as text, each read with a bounded buffer: a line longer than
    MAX_LINE_BYTES is refused once that many bytes are read, without reading the rest. A
    byte that is not UTF-8 is reported with its line number. `row_start()` marks where a
    CSV row begins, so a quoted row spanning many lines is bounded as one line is."""

    def __init__(self, path: str | Path, handle: BinaryIO) -> None:
        self.path = path
        self.handle = handle
        self.line_no = 0
        self._row_bytes = 0

    def row_start(self) -> None:
        self._row_bytes = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self.handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            raise StopIteration
        self.line_no += 1
        self._row_bytes += len(raw)
        if len(raw) > MAX_LINE_BYTES or self._row_bytes > MAX_LINE_BYTES:
            raise self._error("line is longer than 1,000,000 bytes" if len(raw) > MAX_LINE_BYTES
                              else "row is longer than 1,000,000 bytes")
        try:
            text = raw.decode("utf-8-sig" if self.line_no == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise self._error(
                f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                "save the file as UTF-8") from exc
        if "\x00" in text:
            raise self._error("contains a NUL byte")
        return text

    def _error(self, reason: str) -> ManifestError:
        return ManifestError(str(self.path), self.line_no, None, reason)


def _csv_rows(path: str | Path, lines: _Lines) -> Iterator[Row]:
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise ManifestError(str(path), 1, None, f"bad CSV header: {exc}") from exc
    header = [h.strip() for h in header]
    if not any(header):
        raise ManifestError(str(path), 1, None, "the first line must be a header row")
    duplicates = [h for h, n in Counter(header).items() if n > 1]
    if duplicates:
        raise ManifestError(str(path), 1, min(duplicates), "column appears twice")
    bad_column = _unknown_column(path, 1, [h for h in header if h])
    if bad_column:
        raise bad_column
    if "image" not in header:
        raise ManifestError(str(path), 1, "image", "required column is missing")
    while True:
        start = reader.line_num + 1
        lines.row_start()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ManifestError(str(path), start, None, f"bad CSV: {exc}") from exc
        if not cells or all(not c.strip() for c in cells):
            continue  # blank line
        if len(cells) != len(header):
            yield Row(start, {}, ManifestError(
                str(path), start, None,
                f"has {len(cells)} cells but the header has {len(header)} columns",
            ))
            continue
        yield Row(start, {h: c for h, c in zip(header, cells, strict=True) if h})


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _encodable(data: Any) -> bool:
    """False when a parsed JSON value holds a lone surrogate, which no UTF-8 store takes."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _jsonl_rows(path: str | Path, lines: _Lines) -> Iterator[Row]:
    for line_no, text in enumerate(lines, start=1):
        lines.row_start()  # each line is a row: bound it alone, not the file so far
        if not text.strip():
            continue
        data, problem = _parse_object(text)
        if problem is None:
            unknown = () if data.keys() <= _JSONL_FIELDS else \
                tuple(k for k in data if k not in _JSONL_FIELDS)
            yield Row(line_no, data, None, text.strip(), unknown)
        else:
            yield Row(line_no, {}, ManifestError(str(path), line_no, None, problem))


def _parse_object(text: str) -> tuple[dict[str, Any], str | None]:
    """One JSONL line as a dict, or what is wrong with it."""
    too_deep = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, f"not valid JSON: {exc.msg}"
    except RecursionError:  # the decoder's own guard, far below what any row needs
        return {}, too_deep
    if not isinstance(data, dict):
        return {}, "each line must be a JSON object"
    # Only a line with that many brackets can be that deep: the walk is rarely needed.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
        return {}, too_deep
    if _SURROGATE_ESCAPE.search(text) and not _encodable(data):
        return {}, "contains a lone UTF-16 surrogate escape (like \\ud800)"
    return data, None


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iterative: no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return deepest
