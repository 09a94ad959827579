#!/usr/bin/env bash
# The one test command: checks, unit and end-to-end tests, as root and as an
# unprivileged user (rootless is the product). On a fresh machine, run as
# root, it installs what the tests drive and creates the test user.
#
#   scripts/test.sh            everything
#   NSBIND_TEST_USER=name      the unprivileged user to run as (default nsbind-test)
#   NSBIND_FUZZTIME=10s        how long the fuzz targets run
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

test_user=${NSBIND_TEST_USER:-nsbind-test}
fuzztime=${NSBIND_FUZZTIME:-10s}
export NSBIND_TEST_REQUIRE_USERNS=1

# Programs the end-to-end tests drive (Debian package names).
packages=(curl python3 strace bash procps util-linux mount)

if [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! id "$test_user" >/dev/null 2>&1; then
    say "creating the unprivileged test user $test_user"
    useradd --create-home --shell /bin/bash "$test_user"
  fi
fi

say "gofmt, go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
GOOS=darwin go vet ./...

say "build (static, CGO_ENABLED=0)"
bindir=$(mktemp -d /tmp/nsbind-test.XXXXXX)
trap 'rm -rf "$bindir"' EXIT
CGO_ENABLED=0 go build -o "$bindir/nsbind" ./cmd/nsbind
"$bindir/nsbind" version

say "tests as $(id -un) (race detector on)"
go test -race -count=1 -timeout 15m ./...

say "fuzzing ParseSpec for $fuzztime"
go test -run '^$' -fuzz '^FuzzParseSpec$' -fuzztime "$fuzztime" ./forward/

if [ "$(id -u)" = 0 ]; then
  say "tests as the unprivileged user $test_user"
  # Root's Go caches are not readable by other users: build the test
  # binaries here and run them as the user, from a clean environment.
  chmod 755 "$bindir"
  pkgs=$(go list ./...)
  for pkg in $pkgs; do
    name=$(basename "$pkg")
    go test -race -c -o "$bindir/$name.test" "$pkg"
    [ -f "$bindir/$name.test" ] || continue   # a package without tests
    chmod 755 "$bindir/$name.test"
    echo "-- $pkg"
    (cd "$bindir" && runuser -u "$test_user" -- env -i \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME="$(getent passwd "$test_user" | cut -d: -f6)" \
      TMPDIR=/tmp LANG=C.UTF-8 NSBIND_TEST_REQUIRE_USERNS=1 \
      "$bindir/$name.test" -test.count=1 -test.timeout=15m)
  done
fi

say "all tests passed"
