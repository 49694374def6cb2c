"""Fetching dataset files: the data root, mirrors, checksums, resumable downloads and a lock.

torchvision's `download_url` writes straight to the final file name, has no timeout, no resume and
no lock, so a dropped connection or two processes at once leave a truncated file that later counts
as present. Here a file is written to `NAME.part`, checked against its MD5, and only then renamed
to `NAME`; whatever stops a download half-way (a dropped connection, Ctrl-C, kill -9) leaves at most
the `.part`, which the next try resumes (HTTP Range) or restarts. The tables of files, MD5s and
publishers' URLs are torchvision's own (see vision.py); this module only moves bytes.

Settings, all read when used (so worker processes and tests see the current environment):
  NORMLAB_DATA           data root when --data-dir is not given (default: the user cache folder)
  NORMLAB_OFFLINE=1      never touch the network (same as --offline)
  NORMLAB_DATA_MIRROR    mirror base URLs, separated by spaces or commas, tried before the publishers'
  NORMLAB_DATA_CHECKSUMS a file of `MD5  RELATIVE/PATH` lines (md5sum's format) that replaces the
                         built-in MD5 of those files: for a private re-packed mirror, and for tests
  NORMLAB_DATA_TIMEOUT   seconds without a byte before a URL is given up (default 60)
  NORMLAB_DATA_DEADLINE  seconds one URL may take to deliver one file, however steadily its bytes
                         trickle in (default 3600; a read that would outlast it is cut short);
                         then the next URL is tried, resuming the .part

A URL that answers with something else than the file (an HTML page from a captive portal or a
login wall, or bytes whose MD5 does not match) is given up too, and the next one is tried; the
final error lists what every URL answered. A disk that fills (or a folder that cannot be written)
while downloading or unpacking is one line naming the folder and the space needed: the verified
files already there are kept, and so is the `.part` (the next try resumes it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..errors import DataError

CHUNK = 1 << 16
USER_AGENT = "normlab (+https://github.com/normlab)"


@dataclass(frozen=True)
class Remote:
    """One file of a dataset: where it goes under the data root, its MD5, where to get it."""

    path: str  # relative to the data root with '/' separators; also its path under a mirror
    md5: str
    urls: tuple[str, ...]  # the publishers' URLs, tried after the user's mirrors
    size: int = 0  # bytes as published (for listings; the MD5 is what is checked)


# ---------------------------------------------------------------- settings
def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    return _truthy(os.environ.get("NORMLAB_OFFLINE"))


def user_cache_dir() -> Path:
    """The platform's per-user cache folder for normlab's data."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "normlab" / "Cache" / "data"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "normlab" / "data"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "normlab" / "data"


def data_root(data_dir: Optional[str] = None) -> Path:
    """--data-dir, else $NORMLAB_DATA, else the user cache folder."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("NORMLAB_DATA")
    return Path(env).expanduser() if env else user_cache_dir()


def root_origin(data_dir: Optional[str] = None) -> str:
    if data_dir:
        return "--data-dir"
    return "NORMLAB_DATA" if os.environ.get("NORMLAB_DATA") else "the user cache folder"


def mirrors(extra: Optional[str] = None) -> list[str]:
    """The user's mirrors in the order tried: the config's `data_mirror`, then NORMLAB_DATA_MIRROR."""
    out: list[str] = []
    for spec in (extra, os.environ.get("NORMLAB_DATA_MIRROR")):
        for url in (spec or "").replace(",", " ").split():
            if url not in out:
                out.append(url)
    return out


def checksum_overrides() -> dict[str, str]:
    """NORMLAB_DATA_CHECKSUMS: the one hook that replaces built-in MD5s (path -> md5)."""
    path = os.environ.get("NORMLAB_DATA_CHECKSUMS")
    if not path:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"NORMLAB_DATA_CHECKSUMS={path!r} cannot be read ({exc.strerror}); "
                        f"point it at a file of 'MD5  PATH' lines or unset it") from None
    table = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 32:
            raise DataError(f"NORMLAB_DATA_CHECKSUMS {path!r} line {n}: expected 'MD5  PATH', got {line.strip()!r}")
        table[parts[1].strip().lstrip("*")] = parts[0].lower()
    return table


def _seconds(name: str, default: str) -> float:
    """A positive number of seconds from environment variable `name`."""
    raw = os.environ.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DataError(f"{name}={raw!r}: must be a number of seconds > 0")
    return value


def timeout() -> float:
    return _seconds("NORMLAB_DATA_TIMEOUT", "60")


def deadline() -> float:
    return _seconds("NORMLAB_DATA_DEADLINE", "3600")


def urls_for(remote: Remote, mirror: Optional[str] = None) -> list[str]:
    return [m.rstrip("/") + "/" + remote.path for m in mirrors(mirror)] + list(remote.urls)


# ---------------------------------------------------------------- the lock
@contextlib.contextmanager
def lock(root: Path, name: str, log: Callable[[str], None]):
    """One process at a time downloads or unpacks a dataset under a root (a sweep's workers share it)."""
    path = root / f".normlab-{name}.lock"
    try:
        root.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+b")
    except OSError as exc:
        raise DataError(f"cannot write to the data root {str(root)!r} ({exc.strerror}); pass --data-dir (or set "
                        f"NORMLAB_DATA) to a writable folder") from None
    with fh:
        if sys.platform == "win32":  # pragma: no cover - msvcrt locks block for 10 s per try
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
            return
        import fcntl

        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"normlab: waiting for another process that is fetching {name!r} into {root}")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# ---------------------------------------------------------------- one file
