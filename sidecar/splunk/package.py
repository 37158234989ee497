"""Build the Splunk app tarball (`dashboards/llm_usage` -> `llm_usage-<version>.tar.gz`).

What AppInspect and Splunk expect of a package, enforced here rather than hoped for:
- one top-level folder named after `[package] id`, entries `llm_usage/...` (never `./...`);
- no dotfiles or dot-folders, no `local/` folder and no `local.meta`, no `__pycache__`/`*.pyc`;
- regular files 0644 and folders 0755 (no exec bit on a conf file), owner root/root, no symlinks;
- deterministic: sorted entries, fixed mtime, gzip header without name or time, so the same
  app gives the same bytes (and the same sha256) on every machine.
"""

from __future__ import annotations

import configparser
import gzip
import hashlib
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

# 2020-01-01T00:00:00Z: a fixed mtime for every entry (reproducible builds).
FIXED_MTIME = 1577836800
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_SKIP_NAMES = {"__pycache__", "local", "local.meta"}


class PackageError(Exception):
    """The app folder cannot be packaged as it is (the message says what to fix)."""


@dataclass(frozen=True)
class Package:
    path: Path
    app_id: str
    version: str
    build: str
    files: tuple[str, ...]
    sha256: str


def read_app_conf(app_dir: Path) -> configparser.RawConfigParser:
    conf = configparser.RawConfigParser(strict=True, interpolation=None)
    conf.optionxform = str  # keys are case-sensitive in Splunk
    path = app_dir / "default" / "app.conf"
    if not path.is_file():
        raise PackageError(f"{path} is missing")
    conf.read(path, encoding="utf-8")
    return conf


def app_identity(app_dir: Path) -> tuple[str, str, str]:
    """(id, version, build) from default/app.conf, checked: id = folder name, semver, build > 0."""
    conf = read_app_conf(app_dir)
    app_id = conf.get("package", "id", fallback="")
    version = conf.get("launcher", "version", fallback="")
    build = conf.get("install", "build", fallback="")
    if app_id != app_dir.name:
        raise PackageError(f"[package] id = {app_id!r} must equal the folder name {app_dir.name!r}")
    if not SEMVER.match(version):
        raise PackageError(f"[launcher] version = {version!r} is not semver (MAJOR.MINOR.PATCH)")
    if conf.get("id", "version", fallback=version) != version:
        raise PackageError("[id] version must equal [launcher] version")
    if not build.isdigit() or int(build) < 1:
        raise PackageError(f"[install] build = {build!r} must be a positive integer")
    return app_id, version, build


def app_files(app_dir: Path) -> list[Path]:
    """The files that go into the package, sorted; raises on what must never be shipped."""
    out: list[Path] = []
    for path in sorted(app_dir.rglob("*")):
        rel = path.relative_to(app_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue  # dotfiles and dot-folders (editor swap files, .DS_Store) never ship
        if any(part in _SKIP_NAMES for part in rel.parts) or path.suffix == ".pyc":
            if rel.parts[0] == "local" or rel.name == "local.meta":
                raise PackageError(f"{rel} must not be in the app: settings belong in default/")
            continue
        if path.is_symlink():
            raise PackageError(f"{rel} is a symlink; a package holds regular files only")
        if path.is_file():
            out.append(path)
    return out


def _tarinfo(name: str, *, size: int = 0, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if is_dir:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info


def build_package(app_dir: Path, out_dir: Path) -> Package:
    """Write `<out_dir>/<id>-<version>.tar.gz` and return what it holds."""
    app_dir = app_dir.resolve()
    app_id, version, build = app_identity(app_dir)
    files = app_files(app_dir)
    dirs = sorted({d for p in files for d in p.parents if d != app_dir and app_dir in d.parents})
    names: list[str] = []
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tarinfo(app_id, is_dir=True))
        entries = [(d, True) for d in dirs] + [(f, False) for f in files]
        entries.sort(key=lambda e: e[0].relative_to(app_dir).as_posix())
        for path, is_dir in entries:
            name = f"{app_id}/{path.relative_to(app_dir).as_posix()}"
            if is_dir:
                tar.addfile(_tarinfo(name, is_dir=True))
                continue
            data = path.read_bytes()
            tar.addfile(_tarinfo(name, size=len(data)), io.BytesIO(data))
            names.append(name)
    gz = io.BytesIO()
    # filename="" and mtime=0: no build path or build time in the gzip header.
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, compresslevel=9, mtime=0) as f:
        f.write(raw.getvalue())
    data = gz.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{app_id}-{version}.tar.gz"
    target.write_bytes(data)
    target.chmod(0o644)
    return Package(target, app_id, version, build, tuple(names), hashlib.sha256(data).hexdigest())
