#!/usr/bin/env bash
# nsbind side by side with direct loopback (and its peers where installed).
#
#   scripts/bench.sh                 3 interleaved rounds, 3 s per measurement
#   scripts/bench.sh -r 5 -d 5       more rounds, longer measurements
#   scripts/bench.sh --peers         also install rootlesskit (+slirp4netns) and pasta (root)
#   scripts/bench.sh --quick         1 round of 1 s (a smoke test of the script)
#   scripts/bench.sh --native        the native path (the default) against server
#                                    socket shapes 1-3 from 127.0.0.1 and ::1
#                                    clients, and pgbench, side by side with direct
#   scripts/bench.sh --pgbench       only the pgbench part of --native
#   scripts/bench.sh --floor         also a plain forwarding process (socat,
#                                    one per port, fork per peer) on the host:
#                                    what any relay costs on this machine
#
# As root the servers run as BENCH_USER (default nsbind-test).
#
# Every mode serves the same server (scripts/benchserver: HTTP "hello" + UDP
# echo, and iperf3) on loopback; the modes are interleaved round by round and
# the table shows medians with each figure's ratio to direct. Only loopback
# is used; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 dur=3 peers=0 native=0 shapes=1 floor=0
while [ $# -gt 0 ]; do
  case "$1" in
    -r) rounds=$2; shift 2 ;;
    -d) dur=$2; shift 2 ;;
    --peers) peers=1; shift ;;
    --quick) rounds=1 dur=1; shift ;;
    --native) native=1; shift ;;
    --pgbench) native=1 shapes=0; shift ;;
    --floor) floor=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { printf '== %s\n' "$*" >&2; }

need=(iperf3 wrk python3 curl)
[ "$peers" = 1 ] && need+=(rootlesskit slirp4netns passt)
[ "$floor" = 1 ] && need+=(socat)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench.sh: install ${missing[*]} first (or run as root)" >&2; exit 1
  fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/nsbind-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say "building nsbind and the bench server"
CGO_ENABLED=0 go build -o "$work/nsbind" ./cmd/nsbind
CGO_ENABLED=0 go build -o "$work/benchserver" ./scripts/benchserver
chmod 755 "$work" "$work/nsbind" "$work/benchserver"
nsbind=$work/nsbind bs=$work/benchserver

# 10,000 idle connections need ~20,000 descriptors in the relay.
if [ "$(id -u)" = 0 ]; then ulimit -Hn 1048576 2>/dev/null || true; fi
ulimit -Sn "$(ulimit -Hn)"

# nsbind run as root needs a user for the server (it must not be host root).
nsrun=("$nsbind" run -q)
if [ "$(id -u)" = 0 ]; then
  id "${BENCH_USER:-nsbind-test}" >/dev/null 2>&1 ||
    { echo "bench.sh: as root, set BENCH_USER to an unprivileged user for the servers" >&2; exit 1; }
  nsrun+=(--user "${BENCH_USER:-nsbind-test}")
fi

# Ports on the host, fresh per run.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_tcp PORT: until 127.0.0.1:PORT answers HTTP (bounded 10 s).
wait_http() {
  for _ in $(seq 1000); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
    sleep 0.01
  done
  echo "bench.sh: nothing answers on 127.0.0.1:$1" >&2; return 1
}

# relay: --relay; native: no flag, the default (older nsbind: --direct).
modes=(direct relay native)
if [ "$(id -u)" = 0 ] && "$nsbind" run --help 2>&1 | grep -q -- '--net '; then modes+=(veth); fi
# rootlesskit maps root's subordinate ids: without a range for root it cannot start.
if [ "$(id -u)" = 0 ] && command -v rootlesskit >/dev/null && command -v slirp4netns >/dev/null &&
  grep -q '^root:' /etc/subuid 2>/dev/null; then modes+=(rootlesskit); fi
# pasta refuses to run as root; as the user it needs a tun device it may open
# (../shared/bench/anchors.sh lends it one where /dev/net/tun is 0600).
peer=()
[ "$(id -u)" = 0 ] && peer=(setpriv --reuid="${BENCH_USER:-nsbind-test}" --regid="$(id -g "${BENCH_USER:-nsbind-test}")" --init-groups env HOME=/tmp)
if command -v pasta >/dev/null && "${peer[@]}" test -r /dev/net/tun -a -w /dev/net/tun; then modes+=(pasta); fi
[ "$floor" = 1 ] && modes+=(socat)

