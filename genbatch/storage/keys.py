"""Object keys: where a batch's files live, and why no custom_id can escape or collide.

Every key is `<batch_id>/<name>`. Videos are named from the user's custom_id by `safe_name`,
which keeps a readable form when it can and otherwise appends a hash of the original id:

* a name left as the user wrote it never ends in `-<10 hex>`;
* a name that had to change always ends in `-<first 10 hex of sha256(custom_id)>`.

So an untouched id can never take the key of a rewritten one, and two rewritten ids share a
key only if their sanitised forms and 40-bit hash prefixes both coincide.
"""

from __future__ import annotations

import hashlib
import re

from genbatch.errors import StorageError

MAX_SAFE_LEN = 120
"""Longest readable part of a name built from a custom_id (the hash suffix comes on top)."""

HASH_LEN = 10
MAX_KEY_BYTES = 1024  # S3's limit on a key

# `~` joins a variant's suffix to its row's id (producer/variants.py): safe in URLs and files.
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9._~-]")
_HASH_TAIL = re.compile(rf"-[0-9a-f]{{{HASH_LEN}}}\Z")
# Batch ids and the names of our own batch files: no leading dot, dash or underscore.
_OUR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,16}){1,3}")


def safe_name(custom_id: str) -> str:
    """A file name made from `custom_id`: `[A-Za-z0-9._~-]` only, never hidden, never `..`.

    Returns `custom_id` itself when it is already safe; otherwise its sanitised, capped form
    followed by `-` and the first 10 hex digits of its sha256.
    """
    cleaned = _UNSAFE_CHAR.sub("_", custom_id).lstrip("._-~")[:MAX_SAFE_LEN]
    if cleaned and cleaned == custom_id and not _HASH_TAIL.search(cleaned):
        return cleaned
    # surrogatepass: JSON may carry lone surrogates ("\ud800"); they must hash, not crash.
    digest = hashlib.sha256(custom_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{cleaned or 'id'}-{digest[:HASH_LEN]}"


def object_key(batch_id: str, custom_id: str, suffix: str = ".mp4") -> str:
    """The key of one item's output: `<batch_id>/<safe_name(custom_id)><suffix>`."""
    _check_our_name("batch id", batch_id)
    if not _SUFFIX.fullmatch(suffix):
        raise StorageError(f"refusing file suffix {suffix!r}: expected something like '.mp4'")
    return f"{batch_id}/{safe_name(custom_id)}{suffix}"


def batch_key(batch_id: str, name: str) -> str:
    """The key of a batch-level file such as `results.jsonl`."""
    _check_our_name("batch id", batch_id)
    _check_our_name("batch file name", name)
    return f"{batch_id}/{name}"


def check_key(key: str) -> None:
    """Raise StorageError unless `key` is a plain relative path that stays where it is put."""
    reason = _key_problem(key)
    if reason is not None:
        raise StorageError(f"refusing object key {key!r}: {reason}")


def _key_problem(key: str) -> str | None:
    if not key:
        return "it is empty"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"it is longer than {MAX_KEY_BYTES} bytes"
    if any(ord(c) < 0x20 or c == "\x7f" for c in key):
        return "it contains a control character"
    if "\\" in key:
        return "it contains a backslash"
    if key.startswith("/"):
        return "it is absolute"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return "it has an empty, '.' or '..' path segment"
    return None


def _check_our_name(what: str, value: str) -> None:
    if not _OUR_NAME.fullmatch(value):
        raise StorageError(
            f"refusing {what} {value!r}: expected 1-128 of [A-Za-z0-9._-], "
            "starting with a letter or digit"
        )
