"""Checks of a manifest as a whole, made before its batch is committed: what no one row shows.

- **Keys**: every provider the rows use needs a live worker holding its API key (the workers'
  heartbeats name the providers whose key they hold, never the key). Workers up and none
  holds it: refused. No worker up at all: a warning (the batch waits for one). The
  `--fallback` provider missing a key is a warning: items then cannot fail over.
- **Budget**: a `--budget` below the estimate of the first row of every account queue fits
  no row (the dispatcher takes each account's queue in order and stops at the first row
  that does not fit): refused, naming that row's estimate.
- **Fallback**: rows that break the `--fallback` provider/model's rules still run on their
  own provider but cannot fail over: a warning listing their lines and the reason.

`refusals()` stop a submit (a dry run shows them as warnings); `warnings()` never do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genbatch import providers
from genbatch.errors import ConfigError
from genbatch.producer.validate import ValidRow
from genbatch.store.heartbeats import Beat

MAX_REASONS = 10  # distinct fallback reasons listed; rows for other reasons are counted
MAX_LINES = 10  # lines listed per reason


def key_variable(provider: str) -> str:
    return f"GENBATCH_{provider.upper()}_API_KEY"


def usd(amount: float) -> str:
    """$0.35, $12.00, $0.0042: at least cents, and enough digits to tell small prices apart."""
    text = f"{amount:.4f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


@dataclass
class _Misfits:
    """Rows that cannot fail over, grouped by reason (bounded, whatever the manifest's size)."""

    lines: dict[str, list[int]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    other: int = 0

    def add(self, reason: str, line: int) -> None:
        if reason not in self.counts and len(self.counts) >= MAX_REASONS:
            self.other += 1
            return
        self.counts[reason] = self.counts.get(reason, 0) + 1
        listed = self.lines.setdefault(reason, [])
        if len(listed) < MAX_LINES:
            listed.append(line)


@dataclass
class ManifestChecks:
    """Watches the valid rows of one manifest go by; says what refuses or warns at the end.

    `workers` are the live workers' heartbeats (None: unknown, keys are not checked)."""

    workers: list[Beat] | None = None
    budget_usd: float | None = None
    fallback: tuple[str, str] | None = None
    _firsts: dict[str, ValidRow] = field(default_factory=dict)  # provider -> its first row
    _misfits: _Misfits = field(default_factory=_Misfits)

    def see(self, row: ValidRow) -> None:
        self._firsts.setdefault(row.provider, row)
        if self.fallback is not None and (row.provider, row.model) != self.fallback:
            reason = _misfit(self.fallback, row)
            if reason:
                self._misfits.add(reason, row.line)

    def refusals(self) -> list[str]:
        return [*self._missing_keys(), *self._budget()]

    def warnings(self) -> list[str]:
        return [*self._no_workers(), *self._fallback_key(), *self._fallback_misfits()]

    # -- keys --------------------------------------------------------------------------
    def _held(self) -> set[str]:
        return {p for beat in self.workers or () for p in beat.providers}

    def _missing_keys(self) -> list[str]:
        if not self.workers:
            return []
        held = self._held()
        return [f"no running worker holds a key for {p}: set {key_variable(p)} on a worker "
                "(and restart it), or submit these rows to another provider"
                for p in sorted(self._firsts) if p not in held]

    def _no_workers(self) -> list[str]:
        if self.workers is None or self.workers or not self._firsts:
            return []
        needed = ", ".join(key_variable(p) for p in sorted(self._firsts))
        return [f"no worker is running: the batch waits until one starts (with {needed})"]

    def _fallback_key(self) -> list[str]:
        if not self.workers or self.fallback is None or self.fallback[0] in self._held():
            return []
        provider = self.fallback[0]
        return [f"no running worker holds a key for {provider} (--fallback): set "
                f"{key_variable(provider)} on a worker, or items cannot fail over to it"]

    # -- budget ------------------------------------------------------------------------
    def _budget(self) -> list[str]:
        firsts = [r for r in self._firsts.values() if r.est_cost is not None]
        if self.budget_usd is None or not firsts or len(firsts) < len(self._firsts):
            return []  # rows without a price are refused on their own (unpriced_message)
        cheapest = min(firsts, key=lambda r: (r.est_cost or 0.0, r.line))
        cost = cheapest.est_cost or 0.0
        if cost <= self.budget_usd:
            return []
        which = "the first row" if len(firsts) == 1 else \
            f"the cheapest first row of {len(firsts)} providers"
        return [f"--budget {usd(self.budget_usd)} fits no row: {which} (line {cheapest.line}, "
                f"{cheapest.provider} {cheapest.model}) is estimated at {usd(cost)}; "
                f"give at least {usd(cost)}"]

    # -- fallback ----------------------------------------------------------------------
    def _fallback_misfits(self) -> list[str]:
        if self.fallback is None:
            return []
        target = ":".join(self.fallback)
        found = self._misfits
        warnings = []
        for reason, count in found.counts.items():
            listed = found.lines[reason]
            lines = ("line " if count == 1 else "lines ") + ", ".join(map(str, listed))
            more = f" and {count - len(listed)} more" if count > len(listed) else ""
            warnings.append(f"{count} row(s) cannot fail over to {target} ({reason}): "
                            f"{lines}{more}; they run on their own provider only")
        if found.other:
            warnings.append(f"{found.other} more row(s) cannot fail over to {target} "
                            "for other reasons")
        return warnings


def _misfit(fallback: tuple[str, str], row: ValidRow) -> str | None:
    """Why `row` does not fit the fallback provider/model; None when it does."""
    provider, model = fallback
    try:
        problems = providers.validate_request(provider, model, row.request)
    except ConfigError as exc:  # checked when --fallback was parsed; kept for safety
        return str(exc)
    return "; ".join(f"{p.field}: {p.message}" for p in problems) or None
