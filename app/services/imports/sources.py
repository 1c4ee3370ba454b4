"""What ``lightbox import`` reads: the files under the paths it is given, streamed.

:func:`walk` yields one item per file as it is found (``os.scandir``, depth first, one open
directory per level: memory is the depth of the tree, never its size), following symbolic links
to files and directories. A directory link that leads back to one of its own ancestors (a loop)
is reported and not entered; a dangling link, a FIFO, a socket or a device is reported, never
opened (a FIFO would block the reader). A file named ``DICOMDIR`` met in a walk is media
(PS3.10 §8.6): its files are imported as the walk finds them. A ``DICOMDIR`` given as a path
is read, and the files its records reference are imported (in place, from the media).
"""

import errno
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from app.services.imports.progress import ImportProgress

__all__ = ["FileFound", "Found", "MediaDirectory", "Problem", "count_totals", "walk"]

DICOMDIR = "DICOMDIR"


@dataclass(frozen=True, slots=True)
class FileFound:
    """A regular file (or a link to one): its path as walked, size and modification time."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Problem:
    """Something found that cannot be read, and why."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class MediaDirectory:
    """A DICOMDIR met in a walk (not an instance; its files are found by the walk)."""

    path: str


Found = FileFound | Problem | MediaDirectory


def walk(paths: Sequence[Path | str]) -> Iterator[Found]:
    """Every file under ``paths``, in the order found (module docstring)."""
    for path in paths:
        yield from _walk_path(os.path.abspath(path))


def _walk_path(path: str) -> Iterator[Found]:
    try:
        info = os.stat(path)
    except OSError as exc:
        yield Problem(path, _stat_failure(path, exc))
        return
    if stat.S_ISDIR(info.st_mode):
        yield from _walk_directory(path, info)
    elif not stat.S_ISREG(info.st_mode):
        yield Problem(path, _not_regular(info.st_mode))
    elif os.path.basename(path).upper() == DICOMDIR:
        yield from _media(path)
    else:
        yield FileFound(path, info.st_size, info.st_mtime_ns)


def _walk_directory(root: str, info: os.stat_result) -> Iterator[Found]:
    try:
        top = os.scandir(root)
    except OSError as exc:
        yield Problem(root, f"directory not readable: {exc.strerror}")
        return
    # one scandir iterator per level; the identities of the directories on the path, to find
    # a link back to one of them (a loop)
    stack: list[tuple[Iterator[os.DirEntry[str]], tuple[int, int]]] = []
    ancestors: set[tuple[int, int]] = set()
    identity = (info.st_dev, info.st_ino)
    stack.append((top, identity))
    ancestors.add(identity)
    try:
        while stack:
            entries, identity = stack[-1]
            entry = next(entries, None)
            if entry is None:
                close = getattr(entries, "close", None)
                if close is not None:
                    close()
                stack.pop()
                ancestors.discard(identity)
                continue
            found = _entry(entry, ancestors)
            if isinstance(found, tuple):
                child, child_identity = found
                stack.append((child, child_identity))
                ancestors.add(child_identity)
            elif found is not None:
                yield found
    finally:
        for entries, _ in stack:
            close = getattr(entries, "close", None)
            if close is not None:
                close()


def _entry(
    entry: os.DirEntry[str], ancestors: set[tuple[int, int]]
) -> Found | tuple[Iterator[os.DirEntry[str]], tuple[int, int]] | None:
    """One directory entry: a file found, a problem, a directory to enter, or nothing."""
    path = entry.path
    try:
        info = entry.stat()  # follows links
    except OSError as exc:
        return Problem(path, _stat_failure(path, exc))
    if stat.S_ISDIR(info.st_mode):
        identity = (info.st_dev, info.st_ino)
        if identity in ancestors:
            return Problem(path, "symbolic link loop: a directory that contains itself")
        try:
            return os.scandir(path), identity
        except OSError as exc:
            return Problem(path, f"directory not readable: {exc.strerror}")
    if not stat.S_ISREG(info.st_mode):
        return Problem(path, _not_regular(info.st_mode))
    if entry.name.upper() == DICOMDIR:
        return MediaDirectory(path)
    return FileFound(path, info.st_size, info.st_mtime_ns)


def _stat_failure(path: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if isinstance(exc, FileNotFoundError):
        return "dangling symbolic link" if os.path.islink(path) else "no such file or directory"
    return f"not readable: {exc.strerror or exc}"


def _not_regular(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    return "not a regular file"


def _media(path: str) -> Iterator[Found]:
    """The files a DICOMDIR's records reference (PS3.3 §F.3.2.2 Referenced File ID), relative
    to its directory; a File ID missing as written is looked for in lower case too (media
    mounted with lower-case names)."""
    # pydicom is loaded here, not with the module: a parent that only walks stays small
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    root = os.path.dirname(path)
    try:
        directory = dcmread(path)
        records = directory.DirectoryRecordSequence
    except (InvalidDicomError, AttributeError, OSError, ValueError, KeyError, EOFError) as exc:
        yield Problem(path, f"not a readable DICOMDIR: {type(exc).__name__}")
        return
    yield MediaDirectory(path)
    for record in records:
        components = record.get("ReferencedFileID")
        if not components:
            continue
        parts = [components] if isinstance(components, str) else [str(c) for c in components]
        if any(p in ("", ".", "..") or "/" in p or "\\" in p for p in parts):
            yield Problem(f"{path}:{'/'.join(parts)}", "a File ID outside the media")
            continue
        file = os.path.join(root, *parts)
        if not os.path.exists(file):
            lower = os.path.join(root, *(p.lower() for p in parts))
            if os.path.exists(lower):
                file = lower
        try:
            info = os.stat(file)
        except OSError as exc:
            reason = "listed in the DICOMDIR but missing"
            if not isinstance(exc, FileNotFoundError):
                reason = _stat_failure(file, exc)
            yield Problem(file, reason)
            continue
        if not stat.S_ISREG(info.st_mode):
            yield Problem(file, _not_regular(info.st_mode))
            continue
        yield FileFound(file, info.st_size, info.st_mtime_ns)


async def count_totals(paths: Sequence[Path | str], progress: ImportProgress) -> None:
    """Count the files and bytes under ``paths`` (for a progress bar's total and ETA)."""
    stop = threading.Event()

    def count() -> None:
        files = size = 0
        for found in walk(paths):
            if stop.is_set():
                return
            if isinstance(found, FileFound):
                files += 1
                size += found.size
        progress.total_files, progress.total_bytes = files, size

    try:
        await anyio.to_thread.run_sync(count, abandon_on_cancel=True)
    finally:
        stop.set()
