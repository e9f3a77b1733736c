"""Variants: one manifest row becomes one item per combination of the values it lists.

A JSONL row's `variants` maps fields to lists (`{"ratio": ["9:16", "1:1"], "seed": [1, 2]}`:
their product, four variants); a CSV row spells it as `variants.<field>` columns holding
`|`-separated values (an empty cell: that row does not vary the field). Each variant is a
row of its own from here on: the row without `variants`, its custom_id the row's own (or
`line-<n>`), `~` and a suffix naming the values (`ad-001~9x16-s1`), and `variant` holding
the values, which templates.py applies before the row is validated like any other. That row
is what its item stores, so errors.jsonl gives it back as it is — resubmitted, the same
custom_id, so `submit --resume` finds the same item.

The suffix is made from the values alone, in a fixed field order (VARIABLE_FIELDS): the same
manifest always gives the same ids, a CSV and a JSONL of the same rows too. Each value has a
short readable form (`9:16` → `9x16`, seed 1 → `s1`, duration 5 → `5s`, true → `audio`); a
field whose values would read the same (or a prompt, which reads badly) is named by position
instead (`prompt1`, `prompt2`). Suffixes use `[a-z0-9.-]` only: safe in file names and URLs.
An id that repeats another row's is the ordinary duplicate custom_id error.

Limits: a row's variants (GENBATCH_MAX_VARIANTS_PER_ROW) are counted before any is made,
and the items of a whole manifest (GENBATCH_MAX_ITEMS_PER_BATCH) as they are made; either
is one error naming the line.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from genbatch.errors import ManifestError
from genbatch.producer.manifest import VARIABLE_FIELDS, VARIANT, VARIANTS, VARS, Row
from genbatch.producer.templates import resolved, text_of
from genbatch.producer.validate import ValidRow

DEFAULT_PER_ROW = 100
DEFAULT_PER_BATCH = 1_000_000
SEPARATOR = "~"  # between the row's custom_id and the variant's suffix
CSV_LIST_SEPARATOR = "|"
MAX_PART_CHARS = 24  # a value's readable form is cut to this
_SCALAR = (str, int, float, bool)
_UNSLUG = re.compile(r"[^a-z0-9.]+")
_NEGATIVE = re.compile(r"-\d+(\.\d+)?")
# How a value reads in a suffix: a format around its slug, or a word for true / false.
_FORMATS = {"seed": "s{}", "duration": "{}s", "fps": "{}fps",
            "execution_expires_after": "exp{}"}
_FLAGS = {"camera_fixed": ("fixed", "moving"), "generate_audio": ("audio", "mute"),
          "watermark": ("wm", "nowm")}
_POSITIONAL = frozenset({"prompt"})
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True, slots=True)
class VariantLimits:
    """At most `per_row` variants of one row and `per_batch` items in one manifest."""

    per_row: int = DEFAULT_PER_ROW
    per_batch: int = DEFAULT_PER_BATCH


class _Refused(Exception):
    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class Expansion:
    """The rows of a manifest with each row's variants expanded, in manifest order.

    `read` counts the manifest's rows and `items` the rows that come out (what the batch
    will hold); the per-batch limit stops the iteration with a ManifestError."""

    def __init__(self, rows: Iterable[Row], path: str, limits: VariantLimits | None = None
                 ) -> None:
        self.rows = rows
        self.path = path
        self.limits = limits or VariantLimits()
        self.read = 0
        self.items = 0

    def __iter__(self) -> Iterator[Row]:
        per_batch = self.limits.per_batch
        for row in self.rows:
            self.read += 1
            for out in self.expand(row):
                self.items += 1
                if self.items > per_batch:
                    raise ManifestError(
                        self.path, row.line, None,
                        f"the manifest expands to more than {per_batch:,} items (rows and "
                        "their variants): the most one batch takes "
                        "(GENBATCH_MAX_ITEMS_PER_BATCH); split it")
                yield out

    def expand(self, row: Row) -> Iterator[Row]:
        """`row` itself, or one row per variant, or the row with the problem of its
        `variants`."""
        if row.problem is not None:
            yield row
            return
        if any("." in key for key in row.data):  # CSV `variants.<f>` / `vars.<n>` columns
            row = Row(row.line, from_columns(row.data), None, None, row.unknown)
        spec = row.data.get(VARIANTS)
        if spec is None or spec == {}:  # `{}`: nothing varies (a generated manifest's rows)
            yield row if spec is None else Row(
                row.line, {k: v for k, v in row.data.items() if k != VARIANTS}, None, None,
                row.unknown)
            return
        try:
            lists = self._lists(spec, row.data)
        except _Refused as exc:
            yield Row(row.line, row.data, ManifestError(self.path, row.line, exc.field,
                                                        exc.reason))
            return
        base = _base_id(row)
        data = {k: v for k, v in row.data.items() if k != VARIANTS}
        variants = variant_suffixes(lists)
        problem = self._template_problem(row.line, data, lists,
                                         (f"{base}{SEPARATOR}{variants[0][0]}", variants[0][1]))
        if problem is not None:
            yield Row(row.line, row.data, problem)
            return
        for suffix, values in variants:
            yield Row(row.line, {**data, "custom_id": f"{base}{SEPARATOR}{suffix}",
                                 VARIANT: values}, None, None, row.unknown)

    def _template_problem(self, line: int, data: dict[str, Any], lists: dict[str, list[Any]],
                          first: tuple[str, dict[str, Any]]) -> ManifestError | None:
        """A mistake in the row's template or its values, which every variant would repeat,
        as one problem of the row (the first; unless the prompt itself varies). `first`:
        the first variant's (custom_id, values), filled in as a probe."""
        if "prompt" in lists:
            return None
        found: list[tuple[str | None, str]] = []
        resolved({**data, VARIANT: first[1]}, first[0], lambda f, r: found.append((f, r)))
        for name, reason in found:
            if name == "prompt" or (name or "").startswith(VARS):
                return ManifestError(self.path, line, name, reason)
        return None

    def _lists(self, spec: Any, data: dict[str, Any]) -> dict[str, list[Any]]:
        """The row's lists by field, in VARIABLE_FIELDS order; _Refused when they cannot
        be expanded (one problem: the first found)."""
        if not isinstance(spec, dict):
            raise _Refused(VARIANTS, "must be an object mapping fields to lists of values, "
                           'like {"ratio": ["9:16", "16:9"], "seed": [1, 2]}')
        if VARIANT in data:
            raise _Refused(VARIANTS, f"a row has {VARIANTS} (lists) or {VARIANT} (one "
                           "variant's values), not both")
        for name, values in spec.items():
            _check_list(name, values, data)
        lists = {f: spec[f] for f in VARIABLE_FIELDS if f in spec}
        count = math.prod(len(v) for v in lists.values())
        if count > self.limits.per_row:
            sizes = " x ".join(f"{len(v)} {f}" for f, v in lists.items())
            raise _Refused(VARIANTS, f"{sizes} make {count:,} variants; at most "
                           f"{self.limits.per_row:,} per row (GENBATCH_MAX_VARIANTS_PER_ROW)")
        return lists