# IPv4 sockets inside, as the published host sockets are IPv4 addresses.
inside='iperf3 -s -4 -p 5201 >/dev/null 2>&1 & exec '"$bs"' serve -http 0.0.0.0:80 -udp 0.0.0.0:53'

# start_mode MODE: start the servers of MODE; sets HP (HTTP), UP (UDP echo),
# IP (iperf3) and SERVER_PID.
start_mode() {
  MODE=$1
  HP=$(free_port) UP=$(free_port) IP=$(free_port)
  case "$1" in
    direct)
      # A process group of its own, stopped as a whole (iperf3 with it).
      setsid sh -c "iperf3 -s -B 127.0.0.1 -p $IP >/dev/null 2>&1 & exec $bs serve -http 127.0.0.1:$HP -udp 127.0.0.1:$UP" &
      ;;
    socat)
      # The servers on ports of their own, socat between: a process group,
      # stopped as a whole (socat's children with it). -T ends a UDP peer's
      # child once it is idle.
      local h2 u2 i2
      h2=$(free_port) u2=$(free_port) i2=$(free_port)
      setsid sh -c "iperf3 -s -B 127.0.0.1 -p $i2 >/dev/null 2>&1 &
        socat TCP4-LISTEN:$HP,bind=127.0.0.1,reuseaddr,fork TCP4:127.0.0.1:$h2 &
        socat TCP4-LISTEN:$IP,bind=127.0.0.1,reuseaddr,fork TCP4:127.0.0.1:$i2 &
        socat -T 5 UDP4-LISTEN:$UP,bind=127.0.0.1,reuseaddr,fork UDP4:127.0.0.1:$u2 &
        socat -T 5 UDP4-LISTEN:$IP,bind=127.0.0.1,reuseaddr,fork UDP4:127.0.0.1:$i2 &
        exec $bs serve -http 127.0.0.1:$h2 -udp 127.0.0.1:$u2" &
      ;;
    relay|native|veth)
      local extra=()
      [ "$1" = relay ] && extra=(--relay)
      [ "$1" = veth ] && extra=(--net veth)
      "${nsrun[@]}" "${extra[@]}" -p "80:127.0.0.1:$HP" -p "53:127.0.0.1:$UP/udp" \
        -p "5201:127.0.0.1:$IP" -p "5201:127.0.0.1:$IP/udp" -- sh -c "$inside" &
      ;;
    rootlesskit)
      rootlesskit --net=slirp4netns --port-driver=builtin --disable-host-loopback \
        -p "127.0.0.1:$HP:80/tcp" -p "127.0.0.1:$UP:53/udp" -p "127.0.0.1:$IP:5201/tcp" -p "127.0.0.1:$IP:5201/udp" \
        sh -c "$inside" >/dev/null 2>&1 &
      ;;
    pasta)
      "${peer[@]}" pasta --config-net -q -t "127.0.0.1/$HP:80,127.0.0.1/$IP:5201" -u "127.0.0.1/$UP:53,127.0.0.1/$IP:5201" \
        -- sh -c "$inside" >/dev/null 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  pids+=("$SERVER_PID")
  wait_http "$HP"
}

stop_mode() {
  # direct mode: its process group (setsid above); nsbind: nsbind alone,
  # which stops the server and everything it started.
  if [ "$MODE" = direct ] || [ "$MODE" = socat ]; then kill -TERM -- "-$SERVER_PID" 2>/dev/null || true; fi
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 500); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.01; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

declare -A R   # R[metric,mode] = space-separated values of the rounds
add() { R[$1,$2]="${R[$1,$2]:-} $3"; }