class _Dead(Exception):
    """This URL did not deliver the file; the next one is tried."""


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _progress(total: Optional[int], initial: int, desc: str):
    """tqdm's bar (bytes, rate, ETA) on a terminal; nothing on a pipe or a log file."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1000, desc=desc,
                file=sys.stderr, disable=not sys.stderr.isatty(), leave=False, dynamic_ncols=True)


def _open(url: str, offset: int):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    # A fresh opener reads the proxy settings of the current environment each time.
    opener = urllib.request.build_opener()
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout())
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is already whole or from another file
            raise _Restart() from None
        raise _Dead(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _Dead(str(getattr(exc.reason, "strerror", None) or exc.reason)) from None
    except (OSError, ValueError) as exc:  # timeouts, resets, a malformed URL
        raise _Dead(str(exc) or type(exc).__name__) from None


class _Restart(Exception):
    pass


# The errors of a full or unwritable disk: the machine's state, not the download's or the file's.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}


def disk_error(exc: OSError, folder: Path, needed: Optional[int], doing: str) -> DataError:
    """One line for a write that the disk refused: which folder, why, how much room it needs."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    why = "the disk is full" if full else f"it cannot be written ({exc.strerror or exc})"
    room = f"; about {_human(needed)} more are needed there" if needed and full else ""
    fix = ("free some space, or pass --data-dir (or set NORMLAB_DATA) to a folder with room"
           if full else "pass --data-dir (or set NORMLAB_DATA) to a writable folder")
    return DataError(f"{doing} into {str(folder)!r} failed: {why}{room}; {fix}; every verified file already "
                     f"there is kept, and a partial download resumes on the next try")


def _write(out, block: bytes) -> None:
    """One write of downloaded bytes (a seam where tests make the disk fill)."""
    out.write(block)
    out.flush()  # what arrived is on disk even if the process is killed next


# The first bytes of an answer that is a web page, not a dataset file: a captive portal, a login
# wall or a mirror's error page served with status 200.
_PAGE_STARTS = (b"<!doctype", b"<html", b"<head", b"<?xml", b"<body", b"<script")
# Magic numbers of the files normlab downloads, by name.
_MAGIC = {".gz": b"\x1f\x8b", ".mat": b"MATLAB"}


def _not_the_file(first: bytes, content_type: str, name: str) -> Optional[str]:
    """Why the start of an answer cannot be the file (None when it may be)."""
    head = first[:512].lstrip().lower()
    if content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml") \
            or head.startswith(_PAGE_STARTS):
        return f"answered a web page ({content_type or 'no Content-Type'}), not the file: a captive portal or login page?"
    magic = next((m for suffix, m in _MAGIC.items() if name.endswith(suffix)), None)
    if magic and first and not first.startswith(magic[:len(first)]):
        return f"answered bytes that do not start like a {name.rsplit('.', 1)[-1]} file ({first[:8]!r})"
    return None


