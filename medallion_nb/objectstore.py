"""A lake on object storage: ``lake: s3://bucket/prefix``, and the operations the toolkit needs there.

A local lake is a folder (a :class:`~pathlib.Path`); a lake on object storage is an
:class:`ObjectPath`: the bucket and key prefix, plus the :class:`StoreSettings` that
say how to reach it. An ``ObjectPath`` joins like a path (``lake / "silver" / "orders"``)
and offers the few file operations the lake needs (read, write, list, delete),
through three clients that all read the same settings:

- delta-rs (the Delta log) gets them as ``storage_options`` (:meth:`StoreSettings.delta_options`);
- `obstore <https://developmentseed.org/obstore/>`_ (Rust's ``object_store``, the library
  delta-rs itself uses) lists, reads, writes and deletes objects, including the
  conditional writes the writer lease needs (``If-None-Match`` / ``If-Match``);
- DuckDB reads and writes Parquet through an fsspec filesystem around Arrow's
  ``S3FileSystem`` (:func:`register_filesystem`), because DuckDB 2.x has no S3 reader
  of its own here (its ``httpfs`` extension is published for 1.5.x only).

Settings come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``), overridden
by the ``storage:`` section of ``medallion.yaml``, whose values may be ``${NAME}``
secret references, resolved when a client is made and never written anywhere.
"""

from __future__ import annotations

import functools
import os
import posixpath
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from medallion_nb.errors import LakeError
from medallion_nb.secrets import SecretText

