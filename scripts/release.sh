#!/usr/bin/env bash
# Static release binaries of nsbind, with checksums.
#
#   scripts/release.sh            builds dist/nsbind-VERSION-linux-{amd64,arm64} and dist/SHA256SUMS
#
# VERSION is `git describe --tags --always --dirty`. Each binary is built with
# CGO_ENABLED=0, -trimpath and stripped (-s -w, no build id), then checked:
# the right machine, no ELF interpreter (static), and the amd64 one must run
# `nsbind version` on this host. dist/ is emptied first; nothing else is written.
# Build from a clean checkout: a dirty tree gives a -dirty VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  "") ;;
  *) echo "release.sh: unknown argument $1" >&2; exit 2 ;;
esac

for tool in go git readelf sha256sum; do
  command -v "$tool" >/dev/null || { echo "release.sh: $tool is needed" >&2; exit 1; }
done

version=$(git describe --tags --always --dirty)
dist=dist
rm -rf "$dist"
mkdir -p "$dist"

# arch → the machine readelf reports for it.
declare -A machine=([amd64]="Advanced Micro Devices X86-64" [arm64]="AArch64")

for arch in amd64 arm64; do
  out=$dist/nsbind-$version-linux-$arch
  echo "== building $out" >&2
  # -buildvcs=true over a GOFLAGS that turns it off: `nsbind version` shows
  # the revision from the build info.
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -buildvcs=true -trimpath -ldflags='-s -w -buildid=' -o "$out" ./cmd/nsbind
  if ! go version -m "$out" | grep -q 'vcs.revision='; then
    # Seen with Go 1.26 in a `git worktree` checkout (.git is a file there).
    echo "release.sh: warning: $out has no VCS revision in its build info; build from a clone to have it" >&2
  fi

  got=$(readelf -h "$out" | sed -n 's/^ *Machine: *//p')
  if [ "$got" != "${machine[$arch]}" ]; then
    echo "release.sh: $out is for $got, not $arch" >&2; exit 1
  fi
  # A dynamically linked binary names its loader in a PT_INTERP header and
  # has a .dynamic section; a static one has neither.
  if readelf -lW "$out" | grep -q 'INTERP'; then
    echo "release.sh: $out is not static: $(readelf -lW "$out" | grep -A1 INTERP | tail -1)" >&2; exit 1
  fi
  if readelf -SW "$out" | grep -q '\.dynamic'; then
    echo "release.sh: $out is not static: it has a .dynamic section" >&2; exit 1
  fi
done

# The binary for this host must run.
amd64=$dist/nsbind-$version-linux-amd64
if [ "$(uname -m)" = x86_64 ]; then
  if ! v=$("$amd64" version 2>&1); then
    echo "release.sh: $amd64 version failed: $v" >&2; exit 1
  fi
  echo "== $amd64 version: $v" >&2
else
  echo "== not an x86-64 host: $amd64 not run" >&2
fi

(cd "$dist" && sha256sum nsbind-"$version"-linux-* > SHA256SUMS && sha256sum -c --quiet SHA256SUMS)
echo "== $dist/:" >&2
ls -l "$dist" >&2
cat "$dist/SHA256SUMS"
