"""Failover: an item that fails at its provider is submitted once more, to the batch's
`--fallback provider:model`, when the failure is the provider's and provably final.

Which failures qualify is decided here and nowhere else (`failover_reason`), from two facts the
worker already has: the state the item was in when it failed (`where`) and the typed error
code the provider adapters produce (`genbatch/providers/http.py` envelopes, poll results):

    where        what happened                                   qualifies
    submitting   4xx refusal for the account: balance, auth,     yes: nothing was created, the
                 permissions (BILLING_BALANCE_NOT_ENOUGH,        account cannot run it, another
                 AccountOverdueError, INVALID_API_KEY, …)        one may
    submitting   4xx: model / endpoint not available here        yes
                 (API_NOT_FOUND, InvalidEndpoint.NotFound, …)
    submitting   4xx: the request itself (INVALID_REQUEST_BODY,  no: the row's own problem, it
                 InvalidParameter, ILLEGAL_*, *Sensitive*, …)    fails everywhere
    submitted    the remote task reported FAILED for a           yes: verified final, unbilled
                 provider-side reason (TASK_STATUS_FAILED,
                 TASK_FAILED, InternalServiceError, WaveSpeed
                 1403/1405/5xxx, FAILED without a code)
    submitted    FAILED for content moderation or the input      no: the row's own problem
                 (…SensitiveContentDetected, ILLEGAL_*, 1200,
                 1400-1402), a poll answered 4xx (TASK_NOT_FOUND,
                 auth: the task may still run and bill), success
                 without a video URL (no_output: billed)
    anything else: unknown codes, ambiguous submits, 5xx on submit, deadline or provider
    expiry, cancel, invalid_row, input_unavailable, download_failed / output_gone /
    bad_output (the video was generated and paid for): no.

The move itself (`fail_over`) happens instead of the terminal `failed` transition, as one
compare-and-set straight from the in-flight state to `pending` on the fallback account's
queue (provider, model, est_cost, history): the item never becomes visible as failed, the
batch's open count never reaches 0 in between (so it cannot be finalized early), the old
account's in-flight slot is released in the same step, and a crash loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genbatch import providers
from genbatch.errors import ConfigError
from genbatch.models import ItemState
from genbatch.providers.failures import ACCOUNT_CODES
from genbatch.records import Item
from genbatch.store.history import attempt_reset, failed_over_from

if TYPE_CHECKING:
    from genbatch.worker.runtime import Runtime

# -- the qualification table ------------------------------------------------------------
# Submit refused because the model or its endpoint is not served by this provider now.
MODEL_UNAVAILABLE_CODES = frozenset({
    "API_NOT_FOUND", "MODEL_NOT_FOUND", "SERVICE_NOT_AVAILABLE",
    "InvalidEndpoint.NotFound", "InvalidEndpoint.ClosedEndpoint", "HTTP_404", "404",
})
# The remote task reported FAILED for a reason on the provider's side. Novita and HighwayAPI
# report every failure as TASK_STATUS_FAILED (the reason is free text), so all of theirs count.
GENERATION_FAILED_CODES = frozenset({
    "TASK_STATUS_FAILED", "TASK_FAILED",
    "failed",  # a provider's code (an empty-coded FAILED task), not an item state
    "InternalServiceError", "ServiceUnavailable", "InternalError",
    "1403", "1405", "5000", "5003", "5004",  # WaveSpeed: execution failed, internal, timeout
})
_FOLD = {
    "account": frozenset(c.casefold() for c in ACCOUNT_CODES),
    "model_unavailable": frozenset(c.casefold() for c in MODEL_UNAVAILABLE_CODES),
    "generation_failed": frozenset(c.casefold() for c in GENERATION_FAILED_CODES),
}


def failover_reason(where: ItemState, code: str) -> str | None:
    """Why a failure with `code`, raised while the item was in state `where`, may fail
    over: "account", "model_unavailable" or "generation_failed"; None when it never does."""
    folded = (code or "").strip().casefold()
    if where is ItemState.SUBMITTING:
        for reason in ("account", "model_unavailable"):
            if folded in _FOLD[reason]:
                return reason
    elif where is ItemState.SUBMITTED and folded in _FOLD["generation_failed"]:
        return "generation_failed"
    return None


# -- the move -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Failover:
    """`moved`: the item is pending on the fallback ("failed_over") or was past this step
    ("skipped"); None: end it failed as planned, with `message` (possibly annotated).
    After a failover, `origin` is the account whose slot it freed and `target` the one it
    now waits for."""

    moved: str | None
    message: str
    origin: str = ""
    target: str = ""


def fail_over(rt: Runtime, iid: str, allowed: Sequence[ItemState], code: str,
              message: str) -> Failover:
    """Instead of ending `iid` failed, move it to the batch's fallback when it qualifies."""
    stay = Failover(None, message)
    if len(allowed) != 1:
        return stay
    item = rt.store.items.get(iid)
    batch = rt.store.batches.get(item.batch_id)
    target = batch.fallback
    origin = f"{item.provider}:{item.model}"
    if not target or item.state != allowed[0]:
        return stay
    provider, _, named = target.partition(":")
    try:  # the fallback may be named by the provider's own id: compare genbatch names
        model, request = providers.canonical(provider, named, item.request)
    except (ConfigError, ValueError) as exc:
        return Failover(None, f"{message} (not failed over to {target}: {exc})")
    # Already on the fallback: once only (a resumed row starts over).
    if f"{provider}:{model}" == origin:
        came_from = failed_over_from(item)
        return Failover(None, f"{message} (on the fallback, after failing over from "
                       f"{came_from})") if came_from else stay
    if failover_reason(allowed[0], code) is None or batch.cancel_requested:
        return stay
    try:
        problems = providers.validate_request(provider, named, item.request)
        cost = providers.estimate_cost(provider, model, request)
    except (ConfigError, ValueError) as exc:
        return Failover(None, f"{message} (not failed over to {target}: {exc})")
    if problems:
        why = "; ".join(f"{p.field}: {p.message}" for p in problems)
        return Failover(None, f"{message} (not failed over to {target}: the row does not "
                       f"fit it: {why})")
    fields = _failover_fields(rt, item, code, message, origin)
    fields.update(provider=provider, model=model, est_cost="" if cost is None else repr(cost))
    if request != item.request:  # the fallback's id pins a resolution
        fields["req"] = request.model_dump_json(exclude_none=True)
    moved = rt.store.items.transition(iid, list(allowed), ItemState.PENDING, timer="-",
                                      fields=fields, incr={"batch:failed_over": 1},
                                      queue="back")
    if not moved.applied:
        return Failover("skipped", message)
    return Failover("failed_over", message, origin=item.provider, target=provider)


def _failover_fields(rt: Runtime, item: Item, code: str, message: str,
                     origin: str) -> dict[str, Any]:
    now = rt.now()
    fields: dict[str, Any] = dict(attempt_reset(item))
    history = json.loads(fields["history"])
    history[-1].update(state=ItemState.FAILED.value, error_code=code,
                       error_message=message[:2000], finished_at=repr(now),
                       provider=item.provider, model=item.model, failed_over=True)
    fields.update(history=json.dumps(history), fallback_used="1", failed_over_from=origin,
                  failed_over_at=repr(now), webhook="", polled_at="")
    return fields


# -- reporting ------------------------------------------------------------------------------
def fallback_summary(batch: Mapping[str, str]) -> dict[str, object] | None:
    """For `status --json`: the batch's fallback and how many items failed over to it."""
    if not batch.get("fallback"):
        return None
    return {"fallback": batch["fallback"], "failed_over": int(batch.get("failed_over") or 0)}
