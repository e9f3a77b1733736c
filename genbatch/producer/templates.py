"""What a row asks for once its own values are in place: a variant's values applied and the
prompt's `{name}` placeholders filled, before the row is validated like any other.

A prompt is a template when it holds a placeholder: `{name}` with `name` a field of the row
(`{ratio}`, `{seed}`, `{custom_id}`, …, a variant's value included) or one of the row's
template values (`vars` in JSONL, `vars.<name>` columns in CSV; `{vars.name}` works too).
Template values are their own namespace so that a misspelt field (`ration`) is still an
unknown column; a name that is a field is refused as a template value for the same reason.
`{{` and `}}` are a literal brace; any other brace (`{"a": 1}`, `{ }`) is text as it is.

The row as stored keeps the template and its values, not the filled prompt: errors.jsonl
gives the row back as written, and filling it again gives the same prompt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from genbatch.producer.manifest import (
    KNOWN_FIELDS,
    VAR_NAME,
    VARIABLE_FIELDS,
    VARIANT,
    VARIANTS,
    VARS,
)

Report = Callable[[str | None, str], None]  # (field, reason): one problem of the row

_PLACEHOLDER = re.compile(
    r"\{\{|\}\}|\{((?:vars\.)?[A-Za-z_][A-Za-z0-9_]*)\}")
_SCALAR = (str, int, float, bool)
MAX_PROMPT_CHARS = 100_000  # a filled prompt larger than this is a runaway template


def resolved(data: dict[str, Any], custom_id: str, err: Report) -> dict[str, Any]:
    """`data` with its `variant` values applied and its prompt filled; its problems go to
    `err`. A row with neither comes back as it is (the common case costs one lookup)."""
    prompt = data.get("prompt")
    templated = isinstance(prompt, str) and ("{" in prompt or "}" in prompt)
    if not templated and VARIANT not in data and VARS not in data and VARIANTS not in data:
        return data
    values = dict(data)
    if values.pop(VARIANTS, None) is not None:
        err(VARIANTS, "a row's variants are expanded before it is validated")
    _apply_variant(values, values.pop(VARIANT, None), err)
    variables = _variables(values.pop(VARS, None), err)
    prompt = values.get("prompt")  # a variant may set it
    if isinstance(prompt, str) and ("{" in prompt or "}" in prompt):
        values["prompt"] = fill(prompt, {**values, "custom_id": custom_id}, variables, err)
    return values


def _apply_variant(values: dict[str, Any], variant: Any, err: Report) -> None:
    """One variant's values (`{"ratio": "9:16", "seed": 1}`) become the row's fields."""
    if variant is None:
        return
    if not isinstance(variant, dict):
        err(VARIANT, "must be an object of one value per field, like {\"ratio\": \"9:16\"}")
        return
    for name, value in variant.items():
        if name not in VARIABLE_FIELDS:
            err(f"{VARIANT}.{name}", "not a field a variant can set; one of "
                + ", ".join(VARIABLE_FIELDS))
        elif not isinstance(value, _SCALAR):
            err(f"{VARIANT}.{name}", "must be one text, number or true/false value")
        elif _given(values.get(name)):
            err(name, f"set both in the row and in {VARIANT}: give one")
        else:
            values[name] = value


def _variables(given: Any, err: Report) -> dict[str, str]:
    """The row's template values, as the text they fill in."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        err(VARS, "must be an object of template values, like {\"product\": \"red sneaker\"}")
        return {}
    variables = {}
    for name, value in given.items():
        where = f"{VARS}.{name}"
        if not isinstance(name, str) or not VAR_NAME.fullmatch(name):
            err(where, "a template value's name is letters, digits and _ (not first)")
        elif name in KNOWN_FIELDS:
            err(where, f"is a field of the row: give {name} as a column, not a template value")
        elif value is not None and not isinstance(value, _SCALAR):
            err(where, "must be a text, number or true/false value")
        else:
            variables[name] = text_of(value)
    return variables


def fill(template: str, fields: dict[str, Any], variables: dict[str, str],
         err: Report) -> str:
    """`template` with each placeholder replaced; one problem per placeholder that names
    nothing this row has (the template is left as it is then)."""
    missing: list[str] = []

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        bare = name.removeprefix(f"{VARS}.")
        if bare in variables:
            return variables[bare]
        if bare == name and (bare in KNOWN_FIELDS) and _given(fields.get(bare)):
            return text_of(fields[bare])
        missing.append(name)
        return token

    filled = _PLACEHOLDER.sub(one, template)
    for name in dict.fromkeys(missing):
        bare = name.removeprefix(f"{VARS}.")
        err("prompt", f"{{{name}}} names a field this row leaves empty" if bare == name
            and bare in KNOWN_FIELDS else f"{{{name}}} names no value of this row: add a "
            f"{VARS}.{bare} column (CSV) or \"{VARS}\": {{\"{bare}\": …}} (JSONL)")
    if len(filled) > MAX_PROMPT_CHARS:
        err("prompt", f"the filled template is longer than {MAX_PROMPT_CHARS:,} characters")
    return filled


def text_of(value: Any) -> str:
    """A value as it reads in a prompt: `true`, `5`, `9:16`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip() if isinstance(value, str) else str(value)


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())
