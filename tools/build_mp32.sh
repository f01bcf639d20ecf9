#!/bin/sh
# Build MicroPython's unix port for 32-bit x86 (4-byte pointers, 16-byte heap blocks: an
# ESP32's object layout) into OUT/micropython, from SRC: a source tarball with one top
# folder (e.g. a GitHub archive) or a checkout with its lib/mbedtls and lib/micropython-lib
# submodules.  `make mp32 MP_SRC=SRC` runs this; docs/bench.md, "A 32-bit MicroPython".
#
#   tools/build_mp32.sh SRC OUT [JOBS]
#
# The simulator's board-side modules and the hardware fakes are frozen in
# (tools/mp32_manifest.py; docs/sim.md, "--mp32"), and OUT/FROZEN lists the sources they
# were frozen from (sha256sum format), so tools/sim can tell when they changed.
#
# Up to date (OUT/micropython built from SRC, OUT/FROZEN as the sources are now): nothing
# to do.  Else the build files kept in OUT/build are reused, so when only the frozen modules
# changed just they are rebuilt (1-2 s); SRC may then be left empty ("").  A new SRC
# builds from scratch (26 s on 2 idle cores, up to 90 s on busy ones).  A checkout is never written to.
#
# Exit status 3: gcc cannot link 32-bit programs here (Debian: apt-get install gcc-multilib).
set -eu

usage="usage: tools/build_mp32.sh SRC OUT [JOBS]"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
src=$1
out=$2
jobs=${3:-2}
cc=${CC:-gcc}
tools=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$tools")

# The frozen sources, as the manifest finds them (every .py below these folders), and the
# manifest: tools/sim/run.py (FROZEN_SOURCES) compares the same list with OUT/FROZEN.
frozen_sums() {
    (cd "$root" && find tools/mp32_manifest.py tools/sim/mp tools/sim/device \
        host_tests/fakes -name '*.py' -not -path '*/__pycache__/*' | LC_ALL=C sort |
        xargs sha256sum)
}

mkdir -p "$out"
out=$(cd "$out" && pwd)
work="$out/build"

# What SRC is, in one line: kept in OUT/build/ORIGIN to tell a new source from the same one.
if [ -n "$src" ]; then
    if [ ! -e "$src" ]; then
        echo "mp32: MP_SRC=$src: no such file or folder" >&2
        exit 2
    fi
    if [ -d "$src" ]; then
        origin="checkout $(cd "$src" && pwd)"
    else
        origin="tarball $(basename "$src") (sha256 $(sha256sum "$src" | cut -c1-64))"
    fi
elif [ -f "$work/ORIGIN" ]; then
    origin=$(cat "$work/ORIGIN")
else
    echo "mp32: say where MicroPython's source is: make mp32 MP_SRC=<source tarball or" \
         "checkout>" >&2
    exit 2
fi

sums=$(frozen_sums)
if [ -x "$out/micropython" ] && [ -f "$work/ORIGIN" ] && [ "$(cat "$work/ORIGIN")" = "$origin" ] &&
   [ -f "$out/FROZEN" ] && [ "$(cat "$out/FROZEN")" = "$sums" ]; then
    echo "mp32: $out/micropython is up to date ($(head -1 "$out/SOURCE"))"
    exit 0
fi

mkdir -p "$work"
printf 'int main(void) { return 0; }\n' >"$work/probe.c"
if ! "$cc" -m32 -o "$work/probe" "$work/probe.c" 2>/dev/null; then
    echo "mp32: $cc -m32 cannot link a program: install Debian's gcc-multilib" \
         "(apt-get install gcc-multilib), then run this again" >&2
    exit 3
fi

if [ ! -f "$work/ORIGIN" ] || [ "$(cat "$work/ORIGIN")" != "$origin" ]; then
    rm -rf "$work"  # another source: nothing of the earlier build is reusable
    mkdir -p "$work"
    if [ "${origin%% *}" = tarball ]; then
        mkdir "$work/src"
        tar -xf "$src" -C "$work/src" --strip-components=1
    fi
    echo "$origin" >"$work/ORIGIN"
fi
if [ "${origin%% *}" = tarball ]; then
    top="$work/src"
    # else MicroPython's version header would be the enclosing repository's `git describe`
    export GIT_CEILING_DIRECTORIES="$work"
    what=${origin#tarball }
else
    top=${origin#checkout }
    what="checkout $top"
    if git -C "$top" rev-parse --short HEAD >/dev/null 2>&1; then
        what="$what at $(git -C "$top" describe --always --dirty 2>/dev/null)"
    fi
fi
if [ ! -f "$top/ports/unix/Makefile" ] || [ ! -f "$top/mpy-cross/Makefile" ]; then
    echo "mp32: $top is not MicroPython's source (no ports/unix, mpy-cross)" >&2
    rm -rf "$work"
    exit 2
fi
if [ ! -f "$top/lib/mbedtls/include/mbedtls/ssl.h" ]; then
    echo "mp32: $top has no lib/mbedtls: in a checkout, run" \
         "'make -C ports/unix submodules' first" >&2
    rm -rf "$work"
    exit 2
fi

start=$(date +%s)
log="$out/build.log"
how="again: the frozen modules changed"
[ -x "$work/unix/micropython" ] || how="from $what"
echo "mp32: building the 32-bit unix port $how ($jobs jobs; log: $log)"
{
    make -C "$top/mpy-cross" -j"$jobs" BUILD="$work/mpy-cross" &&
    # FFI and btree need 32-bit libffi / berkeley-db sources the firmware never uses.
    make -C "$top/ports/unix" -j"$jobs" BUILD="$work/unix" \
        MICROPY_MPYCROSS="$work/mpy-cross/mpy-cross" FROZEN_MANIFEST="$tools/mp32_manifest.py" \
        CFLAGS_EXTRA=-m32 LDFLAGS_EXTRA=-m32 MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0
} >"$log" 2>&1 || {
    tail -n 25 "$log" >&2
    echo "mp32: the build failed (whole log: $log)" >&2
    exit 1
}
"$work/unix/micropython" -c "import sys; assert sys.maxsize == 2**31 - 1, sys.maxsize" || {
    echo "mp32: the build is not 32-bit" >&2
    exit 1
}
version=$("$work/unix/micropython" -c "import sys; print(sys.version)")
printf '%s\nMicroPython %s, built %s with CFLAGS_EXTRA=-m32 MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0 FROZEN_MANIFEST=tools/mp32_manifest.py\n' \
    "$what" "$version" "$(date -u +%Y-%m-%dT%H:%MZ)" >"$out/SOURCE"
cp "$work/unix/micropython" "$out/micropython.tmp"
mv "$out/micropython.tmp" "$out/micropython"
echo "$sums" >"$out/FROZEN"  # the sources as they were when the build started
echo "mp32: built $out/micropython in $(($(date +%s) - start)) s"
