"""WaveSpeed's media upload (docs/wire/notes.md §9): local files become URLs a submit may name
(fal's storage upload, fal.py, PUTs to the same file routes).

    POST /api/v3/media/upload/binary     multipart/form-data, one field `file` (the API
                                         reference) → {"code": 200, "message": "success",
                                         "data": {"type", "download_url", "filename", "size"}}
    POST /api/v3/media/uploads           the official SDK's two steps: {filename, size,
                                         content_type} → {"data": {"upload": {"method": "PUT",
                                         "url", "headers"}, "download_url"}}, then
    PUT  /_sim/uploads/{id}/{name}       the bytes
    GET  /_sim/uploads/{id}/{name}       the uploaded file (what `download_url` names)

Images only (JPG, PNG, WebP, GIF, BMP, TIFF), at most 20 MB, refused in WaveSpeed's envelope
(400 `{"code": 400, "message"}`). Each stored upload counts in `/_sim/stats` (`uploads`).
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import secrets
from typing import Any
from urllib.parse import quote

from PIL import Image, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from genbatch.simulator import gate
from genbatch.simulator.gate import Dialect, ErrorKind
from genbatch.simulator.media import Upload
from genbatch.simulator.state import simulator_of

UPLOAD_PATH = "/_sim/uploads/"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
FORMATS = frozenset({"jpeg", "png", "webp", "gif", "bmp", "tiff"})


def routes(dialect: Dialect) -> list[Route]:
    """The upload routes of WaveSpeed (`dialect` spells its refusals)."""

    @gate.endpoint
    async def binary(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, _ = gate.authenticate(request, sim, dialect)
        name, content_type, data = _one_file(await request.body(),
                                             request.headers.get("content-type", ""), dialect)
        _check_image(data, dialect)
        upload = Upload(name, content_type, api_key, data)
        ident = _store(request, upload)
        sim.stats.uploads += 1
        return _ok({"type": "image", "download_url": _url(request, ident, name),
                    "filename": name, "size": len(data)})

    @gate.endpoint
    async def ticket(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, _ = gate.authenticate(request, sim, dialect)
        body = await gate.read_json(request, dialect)
        name, size = body.get("filename"), body.get("size")
        if not isinstance(name, str) or not name or not isinstance(size, int):
            raise dialect.refuse(ErrorKind.INVALID, "filename and size are required")
        if size > MAX_UPLOAD_BYTES:
            raise dialect.refuse(ErrorKind.INVALID, "file too large: images up to 20 MB")
        content_type = str(body.get("content_type") or "application/octet-stream")
        url = reserve(request, name, content_type, api_key)
        return _ok({"upload": {"method": "PUT", "url": url,
                               "headers": {"Content-Type": content_type}},
                    "download_url": url})

    return [
        Route("/api/v3/media/upload/binary", binary, methods=["POST"]),
        Route("/api/v3/media/uploads", ticket, methods=["POST"]),
    ]


def file_routes() -> list[Route]:
    """The simulator's own routes for the stored files (no key: like a CDN URL)."""

    async def put(request: Request) -> Response:
        upload = _find(request)
        if upload is None or upload.data is not None:
            return Response(status_code=404 if upload is None else 409)
        data = await request.body()
        if len(data) > MAX_UPLOAD_BYTES:
            return Response("file too large", 413)
        upload.data = data
        simulator_of(request).stats.uploads += 1
        return Response(status_code=200)

    async def get(request: Request) -> Response:
        upload = _find(request)
        if upload is None or upload.data is None:
            return Response("not found", 404)
        return Response(upload.data, media_type=upload.content_type)

    path = UPLOAD_PATH + "{ident}/{name}"
    return [Route(path, put, methods=["PUT"]), Route(path, get, methods=["GET"])]


def reserve(request: Request, name: str, content_type: str, api_key: str) -> str:
    """A place for one file yet to be PUT: the URL it is PUT to and then served from
    (WaveSpeed's two-step upload, fal's storage initiate)."""
    safe = _safe(name)
    return _url(request, _store(request, Upload(safe, content_type, api_key)), safe)


def _store(request: Request, upload: Upload) -> str:
    ident = secrets.token_hex(12)
    simulator_of(request).uploads[ident] = upload
    return ident


def _find(request: Request) -> Upload | None:
    upload = simulator_of(request).uploads.get(request.path_params["ident"])
    if upload is None or upload.name != request.path_params["name"]:
        return None
    return upload


def _url(request: Request, ident: str, name: str) -> str:
    return f"{gate.origin(request)}{UPLOAD_PATH}{ident}/{quote(name)}"


def _ok(data: dict[str, Any]) -> Response:
    return JSONResponse({"code": 200, "message": "success", "data": data})


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name.rsplit("/", 1)[-1])
    return cleaned.strip(".") or "upload"


def _one_file(body: bytes, content_type: str, dialect: Dialect) -> tuple[str, str, bytes]:
    """(file name, content type, bytes) of the multipart field `file`."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise dialect.refuse(ErrorKind.INVALID, "send multipart/form-data with a field 'file'")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    for part in message.iter_parts() if message.is_multipart() else ():
        if part.get_param("name", header="content-disposition") == "file":
            data = part.get_payload(decode=True)
            name = _safe(str(part.get_filename() or "upload"))
            if isinstance(data, bytes):
                return name, part.get_content_type(), data
    raise dialect.refuse(ErrorKind.MISSING_PARAM, "the multipart field 'file' is required")


def _check_image(data: bytes, dialect: Dialect) -> None:
    if len(data) > MAX_UPLOAD_BYTES:
        raise dialect.refuse(ErrorKind.INVALID, "file too large: images up to 20 MB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = (img.format or "").lower()
    except (UnidentifiedImageError, OSError):
        fmt = ""
    if fmt not in FORMATS:
        raise dialect.refuse(ErrorKind.INVALID,
                             "unsupported file: upload a JPG, PNG, WebP, GIF, BMP or TIFF image")