if [ "$native" = 1 ]; then
  # The native path's acceptance: servers of socket shapes 1 (one dual-stack
  # [::] socket: Go's :80, python, node, iperf3), 2 (0.0.0.0 and [::]
  # IPv6-only: nginx) and 3 (0.0.0.0 only), each measured from a 127.0.0.1
  # and a ::1 client, with no flag (the default) and directly on the host;
  # then pgbench select-only against PostgreSQL on a host port and through
  # -p 5432:PORT. Shape 3 has no IPv6 socket: its ::1 clients are relayed.
  # Modes are interleaved round by round.
  nmodes=(direct native)
  # nstart MODE SHAPE: sets HP (HTTP), SP (sink), IP (iperf3), SERVER_PID.
  nstart() { # a port picked free may be taken meanwhile: try again
    for _ in 1 2 3; do
      nstart_once "$@" && return 0
      stop_mode
    done
    return 1
  }
  nstart_once() {
    MODE=$1
    HP=$(free_port) SP=$(free_port) IP=$(free_port)
    # The Go server is the command itself (it starts iperf3): nsbind does
    # not trap getsockname for a Go program (README, Performance).
    if [ "$1" = direct ]; then
      setsid "$bs" serve -shape "$2" -http "$HP" -sink "$SP" -iperf3 "$IP" >/dev/null 2>&1 &
    else
      "${nsrun[@]}" -p "80:$HP" -p "9:$SP" -p "5201:$IP" -- \
        "$bs" serve -shape "$2" -http 80 -sink 9 -iperf3 5201 >/dev/null 2>&1 &
    fi
    SERVER_PID=$!
    pids+=("$SERVER_PID")
    wait_http "$HP" || return 1
    # iperf3 starts beside the HTTP server: wait for it too (bounded).
    for _ in $(seq 500); do
      (exec 3<>/dev/tcp/127.0.0.1/$IP) 2>/dev/null && break
      sleep 0.01
    done
  }
  host_of() { [ "$1" = 6 ] && echo "::1" || echo "127.0.0.1"; }
  url_of() { [ "$1" = 6 ] && echo "http://[::1]:$HP/" || echo "http://127.0.0.1:$HP/"; }
  nwrk() { # family extra-args... → req/s
    local f=$1; shift
    wrk -t2 -c32 -d"${dur}s" "$@" "$(url_of "$f")" 2>/dev/null | awk '/Requests\/sec/{printf "%.0f\n", $2}'
  }
  niperf() { # family → Gbit/s received
    iperf3 -c "$(host_of "$1")" -p "$IP" -t "$dur" -J 2>/dev/null | python3 -c '
import json,sys
e=json.load(sys.stdin)["end"]
print("%.2f" % (e["sum_received"]["bits_per_second"]/1e9))'
  }
  [ "$shapes" = 1 ] && say "native path: shapes 1 2 3, clients of 127.0.0.1 and ::1; $rounds rounds of ${dur}s"
  for round in $(seq "$rounds"); do
    [ "$shapes" = 1 ] || break
    for shape in 1 2 3; do
      for m in "${nmodes[@]}"; do
        say "round $round: shape $shape, $m"
        nstart "$m" "$shape"
        for f in 4 6; do
          add "s${shape}_ka_$f" "$m" "$(nwrk "$f")"
          add "s${shape}_nc_$f" "$m" "$(nwrk "$f" -H 'Connection: close')"
          add "s${shape}_blast_$f" "$m" "$("$bs" blast -addr "$( [ "$f" = 6 ] && echo "[::1]" || echo 127.0.0.1):$SP" -d "${dur}s")"
          [ "$shape" != 2 ] && add "s${shape}_iperf_$f" "$m" "$(niperf "$f")"
        done
        stop_mode
      done
    done
  done

  # pgbench select-only, 8 clients, against PostgreSQL as an unprivileged
  # user (it refuses root): on a host port, and through nsbind -p 5432:PORT.
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  pguser=${BENCH_USER:-nsbind-test}
  if [ -n "$pgbin" ] && id "$pguser" >/dev/null 2>&1; then
    pgdir=$work/pg
    mkdir -p "$pgdir" && chown "$pguser" "$pgdir"
    # setpriv execs (runuser forks, and would stand between the script and
    # the process it stops).
    asuser() {
      if [ "$(id -u)" = 0 ]; then
        setpriv --reuid="$pguser" --regid="$(id -g "$pguser")" --init-groups env HOME=/tmp "$@"
      else "$@"; fi
    }
    # asuser_exec is asuser in a background subshell: it becomes the process.
    asuser_exec() {
      if [ "$(id -u)" = 0 ]; then
        exec setpriv --reuid="$pguser" --regid="$(id -g "$pguser")" --init-groups env HOME=/tmp "$@"
      else exec "$@"; fi
    }
    asuser "$pgbin/initdb" -D "$pgdir/data" -A trust -U "$pguser" >/dev/null
    pgstart() { # MODE → PGP, SERVER_PID; false when postgres does not answer
      MODE=$1 PGP=$(free_port)
      local opts=(-c "listen_addresses=*" -c "unix_socket_directories=$pgdir" -c max_connections=50)
      if [ "$1" = direct ]; then
        asuser_exec "$pgbin/postgres" -D "$pgdir/data" -p "$PGP" "${opts[@]}" >>"$pgdir/log" 2>&1 &
      else
        asuser_exec "$nsbind" run -q -p "5432:$PGP" -- "$pgbin/postgres" -D "$pgdir/data" -p 5432 "${opts[@]}" >>"$pgdir/log" 2>&1 &
      fi
      SERVER_PID=$!
      pids+=("$SERVER_PID")
      for _ in $(seq 2000); do
        "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$PGP" && return 0
        sleep 0.01
      done
      echo "bench.sh: postgres does not answer on $PGP:" >&2; tail -5 "$pgdir/log" >&2; return 1
    }
    pgstop() { # a fast shutdown (SIGINT), waited for: the next start needs the data directory
      kill -INT "$SERVER_PID" 2>/dev/null || true   # postgres, or nsbind, which passes it on
      for _ in $(seq 2000); do [ -e "$pgdir/data/postmaster.pid" ] || break; sleep 0.01; done
      stop_mode
    }
    pgstart direct || true
    asuser "$pgbin/pgbench" -q -i -s 10 -h 127.0.0.1 -p "$PGP" -U "$pguser" postgres >/dev/null 2>&1 || true
    pgstop
    say "pgbench select-only, 8 clients; $rounds rounds of ${dur}s"
    for round in $(seq "$rounds"); do
      for m in "${nmodes[@]}"; do
        say "round $round: pgbench, $m"
        if pgstart "$m"; then
          add pg_tps "$m" "$(asuser "$pgbin/pgbench" -S -c 8 -j 2 -T "$dur" -h 127.0.0.1 -p "$PGP" -U "$pguser" postgres 2>/dev/null |
            awk '/^tps = /{printf "%.0f\n", $3; exit}')"
        else
          add pg_tps "$m" failed
        fi
        pgstop
      done
    done
  fi

  {
    echo "META kernel $(uname -r), $(nproc) cores; $(go version | cut -d' ' -f3); $("$nsbind" version); $rounds rounds of ${dur}s, medians"
    for k in "${!R[@]}"; do echo "DATA $k ${R[$k]}"; done
  } | python3 -c '
