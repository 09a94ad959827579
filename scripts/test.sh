#!/usr/bin/env bash
# The one test command: checks, unit and end-to-end tests, as root and as an
# unprivileged user (rootless is the product). On a fresh machine, run as
# root, it installs what the tests drive and creates the test user.
#
#   scripts/test.sh            everything
#   NSBIND_TEST_USER=name      the unprivileged user to run as (default nsbind-test)
#   NSBIND_FUZZTIME=100000x    how long the fuzz targets run (a count: Go 1.26's
#                              fuzzer can fail a duration at its end, go.dev/issue/75804)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

test_user=${NSBIND_TEST_USER:-nsbind-test}
fuzztime=${NSBIND_FUZZTIME:-100000x}
export NSBIND_TEST_REQUIRE_USERNS=1

# Programs the end-to-end tests drive (Debian package names).
# Outbound connections: the remote host's namespace and veth (ip), DNS
# servers (dnsmasq) and clients (dig, getent); --direct: nginx, iperf3;
# fault tests: prlimit, unshare (util-linux), mount.
packages=(curl python3 strace bash procps nginx iperf3 iproute2 nftables util-linux mount)
packages+=(dnsmasq-base bind9-dnsutils libc-bin)

if [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The tests run nginx and iperf3 themselves: keep the packages from
    # starting their services on the host (policy-rc.d, as Debian's
    # invoke-rc.d reads it).
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -z "$policy" ] || rm -f "$policy"
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

# The relay and --direct pass the same end-to-end suite.
say "end-to-end tests as $(id -un) with --direct"
NSBIND_TEST_DIRECT=1 go test -race -count=1 -timeout 15m ./cmd/nsbind

say "fuzzing ParseSpec and ParseToHost for $fuzztime"
go test -run '^$' -fuzz '^FuzzParseSpec$' -fuzztime "$fuzztime" ./forward/
go test -run '^$' -fuzz '^FuzzParseToHost$' -fuzztime "$fuzztime" ./forward/
say "fuzzing ParseSockaddr for $fuzztime"
go test -run '^$' -fuzz '^FuzzParseSockaddr$' -fuzztime "$fuzztime" ./forward/

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
    modes=(relay)
    [ "$name" = nsbind ] && modes+=(direct)   # the end-to-end suite, both ways
    for mode in "${modes[@]}"; do
      direct=0; [ "$mode" = direct ] && direct=1 && echo "-- $pkg with --direct"
      (cd "$bindir" && runuser -u "$test_user" -- env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME="$(getent passwd "$test_user" | cut -d: -f6)" \
        TMPDIR=/tmp LANG=C.UTF-8 NSBIND_TEST_REQUIRE_USERNS=1 NSBIND_TEST_DIRECT=$direct \
        "$bindir/$name.test" -test.count=1 -test.timeout=15m)
    done
  done
fi

say "all tests passed"
