"""Writing rendered files: one folder per machine, whole files only, and a manifest of what phonekit made.

Layout: ``OUT/<hostname>/<file>`` (file names from :data:`provision.model.CLIENT_FILES`, e.g.
``OUT/ws-001/baresip/accounts``) and ``OUT/manifest.json``.

* **Nothing until everything rendered; whole files.** While the run goes through the machines, each
  file that differs from the disk is *staged*: written to ``.<name>.phonekit-tmp`` next to its target,
  created through ``os.open`` with its final mode (0600 for a file holding a password, 0644 for the
  others). Only when every machine rendered without error are the staged files flushed to disk
  (``syncfs(2)`` of OUT's file system, also every :data:`SYNC_EVERY` files while staging: what an
  ``fsync`` per file guarantees, one journal commit for thousands of files; ``fsync`` per file where
  ``syncfs`` is missing or a folder is on another file system), renamed over
  their targets (``os.replace``), and the renames flushed (a second ``syncfs``: the folders). After any
  error the staged files, and the folders the run created, are removed: the output folder is as it
  was. A crash leaves old or new files, never half-written ones (at worst hidden ``.*.phonekit-tmp``
  files, which the next run replaces).
* **Unchanged is untouched.** A file whose bytes (and, for a secret, mode 0600) are already right is
  not written: its mtime and inode stay.
* **The manifest** (``OUT/manifest.json``, itself written atomically, 0644, only when it changed) lists
  every file phonekit wrote, with its SHA-256, client and whether it holds a secret. It is what phonekit
  calls its own:

  - a file that exists, differs and is *not* in the manifest was not made by phonekit: the run stops
    (nothing written) unless ``force`` is given;
  - a file in the manifest whose bytes differ from the recorded SHA-256 was edited by hand: it is
    overwritten and the result says so;
  - **stale**: a file in the manifest that this run would no longer produce (its client was dropped
    from the machine, or the machine from the inventory) is reported and *not deleted*; it stays in
    the manifest while it exists. :meth:`OutputTree.prune` deletes stale files, and only those whose
    bytes still match the manifest; files phonekit did not make are never deleted.

Memory: nothing per file is held but its manifest entry (path, 32-byte digest, client, flag) and, while
staged, a reference to its path; the manifest is read and written line by line.
"""

from __future__ import annotations

import contextlib
import ctypes
import difflib
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from diagnostics.errors import MeasurementError, UsageError
from provision.model import Client

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "PUBLIC_MODE",
    "SECRET_MODE",
    "SYNC_EVERY",
    "FileResult",
    "FileStatus",
    "Manifest",
    "ManifestEntry",
    "OutputTree",
    "RenderedFileLike",
    "atomic_write",
    "redacted_diff",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "phonekit-provision-manifest/1"

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
SYNC_EVERY = 2048
"""Staged files between two syncfs calls while staging: keeps the file system's journal from filling
(unflushed, file creation here slowed from ~50 µs to ~700 µs) and the last flush short."""
_MAX_COMPARE = 1 << 20  # larger files on disk are "changed" without reading them
_TMP_SUFFIX = ".phonekit-tmp"
_SAFE_PART = re.compile(r"^[A-Za-z0-9_.+-]+$")


class RenderedFileLike(Protocol):
    """What the renderer gives per file (``provision.render.RenderedFile``)."""

    @property
    def path(self) -> str: ...

    @property
    def content(self) -> str: ...

    @property
    def secret(self) -> bool: ...

    def encode(self) -> bytes:
        """The bytes to write (the file's encoding and line ends applied to ``content``)."""
        ...


class FileStatus(StrEnum):
    CREATED = "created"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    STALE = "stale"
    """In the manifest, no longer produced: kept."""
    PRUNED = "pruned"
    """Stale and deleted (``prune``)."""


@dataclass(frozen=True)
class FileResult:
    path: str
    """Relative to the output folder: ``ws-001/baresip/accounts``."""
    status: FileStatus
    secret: bool
    note: str = ""
    """Why, when it is worth saying: 'mode 0644 → 0600', 'edited since phonekit wrote it: overwritten'."""


