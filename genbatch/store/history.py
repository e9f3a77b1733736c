"""An item's attempts: the fields that describe one attempt, and the history of past ones.

An item record keeps its current attempt in plain fields (`remote_id`, `error_code`, …)
and every earlier attempt as one JSON list in `history`; an earlier take that a redo
replaced (worker/redo.py) also keeps its video, seed and cost there. A new attempt (retry, resume,
failover) appends the current one to that list and clears its fields (`attempt_reset`); the
output manifests read the whole list back (`attempt_history`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Item fields that describe one attempt; cleared when the item is tried again.
ATTEMPT_FIELDS: tuple[str, ...] = (
    "remote_id", "submitted_at", "finished_at", "error_code", "error_message", "video_url",
    "video_ttl", "remote_status", "progress", "deadline", "last_error", "generated_at",
    "output_uri", "sha256", "bytes", "cost", "submit_host", "download_host",
    "settle_closed_at", "late_task", "late_found_at", "late_how",
)


def attempt_reset(item: Mapping[str, str]) -> dict[str, str]:
    """Fields that start a new attempt of `item`, its last attempt appended to `history`."""
    history = json.loads(item.get("history") or "[]")
    history.append({k: item.get(k) for k in
                    ("state", "account", "remote_id", "error_code", "error_message",
                     "submitted_at", "finished_at", "attempts", "late_task")})
    fields = dict.fromkeys(ATTEMPT_FIELDS, "")
    fields.update(history=json.dumps(history), polls="0", dl_attempts="0")
    return fields


def failed_over_from(item: Mapping[str, str]) -> str | None:
    """`provider:model` the item failed over from, while it is on the fallback (a row that
    `submit --resume` put back on its first provider has not failed over)."""
    origin = item.get("failed_over_from") or ""
    current = f"{item.get('provider')}:{item.get('model')}"
    return origin if origin and origin != current else None


def attempt_history(item: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every attempt of an item, oldest first, the current one last: provider, account,
    model, remote_task_id, state, error_code, error_message. Past attempts recorded before
    failover existed (retry) carry no provider: they ran where the next recorded one did."""
    past: list[dict[str, Any]] = json.loads(item.get("history") or "[]")
    rows: list[dict[str, Any]] = []
    later_provider, later_model = item.get("provider") or None, item.get("model") or None
    for entry in reversed(past):
        if entry.get("provider"):
            later_provider, later_model = entry["provider"], entry.get("model")
        rows.append({
            "provider": entry.get("provider") or later_provider,
            "account": entry.get("account") or None,
            "model": entry.get("model") or later_model,
            "remote_task_id": entry.get("remote_id") or None,
            "state": entry.get("state") or None,
            "error_code": entry.get("error_code") or None,
            "error_message": entry.get("error_message") or None,
            **_take(entry),
        })
    rows.reverse()
    rows.append({
        "provider": item.get("provider") or None, "account": item.get("account") or None,
        "model": item.get("model") or None,
        "remote_task_id": item.get("remote_id") or None, "state": item.get("state") or None,
        "error_code": item.get("error_code") or None,
        "error_message": item.get("error_message") or None,
    })
    return rows


def _take(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A redone take's own fields (worker/redo.py): its number, kept video, seed, cost."""
    if not entry.get("take"):
        return {}
    cost = entry.get("cost")
    return {"take": entry["take"], "output_uri": entry.get("output_uri") or None,
            "sha256": entry.get("sha256") or None, "seed": _int_or_none(entry.get("seed")),
            "cost_usd": float(cost) if cost else None, "review": entry.get("review") or None}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def compact_history(attempts: list[dict[str, Any]]) -> str:
    """One CSV cell: `provider:model:state[:error_code]` per attempt, joined by ` > `."""
    return " > ".join(
        ":".join(str(a[k]) for k in ("provider", "model", "state", "error_code") if a.get(k))
        for a in attempts
    )
