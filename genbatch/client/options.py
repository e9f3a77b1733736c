"""The batch options of a submit as the Python API and the CLI take them."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from genbatch.errors import GenbatchError

if TYPE_CHECKING:
    from genbatch.producer.options import BatchOptions


class SubmitOptions(TypedDict, total=False):
    """Batch options of `Client.submit` / `estimate` (the `genbatch submit` flags)."""

    priority: str | None  # high | normal | low (default normal; low for tier flex)
    tier: str | None  # default | flex
    expires_after: int | None  # seconds, 3600-259200
    budget_usd: float | None
    notify_url: str | None  # POST a signed event here when the batch finishes
    fallback: str | None  # PROVIDER:MODEL
    output: str | None  # s3://bucket/prefix, file:///abs/path or a folder: its outputs
    join_chains: bool  # each finished chain joined into chains/<root custom_id>.mp4


def submit_options(
    *, resume: bool = False, priority: str | None = None, tier: str | None = None,
    expires_after: int | None = None, budget_usd: float | None = None,
    notify_url: str | None = None, fallback: str | None = None, output: str | None = None,
    join_chains: bool = False,
) -> BatchOptions:
    """The batch options of a submit, checked as the user typed them (None = not given).
    A resumed batch keeps its own options: with `resume`, only a budget may be given."""
    from genbatch.producer.options import BatchOptions

    if resume and (join_chains or any(v is not None for v in (
            priority, tier, expires_after, notify_url, fallback, output))):
        raise GenbatchError("--resume keeps the batch's own --priority, --tier, "
                            "--expires-after, --notify, --fallback, --output and "
                            "--join-chains; leave them out")
    return BatchOptions.build(priority=priority, tier=tier, expires_after=expires_after,
                              budget_usd=budget_usd, notify_url=notify_url, fallback=fallback,
                              output=output, join_chains=join_chains)
