"""The client's outcomes as JSON objects: what the commands print with `--json`, with the
field names docs/pipelines.md ("JSON output") documents (stable; fields may be added)."""

from __future__ import annotations

from typing import Any

from genbatch.client.outcomes import AccountsReport, ResumeOutcome, SubmitOutcome
from genbatch.errors import ManifestError
from genbatch.worker.control import CancelReport, RetryReport


def problem_json(e: ManifestError) -> dict[str, Any]:
    return {"manifest": e.path, "line": e.line, "field": e.field, "reason": e.reason,
            "variant": e.variant}


def submit_json(result: SubmitOutcome, dry_run: bool) -> dict[str, Any]:
    return {
        "batch_id": result.batch_id, "dry_run": dry_run, "rows": result.rows,
        "manifest_rows": result.manifest_rows,
        "valid": result.valid, "invalid": result.invalid,
        "estimated_cost_usd": round(result.est_cost, 6), "unpriced": result.unpriced,
        "by_model": [{"provider": p, "model": m, "rows": n, "estimated_cost_usd": round(c, 6)}
                     for (p, m), (n, c) in sorted(result.by_model.items())],
        "budget_usd": result.budget_usd,
        "budget_fit": {"rows": result.fit, "estimated_cost_usd": round(result.fit_cost, 6)}
        if result.budget_usd is not None else None,
        "skipped": [problem_json(e) for e in result.errors],
        "warnings": list(result.warnings),
        "duplicate_of": result.duplicate_of,
    }


def resume_json(result: ResumeOutcome) -> dict[str, Any]:
    return {"batch_id": result.batch_id, "added": result.added, "replaced": result.replaced,
            "kept": result.kept, "budget_usd": result.budget_usd,
            "skipped": [problem_json(e) for e in result.errors]}


def cancel_json(batch_id: str, report: CancelReport) -> dict[str, Any]:
    return {"batch_id": batch_id, "already": report.already, "cancelled": report.cancelled,
            "cancelled_remote": report.cancelled_remote, "finishing": report.finishing}


def retry_json(batch_id: str, states: tuple[str, ...], budget_usd: float | None,
               report: RetryReport) -> dict[str, Any]:
    return {"batch_id": batch_id, "states": list(states), "requeued": report.requeued,
            "invalid_rows": report.invalid_rows, "budget_usd": budget_usd,
            "continued": report.continued, "chained": report.chained}


def accounts_json(report: AccountsReport) -> dict[str, Any]:
    return {
        "accounts": [{"account": h.account, "state": h.state, "since": h.since,
                      "reason": h.reason or None, "fix": h.fix or None,
                      "failures": h.failures, "last_error": h.last_error or None,
                      "in_flight": load[0], "max_in_flight": load[1],
                      "workers_with_key": sum(h.account in w.keys for w in report.workers)}
                     for h, load in zip(report.health, report.load, strict=True)],
        "workers": [{"name": w.name, "queues": list(w.queues), "keys": list(w.keys),
                     "at": w.at} for w in report.workers],
        "scheduler": None if report.scheduler is None else
        {"name": report.scheduler.name, "at": report.scheduler.at},
    }
