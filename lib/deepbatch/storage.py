"""File listing and the two file stores the stages and the commit protocol use.

``HadoopStore`` goes through Hadoop's FileSystem API on the driver's JVM, so the
same code reaches ``hdfs://`` and ``s3a://``. ``LocalStore`` does the same few
operations with the operating system's calls for local data roots: it needs no
Spark session (the commit protocol, locks and recovery run without one) and
gives true exclusive creation (``O_EXCL``) for lock files.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


def expand_braces(pattern: str) -> list[str]:
    """Hadoop glob braces to fnmatch patterns: ``*.{png,jpg}`` -> ``['*.png', '*.jpg']``."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    head, tail = pattern[: m.start()], pattern[m.end() :]
    return [p for alt in m.group(1).split(",") for p in expand_braces(head + alt + tail)]


@dataclass(frozen=True)
class FileEntry:
    path: str  # as Spark's file sources spell it: file:/abs/path, or scheme://authority/path
    size: int
    mtime_ms: int
    # "<REASON>: detail" when the entry must not be read (a link out of the landing zone, a FIFO, ...): acquire lands
    # it as one record with that reason and never opens it
    refused: str = ""


def _arrow_fs(root: str) -> tuple[Any, str, str]:
    """(pyarrow filesystem, path inside it, prefix that turns a listed path back into Spark's spelling)."""
    from pyarrow import fs as pafs

    if "://" in root:
        filesystem, path = pafs.FileSystem.from_uri(root.replace("s3a://", "s3://", 1))
        scheme, rest = root.split("://", 1)
        prefix = "file:" if scheme == "file" else f"{scheme}://{rest.split('/', 1)[0]}"
        if scheme == "file":
            path = "/" + path.lstrip("/")
        return filesystem, path, prefix
    if root.startswith("file:"):
        return pafs.LocalFileSystem(), root[len("file:") :], "file:"
    return pafs.LocalFileSystem(), os.path.abspath(root), "file:"


