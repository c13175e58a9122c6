"""Where a backup lives: an S3 prefix (``s3://bucket/prefix``) or a local directory (a path, or ``file://``).

Both sit behind one small interface of keys relative to the location (``<jobid>/0``), so backup-table and
restore-table do not care which. The rules it keeps:

* An object appears whole or not at all. On S3 a streamed object becomes visible only when its multipart
  upload completes (or, if it stayed under one part, when its single PutObject lands); a local file is
  written under a temporary name beside its final one and renamed. A run that dies leaves no object that
  looks finished: at most a ``.<name>.partial-*`` file on disk, or an incomplete multipart upload on S3,
  which listings do not show (a bucket lifecycle rule, AbortIncompleteMultipartUpload, reclaims its parts).
* Memory stays flat whatever the object's size: an S3 part is spooled to a temporary file, not memory,
  and uploaded once it reaches the part size; so a writer holds only what its caller hands it. Parts are
  8 MiB (S3's minimum is 5 MiB), doubling every 1,000 parts, so one object can grow to terabytes within
  S3's 10,000 parts without knowing its size in advance.
* Every object written or read counts its bytes and MD5 (base64, as DynamoDB's export manifests give
  it), so a manifest can record what a reader must find, and a reader can tell when it did not.
* Expected failures are one clear :class:`ReplicatorError`: a malformed URL, a missing bucket, access
  denied, an endpoint that does not answer, a directory that cannot be written (found by writing a probe
  file before any scan, since a permission check is no answer for root or a read-only filesystem).
* On local disk a backup is a full copy of the table: its files are created 0600 and its folders 0700,
  whatever the umask lets others read.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, NoCredentialsError

from replicator import clients
from replicator.credentials import DEFAULT, Credentials
from replicator.files import private_file, probe_directory
from replicator.errors import ReplicatorError

PART_BYTES = 8 * 1024 * 1024
PARTS_PER_DOUBLING = 1000
DELETE_LIMIT = 1000
"""DeleteObjects takes at most 1,000 keys a request."""
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
URL_HELP = "give s3://bucket/prefix, a directory path, or file:///path"


def part_bytes(part_number: int) -> int:
    """The size at which part ``part_number`` (from 1) is uploaded: 8 MiB, doubled every 1,000 parts."""
    return PART_BYTES << ((part_number - 1) // PARTS_PER_DOUBLING)


def md5_text(digest: Any) -> str:
    return base64.b64encode(digest.digest()).decode("ascii")


@dataclass(frozen=True)
class Written:
    """An object as committed: its key, size in bytes and MD5 (base64)."""

    key: str
    size: int
    md5: str


class ObjectWriter(ABC):
    """A file-like sink for one object (``write`` only, as gzip.GzipFile needs): ``commit`` makes it
    appear whole, ``abort`` leaves nothing behind."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.size = 0
        self._md5 = hashlib.md5()

    def write(self, data: bytes) -> int:
        self._md5.update(data)
        self.size += len(data)
        self._put(data)
        return len(data)

    def flush(self) -> None:
        return None

    def written(self) -> Written:
        return Written(self.key, self.size, md5_text(self._md5))

    @abstractmethod
    def _put(self, data: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> Written: ...

    @abstractmethod
    def abort(self) -> None: ...


class HashingReader:
    """Reads a stream through, counting its bytes and MD5, so the reader can check them at the end."""

    def __init__(self, raw: IO[bytes] | Any) -> None:
        self._raw = raw
        self.size = 0
        self._md5 = hashlib.md5()

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read() if n is None or n < 0 else self._raw.read(n)
        self._md5.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read what is left (bytes after the last gzip member) so size and MD5 cover the whole object."""
        while self.read(1024 * 1024):
            pass

    @property
    def md5(self) -> str:
        return md5_text(self._md5)

    def close(self) -> None:
        self._raw.close()


class Store(ABC):
    """A backup location: keys are relative to it, folders separated by ``/``."""

    url: str

    def url_of(self, key: str) -> str:
        return f"{self.url}/{key}" if key else self.url

    @abstractmethod
    def check(self, *, create: bool = False) -> None:
        """The location can be used: the bucket exists, or the directory does (``create`` makes it)."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The object's size, or None when there is no such object."""

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    @abstractmethod
    def keys(self, folder: str) -> list[str]:
        """Every object under ``folder`` (at any depth), as keys relative to the store."""

    @abstractmethod
    def read(self, key: str) -> bytes:
        """A small object (a manifest) whole."""

    @abstractmethod
    def open_read(self, key: str) -> Any:
        """A binary stream of the object (``read(n)``, ``close()``)."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """A small object (a manifest, a marker), replaced whole."""

    @abstractmethod
    def open_write(self, key: str) -> ObjectWriter: ...

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None: ...


# --- S3 ------------------------------------------------------------------------------------------


class S3Store(Store):
    def __init__(self, client: Any, bucket: str, prefix: str, endpoint: str | None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self.url = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")

    def bucket_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def call(self, operation: str, **kwargs: Any) -> Any:
        """One S3 request; the failures a user can fix become a ReplicatorError naming the bucket."""
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket" or (operation == "head_bucket" and status == 404):
                raise ReplicatorError(f"bucket {self.bucket} does not exist{self._at()}: create it, or check the URL "
                                      "and --s3-endpoint") from None
            if status == 403:  # AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch, ...
                raise ReplicatorError(f"S3 refused {operation} on s3://{self.bucket}{self._at()}: {code} "
                                      f"{error.get('Message', '')}".rstrip() + ": check the credentials and the "
                                      "bucket's policy") from None
            raise
        except (BotoConnectionError, NoCredentialsError) as exc:
            raise ReplicatorError(f"S3{self._at()} cannot be used for s3://{self.bucket}: {exc}") from None

    def _at(self) -> str:
        return f" at {self.endpoint}" if self.endpoint else ""

    def check(self, *, create: bool = False) -> None:
        self.call("head_bucket")

    def size(self, key: str) -> int | None:
        try:
            return int(self.call("head_object", Key=self.bucket_key(key))["ContentLength"])
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise

    def keys(self, folder: str) -> list[str]:
        found: list[str] = []
        strip = len(self.bucket_key(""))
        token: dict[str, Any] = {}
        while True:
            page = self.call("list_objects_v2", Prefix=self.bucket_key(folder.rstrip("/") + "/"), **token)
            found.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return found
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def read(self, key: str) -> bytes:
        return self.open_read(key).read()

    def open_read(self, key: str) -> Any:
        try:
            return self.call("get_object", Key=self.bucket_key(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ReplicatorError(f"{self.url_of(key)} does not exist") from None
            raise

    def write(self, key: str, data: bytes) -> None:
        self.call("put_object", Key=self.bucket_key(key), Body=data)

    def open_write(self, key: str) -> ObjectWriter:
        return _S3Writer(self, key)

    def delete(self, keys: Iterable[str]) -> None:
        batch = [self.bucket_key(k) for k in keys]
        for start in range(0, len(batch), DELETE_LIMIT):
            objects = [{"Key": k} for k in batch[start : start + DELETE_LIMIT]]
            self.call("delete_objects", Delete={"Objects": objects, "Quiet": True})


class _S3Writer(ObjectWriter):
    """Spools each part to a temporary file and uploads it once it reaches its size; an object that never
    fills a part is one PutObject at commit."""

    def __init__(self, store: S3Store, key: str) -> None:
        super().__init__(key)
        self._store = store
        self._s3_key = store.bucket_key(key)
        self._spool: IO[bytes] = tempfile.TemporaryFile()
        self._spooled = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def _put(self, data: bytes) -> None:
        self._spool.write(data)
        self._spooled += len(data)
        if self._spooled >= part_bytes(len(self._parts) + 1):
            self._upload_part()

    def _upload_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._store.call("create_multipart_upload", Key=self._s3_key)["UploadId"]
        number = len(self._parts) + 1
        self._spool.seek(0)
        response = self._store.call("upload_part", Key=self._s3_key, UploadId=self._upload_id, PartNumber=number,
                                    Body=self._spool)
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self._spool.seek(0)
        self._spool.truncate()
        self._spooled = 0

    def commit(self) -> Written:
        try:
            if self._upload_id is None:
                self._spool.seek(0)
                self._store.call("put_object", Key=self._s3_key, Body=self._spool)
            else:
                if self._spooled:
                    self._upload_part()
                self._store.call("complete_multipart_upload", Key=self._s3_key, UploadId=self._upload_id,
                                 MultipartUpload={"Parts": self._parts})
        finally:
            self._spool.close()
        return self.written()

    def abort(self) -> None:
        self._spool.close()
        if self._upload_id is not None:
            try:
                self._store.call("abort_multipart_upload", Key=self._s3_key, UploadId=self._upload_id)
            except Exception:  # noqa: BLE001 - best effort; the failure being handled matters more
                pass


# --- a local directory ---------------------------------------------------------------------------


class DirStore(Store):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def check(self, *, create: bool = False) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise ReplicatorError(f"{self.root} is not a directory: {URL_HELP}")
        if create:
            try:
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                probe_directory(self.root)
            except OSError as exc:
                raise ReplicatorError(f"cannot write into the directory {self.root}: {exc.strerror}; choose a "
                                      "directory you can write, or fix its permissions") from None
        elif not self.root.is_dir():
            raise ReplicatorError(f"directory {self.root} does not exist")

    def size(self, key: str) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def keys(self, folder: str) -> list[str]:
        base = self._path(folder)
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def read(self, key: str) -> bytes:
        with self.open_read(key) as stream:
            return stream.read()

    def open_read(self, key: str) -> Any:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ReplicatorError(f"{self.url_of(key)} does not exist") from None

    def write(self, key: str, data: bytes) -> None:
        writer = self.open_write(key)
        writer.write(data)
        writer.commit()

    def open_write(self, key: str) -> ObjectWriter:
        return _FileWriter(self._path(key), key)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)


class _FileWriter(ObjectWriter):
    """Writes ``.<name>.partial-<random>`` beside the file, flushed to disk and renamed at commit."""

    def __init__(self, path: Path, key: str) -> None:
        super().__init__(key)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._path = path
        self._tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
        self._file = os.fdopen(private_file(self._tmp), "wb")

    def _put(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> Written:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self._path)
        return self.written()

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


# --- URLs ----------------------------------------------------------------------------------------


def open_store(url: str, *, region: str, s3_endpoint: str | None = None,
               s3_credentials: Credentials = DEFAULT) -> Store:
    """The store at ``url``: ``s3://bucket[/prefix]``, ``file:///path`` or a directory path."""
    text = url.strip()
    if not text:
        raise ReplicatorError(f"the backup URL is empty: {URL_HELP}")
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        bucket = parsed.netloc
        if not _BUCKET.match(bucket):
            raise ReplicatorError(f"{url!r} does not name a valid S3 bucket: {URL_HELP}")
        return S3Store(clients.s3(region, s3_endpoint, side="s3", credentials=s3_credentials), bucket, parsed.path, s3_endpoint)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path:
            raise ReplicatorError(f"{url!r} is not a local file URL: write file:///absolute/path")
        return DirStore(Path(parsed.path))
    if "://" in text or (parsed.scheme and len(parsed.scheme) > 1):
        raise ReplicatorError(f"{url!r} is not a backup location: {URL_HELP}")
    return DirStore(Path(text))


def open_job(url: str, *, region: str, s3_endpoint: str | None = None,
             s3_credentials: Credentials = DEFAULT) -> tuple[Store, str]:
    """``URL/<name>`` (a backup's jobid, or a DynamoDB export's folder) as (the store at URL, name)."""
    text = url.strip().rstrip("/")
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        parent, _, name = parsed.path.strip("/").rpartition("/")
        head = f"s3://{parsed.netloc}/{parent}"
    elif parsed.scheme == "file":
        path = Path(parsed.path)
        head, name = f"file://{parsed.netloc}{path.parent}", path.name
    else:
        head, name = str(Path(text).parent), Path(text).name
    if not name or name in (".", ".."):
        raise ReplicatorError(f"{url!r} names no backup: give URL/<jobid> (or a DynamoDB export's "
                              "URL/AWSDynamoDB/<export id>)")
    return open_store(head, region=region, s3_endpoint=s3_endpoint, s3_credentials=s3_credentials), name