import sys, statistics
meta, data = [], {}
for line in sys.stdin:
    kind, rest = line.rstrip("\n").split(" ", 1)
    if kind == "META": meta.append(rest); continue
    key, *vals = rest.split()
    metric, mode = key.split(",")
    nums = [float(v) for v in vals if v not in ("failed", "")]
    data[(metric, mode)] = statistics.median(nums) if nums else None
names = {"ka": "HTTP keep-alive (req/s)", "nc": "HTTP new conn per request (req/s)",
         "iperf": "iperf3 TCP 1 stream (Gbit/s)", "blast": "TCP 1 stream to a Go sink (Gbit/s)"}
shapes = {"1": "shape 1 [::] dual-stack", "2": "shape 2 0.0.0.0 + [::] v6only", "3": "shape 3 0.0.0.0 only"}
print("| server | measure | client | direct | native (no flag) |")
print("|---|---|---|---|---|")
def cell(v, base):
    if v is None: return "—"
    s = ("%.2f" % v) if v < 100 else ("%.0f" % v)
    return s + (" (%.2f×)" % (v / base) if base else "")
for sh in "123":
    for what in ("iperf", "blast", "ka", "nc"):
        for f in "46":
            k = "s%s_%s_%s" % (sh, what, f)
            d, n = data.get((k, "direct")), data.get((k, "native"))
            if d is None and n is None: continue
            client = "127.0.0.1" if f == "4" else "::1"
            if sh == "3" and f == "6": client += " (relayed: no IPv6 socket)"
            print("| %s | %s | %s | %s | %s |" % (shapes[sh], names[what], client, cell(d, None), cell(n, d)))
d, n = data.get(("pg_tps", "direct")), data.get(("pg_tps", "native"))
if d or n:
    print("| postgres listen_addresses=* | pgbench -S -c 8 (tps) | 127.0.0.1 | %s | %s |" % (cell(d, None), cell(n, d)))
