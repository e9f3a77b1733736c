"""Fetching a finished video safely: what a download may reach and what it may store.

A video URL comes from a provider's answer or from a webhook callback (anyone holding the
callback URL can send one), so it is checked like untrusted input:

- only `http` and `https`;
- the host must match the provider's allow-list (`GENBATCH_<P>_VIDEO_HOSTS`, default the
  plugin's `outputs.video_hosts`, its CDNs; a provider whose base URL is on loopback, the
  simulator, may also serve from that host);
- every address the host resolves to must be public: never loopback, link-local, private,
  multicast or reserved, unless `GENBATCH_DOWNLOAD_ALLOW_PRIVATE` (loopback is allowed
  for a loopback base URL);
- redirects are followed by hand, each hop checked the same way (at most 5);
- the body may not exceed `GENBATCH_DOWNLOAD_MAX_BYTES` (the declared length is checked
  before reading) and must start like an MP4/MOV file (an ISO-BMFF `ftyp` box, or a
  QuickTime atom).

Anything refused raises `BadOutput`; a lapsed URL (401/403/404/410) raises `UrlGone`.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from genbatch import providers
from genbatch.config import Settings
from genbatch.errors import BadOutput, UrlGone
from genbatch.models import PollResult
from genbatch.providers.accounts import env_account

URL_GONE = frozenset({401, 403, 404, 410})
MAX_REDIRECTS = 5
# Atom types an MP4 (ISO-BMFF) or QuickTime file starts with, at byte offset 4.
VIDEO_ATOMS = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
HEAD_BYTES = 12
Resolve = Callable[[str, int], list[str]]


@dataclass(frozen=True, slots=True)
class VideoPolicy:
    """What one provider's video downloads may reach and store."""

    hosts: tuple[str, ...]  # fnmatch patterns, lower case; `host:port` for another port
    allow_private: bool = False
    allow_loopback: bool = False
    max_bytes: int = 2 * 1024**3
    what: str = "video"  # what is fetched, for messages (`inputs.py` fetches images)

    def check_url(self, url: str, resolve: Resolve | None = None) -> None:
        """Raise BadOutput unless `url` is http(s) on an allowed host with allowed addresses."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BadOutput(f"refused a {self.what} URL with scheme {parts.scheme or 'none'!r} "
                            "(only http and https)")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise BadOutput(f"refused a {self.what} URL without a host")
        default_port = 443 if parts.scheme == "https" else 80
        try:
            port = parts.port or default_port
        except ValueError:
            raise BadOutput(f"refused a {self.what} URL whose port is not a number") from None
        # A pattern without a port allows the scheme's own port only: another port on an
        # allowed host is another service.
        target = host if port == default_port else f"{host}:{port}"
        if not any(fnmatch.fnmatchcase(target, p) for p in self.hosts):
            raise BadOutput(f"refused {self.what} host {target!r}: not on the provider's "
                            "allow-list (GENBATCH_<PROVIDER>_VIDEO_HOSTS; name a port as "
                            "host:port)")
        for address in (resolve or _resolve)(host, port):
            self._check_address(host, ipaddress.ip_address(address))

    def _check_address(self, host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
                       ) -> None:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
        if ip.is_global and not ip.is_multicast:
            return
        if self.allow_private or (ip.is_loopback and self.allow_loopback):
            return
        raise BadOutput(f"refused {self.what} host {host!r}: it resolves to a non-public "
                        f"address ({ip}); set GENBATCH_DOWNLOAD_ALLOW_PRIVATE=true to allow it")


def policy_for(settings: Settings, provider: str) -> VideoPolicy:
    """The provider's video policy from the settings (see the module docstring)."""
    configured = settings.provider_value(provider, "video_hosts")
    hosts = tuple(h.strip().lower() for h in configured.split(",") if h.strip()) \
        if configured else providers.plugin(provider).outputs.video_hosts
    base = urlsplit(env_account(settings, provider).base_url)
    base_host = (base.hostname or "").lower()
    loopback = _is_loopback(base_host)
    if loopback:  # the simulator serves its videos where it answers
        hosts = (*hosts, base.netloc.rpartition("@")[2].lower())
    return VideoPolicy(hosts=hosts, allow_private=settings.download_allow_private,
                       allow_loopback=loopback, max_bytes=settings.download_max_bytes)