def _local_entry(path: str, within: str) -> FileEntry:
    """A listed local file; a symbolic link is read only when its target lies inside ``within`` (the landing root)."""
    name = path.rsplit("/", 1)[-1]
    st = os.lstat(path)
    if os.path.islink(path):
        target = os.path.realpath(path)
        if not os.path.exists(target):
            return FileEntry("file:" + path, st.st_size, st.st_mtime_ns // 1_000_000, f"UNREADABLE_FILE: {name} is a link to a missing target")
        if os.path.commonpath([target, within]) != within:
            return FileEntry("file:" + path, st.st_size, st.st_mtime_ns // 1_000_000,
                             f"UNSUPPORTED_FORMAT: link outside the landing zone: {name} points outside {within}; its target is not read")
        if os.path.isdir(target):
            return FileEntry("file:" + path, st.st_size, st.st_mtime_ns // 1_000_000,
                             f"UNSUPPORTED_FORMAT: {name} is a link to a folder, which is not followed: land its files, or link each file")
        st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        return FileEntry("file:" + path, 0, st.st_mtime_ns // 1_000_000, f"UNSUPPORTED_FORMAT: {name} is not a regular file (a FIFO, socket or device)")
    return FileEntry("file:" + path, st.st_size, st.st_mtime_ns // 1_000_000)


def _list_local(root: str, within: str) -> list[FileEntry]:
    """Every file under a local root without following folder links (they cannot loop or escape); a folder that cannot
    be listed is one refused entry, never silently left out."""
    within = os.path.realpath(within)
    out: list[FileEntry] = []

    def unlistable(e: OSError) -> None:
        if e.filename and os.path.abspath(e.filename) != root:
            out.append(FileEntry("file:" + str(e.filename), 0, 0, f"UNREADABLE_FILE: folder {e.filename} cannot be listed: {e.strerror}"))

    for folder, dirs, files in os.walk(root, onerror=unlistable):
        out.extend(_local_entry(os.path.join(folder, d), within) for d in dirs if os.path.islink(os.path.join(folder, d)))
        out.extend(_local_entry(os.path.join(folder, f), within) for f in files)
    return sorted(out, key=lambda f: f.path)


def list_files(root: str, within: str | None = None) -> list[FileEntry]:
    """Every file under root (local path or URI), recursively, sorted by path; [] if root is absent. Local links are
    followed only to files inside ``within`` (default: root); see :func:`_local_entry`."""
    from pyarrow import fs as pafs

    filesystem, path, prefix = _arrow_fs(root)
    if prefix == "file:":
        if not os.path.isdir(path):
            return [_local_entry(path, within or os.path.dirname(path))] if os.path.isfile(path) else []
        return _list_local(path.rstrip("/") or "/", _arrow_fs(within)[1] if within else path)
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return []
    return sorted((
        FileEntry(prefix + ("/" + i.path.lstrip("/") if prefix != "file:" else i.path), int(i.size or 0),
                  int(i.mtime_ns // 1_000_000) if i.mtime_ns else 0)
        for i in infos
        if i.type == pafs.FileType.File
    ), key=lambda f: f.path)


def listing_base(root: str) -> str:
    """The prefix every path list_files(root) returns starts with (root as Spark spells it)."""
    _, path, prefix = _arrow_fs(root)
    return prefix + ("/" + path.lstrip("/") if prefix != "file:" else path)


def relative_path(listed: str, base: str) -> str:
    """A path as list_files spells it, relative to its root's listing_base."""
    return listed[len(base) :].lstrip("/") if listed.startswith(base) else listed.rsplit("/", 1)[-1]


def matches(path: str, glob: str) -> bool:
    """Whether a file's name matches a Hadoop-style name glob (``*.{png,jpg}``), ignoring case."""
    name = path.rsplit("/", 1)[-1].lower()
    return any(fnmatch.fnmatchcase(name, p.lower()) for p in expand_braces(glob))


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes (local path, ``file:`` or any pyarrow-readable URI), streamed."""
    filesystem, inner, _ = _arrow_fs(path)
    h = hashlib.sha256()
    with filesystem.open_input_stream(inner, compression=None) as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_head(path: str, n: int = 65536) -> bytes:
    """The first ``n`` bytes of a file's content (a CSV header), decompressed when its name says so (``.gz``, ``.bz2``)."""
    filesystem, inner, _ = _arrow_fs(path)
    with filesystem.open_input_stream(inner, compression="detect") as f:
        return bytes(f.read(n))


# Compressed record files Spark's readers (Hadoop's codecs, by lower-case suffix) decompress, and Python's name for each.
COMPRESSED_SUFFIXES = {".gz": "gzip", ".bz2": "bz2"}


_MEMBER_MAGIC = {"gzip": b"\x1f\x8b", "bz2": b"BZh"}


def _decompressor(codec: str) -> Any:
    import bz2
    import zlib

    return zlib.decompressobj(16 + zlib.MAX_WBITS) if codec == "gzip" else bz2.BZ2Decompressor()


def _check_stream(raw: Any, codec: str) -> None:
    """Decompress to the end as Hadoop's codecs read: members one after another, nothing else. zlib data named .gz,
    a cut stream and bytes after the last member (zeros, junk) raise, where Python's gzip module and pyarrow's
    decoder let some pass."""
    d, magic, pending = _decompressor(codec), _MEMBER_MAGIC[codec], b""
    while True:
        chunk = pending or raw.read(1 << 20)
        pending = b""
        if not chunk:
            break
        d.decompress(chunk)
        while d.eof:
            rest = d.unused_data
            if not rest:
                rest = raw.read(len(magic))
                if not rest:
                    return
            if not rest.startswith(magic[: len(rest)]):
                raise ValueError(f"{len(rest)}+ bytes after the end of the {codec} stream that start no new member")
            d = _decompressor(codec)
            d.decompress(rest)
    if not d.eof:
        raise EOFError(f"the {codec} stream ends before its end marker (the file is cut short)")


def compression_problem(path: str) -> str | None:
    """Why a compressed file (by its name) does not decompress to its end: not that format, truncated, corrupt.
    None when it does, or when its name says it is not compressed. Never raises."""
    codec = next((c for suffix, c in COMPRESSED_SUFFIXES.items() if path.endswith(suffix)), None)
    if codec is None:
        return None
    try:
        filesystem, inner, _ = _arrow_fs(path)
        with filesystem.open_input_stream(inner, compression=None) as raw:
            _check_stream(raw, codec)
    except Exception as e:  # noqa: BLE001 - whatever the decompressor says is the file's reason
        return f"{path.rsplit('/', 1)[-1]} is not a complete {codec} stream: {type(e).__name__}: {e}"[:300]
    return None


CHECKSUMS = "_checksums.json"  # in each published folder: every file's BLAKE2b, written by its commit
COMMIT_MARKER = "_commit.json"  # in each published folder: the commit that published it (deepbatch.commit.protocol)


def corrupt_files(folder: str) -> list[str]:
    """The files of a published folder (a model) whose bytes changed or that went missing since its commit, each named;
    [] when they all match, or when the folder has no checksums (published before deepbatch recorded them)."""
    try:
        text = Path(local_path(folder)).joinpath(CHECKSUMS).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as e:
        return [f"{folder}/{CHECKSUMS} cannot be read: {e}"]
    try:
        recorded = json.loads(text)
    except ValueError:
        return [f"{folder}/{CHECKSUMS} is not valid JSON: the folder cannot be verified"]
    return digest_problems(folder, recorded, (COMMIT_MARKER, CHECKSUMS), added=False)


def file_digest(path: str) -> str:
    """BLAKE2b-128 of a file's bytes (local path, ``file:`` or any pyarrow-readable URI), streamed: ``blake2b:<hex>``."""
    filesystem, inner, _ = _arrow_fs(path)
    h = hashlib.blake2b(digest_size=16)
    with filesystem.open_input_stream(inner, compression=None) as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return "blake2b:" + h.hexdigest()


def text_digest(text: str) -> str:
    return "blake2b:" + hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def tree_digests(root: str, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under a folder by its path relative to the folder, with its :func:`file_digest` (hashed on a few threads:
    hashlib releases the GIL); ``skip``: names left out."""
    from concurrent.futures import ThreadPoolExecutor

    base = listing_base(root)
    files = [(relative_path(f.path, base), f.path) for f in list_files(root)]
    files = [(rel, path) for rel, path in files if rel not in skip]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return dict(zip([rel for rel, _ in files], pool.map(file_digest, [path for _, path in files]), strict=True))


def digest_problems(root: str, recorded: dict[str, str], skip: tuple[str, ...] = (), added: bool = True) -> list[str]:
    """The files under ``root`` whose bytes differ from ``recorded`` (a folder's _checksums.json), named; [] when all match.
    ``added``: also name files the commit did not record."""
    now = tree_digests(root, skip)
    changed = [f"{root}/{name} does not match its checksum (recorded {want}, now {now[name]})"
               for name, want in sorted(recorded.items()) if name in now and now[name] != want]
    gone = [f"{root}/{name} is missing (its checksum was recorded)" for name in sorted(set(recorded) - set(now))]
    extra = [f"{root}/{name} was added after the commit" for name in sorted(set(now) - set(recorded))] if added else []
    return changed + gone + extra


def parquet_columns(path: str) -> dict[str, str]:
    """A Parquet file's columns and their Arrow types, from its footer alone."""
    import pyarrow.parquet as pq

    with open_input_file(path) as f:
        schema = pq.read_schema(f)
    return {name: str(schema.field(name).type) for name in schema.names}


def path_exists(path: str) -> bool:
    """Whether a file or folder exists (local path or any pyarrow-readable URI; no Spark needed)."""
    from pyarrow import fs as pafs

    filesystem, inner, _ = _arrow_fs(path)
    return bool(filesystem.get_file_info(inner).type != pafs.FileType.NotFound)


def open_text(path: str) -> Any:
    """A file as UTF-8 text (undecodable bytes replaced), decompressed when its name says so (``.gz``, ``.bz2``)."""
    import io

    filesystem, inner, _ = _arrow_fs(path)
    return io.TextIOWrapper(filesystem.open_input_stream(inner, compression="detect"), encoding="utf-8", errors="replace", newline="")


def open_input_file(path: str) -> Any:
    """A random-access handle on a file (Parquet footers)."""
    filesystem, inner, _ = _arrow_fs(path)
    return filesystem.open_input_file(inner)


def read_bytes(path: str) -> bytes:
    """A whole file's bytes (local path, ``file:`` or any pyarrow-readable URI)."""
    filesystem, inner, _ = _arrow_fs(path)
    with filesystem.open_input_stream(inner, compression=None) as f:
        return bytes(f.read())


def fingerprint(root: str) -> str:
    """A hash of every file's path (relative to root), size and modification time under root: it changes
    when the input does, and not when the same files are copied, with their times, to another root."""
    h, base = hashlib.sha256(), listing_base(root)
    for f in list_files(root):
        h.update(f"{relative_path(f.path, base)}\t{f.size}\t{f.mtime_ms}\n".encode())
    return h.hexdigest()[:16]


class FileStore(Protocol):
    """The operations stages, commits, locks and recovery need from a file system."""

    def exists(self, path: str) -> bool: ...
    def delete(self, path: str) -> None: ...
    def mkdirs(self, path: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def list_dirs(self, path: str) -> list[str]: ...
    def list_names(self, path: str) -> list[str]: ...
    def write_bytes(self, path: str, data: bytes) -> None: ...
    def write_text(self, path: str, text: str) -> None: ...
    def read_text(self, path: str) -> str: ...
    def create_exclusive(self, path: str, text: str) -> bool: ...
    def exchange(self, a: str, b: str) -> bool: ...
    def tree_size(self, path: str) -> tuple[int, int]: ...


def is_local(root: str) -> bool:
    return "://" not in root or root.startswith("file://")


def local_path(path: str) -> str:
    """A local path from a plain path, ``file:/x`` or ``file:///x``."""
    if path.startswith("file://"):
        return path[len("file://") :] or "/"
    if path.startswith("file:"):
        return path[len("file:") :]
    return path


def _renameat2() -> Any:
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


class LocalStore:
    """FileStore over the local file system (os calls; no Spark needed)."""

    _RENAME_EXCHANGE = 2
    _AT_FDCWD = -100

    def exists(self, path: str) -> bool:
        return os.path.lexists(local_path(path))

    def delete(self, path: str) -> None:
        p = local_path(path)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        elif os.path.lexists(p):
            os.remove(p)

    def mkdirs(self, path: str) -> None:
        os.makedirs(local_path(path), exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        """Atomic rename; refuses an existing destination (a rename into it would nest the folders)."""
        s, d = local_path(src), local_path(dst)
        if os.path.lexists(d):
            raise FileExistsError(f"cannot move {src} to {dst}: the destination exists")
        os.makedirs(os.path.dirname(d) or ".", exist_ok=True)
        os.rename(s, d)

    def exchange(self, a: str, b: str) -> bool:
        """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE).

        False where the OS or file system cannot (then callers move aside and in, two renames)."""
        import ctypes

        fn = _renameat2()
        if fn is None:
            return False
        if fn(self._AT_FDCWD, os.fsencode(local_path(a)), self._AT_FDCWD, os.fsencode(local_path(b)), self._RENAME_EXCHANGE) == 0:
            return True
        err = ctypes.get_errno()
        if err in (22, 38, 95, 18):  # EINVAL, ENOSYS, EOPNOTSUPP, EXDEV: not supported here
            return False
        raise OSError(err, f"could not exchange {a} and {b}: {os.strerror(err)}")

    def list_dirs(self, path: str) -> list[str]:
        p = local_path(path)
        return sorted(n for n in os.listdir(p) if os.path.isdir(os.path.join(p, n))) if os.path.isdir(p) else []

    def list_names(self, path: str) -> list[str]:
        p = local_path(path)
        return sorted(os.listdir(p)) if os.path.isdir(p) else []

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write beside, fsync, then rename over: a reader sees the old file or the new one."""
        p = Path(local_path(path))
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)

    def write_text(self, path: str, text: str) -> None:
        self.write_bytes(path, text.encode("utf-8"))

    def read_text(self, path: str) -> str:
        return Path(local_path(path)).read_text(encoding="utf-8")

    def create_exclusive(self, path: str, text: str) -> bool:
        """Create a file only if none exists; False when another writer got there first. The text is written and synced
        under a temporary name, then hard-linked into place (link fails if the name exists): a reader never sees the
        file empty or half-written. Where the file system has no hard links, O_EXCL creation, then the write."""
        p = local_path(path)
        os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
        tmp = os.path.join(os.path.dirname(p) or ".", f".{os.path.basename(p)}.new-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, p)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network and FUSE file systems)
            return self._create_excl(p, text)
        finally:
            os.unlink(tmp)

    @staticmethod
    def _create_excl(p: str, text: str) -> bool:
        try:
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return True

    def tree_size(self, path: str) -> tuple[int, int]:
        """(files, bytes) under path: a file counts as itself."""
        p = local_path(path)
        if os.path.isfile(p):
            return 1, os.path.getsize(p)
        files = total = 0
        for d, _, names in os.walk(p):
            for n in names:
                files += 1
                total += os.path.getsize(os.path.join(d, n))
        return files, total


class HadoopStore:
    """FileStore over Hadoop's FileSystem on the driver's JVM (hdfs://, s3a://, any Hadoop scheme)."""

    def __init__(self, spark: Any):
        self._spark = spark
        self._jvm: Any = spark._jvm
        self._hconf = spark._jsc.hadoopConfiguration()

    def _path(self, path: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def _fs(self, path: str) -> Any:
        return self._path(path).getFileSystem(self._hconf)

    def exists(self, path: str) -> bool:
        return bool(self._fs(path).exists(self._path(path)))

    def delete(self, path: str) -> None:
        if self.exists(path):
            self._fs(path).delete(self._path(path), True)

    def mkdirs(self, path: str) -> None:
        self._fs(path).mkdirs(self._path(path))

    def rename(self, src: str, dst: str) -> None:
        """Refuses an existing destination: Hadoop would move src *into* it (run_date=D/run_date=D)."""
        if self.exists(dst):
            raise FileExistsError(f"cannot move {src} to {dst}: the destination exists")
        parent = self._path(dst).getParent()
        self._fs(dst).mkdirs(parent)
        if not self._fs(src).rename(self._path(src), self._path(dst)):
            raise OSError(f"could not rename {src} to {dst}; check permissions on {parent}")

    def list_dirs(self, path: str) -> list[str]:
        if not self.exists(path):
            return []
        statuses = self._fs(path).listStatus(self._path(path))
        return sorted(str(s.getPath().getName()) for s in statuses if s.isDirectory())

    def list_names(self, path: str) -> list[str]:
        if not self.exists(path):
            return []
        return sorted(str(s.getPath().getName()) for s in self._fs(path).listStatus(self._path(path)))

    def write_bytes(self, path: str, data: bytes) -> None:
        """One create-and-close: a single PUT on object stores; on HDFS visible once closed."""
        out = self._fs(path).create(self._path(path), True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def write_text(self, path: str, text: str) -> None:
        self.write_bytes(path, text.encode("utf-8"))

    def read_text(self, path: str) -> str:
        fs = self._fs(path)
        p = self._path(path)
        length = int(fs.getFileStatus(p).getLen())
        stream = fs.open(p)
        try:
            buf = self._jvm.java.io.ByteArrayOutputStream()
            self._jvm.org.apache.hadoop.io.IOUtils.copyBytes(stream, buf, max(length, 1), False)
            return bytes(buf.toByteArray()).decode("utf-8")
        finally:
            stream.close()

    def create_exclusive(self, path: str, text: str) -> bool:
        """create(overwrite=false): atomic on HDFS; on S3 only with conditional writes (see README)."""
        try:
            out = self._fs(path).create(self._path(path), False)
        except Exception as e:  # py4j wraps FileAlreadyExistsException
            if "FileAlreadyExists" in str(e) or "already exists" in str(e):
                return False
            raise
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()
        return True

    def exchange(self, a: str, b: str) -> bool:
        return False  # Hadoop has no atomic swap: the commit moves the old version aside, then the new one in

    def tree_size(self, path: str) -> tuple[int, int]:
        summary = self._fs(path).getContentSummary(self._path(path))
        return int(summary.getFileCount()), int(summary.getLength())


# The name the stages have always used for the Hadoop store.
Storage = HadoopStore


def open_store(root: str, spark: Any = None) -> FileStore:
    """The store for a data root: the local one for local paths, Hadoop's for any other scheme."""
    if is_local(root):
        return LocalStore()
    if spark is None:
        raise ValueError(f"{root} is not a local path: its store needs a Spark session (Hadoop FileSystem)")
    return HadoopStore(spark)