def _transfer(url: str, part: Path, desc: str, end: float, needed: int = 0) -> str:
    """Append the URL's bytes to `part` (resuming what is there when the server allows a Range)
    and return the MD5 of the whole file; give up once time.monotonic() passes `end`."""
    offset = part.stat().st_size if part.is_file() else 0
    try:
        resp = _open(url, offset)
    except _Restart:
        part.unlink()
        offset = 0
        resp = _open(url, 0)
    with resp:
        status = getattr(resp, "status", None) or resp.getcode() or 200
        if offset and status != 206:
            offset = 0  # the server sent the whole file: start again
        elif offset:
            start = (resp.headers.get("Content-Range") or "").replace("bytes", "").strip().split("-")[0]
            if start != str(offset):
                raise _Dead(f"asked for bytes from {offset}, the server sent {resp.headers.get('Content-Range')!r}")
        length = resp.headers.get("Content-Length")
        total = int(length) + offset if length and length.isdigit() else None

        sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)  # http(s); not file://

        def read(got: int) -> bytes:
            left = end - time.monotonic()
            late = _Dead(f"still unfinished after the NORMLAB_DATA_DEADLINE of {deadline():g} s "
                         f"({_human(got)} received)")
            if left <= 0:
                raise late
            if sock is not None:  # one read may not outlast the deadline either
                with contextlib.suppress(OSError):
                    sock.settimeout(min(timeout(), left))
            try:
                return resp.read1(CHUNK) if hasattr(resp, "read1") else resp.read(CHUNK)
            except (OSError, ValueError) as exc:  # timeout or reset mid-body
                if time.monotonic() >= end:
                    raise late from None
                raise _Dead(f"connection lost after {_human(got)} ({exc or type(exc).__name__})") from None

        # Looked at before the .part is opened, so a portal's page never replaces resumable bytes.
        block = read(offset)
        wrong = _not_the_file(block, resp.headers.get("Content-Type") or "", part.name[:-len(".part")]) \
            if not offset else None
        if not wrong and offset == 0 and not block and total is None:
            wrong = "answered an empty body"
        if wrong:
            raise _Dead(wrong)
        md5 = hashlib.md5()
        try:
            out = open(part, "ab" if offset else "wb")
        except OSError as exc:
            raise disk_error(exc, part.parent, total or needed, f"downloading {part.name[:-5]}") from None
        with out:
            if offset:
                with open(part, "rb") as done:
                    for chunk in iter(lambda: done.read(1 << 20), b""):
                        md5.update(chunk)
            got = offset
            with _progress(total, offset, desc) as bar:
                while block:
                    try:
                        _write(out, block)
                    except OSError as exc:
                        if exc.errno not in DISK_ERRNOS:
                            raise
                        left = (total or needed or 0) - got
                        raise disk_error(exc, part.parent, left if left > 0 else None,
                                         f"downloading {part.name[:-5]}") from None
                    md5.update(block)
                    got += len(block)
                    bar.update(len(block))
                    block = read(got)
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise disk_error(exc, part.parent, None, f"downloading {part.name[:-5]}") from None
        if total is not None and got < total:
            raise _Dead(f"connection closed after {_human(got)} of {_human(total)}")
    return md5.hexdigest()


def fetch(name: str, root: Path, remote: Remote, mirror: Optional[str] = None,
          log: Callable[[str], None] = print) -> Path:
    """Download one file to ROOT/remote.path through the URLs in order; only a file whose MD5
    matches is renamed to its final name. A URL that fails, stalls past the deadline, answers a
    web page or bytes of another MD5 is noted and the next one tried."""
    final = root / remote.path
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, final.parent, remote.size, f"downloading {final.name}") from None
    # The file's own lock, even for a caller that holds no dataset lock: two processes appending
    # to one .part could otherwise write into the final file once the first has renamed it.
    with lock(final.parent, final.name, log):
        if final.is_file() and _md5(final) == remote.md5:  # fetched by another process meanwhile
            return final
        return _fetch_locked(name, final, remote, mirror, log)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch_locked(name: str, final: Path, remote: Remote, mirror: Optional[str], log: Callable[[str], None]) -> Path:
    part = final.with_name(final.name + ".part")
    tried = []
    urls = urls_for(remote, mirror)
    for url in urls:
        size = f" ({_human(remote.size)})" if remote.size else ""
        log(f"normlab: downloading {url}{size}")
        start = time.perf_counter()
        end = time.monotonic() + deadline()
        for attempt in (0, 1):
            resumed = part.is_file() and part.stat().st_size > 0
            try:
                got = _transfer(url, part, final.name, end, remote.size)
            except _Dead as exc:
                tried.append(f"{url} ({exc})")
                log(f"normlab: {url}: {exc}" + ("; trying the next URL" if url != urls[-1] else ""))
                break
            if got != remote.md5:
                part.unlink(missing_ok=True)
                if resumed and attempt == 0:  # the kept .part may be another file's: once from zero
                    log(f"normlab: {final.name}: resumed download does not match its MD5; restarting")
                    continue
                why = f"checksum mismatch: expected md5 {remote.md5}, got {got}; deleted"
                tried.append(f"{url} ({why})")
                log(f"normlab: {url}: {why}" + ("; trying the next URL" if url != urls[-1] else ""))
                break
            try:
                os.replace(part, final)
            except OSError as exc:
                raise disk_error(exc, final.parent, None, f"downloading {final.name}") from None
            secs = time.perf_counter() - start
            log(f"normlab: {remote.path}: {_human(final.stat().st_size)} in {secs:.1f} s, md5 verified")
            return final
    answers = "; ".join(tried) if tried else "no URL"
    raise DataError(f"could not download {remote.path} of dataset {name!r}: {len(tried)} URL(s) tried: {answers}; "
                    f"set NORMLAB_DATA_MIRROR, or place the files by hand (`normlab datasets {name}` lists them)")


def fetch_all(name: str, root: Path, remotes: Iterable[Remote], mirror: Optional[str] = None,
              log: Callable[[str], None] = print) -> None:
    for r in remotes:
        fetch(name, root, r, mirror=mirror, log=log)