SCHEMES = ("s3",)
# medallion.yaml storage: key -> (environment variable, delta-rs / object_store option)
OPTIONS = {
    "endpoint": "AWS_ENDPOINT_URL",
    "region": "AWS_REGION",
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "session_token": "AWS_SESSION_TOKEN",
    "allow_http": "AWS_ALLOW_HTTP",
}
# Options that are secrets: in medallion.yaml only as ${NAME} references.
SECRET_OPTIONS = ("access_key_id", "secret_access_key", "session_token")
_ENV_FALLBACKS = {"AWS_REGION": ("AWS_DEFAULT_REGION",), "AWS_ENDPOINT_URL": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT")}


class ObjectExists(LakeError):
    """A conditional create found the object already there."""


class ObjectChanged(LakeError):
    """A conditional update found the object changed (or gone) since it was read."""


def is_uri(text: str) -> bool:
    """Whether ``text`` names a location on a store (``scheme://...``) rather than a local path."""
    return "://" in str(text)


def is_remote(location: Any) -> bool:
    """Whether ``location`` is on object storage."""
    return isinstance(location, ObjectPath)


@dataclass(frozen=True)
class StoreSettings:
    """How to reach one bucket: the scheme, the bucket, and the ``storage:`` options of medallion.yaml."""

    scheme: str
    bucket: str
    options: tuple[tuple[str, str | SecretText], ...] = ()

    def resolved(self) -> dict[str, str]:
        """Environment variable name -> value: the environment, overridden by the options (secrets read now).

        Raises:
            SecretError: an option's ``${NAME}`` variable is not set.
        """
        out = {}
        for variable in OPTIONS.values():
            value = os.environ.get(variable) or next(
                (os.environ[v] for v in _ENV_FALLBACKS.get(variable, ()) if os.environ.get(v)), None)
            if value:
                out[variable] = value
        for key, value in self.options:
            out[OPTIONS[key]] = value.resolve() if isinstance(value, SecretText) else str(value)
        endpoint = out.get("AWS_ENDPOINT_URL", "")
        if endpoint.startswith("http://") and "AWS_ALLOW_HTTP" not in out:
            out["AWS_ALLOW_HTTP"] = "true"  # an http:// endpoint given on purpose (a local MinIO, a test server)
        return out

    def delta_options(self) -> dict[str, str]:
        """``storage_options`` for delta-rs."""
        return self.resolved()

    def describe(self) -> str:
        """Where the settings point, without any secret (for messages)."""
        endpoint = self.resolved().get("AWS_ENDPOINT_URL")
        return f"{self.scheme}://{self.bucket}" + (f" at {endpoint}" if endpoint else "")


@dataclass(frozen=True)
class ObjectInfo:
    """One object found by a listing."""

    path: ObjectPath
    size: int
    modified: datetime


@dataclass(frozen=True)
class ObjectPath:
    """A key (or key prefix, a "folder") in a bucket: joins like a path, reads and writes objects.

    ``str()`` is the URI (``s3://bucket/key``), as delta-rs and DuckDB take it.
    """

    settings: StoreSettings = field(repr=False)
    key: str = ""

    # -- naming ------------------------------------------------------------
    @classmethod
    def parse(cls, uri: str, options: Mapping[str, str | SecretText] | None = None) -> ObjectPath:
        """``s3://bucket/prefix`` as an ObjectPath.

        Raises:
            LakeError: not a URI of a supported store, or no bucket.
        """
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme not in SCHEMES:
            raise LakeError(f"{uri!r} is not on a supported object store (supported: "
                            f"{', '.join(s + '://' for s in SCHEMES)})")
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise LakeError(f"{uri!r} names no bucket (expected {scheme}://bucket/prefix)")
        _require()
        settings = StoreSettings(scheme, bucket, tuple(sorted((options or {}).items())))
        return cls(settings, _clean(key))

    @property
    def uri(self) -> str:
        base = f"{self.settings.scheme}://{self.settings.bucket}"
        return f"{base}/{self.key}" if self.key else base

    def __str__(self) -> str:
        return self.uri

    def __fspath__(self) -> str:  # pragma: no cover - guards against treating it as a local path
        raise TypeError(f"{self.uri} is on object storage, not a local path")

    def __truediv__(self, part: str | PurePosixPath) -> ObjectPath:
        return ObjectPath(self.settings, _clean(posixpath.join(self.key, str(part))) if self.key else _clean(str(part)))

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.settings, posixpath.dirname(self.key))

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.key).suffix

    def at(self, uri: str) -> ObjectPath:
        """Another object of the same bucket, by URI (as DuckDB or delta-rs report it).

        Raises:
            LakeError: the URI is in another bucket or store.
        """
        prefix = f"{self.settings.scheme}://{self.settings.bucket}/"
        if not uri.startswith(prefix):
            raise LakeError(f"{uri} is not in {prefix}")
        return ObjectPath(self.settings, _clean(uri[len(prefix):]))

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        return PurePosixPath(self.key).relative_to(other.key) if other.key else PurePosixPath(self.key)

    def is_relative_to(self, other: ObjectPath) -> bool:
        return self.settings.bucket == other.settings.bucket and (
            not other.key or self.key == other.key or self.key.startswith(other.key + "/"))

    # -- objects -----------------------------------------------------------
    def read_bytes(self) -> bytes | None:
        """The object's content, or None when there is no such object.

        Raises:
            LakeError: the store refused or failed (cause and location named).
        """
        found = self.read_versioned()
        return None if found is None else found[0]

    def read_versioned(self) -> tuple[bytes, str] | None:
        """The object's content and its ETag (for a conditional update), or None when it does not exist."""
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            result = obstore.get(_store(self.settings), self.key)
            return bytes(result.bytes()), str(result.meta.get("e_tag") or "")
        except (NotFoundError, FileNotFoundError):
            return None
        except Exception as exc:  # obstore's errors have no common base besides Exception
            raise _error(exc, self, "cannot read") from exc

    def write_bytes(self, data: bytes, *, create: bool = False, etag: str | None = None) -> str:
        """Put the object in one request (atomic: readers see the old content or the new); returns its ETag.

        ``create=True`` writes only if no such object exists (``If-None-Match: *``);
        ``etag`` only if the object is still the one read with that ETag (``If-Match``).

        Raises:
            ObjectExists: ``create`` and the object exists.
            ObjectChanged: ``etag`` and the object changed or is gone.
            LakeError: the store refused or failed.
        """
        import obstore
        from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError

        mode: Any = "create" if create else ({"e_tag": etag} if etag else "overwrite")
        try:
            result = obstore.put(_store(self.settings), self.key, data, mode=mode)
        except AlreadyExistsError as exc:
            raise ObjectExists(f"{self.uri} already exists") from exc
        except (PreconditionError, NotFoundError) as exc:
            raise ObjectChanged(f"{self.uri} changed since it was read") from exc
        except Exception as exc:
            raise _error(exc, self, "cannot write") from exc
        return str(result.get("e_tag") or "")

    def upload(self, local: str | os.PathLike[str]) -> None:
        """Copy a local file to this object (multipart for large files).

        Raises:
            LakeError: the store refused or failed.
        """
        import obstore

        try:
            with open(local, "rb") as fh:
                obstore.put(_store(self.settings), self.key, fh)
        except OSError:
            raise
        except Exception as exc:
            raise _error(exc, self, "cannot upload") from exc

    def exists(self) -> bool:
        """Whether an object of this exact key exists."""
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            obstore.head(_store(self.settings), self.key)
            return True
        except (NotFoundError, FileNotFoundError):
            return False
        except Exception as exc:
            raise _error(exc, self, "cannot look at") from exc

    is_file = exists

    def is_dir(self) -> bool:
        """Whether any object lies under this prefix."""
        import obstore

        try:
            for chunk in obstore.list(_store(self.settings), self.key + "/" if self.key else None, chunk_size=1):
                return bool(chunk)
        except Exception as exc:
            raise _error(exc, self, "cannot list") from exc
        return False

    def unlink(self, missing_ok: bool = True) -> None:
        """Delete the object (deleting an object that is not there is not an error on object stores)."""
        delete_objects([self])

    def iterdir(self) -> list[ObjectPath]:
        """The objects and "sub-folders" (common prefixes) directly under this prefix."""
        import obstore

        try:
            found = obstore.list_with_delimiter(_store(self.settings), self.key + "/" if self.key else None)
        except Exception as exc:
            raise _error(exc, self, "cannot list") from exc
        prefixes = [ObjectPath(self.settings, _clean(p)) for p in found["common_prefixes"]]
        # A key ending in "/" is a "directory marker" some tools create; it is not an object of the lake.
        return prefixes + [ObjectPath(self.settings, _clean(o["path"])) for o in found["objects"]
                           if not o["path"].endswith("/")]

    def glob(self, pattern: str) -> list[ObjectPath]:
        """Objects directly under this prefix whose name matches ``pattern`` (``*.json``)."""
        import fnmatch

        return [p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern)]

    def walk(self) -> list[ObjectInfo]:
        """Every object under this prefix (recursively), with size and modification time."""
        return [info for info in self._listing() if not info.path.key.endswith("/")]

    def _listing(self) -> list[ObjectInfo]:
        import obstore

        out = []
        try:
            for chunk in obstore.list(_store(self.settings), self.key + "/" if self.key else None, chunk_size=1000):
                out += [ObjectInfo(ObjectPath(self.settings, _raw_key(o["path"])), int(o["size"]), o["last_modified"])
                        for o in chunk]
        except Exception as exc:
            raise _error(exc, self, "cannot list") from exc
        return out

    def rmtree(self) -> None:
        """Delete every object under this prefix (directory markers too)."""
        delete_objects(info.path for info in self._listing())

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        """Nothing to do: object stores have no folders."""


