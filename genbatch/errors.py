"""Every error genbatch raises on purpose.

    GenbatchError
     ├── ConfigError              bad or missing setting
     ├── ManifestError            a manifest problem at (path, line, field)
     ├── RequestInvalid           a request the chosen provider/model does not accept
     ├── NotFoundError            a batch or item id that does not exist
     ├── StorageError             object storage failed
     ├── InputNotAllowed          an item's input image lies outside its batch's roots
     ├── StoreError               the job store (Redis) failed a command
 │    └── StoreUnavailable    ... because it cannot be reached (connection lost,
 │                            timeout, still loading its data)
     ├── WaitTimeout              a batch was not finished when a wait ran out
     ├── BadOutput                a video URL or body genbatch refuses to store (host,
     │                            address, size, not a video)
     ├── UrlGone                  a video URL answered 401/403/404/410 (lapsed): ask the
     │                            provider for a fresh one
     └── ProviderError            a provider call failed; `code` and `message` from its envelope
          ├── RetryableProviderError    safe to try again (429, 5xx on GET, connect error)
          │    ├── RateLimited          429: shrink the rate, requeue, count no failure
          │    └── SlotFull             over the account's concurrency: requeue, no rate cut
          ├── PermanentProviderError    the request will never succeed as sent (4xx)
          └── AmbiguousSubmit           a submit whose outcome is unknown: it may have
                                        created (and billed) a task; never retry blindly

The CLI turns these into one line and a non-zero exit; anything else is a bug.
"""

from __future__ import annotations


class GenbatchError(Exception):
    """Root of every error genbatch raises on purpose."""


class ConfigError(GenbatchError):
    """Raised when a setting is missing or invalid."""


class NotFoundError(GenbatchError):
    """Raised when a batch or item id does not exist in the job store."""


class StorageError(GenbatchError):
    """Raised when object storage cannot read or write."""


class InputNotAllowed(GenbatchError):
    """Raised when an item's `s3://` image lies outside its batch's input prefixes."""


class StoreError(GenbatchError):
    """Raised when the job store (Redis) fails a command (genbatch/store/connection.py)."""


class StoreUnavailable(StoreError):
    """Raised when the job store (Redis) cannot be reached."""


class WaitTimeout(GenbatchError):
    """Raised when a batch is not finished when `wait(timeout=...)` runs out."""


class BadSignature(GenbatchError):
    """Raised when a callback's signature headers are missing, stale or wrong."""


class BadOutput(GenbatchError):
    """Raised when a video URL, a redirect or the body it serves fails a download check."""


class UrlGone(GenbatchError):
    """Raised when a video URL answers 401, 403, 404 or 410: it lapsed or was withdrawn."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the video URL answered HTTP {status}")
        self.status = status


class FieldProblem:
    """One reason a request is not acceptable: the field and a human message."""

    __slots__ = ("field", "message")

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message

    def __repr__(self) -> str:
        return f"FieldProblem({self.field!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FieldProblem)
            and (self.field, self.message) == (other.field, other.message)
        )

    def __hash__(self) -> int:
        return hash((self.field, self.message))


class RequestInvalid(GenbatchError):
    """Raised when a request breaks the rules of its provider and model."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


class ManifestError(GenbatchError):
    """Raised for a manifest problem; names the file, the line and the field, and for one
    variant of a row (producer/variants.py) that variant's custom_id."""

    def __init__(self, path: str, line: int | None, field: str | None, reason: str,
                 variant: str | None = None) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.reason = reason
        self.variant = variant
        where = path if line is None else f"{path}:{line}"
        if variant:
            where += f": variant {variant}"
        what = f"{field}: {reason}" if field else reason
        super().__init__(f"{where}: {what}")


class ProviderError(GenbatchError):
    """Raised when a provider call fails; carries the provider's code and message."""

    def __init__(
        self,
        provider: str,
        code: str,
        message: str,
        status_code: int | None = None,
    ) -> None:
        self.provider = provider
        self.code = code
        self.message = message
        self.status_code = status_code
        status = f" (HTTP {status_code})" if status_code is not None else ""
        super().__init__(f"{provider}: {code}: {message}{status}")


class RetryableProviderError(ProviderError):
    """Raised when trying the same call again later is safe and may succeed."""


class RateLimited(RetryableProviderError):
    """Raised on HTTP 429: slow down and requeue without counting a failure."""

    def __init__(
        self,
        provider: str,
        code: str,
        message: str,
        status_code: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(provider, code, message, status_code)
        self.retry_after = retry_after


class SlotFull(RetryableProviderError):
    """Raised when a submit is refused because the account's concurrency is used up (e.g.
    Kling's 1303): nothing was created; requeue without a failure and without a rate cut."""


class PermanentProviderError(ProviderError):
    """Raised when the provider refused the request and will refuse it again."""


class AmbiguousSubmit(ProviderError):
    """Raised when a submit may or may not have created a task at the provider."""


_SKIP_HINT = " (fix them, or pass --skip-invalid to submit the good rows)"


class ManifestRejected(GenbatchError):
    """Raised when a manifest has bad rows the user did not ask to skip, or is refused as a
    whole (no worker holds a key it needs, a budget that fits no row).

    `errors` are the first problems (the CLI prints one line each), `total_errors` the
    number of problems found, `bad_rows` the number of rows they are on (by default one
    problem a row)."""

    def __init__(self, path: str, errors: list[ManifestError], total_errors: int,
                 bad_rows: int | None = None) -> None:
        self.path = path
        self.errors = errors
        self.total_errors = total_errors
        self.bad_rows = total_errors if bad_rows is None else bad_rows
        if not self.bad_rows:
            what, hint = f"{total_errors} problem(s)", ""
        elif self.bad_rows == total_errors:
            what, hint = f"{total_errors} bad row(s)", _SKIP_HINT
        else:
            what, hint = f"{total_errors} problems ({self.bad_rows} bad row(s))", _SKIP_HINT
        super().__init__(f"{path}: {what}; nothing was submitted{hint}")