def _check_list(name: Any, values: Any, data: dict[str, Any]) -> None:
    where = f"{VARIANTS}.{name}"
    if name not in VARIABLE_FIELDS:
        raise _Refused(where, "not a field that can vary; one of " + ", ".join(VARIABLE_FIELDS)
                       + " (images: one row per image)")
    if not isinstance(values, list) or not values:
        raise _Refused(where, "must be a non-empty list of values")
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, _SCALAR):
            raise _Refused(where, f"{_show(value)} is not a text, number or true/false value")
        text = text_of(value)
        if not text:
            raise _Refused(where, "has an empty value")
        if text in seen:
            raise _Refused(where, f"{text!r} is listed twice")
        seen.add(text)
    given = data.get(name)
    if given is not None and text_of(given):
        raise _Refused(name, f"set both in the row and in {where}: give one")


def from_columns(data: dict[str, Any]) -> dict[str, Any]:
    """A CSV row's `variants.<field>` and `vars.<name>` columns as the `variants` and
    `vars` objects a JSONL row has (an empty `variants.<field>` cell: not varied)."""
    out: dict[str, Any] = {}
    lists: dict[str, list[str]] = {}
    variables: dict[str, Any] = {}
    for key, value in data.items():
        prefix, dot, name = key.partition(".")
        if dot and prefix == VARIANTS:
            if isinstance(value, str) and value.strip():
                lists[name] = [v.strip() for v in value.split(CSV_LIST_SEPARATOR)]
        elif dot and prefix == VARS:
            variables[name] = value
        else:
            out[key] = value
    if variables:
        out[VARS] = variables
    if lists:
        out[VARIANTS] = lists
    return out


def variant_suffixes(lists: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(suffix, values) of each variant, in the lists' product order. Suffixes are unique:
    when readable forms would repeat, the field (or, failing that, every field) is named
    by position."""
    parts = {f: _parts(f, values) for f, values in lists.items()}
    combos = list(itertools.product(*(range(len(v)) for v in lists.values())))
    fields = list(lists)
    suffixes = ["-".join(parts[f][i] for f, i in zip(fields, combo, strict=True))
                for combo in combos]
    if len(set(suffixes)) < len(suffixes):  # readable forms run together ("a-b" + "c")
        suffixes = ["-".join(f"{f}{i + 1}" for f, i in zip(fields, combo, strict=True))
                    for combo in combos]
    return [(suffix, {f: lists[f][i] for f, i in zip(fields, combo, strict=True)})
            for suffix, combo in zip(suffixes, combos, strict=True)]


def _parts(name: str, values: list[Any]) -> list[str]:
    """How each of a field's values reads in a suffix (by position when they would not
    read apart)."""
    parts = [] if name in _POSITIONAL else [_part(name, v) for v in values]
    if len(set(parts)) < len(values) or not all(parts):
        parts = [f"{name}{i}" for i in range(1, len(values) + 1)]
    return parts


def _part(name: str, value: Any) -> str:
    text = text_of(value)
    if name in _FLAGS:
        on, off = _FLAGS[name]
        word = text.lower()
        if word in _TRUE or word in _FALSE:
            return on if word in _TRUE else off
    slug = _slug(text)
    return _FORMATS.get(name, "{}").format(slug) if slug else ""


def _slug(text: str) -> str:
    """`text` in `[a-z0-9.-]`: `9:16` → `9x16`, `-1` → `m1`, `Kling 2.1` → `kling-2.1`."""
    text = text.strip().lower()
    if _NEGATIVE.fullmatch(text):
        text = "m" + text[1:]
    slug = _UNSLUG.sub("-", text.replace(":", "x")).strip("-.")
    return slug[:MAX_PART_CHARS].strip("-.")


def _base_id(row: Row) -> str:
    given = row.data.get("custom_id")
    text = "" if given is None else str(given).strip()
    return text or f"line-{row.line}"


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def variant_label(row: ValidRow) -> dict[str, Any] | None:
    """A variant's values as results show them (`{"ratio": "9:16", "seed": 1}`): as the
    request holds them (typed: a CSV's "1" is the seed 1), provider and model as they run.
    None for a row that is no variant."""
    given = row.row.get(VARIANT)
    if not isinstance(given, dict):
        return None
    ran = {"provider": row.provider, "model": row.model}
    return {f: ran[f] if f in ran else getattr(row.request, f, v) for f, v in given.items()}