def delete_objects(paths: Iterable[ObjectPath]) -> None:
    """Delete objects (in batches; objects already gone are fine).

    Raises:
        LakeError: the store refused or failed.
    """
    import obstore

    by_settings: dict[StoreSettings, list[str]] = {}
    for path in paths:
        by_settings.setdefault(path.settings, []).append(path.key)
    for settings, keys in by_settings.items():
        for start in range(0, len(keys), 1000):
            try:
                obstore.delete(_store(settings), keys[start:start + 1000])
            except FileNotFoundError:
                continue
            except Exception as exc:
                raise _error(exc, ObjectPath(settings, keys[start]), "cannot delete") from exc


def missing(paths: Iterable[ObjectPath]) -> list[ObjectPath]:
    """Those of ``paths`` that do not exist, with one listing per folder instead of one request per object."""
    by_folder: dict[ObjectPath, list[ObjectPath]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, []).append(path)
    gone = []
    for folder, wanted in by_folder.items():
        present = {p.key for p in folder.iterdir()}
        gone += [p for p in wanted if p.key not in present]
    return gone


# -- clients ----------------------------------------------------------------

_lock = threading.Lock()


def _store(settings: StoreSettings) -> Any:
    return _make_store(settings.scheme, settings.bucket, tuple(sorted(settings.resolved().items())))


