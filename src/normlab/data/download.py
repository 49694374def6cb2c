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
"""

from __future__ import annotations

import contextlib
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


def timeout() -> float:
    raw = os.environ.get("NORMLAB_DATA_TIMEOUT", "60")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DataError(f"NORMLAB_DATA_TIMEOUT={raw!r}: must be a number of seconds > 0")
    return value


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


def _transfer(url: str, part: Path, desc: str) -> str:
    """Append the URL's bytes to `part` (resuming what is there when the server allows a Range)
    and return the MD5 of the whole file."""
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
        md5 = hashlib.md5()
        mode = "ab" if offset else "wb"
        with open(part, mode) as out:
            if offset:
                with open(part, "rb") as done:
                    for block in iter(lambda: done.read(1 << 20), b""):
                        md5.update(block)
            got = offset
            with _progress(total, offset, desc) as bar:
                while True:
                    try:
                        block = resp.read1(CHUNK) if hasattr(resp, "read1") else resp.read(CHUNK)
                    except (OSError, ValueError) as exc:  # timeout or reset mid-body
                        raise _Dead(f"connection lost after {_human(got)} ({exc or type(exc).__name__})") from None
                    if not block:
                        break
                    out.write(block)
                    out.flush()  # what arrived is on disk even if the process is killed next
                    md5.update(block)
                    got += len(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if total is not None and got < total:
            raise _Dead(f"connection closed after {_human(got)} of {_human(total)}")
    return md5.hexdigest()


def fetch(name: str, root: Path, remote: Remote, mirror: Optional[str] = None,
          log: Callable[[str], None] = print) -> Path:
    """Download one file to ROOT/remote.path through the URLs in order; only a file whose MD5
    matches is renamed to its final name."""
    final = root / remote.path
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    tried = []
    urls = urls_for(remote, mirror)
    for url in urls:
        size = f" ({_human(remote.size)})" if remote.size else ""
        log(f"normlab: downloading {url}{size}")
        start = time.perf_counter()
        for attempt in (0, 1):
            resumed = part.is_file() and part.stat().st_size > 0
            try:
                got = _transfer(url, part, final.name)
            except _Dead as exc:
                tried.append(f"{url} ({exc})")
                log(f"normlab: {url}: {exc}" + ("; trying the next URL" if url != urls[-1] else ""))
                break
            if got != remote.md5:
                part.unlink(missing_ok=True)
                if resumed and attempt == 0:  # the kept .part may be another file's: once from zero
                    log(f"normlab: {final.name}: resumed download does not match its MD5; restarting")
                    continue
                raise DataError(f"checksum mismatch for {final} from {url}: expected md5 {remote.md5}, "
                                f"got {got}; the download was deleted (a bad mirror? try another or "
                                f"place the file by hand)")
            os.replace(part, final)
            secs = time.perf_counter() - start
            log(f"normlab: {remote.path}: {_human(final.stat().st_size)} in {secs:.1f} s, md5 verified")
            return final
    last = tried[-1] if tried else "no URL"
    raise DataError(f"could not download {remote.path} of dataset {name!r}: {len(tried)} URL(s) failed, "
                    f"last {last}; set NORMLAB_DATA_MIRROR, or place the files by hand "
                    f"(`normlab datasets {name}` lists them)")


def fetch_all(name: str, root: Path, remotes: Iterable[Remote], mirror: Optional[str] = None,
              log: Callable[[str], None] = print) -> None:
    for r in remotes:
        fetch(name, root, r, mirror=mirror, log=log)
