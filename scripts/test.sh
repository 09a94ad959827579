#!/usr/bin/env bash
# The one test command: checks, unit and end-to-end tests, as root and as an
# unprivileged user (rootless is the product). On a fresh machine, run as
# root, it installs what the tests drive and creates the test user.
# It ends with one line over every pass, "N passed, N failed, N skipped"
# (scripts/testsummary says how tests are counted), and fails when a check
# or a test failed, or when a test was skipped in every pass it ran in.
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
# fault tests: prlimit, unshare, runuser (util-linux), mount.
packages=(curl python3 strace bash procps nginx iperf3 iproute2 nftables util-linux mount)
packages+=(dnsmasq-base bind9-dnsutils libc-bin passwd)
# For the servers and tools of the issues ahead: subordinate id maps
# (newuidmap, newgidmap), socat, tmux, lighttpd, postgresql, apache2, and
# systemd for systemd-socket-activate.
packages+=(uidmap socat tmux lighttpd postgresql apache2 systemd)
# nsbind completion bash needs bash-completion (TestBashCompletion).
packages+=(bash-completion)

# staticcheck, pinned: installed into GOPATH/bin when missing or another
# version.
staticcheck_version=v0.8.2

# subid_start FILE: the first id after every range in FILE (at least
# 100000, Debian's SUB_UID_MIN), where a new range of 65536 overlaps none.
subid_start() {
  awk -F: 'BEGIN { m = 100000 } NF >= 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' "$1" 2>/dev/null || echo 100000
}

if [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The tests run nginx, iperf3, postgresql and the rest themselves: keep
    # the packages from starting their services on the host (policy-rc.d,
    # as Debian's invoke-rc.d and deb-systemd-invoke read it).
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
  # Subordinate ids for the user (newuidmap, newgidmap): useradd adds them
  # when its configuration says so; a user made otherwise gets a range of
  # 65536 past every range given out.
  for kind in uid gid; do
    if ! grep -q "^$test_user:" "/etc/sub$kind" 2>/dev/null; then
      first=$(subid_start "/etc/sub$kind")
      say "giving $test_user the subordinate ${kind}s $first-$((first + 65535))"
      usermod "--add-sub${kind}s" "$first-$((first + 65535))" "$test_user"
    fi
  done
fi

gobin=$(go env GOBIN); gobin=${gobin:-$(go env GOPATH)/bin}
staticcheck=$gobin/staticcheck
if ! "$staticcheck" -version 2>/dev/null | grep -qF "${staticcheck_version#v})"; then
  say "installing staticcheck $staticcheck_version"
  GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version"
fi

# Checks that fail do not keep the tests from running: they are named
# before the summary, and the exit status is not zero.
checks_failed=()
check() {
  local name=$1; shift
  "$@" || checks_failed+=("$name")
}
gofmt_clean() {
  local unformatted
  unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
  [ -z "$unformatted" ] && return
  echo "gofmt would change:"; echo "$unformatted"; return 1
}

say "gofmt, go vet, staticcheck $staticcheck_version"
check gofmt gofmt_clean
check "go vet" go vet ./...
check "go vet (darwin)" env GOOS=darwin go vet ./...
check staticcheck "$staticcheck" ./...
# Elsewhere the checks of code only: what only the Linux build uses looks
# unused there.
check "staticcheck (darwin)" env GOOS=darwin "$staticcheck" -checks inherit,-U1000 ./...

say "build (static, CGO_ENABLED=0)"
bindir=$(mktemp -d /tmp/nsbind-test.XXXXXX)
chmod 755 "$bindir"   # the unprivileged user runs the binaries in it
trap 'rm -rf "$bindir"' EXIT
# -buildvcs=true over a GOFLAGS that turns it off: nsbind version shows the
# revision (in a clone; a git worktree records none).
CGO_ENABLED=0 go build -buildvcs=true -o "$bindir/nsbind" ./cmd/nsbind
"$bindir/nsbind" version
# The end-to-end test of the static binary runs it (static_linux_test.go).
export NSBIND_TEST_BINARY=$bindir/nsbind
go build -o "$bindir/testsummary" ./scripts/testsummary

# Every pass writes go test's JSON (test2json) to its own file here; the
# terminal gets testsummary's reading of it, and the summary at the end
# counts over all of them. A failing pass does not stop the others: the
# summary says what failed, and the exit status is not zero.
results=$(mktemp -d /tmp/nsbind-test-results.XXXXXX)
failed=0
# pass NAME COMMAND...: run a pass whose COMMAND writes test2json.
pass() {
  local name=$1; shift
  if ! "$@" | tee "$results/$name.json" | "$bindir/testsummary" show; then
    failed=1
  fi
}

say "tests as $(id -un) (race detector on)"
pass root-race go test -json -race -count=1 -timeout 15m ./...

# The native path (the default) and the relay pass the same end-to-end suite.
say "end-to-end tests as $(id -un) with the relay (--direct=false)"
NSBIND_TEST_RELAY=1 pass root-relay go test -json -race -count=1 -timeout 15m ./cmd/nsbind

# Each fuzzing run counts as one test in the summary.
say "fuzzing ParseSpec, ParseToHost and ParseSockaddr for $fuzztime"
for target in FuzzParseSpec FuzzParseToHost FuzzParseSockaddr; do
  pass "fuzz-$target" go test -json -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" ./forward/
done

if [ "$(id -u)" = 0 ]; then
  say "tests as the unprivileged user $test_user"
  # Root's Go caches are not readable by other users: build the test
  # binaries here and run them as the user, from a clean environment in
  # the binaries' directory, through test2json (as go test -json does).
  home=$(getent passwd "$test_user" | cut -d: -f6)
  for pkg in $(go list ./...); do
    name=${pkg#github.com/nsbind/nsbind/}; name=${name//\//-}
    if ! go test -race -c -o "$bindir/$name.test" "$pkg"; then
      echo "FAIL $pkg: the test binary does not build"; failed=1; continue
    fi
    [ -f "$bindir/$name.test" ] || continue   # a package without tests
    chmod 755 "$bindir/$name.test"
    modes=(relay)
    [ "$name" = cmd-nsbind ] && modes+=(native)   # the end-to-end suite, both ways
    for mode in "${modes[@]}"; do
      relay=0; [ "$mode" = relay ] && [ "$name" = cmd-nsbind ] && relay=1
      echo "-- as $test_user: $pkg ($mode)"
      pass "user-$name-$mode" go tool test2json -t -p "$pkg" \
        runuser -u "$test_user" -- env -i -C "$bindir" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME="$home" TMPDIR=/tmp LANG=C.UTF-8 NSBIND_TEST_REQUIRE_USERNS=1 NSBIND_TEST_RELAY=$relay \
        NSBIND_TEST_BINARY="$NSBIND_TEST_BINARY" \
        "$bindir/$name.test" -test.v=test2json -test.count=1 -test.timeout=15m
    done
  done
fi

say "summary (the JSON of every pass is kept in $results if anything failed)"
if [ ${#checks_failed[@]} -gt 0 ]; then
  echo "checks failed: $(printf '%s, ' "${checks_failed[@]}" | sed 's/, $//')"
  failed=1
fi
"$bindir/testsummary" total "$results"/*.json || failed=1
if [ "$failed" = 0 ]; then
  rm -rf "$results"
fi
exit "$failed"