@functools.lru_cache(maxsize=32)
def _make_store(scheme: str, bucket: str, resolved: tuple[tuple[str, str], ...]) -> Any:
    from obstore.store import S3Store

    values = dict(resolved)
    config = {key: values[var] for key, var in OPTIONS.items() if key != "allow_http" and var in values}
    client = {"allow_http": values.get("AWS_ALLOW_HTTP", "false").lower() == "true"}
    # The environment was read into `values` already; from_env=False would ignore AWS_* we did not map.
    return S3Store(bucket, config=config, client_options=client)


def arrow_filesystem(settings: StoreSettings) -> Any:
    """Arrow's filesystem for the bucket (what DuckDB reads and writes Parquet through)."""
    return _make_arrow(settings.scheme, tuple(sorted(settings.resolved().items())))


@functools.lru_cache(maxsize=32)
def _make_arrow(scheme: str, resolved: tuple[tuple[str, str], ...]) -> Any:
    from pyarrow import fs

    values = dict(resolved)
    kwargs: dict[str, Any] = {}
    endpoint = values.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_override"] = endpoint
        kwargs["scheme"] = "http" if endpoint.startswith("http://") else "https"
    if "AWS_ACCESS_KEY_ID" in values:
        kwargs["access_key"] = values["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = values.get("AWS_SECRET_ACCESS_KEY")
        kwargs["session_token"] = values.get("AWS_SESSION_TOKEN")
    if "AWS_REGION" in values:
        kwargs["region"] = values["AWS_REGION"]
    return fs.S3FileSystem(**kwargs)


def register_filesystem(con: Any, location: Any, *, read_only: bool = False) -> None:
    """Let DuckDB connection ``con`` read and write ``s3://`` paths of ``location`` (nothing for a local lake).

    ``read_only`` refuses every write and delete through it (the explorer's sandbox).
    """
    if not isinstance(location, ObjectPath):
        return
    from fsspec.implementations.arrow import ArrowFSWrapper

    class ArrowS3(ArrowFSWrapper):
        protocol = location.settings.scheme

        # Object stores have no folders; Arrow would create empty "directory marker" objects.
        def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
            self._writing(path)

        def makedirs(self, path: str, exist_ok: bool = False) -> None:
            self._writing(path)

        def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
            if set(mode) & set("wax+"):
                self._writing(path)
            return super()._open(path, mode, *args, **kwargs)

        def rm(self, path: Any, *args: Any, **kwargs: Any) -> None:
            self._writing(str(path))
            super().rm(path, *args, **kwargs)

        def _writing(self, path: str) -> None:
            if read_only:
                raise PermissionError(f"{path}: this connection's object store is read-only")

    with _lock:
        con.register_filesystem(ArrowS3(arrow_filesystem(location.settings)))


def _require() -> None:
    import importlib.util

    absent = [name for name in ("obstore", "fsspec") if importlib.util.find_spec(name) is None]
    if absent:
        raise LakeError(f"a lake on object storage needs {' and '.join(absent)}, which are not installed",
                        hint='pip install "medallion_nb[s3]"')


def _raw_key(key: str) -> str:
    # Directory markers keep their "/" so that they are told apart (and deleted as they are).
    return key if key.endswith("/") else _clean(key)


def _clean(key: str) -> str:
    key = posixpath.normpath(key.strip("/")) if key.strip("/") else ""
    return "" if key == "." else key


def _error(exc: BaseException, path: ObjectPath, action: str) -> LakeError:
    from medallion_nb.oserrors import clean_message

    text = clean_message(str(exc), 300)
    kind = type(exc).__name__
    cause = {"PermissionDeniedError": "permission denied", "UnauthenticatedError": "not authenticated"}.get(kind)
    lead = f"{cause}: {path.uri}" if cause else f"{action} {path.uri}"
    return LakeError(f"{lead} ({path.settings.describe()}): {text}",
                     hint="check the lake's credentials and endpoint (AWS_* environment variables or the "
                          "storage: section of medallion.yaml)")