def url_fields(settings: Settings, now: float, provider: str,
               result: PollResult) -> dict[str, Any]:
    """The item fields for a (fresh) video URL: the URL, its lifetime and when it expires
    (GENBATCH_VIDEO_URL_TTL_S when neither the answer nor the provider says)."""
    ttl = (result.video_ttl_s or providers.plugin(provider).outputs.url_ttl_s
           or settings.video_url_ttl_s) / settings.time_factor
    return {"video_url": result.video_url, "video_ttl": result.video_ttl_s or "",
            "url_ttl_s": round(ttl, 3), "url_expires_at": now + ttl, "dl_repoll": "",
            "dl_attempts": 0, "last_frame_url": result.last_frame_url or ""}


@contextmanager
def open_video(client: httpx.Client, url: str, policy: VideoPolicy, timeout: float,
               resolve: Resolve | None = None,
               headers: Callable[[str], Mapping[str, str]] | None = None,
               ) -> Iterator[httpx.Response]:
    """The video's response, open for streaming, after following allowed redirects by
    hand; raises UrlGone for a lapsed URL and httpx.HTTPStatusError for other failures.
    `headers(url)` (a provider whose download needs its key, Capability.KEYED_DOWNLOAD) is
    asked again at every hop, so a redirect to another host never carries the key."""
    for _ in range(MAX_REDIRECTS + 1):
        policy.check_url(url, resolve)
        extra = dict(headers(url)) if headers is not None else None
        request = client.build_request("GET", url, timeout=timeout, headers=extra)
        response = client.send(request, stream=True)
        if not response.is_redirect:
            break
        location = response.headers.get("location", "")
        response.close()
        if not location:
            raise BadOutput(f"the {policy.what} URL redirected (HTTP {response.status_code}) "
                            "nowhere")
        url = str(response.url.join(location))
    else:
        raise BadOutput(f"the {policy.what} URL redirected more than {MAX_REDIRECTS} times")
    try:
        if response.status_code in URL_GONE:
            raise UrlGone(response.status_code)
        response.raise_for_status()
        yield response
    finally:
        response.close()


def video_chunks(response: httpx.Response, policy: VideoPolicy) -> Iterator[bytes]:
    """The body, checked: its start looks like a video, its size stays within the cap.
    Reads the head before yielding anything, so storage never sees a refused body."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise BadOutput(f"the video is {int(declared)} bytes, over the "
                        f"{policy.max_bytes}-byte limit (GENBATCH_DOWNLOAD_MAX_BYTES)")
    body = response.iter_bytes(1 << 20)
    head = b""
    for chunk in body:
        head += chunk
        if len(head) >= HEAD_BYTES:
            break
    if not looks_like_video(head):
        kind = response.headers.get("content-type", "no Content-Type")
        raise BadOutput(f"the body is not an MP4/MOV video ({kind}, starts {head[:8]!r})")
    size = 0
    for chunk in _chain(head, body):
        size += len(chunk)
        if size > policy.max_bytes:
            raise BadOutput(f"the video is over the {policy.max_bytes}-byte limit "
                            "(GENBATCH_DOWNLOAD_MAX_BYTES)")
        yield chunk


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest


def looks_like_video(head: bytes) -> bool:
    """Whether the first bytes are an MP4/MOV box header: a size, then a known atom type."""
    return len(head) >= 8 and head[4:8] in VIDEO_ATOMS


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpx.ConnectError(f"cannot resolve video host {host!r}: {exc}") from exc
    return sorted({str(info[4][0]) for info in infos})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
