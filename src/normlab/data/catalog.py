"""`normlab datasets`: what each dataset is, how big its download is, whether it is present, where.

With names, each named set's files (path, MD5, URLs, present) are listed: the list to place by hand
on a machine without network. With --download, the named sets are fetched (download.py).
"""

from __future__ import annotations

import json
import sys
from typing import Optional

from ..deps import torchvision as import_torchvision
from ..errors import ConfigError
from . import download
from .sources import get_source, list_datasets


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n else "-"


def rows(data_dir: Optional[str] = None) -> list[dict]:
    root = download.data_root(data_dir)
    out = []
    for s in list_datasets():
        vs = s.files
        out.append({
            "name": s.name, "train": s.sizes[0], "test": s.sizes[1], "classes": s.num_classes,
            "shape": list(s.shape), "present": s.is_present(data_dir), "description": s.description,
            "download_bytes": sum(r.size for r in vs.remotes()) if vs else 0,
            "where": str(vs.where(root)) if vs else (str(data_dir) if s.name == "imagefolder" and data_dir else None),
        })
    return out


def files(name: str, data_dir: Optional[str] = None, mirror: Optional[str] = None) -> list[dict]:
    vs = get_source(name).files
    if vs is None:
        return []
    root = download.data_root(data_dir)
    return [{"path": str(root / r.path), "md5": r.md5, "bytes": r.size, "present": vs.has(root, r),
             "urls": download.urls_for(r, mirror)} for r in vs.remotes()]


def _print_table(data_dir: Optional[str]) -> None:
    root = download.data_root(data_dir)
    print(f"data root: {root} (from {download.root_origin(data_dir)})"
          + ("; offline" if download.offline() else ""))
    print(f"{'name':<14} {'train':>7} {'test':>7} {'classes':>7}  {'shape':<8} {'download':>9}  {'present':<7}  where")
    for r in rows(data_dir):
        folder = r["name"] == "imagefolder"
        sizes = ("-", "-", "-") if folder else (f"{r['train']:,}", f"{r['test']:,}", r["classes"])
        shape = "any" if folder else "x".join(map(str, r["shape"]))
        if r["where"] is None:
            where = "--data-dir ROOT" if folder else "ships with the dependencies"
        else:
            where = r["where"]
        print(f"{r['name']:<14} {sizes[0]:>7} {sizes[1]:>7} {sizes[2]:>7}  {shape:<8} {_mb(r['download_bytes']):>9}  "
              f"{'yes' if r['present'] else 'no':<7}  {where}")


def run(names: list[str], fetch: bool = False, data_dir: Optional[str] = None, mirror: Optional[str] = None,
        as_json: bool = False) -> int:
    for n in names:
        get_source(n)  # an unknown name is an error before anything is fetched
    import_torchvision("torchvision.datasets")  # a broken torchvision is one line, before half a table
    if fetch:
        if not names:
            raise ConfigError("--download needs the names of the datasets to fetch, e.g. "
                              "`normlab datasets --download fashion-mnist cifar10`")
        return _download(names, data_dir, mirror)
    if not names:
        if as_json:
            print(json.dumps(rows(data_dir), indent=2))
        else:
            _print_table(data_dir)
        return 0
    detail = {n: files(n, data_dir, mirror) for n in names}
    if as_json:
        print(json.dumps(detail, indent=2))
        return 0
    for n, fs in detail.items():
        if not fs:
            print(f"{n}: nothing to download ({get_source(n).description})")
            continue
        print(f"{n}: {sum(f['present'] for f in fs)} of {len(fs)} files present")
        for f in fs:
            print(f"  {'present' if f['present'] else 'missing':<8} {f['path']}  md5 {f['md5']}  {_mb(f['bytes'])}")
            for u in f["urls"]:
                print(f"           {u}")
    return 0


def _download(names: list[str], data_dir: Optional[str], mirror: Optional[str]) -> int:
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    root = download.data_root(data_dir)
    for n in names:
        vs = get_source(n).files
        if vs is None:
            print(f"{n}: nothing to download ({get_source(n).description})")
            continue
        vs.ensure(root, mirror=mirror, log=log)
        print(f"{n}: present under {vs.where(root)}")
    return 0


def ensure_present(name: str, data_dir: Optional[str] = None, mirror: Optional[str] = None, log=None) -> None:
    """Fetch a downloadable set now if it is missing (offline: the error lists the files to place);
    nothing for the sets that ship with the dependencies."""
    vs = get_source(name).files
    if vs is not None:
        vs.ensure(download.data_root(data_dir), mirror=mirror,
                  log=log or (lambda line: print(line, file=sys.stderr, flush=True)))
