"""Object storage in an S3 bucket (AWS, MinIO, or anything else that speaks S3).

Writes stream: a stream smaller than one part is one PutObject; anything larger becomes a
multipart upload of 8 MiB parts, aborted if the stream or an upload fails, so a failure leaves
neither an object nor a dangling upload (which S3 would otherwise bill until a lifecycle rule
reaps it). botocore's errors become StorageError here and nowhere else.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from genbatch.errors import StorageError
from genbatch.storage.base import (
    Digest,
    StoredObject,
    StreamingPuts,
    raise_write_failed,
)
from genbatch.storage.keys import check_key

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from botocore.response import StreamingBody
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's maximum number of parts
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Storage(StreamingPuts):
    """Objects under `s3://bucket/prefix/`, through an injected boto3 S3 client."""

    def __init__(
        self, bucket: str, prefix: str, client: S3Client, *, part_size: int = PART_SIZE
    ) -> None:
        if not bucket or "/" in bucket:
            raise StorageError(f"invalid S3 bucket name {bucket!r}")
        if part_size < MIN_PART_SIZE:
            raise StorageError(f"S3 part size must be at least {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.part_size = part_size
        self._client = client

    def __repr__(self) -> str:
        return f"S3Storage({self.uri_prefix!r})"

    def under(self, prefix: str) -> S3Storage:
        """The same bucket and client, at another prefix."""
        return S3Storage(self.bucket, prefix, self._client, part_size=self.part_size)

    @property
    def uri_prefix(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def put_stream(
        self, key: str, chunks: Iterable[bytes], content_type: str = "video/mp4"
    ) -> StoredObject:
        full = self._full_key(key)
        digest = Digest()
        buf = bytearray()
        upload: _MultipartUpload | None = None
        try:
            for chunk in chunks:
                digest.update(chunk)
                buf += chunk
                while len(buf) >= self.part_size:
                    if upload is None:
                        upload = _MultipartUpload.start(self._client, self.bucket, full,
                                                        content_type)
                    upload.add_part(bytes(buf[: self.part_size]))
                    del buf[: self.part_size]
            if upload is None:
                self._client.put_object(
                    Bucket=self.bucket, Key=full, Body=bytes(buf), ContentType=content_type
                )
            else:
                if buf:
                    upload.add_part(bytes(buf))
                upload.complete()
        except BaseException as exc:
            if upload is not None:
                upload.abort()
            if isinstance(exc, (ClientError, BotoCoreError)):
                raise _storage_error("write", self.uri(key), exc) from exc
            raise_write_failed(self.uri(key), exc)
        return StoredObject(key, self.uri(key), digest.hexdigest(), digest.size)

    def get_bytes(self, key: str) -> bytes:
        full = self._full_key(key)
        with self._errors("read", key):
            return self._client.get_object(Bucket=self.bucket, Key=full)["Body"].read()

    def open_read(self, key: str) -> BinaryIO:
        full = self._full_key(key)
        with self._errors("read", key):
            body = self._client.get_object(Bucket=self.bucket, Key=full)["Body"]
        return io.BufferedReader(_BodyReader(body), buffer_size=1024 * 1024)

    def read_head(self, key: str, length: int) -> tuple[bytes, int]:
        full = self._full_key(key)
        with self._errors("read", key):
            answer = self._client.get_object(Bucket=self.bucket, Key=full,
                                             Range=f"bytes=0-{max(length, 1) - 1}")
            data = answer["Body"].read()
        # "bytes 0-65535/1234567": the size is after the slash; a whole-object answer has none.
        total = str(answer.get("ContentRange", "")).rpartition("/")[2]
        return data[:length], int(total) if total.isdigit() else len(data)

    def exists(self, key: str) -> bool:
        full = self._full_key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return False
            raise _storage_error("check", self.uri(key), exc) from exc
        except BotoCoreError as exc:
            raise _storage_error("check", self.uri(key), exc) from exc
        return True

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full_key(key)}"

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        full = self._full_key(key)
        with self._errors("sign", key):
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": full}, ExpiresIn=expires_s
            )

    def delete(self, key: str) -> None:
        full = self._full_key(key)
        with self._errors("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=full)

    def discard_partial(self, key: str) -> int:
        full = self._full_key(key)
        removed = 0
        with self._errors("clean up", key):
            listing = self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=full)
            for upload in listing.get("Uploads", []):
                if upload.get("Key") == full and upload.get("UploadId"):
                    self._client.abort_multipart_upload(Bucket=self.bucket, Key=full,
                                                        UploadId=upload["UploadId"])
                    removed += 1
        return removed

    def _full_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            if action == "read" and _error_code(exc) in _MISSING_CODES:
                raise StorageError(f"no object {self.uri(key)}") from exc
            raise _storage_error(action, self.uri(key), exc) from exc


class _MultipartUpload:
    """One multipart upload in progress; `abort` never raises."""

    def __init__(self, client: S3Client, bucket: str, key: str, upload_id: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._upload_id = upload_id
        self._parts: list[CompletedPartTypeDef] = []

    @classmethod
    def start(
        cls, client: S3Client, bucket: str, key: str, content_type: str
    ) -> _MultipartUpload:
        answer = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)
        return cls(client, bucket, key, answer["UploadId"])

    def add_part(self, data: bytes) -> None:
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError(f"object s3://{self._bucket}/{self._key} needs over "
                               f"{MAX_PARTS} parts; raise the part size")
        answer = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
            PartNumber=number, Body=data,
        )
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})

    def complete(self) -> None:
        self._client.complete_multipart_upload(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        try:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )
        except (ClientError, BotoCoreError) as exc:
            # The original failure matters more; a bucket lifecycle rule reaps what is left.
            log.warning("could not abort multipart upload %s of s3://%s/%s: %s",
                        self._upload_id, self._bucket, self._key, exc)


class _BodyReader(io.RawIOBase):
    """botocore's StreamingBody as a raw binary stream, so it can be buffered as BinaryIO."""

    def __init__(self, body: StreamingBody) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"reading from S3 failed: {exc}") from exc
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _storage_error(action: str, where: str, exc: BaseException) -> StorageError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
    else:
        detail = str(exc)
    return StorageError(f"S3 {action} {where} failed: {detail}")
