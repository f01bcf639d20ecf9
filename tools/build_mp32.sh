#!/bin/sh
# Build MicroPython's unix port for 32-bit x86 (4-byte pointers, 16-byte heap blocks: an
# ESP32's object layout) into OUT/micropython, from SRC: a source tarball with one top
# folder (e.g. a GitHub archive) or a checkout with its lib/mbedtls and lib/micropython-lib
# submodules.  `make mp32 MP_SRC=SRC` runs this; README.md, "A 32-bit MicroPython".
#
#   tools/build_mp32.sh SRC OUT [JOBS]
#
# Exit status 3: gcc cannot link 32-bit programs here (Debian: apt-get install gcc-multilib).
# Build files go to OUT/build.tmp and are removed at the end: a checkout is not written to.
set -eu

usage="usage: tools/build_mp32.sh SRC OUT [JOBS]"
src=${1:?$usage}
out=${2:?$usage}
jobs=${3:-2}
cc=${CC:-gcc}

if [ ! -e "$src" ]; then
    echo "mp32: MP_SRC=$src: no such file or folder" >&2
    exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
work="$out/build.tmp"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"; rmdir "$out" 2>/dev/null || true' EXIT

printf 'int main(void) { return 0; }\n' >"$work/probe.c"
if ! "$cc" -m32 -o "$work/probe" "$work/probe.c" 2>/dev/null; then
    echo "mp32: $cc -m32 cannot link a program: install Debian's gcc-multilib" \
         "(apt-get install gcc-multilib), then run this again" >&2
    exit 3
fi

if [ -d "$src" ]; then
    top=$(cd "$src" && pwd)
    what="checkout $top"
    if git -C "$top" rev-parse --short HEAD >/dev/null 2>&1; then
        what="$what at $(git -C "$top" describe --always --dirty 2>/dev/null)"
    fi
else
    mkdir "$work/src"
    tar -xf "$src" -C "$work/src" --strip-components=1
    top="$work/src"
    # else MicroPython's version header would be the enclosing repository's `git describe`
    export GIT_CEILING_DIRECTORIES="$work"
    what="$(basename "$src") (sha256 $(sha256sum "$src" | cut -c1-64))"
fi
if [ ! -f "$top/ports/unix/Makefile" ] || [ ! -f "$top/mpy-cross/Makefile" ]; then
    echo "mp32: $src is not MicroPython's source (no ports/unix, mpy-cross)" >&2
    exit 2
fi
if [ ! -f "$top/lib/mbedtls/include/mbedtls/ssl.h" ]; then
    echo "mp32: $src has no lib/mbedtls: in a checkout, run" \
         "'make -C ports/unix submodules' first" >&2
    exit 2
fi

start=$(date +%s)
log="$out/build.log"
echo "mp32: building the 32-bit unix port from $what ($jobs jobs; log: $log)"
{
    make -C "$top/mpy-cross" -j"$jobs" BUILD="$work/mpy-cross" &&
    # FFI and btree need 32-bit libffi / berkeley-db sources the firmware never uses.
    make -C "$top/ports/unix" -j"$jobs" BUILD="$work/unix" \
        MICROPY_MPYCROSS="$work/mpy-cross/mpy-cross" \
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
printf '%s\nMicroPython %s, built %s with CFLAGS_EXTRA=-m32 MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0\n' \
    "$what" "$version" "$(date -u +%Y-%m-%dT%H:%MZ)" >"$out/SOURCE"
mv "$work/unix/micropython" "$out/micropython"
echo "mp32: built $out/micropython in $(($(date +%s) - start)) s"