# -- single files ----------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_temp(folder: Path, name: str, mode: int) -> tuple[int, Path]:
    """A new temporary file next to ``folder/name``, created with ``mode`` (exactly, whatever the umask)."""
    tmp = folder / f".{name}.{secrets.token_hex(4)}{_TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return fd, tmp


def _write_all(fd: int, chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


def atomic_write(path: Path, chunks: Iterable[bytes], mode: int) -> None:
    """Replace ``path`` by the bytes of ``chunks``: temporary file in the same folder created with ``mode``
    through ``os.open``, fsync, ``os.replace``, fsync of the folder. Readers see the old or the new file."""
    fd, tmp = _open_temp(path.parent, path.name, mode)
    try:
        try:
            _write_all(fd, chunks)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _syncfs_call() -> Callable[[int], None] | None:
    """``syncfs(2)`` (Linux): flushes one file system in a single journal commit."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    function = getattr(libc, "syncfs", None)
    if function is None:
        return None

    def syncfs(fd: int) -> None:
        if function(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    return syncfs


_SYNCFS = _syncfs_call()


# -- manifest --------------------------------------------------------------------------------------


_CLIENT_CODES = tuple(c.value for c in Client)


@dataclass(frozen=True)
class ManifestEntry:
    """One file in the manifest. In memory it is kept packed (:meth:`pack`: 33 bytes) so that 60,000
    files cost a few MB."""

    sha256: bytes
    """32-byte digest of the bytes written."""
    client: str
    secret: bool

    def pack(self) -> bytes:
        return self.sha256 + bytes([_CLIENT_CODES.index(self.client) << 1 | self.secret])

    @classmethod
    def unpack(cls, packed: bytes) -> ManifestEntry:
        return cls(packed[:32], _CLIENT_CODES[packed[32] >> 1], bool(packed[32] & 1))

    def to_json(self) -> dict[str, object]:
        return {"sha256": self.sha256.hex(), "client": self.client, "secret": self.secret}


class Manifest:
    """``OUT/manifest.json``: relative path → :class:`ManifestEntry` (``files`` holds them packed).

    Written one file per line (valid JSON, sorted by path) so that it is read back line by line; a
    manifest reformatted by hand is read whole instead::

        {"format": "phonekit-provision-manifest/1",
        "files": {
        "ws-001/baresip/accounts": {"sha256": "…", "client": "baresip", "secret": true},
        "ws-001/phonekit.toml": {"sha256": "…", "client": "phonekit", "secret": true}
        }}
    """

    def __init__(self, path: Path, files: dict[str, bytes]) -> None:
        self.path = path
        self.files = files

    def get(self, rel: str) -> ManifestEntry | None:
        packed = self.files.get(rel)
        return None if packed is None else ManifestEntry.unpack(packed)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return cls(path, {})
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the manifest ({exc.strerror})") from exc
        with handle:
            try:
                files = cls._read_lines(handle)
                if files is None:
                    handle.seek(0)
                    files = cls._read_whole(json.load(handle))
            except (ValueError, KeyError, TypeError) as exc:
                raise UsageError(
                    f"{path}: not a phonekit manifest ({exc}): move it away (phonekit then treats every "
                    "existing file as not its own)"
                ) from exc
        return cls(path, files)

    @staticmethod
    def _packed(value: object) -> bytes:
        if not isinstance(value, dict):
            raise TypeError(f"a file entry must be an object (got {value!r})")
        digest = bytes.fromhex(value["sha256"])
        if len(digest) != 32:
            raise ValueError(f"sha256 must be 64 hex digits (got {value['sha256']!r})")
        if value["client"] not in _CLIENT_CODES:
            raise ValueError(f"client must be one of {', '.join(_CLIENT_CODES)} (got {value['client']!r})")
        return ManifestEntry(digest, value["client"], bool(value["secret"])).pack()

    @classmethod
    def _read_lines(cls, lines: Iterable[str]) -> dict[str, bytes] | None:
        """Our own layout, one entry per line; None when the file is laid out otherwise."""
        it: Iterator[str] = iter(lines)
        head = next(it, "")
        if head.strip() != f'{{"format": "{MANIFEST_FORMAT}",' or next(it, "").strip() != '"files": {':
            return None
        files: dict[str, bytes] = {}
        for line in it:
            text = line.strip()
            if text == "}}":
                return files
            try:
                item = json.loads("{" + text.removesuffix(",") + "}")
            except ValueError:
                return None
            for key, value in item.items():
                files[key] = cls._packed(value)
        return None

    @classmethod
    def _read_whole(cls, data: object) -> dict[str, bytes]:
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format is not {MANIFEST_FORMAT!r}")
        files = data.get("files")
        if not isinstance(files, dict):
            raise TypeError("'files' must be an object")
        return {str(key): cls._packed(value) for key, value in files.items()}

    def _chunks(self) -> Iterator[bytes]:
        yield f'{{"format": "{MANIFEST_FORMAT}",\n"files": {{\n'.encode()
        keys = sorted(self.files)
        secret = ("false", "true")
        for index, key in enumerate(keys):
            comma = "," if index + 1 < len(keys) else ""
            packed = self.files[key]
            # json.dumps(ManifestEntry.unpack(packed).to_json()), 10 times faster
            client = _CLIENT_CODES[packed[32] >> 1]
            yield (f'{json.dumps(key)}: {{"sha256": "{packed[:32].hex()}", "client": "{client}", '
                   f'"secret": {secret[packed[32] & 1]}}}{comma}\n').encode()
        yield b"}}\n"

    def save(self) -> None:
        atomic_write(self.path, self._chunks(), PUBLIC_MODE)


# -- the tree --------------------------------------------------------------------------------------


class OutputTree:
    """The output folder of one run.

    :meth:`add` compares one machine's rendered files with the disk, records them for the manifest
    and *stages* what differs: a temporary file next to its target, not yet renamed. :meth:`stale`
    names what the run no longer produces, :meth:`prune` deletes it, :meth:`commit` renames the
    staged files into place and saves the manifest. :meth:`abort` removes the staged files and the
    folders the run created: after it, the output folder is as it was. A dry run (``dry_run=True``)
    stages nothing, so it creates nothing.

    Memory: a manifest entry per file and a reference per staged file; nothing of the content.
    """

    def __init__(self, root: Path, *, force: bool = False, dry_run: bool = False) -> None:
        if root.exists() and not root.is_dir():
            raise UsageError(f"{root}: is not a folder")
        self.root = root
        self.force = force
        self.staging = not dry_run
        """False in a dry run, and after :meth:`abort`."""
        self.manifest = Manifest.load(root / MANIFEST_NAME)
        self._root = str(root)
        self._previous = self.manifest.files  # entries this run has not produced (yet)
        self._current: dict[str, bytes] = {}
        self._dirty = False
        self._planned = False
        self._staged: list[str] = []  # relative paths (the manifest's key strings)
        self._created: list[str] = []  # the topmost folders this run made
        self._root_created = False
        self._own_fs_dirs: set[str] = set()  # staged files' folders on another file system than OUT
        self._root_dev: int | None = None
        self._host = ""  # the machine the per-folder caches below are about
        self._folders: dict[str, int] = {}  # folder → st_dev, for folders that exist and are checked
        self._safe_paths: set[str] = set()

    # -- paths -------------------------------------------------------------------------------------

    def relative(self, hostname: str, path: str) -> str:
        """``hostname/path`` after checking that ``path`` stays inside the machine's folder."""
        if hostname.lower() == MANIFEST_NAME or not _SAFE_PART.match(hostname):
            raise UsageError(f"{self.root}: a machine folder cannot be named {hostname!r}")
        if path not in self._safe_paths:
            parts = path.split("/")
            if any(p in {"", ".", ".."} or not _SAFE_PART.match(p) or p.endswith(_TMP_SUFFIX) for p in parts):
                raise UsageError(
                    f"the renderer gave a file name phonekit will not write: {path!r} (machine {hostname!r})"
                )
            self._safe_paths.add(path)  # the few names every machine shares
        return f"{hostname}/{path}"

    def _folder(self, rel_folder: str) -> int | None:
        """st_dev of a folder inside OUT after checking it and every folder above it is a real folder
        (no symbolic link leads out of OUT); None while it does not exist."""
        host = rel_folder.split("/", 1)[0]
        if host != self._host:
            self._host, self._folders = host, {}
        if rel_folder in self._folders:
            return self._folders[rel_folder]
        if "/" in rel_folder and self._folder(rel_folder.rsplit("/", 1)[0]) is None:
            return None
        path = os.path.join(self._root, rel_folder)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
            raise UsageError(f"{path}: is {kind}: phonekit writes only into real folders inside {self.root}")
        self._folders[rel_folder] = st.st_dev
        return st.st_dev

    def _compare(self, rel: str, data: bytes, secret: bool) -> tuple[FileStatus, bytes | None, str]:
        """Status of the file against the disk, a note, and for a changed file the digest of what is on
        disk (None: absent, unchanged or too big to read)."""
        self._folder(rel.rsplit("/", 1)[0])
        target = os.path.join(self._root, rel)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return FileStatus.CREATED, None, ""
        if not stat.S_ISREG(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise UsageError(f"{target}: is {kind}: move it away")
        if st.st_size > _MAX_COMPARE:
            return FileStatus.CHANGED, None, ""
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            on_disk = os.read(fd, st.st_size + 1)
        finally:
            os.close(fd)
        if on_disk != data:
            return FileStatus.CHANGED, hashlib.sha256(on_disk).digest(), ""
        mode = stat.S_IMODE(st.st_mode)
        if secret and mode & 0o077:
            return FileStatus.CHANGED, None, f"mode {mode:04o} → {SECRET_MODE:04o}"
        return FileStatus.UNCHANGED, None, ""

    def read(self, rel: str) -> str | None:
        """The text of a file on disk (None if absent) with LF line ends, for a diff."""
        try:
            data = (self.root / rel).read_bytes()
        except FileNotFoundError:
            return None
        text = data[2:].decode("utf-16-le", errors="replace") if data.startswith(b"\xff\xfe") else data.decode(
            "utf-8", errors="replace"
        )
        return text.replace("\r\n", "\n")

    # -- one machine -------------------------------------------------------------------------------

    def add(self, hostname: str, client: Client, files: Sequence[RenderedFileLike]) -> list[FileResult]:
        """Compare one client's files of one machine with the disk, record them for the manifest, and
        stage those that differ (unless a dry run)."""
        results = []
        for f in files:
            rel = self.relative(hostname, f.path)
            if rel in self._current:
                raise UsageError(f"two templates of machine {hostname!r} render the same file {f.path!r}")
            data = f.encode()
            status, disk_digest, note = self._compare(rel, data, f.secret)
            old = self._previous.pop(rel, None)
            if status is FileStatus.CHANGED and not note:
                if old is None and not self.force:
                    raise UsageError(
                        f"{self.root / rel}: exists and was not written by phonekit (it is not in "
                        f"{self.manifest.path}): move it away, or give --force to replace it"
                    )
                if old is not None and disk_digest != old[:32]:
                    note = "edited since phonekit wrote it: overwritten"
            packed = ManifestEntry(hashlib.sha256(data).digest(), client.value, f.secret).pack()
            if old == packed:
                packed = old  # keep the one already in memory
            else:
                self._dirty = True
            self._current[rel] = packed
            if status is not FileStatus.UNCHANGED and self.staging:
                self._stage(rel, data, SECRET_MODE if f.secret else PUBLIC_MODE)
            results.append(FileResult(rel, status, f.secret, note))
        return results

    def _make_folders(self, rel_folder: str, top: bool = True) -> int:
        """Create the folder (and those above it) inside OUT; its st_dev. Remembers the topmost folder
        this run created (below a folder that existed), for :meth:`abort`."""
        if self._root_dev is None:
            if not os.path.isdir(self._root):
                path = os.path.abspath(self._root)
                while not os.path.isdir(os.path.dirname(path)):
                    path = os.path.dirname(path)
                os.makedirs(self._root)
                self._created.append(path)
                self._root_created = True
            self._root_dev = os.stat(self._root).st_dev
        dev = self._folder(rel_folder)
        if dev is not None:
            return dev
        parent = rel_folder.rsplit("/", 1)[0] if "/" in rel_folder else ""
        if parent and self._folder(parent) is None:
            self._make_folders(parent, top=top)
            top = False
        path = os.path.join(self._root, rel_folder)
        os.mkdir(path, 0o755)
        if top and not self._root_created:
            self._created.append(path)
        dev = self._folder(rel_folder)
        assert dev is not None
        return dev

    def _tmp(self, rel: str) -> str:
        folder, _, name = rel.rpartition("/")
        return os.path.join(self._root, folder, f".{name}{_TMP_SUFFIX}")

    def _stage(self, rel: str, data: bytes, mode: int) -> None:
        """Write ``data`` to the temporary file next to ``rel``, created with ``mode`` through os.open."""
        tmp = self._tmp(rel)
        try:
            folder = rel.rsplit("/", 1)[0]
            dev = self._make_folders(folder)
            own_fs = _SYNCFS is None or dev != self._root_dev
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(tmp, flags, mode)
            except FileExistsError:  # left by a run that crashed: the name is phonekit's own
                os.unlink(tmp)
                fd = os.open(tmp, flags, mode)
            try:
                os.fchmod(fd, mode)  # exactly, whatever the umask
                _write_all(fd, (data,))
                if own_fs:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _write_error(Path(tmp), exc) from exc
        self._staged.append(rel)
        if own_fs:
            self._own_fs_dirs.add(os.path.join(self._root, folder))
        if _SYNCFS is not None and len(self._staged) % SYNC_EVERY == 0:
            self._syncfs()

    def _syncfs(self) -> None:
        fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            assert _SYNCFS is not None
            _SYNCFS(fd)
        except OSError as exc:
            raise _write_error(self.root, exc) from exc
        finally:
            os.close(fd)

    # -- after every machine -----------------------------------------------------------------------

    def stale(self, processed: Callable[[str], bool], clients: frozenset[Client] | None = None) -> list[FileResult]:
        """After every :meth:`add`: the manifest's files this run no longer produces.

        A file is stale when its machine was processed (``processed(hostname)``) and its client was
        among ``clients`` (None: all) but nothing rendered it. Stale files stay in the manifest while
        they exist; entries of files deleted by hand are dropped. Files of machines or clients this
        run did not cover are kept as they are.
        """
        results = []
        selected = None if clients is None else {c.value for c in clients}
        for rel in sorted(self._previous):
            entry = ManifestEntry.unpack(self._previous[rel])
            host = rel.split("/", 1)[0]
            if processed(host) and (selected is None or entry.client in selected):
                if os.path.lexists(os.path.join(self._root, rel)):
                    results.append(FileResult(rel, FileStatus.STALE, entry.secret, "no longer generated: kept"))
                else:
                    del self._previous[rel]
                    self._dirty = True
        self._current.update(self._previous)
        self._previous = {}
        self.manifest.files = self._current
        self._planned = True
        return results

    def prune(self, stale: Iterable[FileResult], dry_run: bool = False) -> list[FileResult]:
        """Delete stale files whose bytes still match the manifest; keep (and say so) the others."""
        results = []
        for item in stale:
            entry = self.manifest.get(item.path)
            target = self.root / item.path
            try:
                on_disk = hashlib.sha256(target.read_bytes()).digest() if target.is_file() else None
            except OSError as exc:
                raise _write_error(target, exc) from exc
            if entry is None or on_disk != entry.sha256:
                note = "edited since phonekit wrote it: kept"
                results.append(FileResult(item.path, FileStatus.STALE, item.secret, note))
                continue
            if not dry_run:
                try:
                    target.unlink()
                    folder = target.parent
                    while folder != self.root and not any(folder.iterdir()):
                        folder.rmdir()
                        folder = folder.parent
                except OSError as exc:
                    raise _write_error(target, exc) from exc
                del self.manifest.files[item.path]
                self._dirty = True
            results.append(FileResult(item.path, FileStatus.PRUNED, item.secret))
        return results

    def commit(self) -> None:
        """Make the staged files durable, rename them into place, make the renames durable; then save
        the manifest if it changed."""
        if not self._planned:
            self.stale(lambda host: False)
        staged, self._staged = self._staged, []
        try:
            if staged:
                if _SYNCFS is not None:
                    self._syncfs()
                for index, rel in enumerate(staged):
                    os.replace(self._tmp(rel), os.path.join(self._root, rel))
                    staged[index] = ""
                if _SYNCFS is not None:
                    self._syncfs()
                for folder in self._own_fs_dirs:
                    _fsync_dir(Path(folder))
                log.debug("wrote %d files", len(staged))
            self._created = []
            if self._dirty:
                self.manifest.save()
                self._dirty = False
        except OSError as exc:
            self._staged = [rel for rel in staged if rel]
            raise _write_error(self.root, exc) from exc

    def abort(self) -> None:
        """Remove the staged files not yet renamed and the folders this run created (if empty); stage no more."""
        self.staging = False
        for rel in self._staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp(rel))
        self._staged = []
        for top in reversed(self._created):  # only empty folders go: what the run made, now emptied
            for folder, _, _ in os.walk(top, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
        self._created = []


def _write_error(path: Path, exc: OSError) -> MeasurementError:
    return MeasurementError(
        f"{path}: cannot write ({exc.strerror or exc})",
        remedy="check free space and permissions of the output folder; files already replaced are whole",
    )


# -- dry run ---------------------------------------------------------------------------------------


def _masked_disk_lines(disk: str, new: str, secret: bool) -> list[str]:
    """The file on disk as a dry run may show it. In a file that holds a password, a line is shown only
    when the new (redacted) rendering has it too, or has it with '***' where the disk has something else
    (then the password changed); any other line might hold an old password and is hidden."""
    lines = disk.splitlines(keepends=True)
    if not secret:
        return lines
    new_lines = set(new.splitlines(keepends=True))
    patterns = [
        (re.compile(".+".join(re.escape(part) for part in line.split("***")), re.DOTALL), line)
        for line in new_lines
        if "***" in line
    ]
    shown = []
    for number, line in enumerate(lines, start=1):
        if line in new_lines:
            shown.append(line)
            continue
        match = next((masked for pattern, masked in patterns if pattern.fullmatch(line)), None)
        ending = "\n" if line.endswith("\n") else ""
        if match is not None:
            shown.append(match.rstrip("\n").replace("***", "<previous password>") + ending)
        else:
            shown.append(f"<line {number} hidden: this file holds a password>" + ending)
    return shown


def redacted_diff(rel: str, disk: str | None, new_redacted: str, secret: bool, password: str = "") -> str:
    """A unified diff from the file on disk to the new rendering, with no secret in it.

    ``new_redacted`` is the rendering with ``redact=True`` (passwords as ``***``). ``password`` (the
    machine's current password) is replaced by ``***`` on both sides in any file, as a second guard.
    """

    def scrub(text: str) -> str:
        return text.replace(password, "***") if password else text

    new = scrub(new_redacted)
    old = [] if disk is None else _masked_disk_lines(scrub(disk), new, secret)
    return "".join(
        difflib.unified_diff(
            old, new.splitlines(keepends=True), "/dev/null" if disk is None else f"a/{rel}", f"b/{rel}"
        )
    )
