"""Why another site cannot make a reviewer's browser keep, reject or redo: the dashboard's
POSTs (console/review.py) are checked here before they change anything.

Two checks, both required:

* Same origin: the request's `Origin` (or, when a browser sends none, its `Referer`) must
  name the host the request was sent to (`Host`); a request that carries neither, or says
  `Sec-Fetch-Site: cross-site`, is refused.
* A token (double submit): pages with a form set a random token in a cookie
  (`genbatch_csrf`: HttpOnly, SameSite=Strict) and put the same token in each form; a POST
  must carry both, equal. Another site can neither read the cookie nor the page.

Authentication is the dashboard's own (GENBATCH_DASHBOARD_BASIC_AUTH, a middleware in front
of every route, POSTs included); these checks come on top of it.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "genbatch_csrf"
FIELD = "csrf"  # the form field that carries the token
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")


def token(request: Request) -> str:
    """The token of this browser: its cookie's, or a new one (`remember` sets it)."""
    given = request.cookies.get(COOKIE, "")
    return given if _TOKEN.fullmatch(given) else secrets.token_urlsafe(32)


def remember(request: Request, response: Response, value: str) -> Response:
    """Set the token cookie on `response` unless the browser already has it."""
    if request.cookies.get(COOKIE) != value:
        response.set_cookie(COOKIE, value, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
    return response


def refused(request: Request, form: Mapping[str, object]) -> str | None:
    """Why this POST must not be acted on (None: it may). `form` is its parsed body."""
    host = request.headers.get("host", "")
    if request.headers.get("sec-fetch-site") == "cross-site":
        return "refused: a request from another site"
    origin = request.headers.get("origin")
    source = origin if origin is not None else request.headers.get("referer")
    if not source:
        return "refused: the request names no Origin or Referer"
    if not host or urlsplit(source).netloc.lower() != host.lower():
        return "refused: the request comes from another origin"
    cookie = request.cookies.get(COOKIE, "")
    sent = form.get(FIELD)
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(
            cookie.encode(), sent.encode()):
        return "refused: missing or wrong CSRF token (reload the page and try again)"
    return None