print()
for m in meta: print("- " + m)
'
  exit 0
fi

# forwarder_pids: nsbind's own processes of the running mode (not the server).
forwarder_pids() {
  local p=$SERVER_PID out=$SERVER_PID
  for c in $(cat /proc/$p/task/*/children 2>/dev/null); do
    [ "$(cat /proc/$c/comm 2>/dev/null)" = nsbind ] && out="$out $c"
  done
  echo "$out"
}
rss_kib() { local s=0; for p in "$@"; do s=$((s + $(awk '/VmRSS/{print $2}' /proc/$p/status 2>/dev/null || echo 0))); done; echo $s; }
cpu_ticks() { local s=0; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0))); done; echo $s; }

iperf_gbps() { # args... → Gbit/s received
  iperf3 -c 127.0.0.1 -p "$IP" -t "$dur" -J "$@" 2>/dev/null | python3 -c '
import json,sys
d=json.load(sys.stdin)
e=d["end"]
s=e.get("sum_received") or e.get("sum")
print("%.2f" % (s["bits_per_second"]/1e9))'
}
wrk_run() { # extra wrk args → "req/s p99ms"
  wrk -t2 -c32 -d"${dur}s" --latency "$@" "http://127.0.0.1:$HP/" 2>/dev/null | python3 -c '
import sys,re
t=sys.stdin.read()
rps=float(re.search(r"Requests/sec:\s+([\d.]+)",t).group(1))
m=re.search(r"99%\s+([\d.]+)(us|ms|s)\b",t)
v=float(m.group(1)); v={"us":v/1000,"ms":v,"s":v*1000}[m.group(2)]
print("%.0f %.2f" % (rps,v))'
}

say "modes: ${modes[*]}; $rounds rounds of ${dur}s measurements"
for round in $(seq "$rounds"); do
  for m in "${modes[@]}"; do
    say "round $round: $m"
    start_mode "$m"
    fp=$(forwarder_pids); t0=$(cpu_ticks $fp); w0=$(date +%s%N)
    add tcp_in "$m" "$(iperf_gbps)"
    add tcp_out "$m" "$(iperf_gbps -R)"
    add tcp_4 "$m" "$(iperf_gbps -P 4)"
    read -r rps p99 < <(wrk_run); add ka_rps "$m" "$rps"; add ka_p99 "$m" "$p99"
    read -r rps p99 < <(wrk_run -H 'Connection: close'); add nc_rps "$m" "$rps"; add nc_p99 "$m" "$p99"
    add udp_rt "$m" "$("$bs" udpping -addr "127.0.0.1:$UP" -d "${dur}s" -c 4 2>/dev/null)"
    add udp_gbps "$m" "$(iperf_gbps -u -b 0 -l 1400)"
    if [ "$m" != direct ] && [ "$m" != socat ]; then
      t1=$(cpu_ticks $fp); w1=$(date +%s%N)
      add cpu "$m" "$(python3 -c "print('%.0f' % (100*($t1-$t0)/$(getconf CLK_TCK)/(($w1-$w0)/1e9)))")"
      add rss "$m" "$(rss_kib $fp)"
    fi
    stop_mode
  done
done

# A relayed connection holds two descriptors in the forwarder (the host
# socket and the one inside): stay under the descriptor limit.
idle=$(( $(ulimit -Hn) > 20500 ? 10000 : ($(ulimit -Hn) - 500) / 2 ))
say "memory at $idle idle connections"
for m in "${modes[@]}"; do
  # socat forks a process per connection: not a measure of a relay's memory.
  [ "$m" = direct ] || [ "$m" = socat ] && continue
  start_mode "$m"
  fp=$(forwarder_pids); before=$(rss_kib $fp)
  coproc HOLD { "$bs" hold -addr "127.0.0.1:$HP" -n "$idle"; }
  if read -r -t 120 line <&"${HOLD[0]}" && [ "$line" = held ]; then
    after=$(rss_kib $fp)
    add idle_kib "$m" "$(python3 -c "print('%.1f' % (($after-$before)/$idle))")"
  else
    add idle_kib "$m" "failed"
  fi
  exec {HOLD[1]}>&-; wait "$HOLD_PID" 2>/dev/null || true
  stop_mode
done

say "start-up time (command start → first answered request)"
for m in "${modes[@]}"; do
  HP=$(free_port) UP=$(free_port) IP=$(free_port)
  case "$m" in
    direct) cmd=("$bs" serve -http "127.0.0.1:$HP") ;;
    relay) cmd=("${nsrun[@]}" --relay -p "80:127.0.0.1:$HP" -- "$bs" serve -http :80) ;;
    native) cmd=("${nsrun[@]}" -p "80:127.0.0.1:$HP" -- "$bs" serve -http :80) ;;
    veth) cmd=("${nsrun[@]}" --net veth -p "80:127.0.0.1:$HP" -- "$bs" serve -http :80) ;;
    rootlesskit) cmd=(rootlesskit --net=slirp4netns --port-driver=builtin -p "127.0.0.1:$HP:80/tcp" "$bs" serve -http :80) ;;
    pasta) cmd=("${peer[@]}" pasta --config-net -q -t "127.0.0.1/$HP:80" -- "$bs" serve -http :80) ;;
    socat) continue ;;
  esac
  add start_ms "$m" "$("$bs" startup -n 5 -url "http://127.0.0.1:$HP/" -- "${cmd[@]}" || echo failed)"
done

# The table: medians, and ratios to direct.
{
  echo "META kernel $(uname -r), $(nproc) cores; $(go version | cut -d' ' -f3); $("$nsbind" version); iperf3 $(iperf3 --version | head -1 | cut -d' ' -f2); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
  case " ${modes[*]} " in *" rootlesskit "*) echo "META $(rootlesskit --version 2>&1 | head -1)" ;; esac
  case " ${modes[*]} " in *" pasta "*) echo "META $(pasta --version 2>&1 | grep -v syslog | head -1)" ;; esac
  case " ${modes[*]} " in *" socat "*) echo "META $(socat -V 2>/dev/null | grep -m1 'socat version')" ;; esac
  echo "META $rounds rounds of ${dur}s, medians; idle connections: $idle (descriptor limit $(ulimit -Hn))"
  echo "MODES ${modes[*]}"
  for k in "${!R[@]}"; do echo "DATA $k ${R[$k]}"; done
} | python3 -c '
import sys, statistics
meta, modes, data = [], [], {}
for line in sys.stdin:
    kind, rest = line.rstrip("\n").split(" ", 1)
    if kind == "META": meta.append(rest)
    elif kind == "MODES": modes = rest.split()
    else:
        key, *vals = rest.split()
        metric, mode = key.split(",")
        nums = [float(v) for v in vals if v not in ("failed", "")]
        data[(metric, mode)] = statistics.median(nums) if nums else None
rows = [
    ("tcp_in", "TCP 1 stream in (Gbit/s)", True), ("tcp_out", "TCP 1 stream out (Gbit/s)", True),
    ("tcp_4", "TCP 4 streams (Gbit/s)", True), ("ka_rps", "HTTP keep-alive (req/s)", True),
    ("ka_p99", "HTTP keep-alive p99 (ms)", False), ("nc_rps", "HTTP new conn per request (req/s)", True),
    ("nc_p99", "HTTP new conn p99 (ms)", False), ("udp_rt", "UDP echo round trips/s", True),
    ("udp_gbps", "iperf3 UDP (Gbit/s)", True), ("cpu", "forwarder CPU (% of a core)", None),
    ("rss", "forwarder RSS under load (KiB)", None), ("idle_kib", "forwarder KiB per idle TCP conn", None),
    ("start_ms", "start to first answer (ms)", False),
]
print("| measure | " + " | ".join(modes) + " |")
print("|---" * (len(modes) + 1) + "|")
for key, name, higher in rows:
    base = data.get((key, "direct"))
    cells = []
    for m in modes:
        v = data.get((key, m))
        if v is None: cells.append("—"); continue
        s = ("%.2f" % v) if v < 100 else ("%.0f" % v)
        if base and m != "direct" and higher is not None:
            s += " (%.2f×)" % (v / base)
        cells.append(s)
    print("| %s | %s |" % (name, " | ".join(cells)))
print()
for m in meta: print("- " + m)
print("- ratios are to direct; for p99 and start-up a ratio above 1 is worse")
if "socat" in modes:
    print("- socat: a plain forwarding process on the host, no namespace (one socat per port; TCP forks per connection, UDP a child per peer)")
'
