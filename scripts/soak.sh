#!/usr/bin/env bash
# Soak test: one nsbind, minutes of mixed load, byte counts checked end to end.
# Not part of scripts/test.sh (it takes minutes); run it before a release or
# after touching the relays.
#
#   scripts/soak.sh                  3 minutes
#   SOAK_SECONDS=600 scripts/soak.sh 10 minutes
#   SOAK_RESTART_EVERY=20            seconds between server restarts
#
# Against one `nsbind run --stats`, whose server (python3, restarted in a
# loop inside the namespace) has an echo port, a download port and, where
# `-p .../udp` works, a UDP echo port, it runs at once:
#   - TCP echo clients (random sizes up to 2 MiB, checked by SHA-256),
#   - slow readers (downloads of 4-16 MiB read in small sips, checked byte by byte),
#   - clients that send and then reset (SO_LINGER 0),
#   - UDP clients (each echo checked; loss allowed and counted),
#   - server restarts: the server exits on a "CRASH" line and the loop starts it
#     again; connections made meanwhile wait for it (--connect-timeout).
# It fails when a client that did not overlap a restart gets an error or wrong
# bytes, when nsbind's --stats counters disagree with what the clients
# moved, when nsbind's helper leaks descriptors or memory, or when nsbind
# does not exit 0 on SIGTERM. Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${SOAK_SECONDS:-180}
restart_every=${SOAK_RESTART_EVERY:-20}
work=$(mktemp -d /tmp/nsbind-soak.XXXXXX)
nsbind_pid=
cleanup() {
  if [ -n "$nsbind_pid" ] && kill -0 "$nsbind_pid" 2>/dev/null; then
    kill -KILL "$nsbind_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '== %s\n' "$*"; }

say "building nsbind"
CGO_ENABLED=0 go build -o "$work/nsbind" ./cmd/nsbind

udp=0
if "$work/nsbind" run -q -p 9:0/udp -- true 2>/dev/null; then
  udp=1
  say "UDP publishing works: UDP clients included"
else
  say "UDP publishing (-p .../udp) does not work in this build: TCP only"
fi

cat >"$work/soak.py" <<'PY'
import hashlib, json, os, random, re, socket, socketserver, struct, sys, threading, time

def pattern(off, n):
    return bytes((off + i) % 251 for i in range(n))

# ---------------------------------------------------------------- server (inside)
def server(udp):
    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            c = self.request
            first = c.recv(65536)
            if first == b"CRASH\n":
                os._exit(3)            # the restart loop starts a new server
            if first == b"PID?\n":
                c.sendall(b"%d" % os.getpid())
                return
            data = first
            while data:
                c.sendall(data)
                data = c.recv(65536)
            c.shutdown(socket.SHUT_WR)

    class Download(socketserver.StreamRequestHandler):
        def handle(self):
            n = int(self.rfile.readline())
            off = 0
            block = pattern(0, 251 * 256)
            while off < n:
                k = min(len(block), n - off)
                self.wfile.write(block[:k])   # off is a multiple of 251*256
                off += k

    class TCP(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        request_queue_size = 128       # Python's default of 5 overflows under this load
        daemon_threads = True
        address_family = socket.AF_INET

    for port, handler in ((7000, Echo), (7001, Download)):
        s = TCP(("0.0.0.0", port), handler)
        threading.Thread(target=s.serve_forever, daemon=True).start()
    if udp:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", 7002))
        def udp_echo():
            while True:
                data, peer = u.recvfrom(65536)
                u.sendto(data, peer)
        threading.Thread(target=udp_echo, daemon=True).start()
    print("server up", flush=True)
    threading.Event().wait()

# ---------------------------------------------------------------- clients (host)
class Soak:
    def __init__(self, ports, seconds, restart_every, udp):
        self.ports, self.seconds, self.restart_every, self.udp = ports, seconds, restart_every, udp
        self.lock = threading.Lock()
        self.restarts = []            # [start, end] of each restart
        self.failures = []            # errors outside restarts
        self.excused = 0              # errors overlapping a restart
        self.c = {k: 0 for k in (
            "echo_ok", "echo_ok_bytes", "echo_sent_all", "echo_recv_all", "echo_attempts",
            "dl_ok", "dl_ok_bytes", "dl_recv_all", "dl_requested", "dl_attempts",
            "resets", "reset_sent", "control_conns", "control_bytes",
            "udp_sent", "udp_echoed", "udp_bytes_echoed", "udp_bad")}
        self.stop = time.monotonic() + seconds

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                self.c[k] += v

    def failed(self, what, start, err):
        end = time.monotonic()
        with self.lock:
            for a, b in self.restarts:
                if start <= (b if b else end) and end >= a:
                    self.excused += 1
                    return
            self.failures.append("%s: %s" % (what, err))

    def connect(self, port):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.settimeout(60)
        return s

    def echo_client(self):
        while time.monotonic() < self.stop:
            size = random.choice((1, 100, 4096, 65536, random.randint(1, 2 << 20)))
            data = os.urandom(size)
            start = time.monotonic()
            self.add(echo_attempts=1)
            sent = [0]
            got = bytearray()
            counted = False
            try:
                s = self.connect(self.ports[7000])
                def send():
                    try:
                        s.sendall(data)
                        sent[0] = size
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                t = threading.Thread(target=send)
                t.start()
                while True:
                    b = s.recv(1 << 16)
                    if not b:
                        break
                    got += b
                t.join()
                s.close()
                self.add(echo_sent_all=sent[0], echo_recv_all=len(got))
                counted = True
                if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
                    raise OSError("echo of %d bytes came back as %d different bytes" % (size, len(got)))
                self.add(echo_ok=1, echo_ok_bytes=size)
            except OSError as e:
                if not counted:
                    self.add(echo_sent_all=size, echo_recv_all=len(got))   # at most this much went in
                self.failed("echo", start, e)

    def slow_reader(self):
        while time.monotonic() < self.stop:
            n = random.randint(4 << 20, 16 << 20)
            start = time.monotonic()
            self.add(dl_attempts=1, dl_requested=n)
            got = 0
            counted = False
            try:
                s = self.connect(self.ports[7001])
                s.sendall(b"%d\n" % n)
                while True:
                    b = s.recv(16384)          # small sips, with pauses: a slow reader
                    if not b:
                        break
                    if b != pattern(got, len(b)):
                        raise OSError("download differs at byte %d" % got)
                    got += len(b)
                    time.sleep(0.002)
                s.close()
                self.add(dl_recv_all=got)
                counted = True
                if got != n:
                    raise OSError("download of %d bytes ended after %d" % (n, got))
                self.add(dl_ok=1, dl_ok_bytes=n)
            except OSError as e:
                if not counted:
                    self.add(dl_recv_all=got)
                self.failed("download", start, e)

    def resetter(self):
        while time.monotonic() < self.stop:
            size = random.randint(0, 1 << 20)
            try:
                s = self.connect(self.ports[7000])
                s.sendall(os.urandom(size))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()                      # RST instead of FIN
                self.add(resets=1, reset_sent=size)
            except OSError:
                self.add(resets=1, reset_sent=size)
            time.sleep(0.05)

    def udp_client(self):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(1)
        u.connect(("127.0.0.1", self.ports[7002]))
        seq = 0
        while time.monotonic() < self.stop:
            seq += 1
            data = struct.pack("!Q", seq) + os.urandom(random.randint(0, 1200))
            u.send(data)
            self.add(udp_sent=1)
            try:
                while True:
                    b = u.recv(65536)
                    if struct.unpack("!Q", b[:8])[0] == seq:
                        break              # an older, late echo is skipped
                if b != data:
                    self.add(udp_bad=1)
                else:
                    self.add(udp_echoed=1, udp_bytes_echoed=len(data))
            except OSError:
                pass                       # loss (or a refusal while the server restarts) is allowed, and counted
            time.sleep(0.001)

    def server_pid(self):
        """The pid of the server answering now, or None."""
        try:
            self.add(control_conns=1, control_bytes=5)
            s = self.connect(self.ports[7000])
            s.sendall(b"PID?\n")
            got = s.recv(16)
            s.close()
            return got or None
        except OSError:
            return None

    def restarter(self):
        while True:
            next_restart = time.monotonic() + self.restart_every
            while time.monotonic() < min(next_restart, self.stop):
                time.sleep(0.1)
            if time.monotonic() > self.stop - 5:
                return
            with self.lock:
                self.restarts.append([time.monotonic(), None])
            old = self.server_pid()
            try:
                self.add(control_conns=1, control_bytes=6)
                s = self.connect(self.ports[7000])
                s.sendall(b"CRASH\n")
                s.close()
            except OSError:
                pass
            # The restart is over once another server answers (the relay
            # holds new connections meanwhile); the old one may still answer
            # for a moment after the CRASH line.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                pid = self.server_pid()
                if pid is not None and pid != old:
                    break
                time.sleep(0.05)
            else:
                with self.lock:
                    self.failures.append("the server did not come back within 60s of a restart")
            with self.lock:
                self.restarts[-1][1] = time.monotonic()

    def run(self):
        kinds = [self.echo_client] * 6 + [self.slow_reader] * 2 + [self.resetter] * 2
        if self.udp:
            kinds += [self.udp_client] * 2
        threads = [threading.Thread(target=k, daemon=True) for k in kinds]
        restarter = threading.Thread(target=self.restarter, daemon=True)
        for t in threads + [restarter]:
            t.start()
        for t in threads:
            t.join(self.seconds + 120)
            if t.is_alive():
                self.failures.append("a client thread did not finish within 120s of the end")
        restarter.join(90)
        return {"counts": self.c, "failures": self.failures, "excused": self.excused,
                "restarts": len(self.restarts)}

def client(ports_file, seconds, restart_every, udp, out):
    ports = {}
    for p in json.load(open(ports_file)):
        if p["host_ip"] == "127.0.0.1":
            ports[p["inside_port"]] = p["host_port"]
    result = Soak(ports, seconds, restart_every, udp).run()
    json.dump(result, open(out, "w"))

# ---------------------------------------------------------------- checks
def check(result_file, stderr_file, udp, fds0, fds1, rss0, rss_max):
    r = json.load(open(result_file))
    c = r["counts"]
    stats = {}
    for line in open(stderr_file, encoding="utf-8"):
        m = re.match(r"nsbind: 127\.0\.0\.1:\d+ → :(\d+)/(\w+): (.*)$", line.strip())
        if not m or "bytes in" not in m.group(3):
            continue
        nums = {}
        for v, k in re.findall(r"(\d+) (connections?|failed|flows?|datagrams?|bytes? in|bytes? out)", m.group(3)):
            k = {"connection": "connections", "flow": "flows", "datagram": "datagrams", "byte in": "bytes in", "byte out": "bytes out"}.get(k, k)
            nums[k] = int(v)
        stats[int(m.group(1))] = nums
    problems = list(r["failures"])
    def need(cond, what):
        if not cond:
            problems.append(what)
    print("clients:", json.dumps(c))
    print("nsbind --stats:", json.dumps(stats))
    print("restarts: %d, client errors during restarts (allowed): %d" % (r["restarts"], r["excused"]))
    need(7000 in stats and 7001 in stats, "no --stats lines for the TCP ports")
    if 7000 in stats:
        e = stats[7000]
        conns = e.get("connections", 0)
        need(c["echo_ok"] > 0, "no echo client succeeded")
        need(e["bytes in"] >= c["echo_ok_bytes"], "echo port: nsbind relayed %d bytes in, the successful clients alone sent %d" % (e["bytes in"], c["echo_ok_bytes"]))
        need(e["bytes in"] <= c["echo_sent_all"] + c["reset_sent"] + c["control_bytes"], "echo port: nsbind relayed %d bytes in, more than all clients sent (%d)" % (e["bytes in"], c["echo_sent_all"] + c["reset_sent"] + c["control_bytes"]))
        need(e["bytes out"] >= c["echo_ok_bytes"], "echo port: nsbind relayed %d bytes out, the successful clients alone got %d" % (e["bytes out"], c["echo_ok_bytes"]))
        need(e["bytes out"] <= e["bytes in"], "echo port: more bytes out than in")
        need(conns >= c["echo_ok"], "echo port: %d connections counted, %d echo clients succeeded" % (conns, c["echo_ok"]))
        need(conns + e.get("failed", 0) <= c["echo_attempts"] + c["resets"] + c["control_conns"], "echo port: more connections counted than made")
    if 7001 in stats:
        d = stats[7001]
        need(c["dl_ok"] > 0, "no slow reader finished")
        need(d["bytes out"] >= c["dl_recv_all"], "download port: nsbind relayed %d bytes out, the readers got %d" % (d["bytes out"], c["dl_recv_all"]))
        need(d["bytes out"] <= c["dl_requested"], "download port: nsbind relayed more than was asked for")
    if udp:
        u = stats.get(7002)
        need(u is not None, "no --stats line for the UDP port")
        need(c["udp_echoed"] > 0 and c["udp_bad"] == 0, "UDP: %d echoes, %d wrong" % (c["udp_echoed"], c["udp_bad"]))
        if u:
            need(u.get("datagrams", 0) >= 2 * c["udp_echoed"], "UDP: fewer datagrams counted than echoed")
            need(u["bytes in"] >= c["udp_bytes_echoed"] and u["bytes out"] >= c["udp_bytes_echoed"], "UDP: fewer bytes counted than echoed")
            need(u["bytes in"] <= c["udp_sent"] * 1208, "UDP: more bytes in than sent")
    print("helper: %d descriptors at the start, %d at the end; RSS %d KiB at the start, at most %d KiB" % (fds0, fds1, rss0, rss_max))
    need(fds1 <= fds0 + 64, "the helper holds %d descriptors at the end, %d at the start" % (fds1, fds0))
    need(rss_max <= rss0 + 256 * 1024, "the helper grew from %d KiB to %d KiB" % (rss0, rss_max))
    if problems:
        print("SOAK FAILED:")
        for p in problems[:50]:
            print("  -", p)
        sys.exit(1)
    print("soak passed")

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        server(int(sys.argv[2]))
    elif mode == "client":
        client(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        check(sys.argv[2], sys.argv[3], int(sys.argv[4]), *map(int, sys.argv[5:9]))
PY

# The server, restarted in a loop inside; SIGTERM ends the loop with 0.
cat >"$work/server.sh" <<SH
trap 'kill \$child 2>/dev/null; wait \$child; exit 0' TERM INT
while :; do
  python3 "$work/soak.py" server $udp & child=\$!
  wait \$child
done
SH

publish=(-p 7000:0 -p 7001:0)
[ "$udp" = 1 ] && publish+=(-p 7002:0/udp)
say "starting nsbind for ${seconds}s of load, a server restart every ${restart_every}s"
"$work/nsbind" run --stats --connect-timeout 20s --ports-file "$work/ports.json" "${publish[@]}" \
  -- sh "$work/server.sh" >"$work/stdout" 2>"$work/stderr" &
nsbind_pid=$!
for _ in $(seq 300); do
  [ -s "$work/ports.json" ] && grep -q "server up" "$work/stdout" && break
  kill -0 "$nsbind_pid" 2>/dev/null || { cat "$work/stderr"; exit 1; }
  sleep 0.1
done
[ -s "$work/ports.json" ] || { echo "nsbind did not start within 30s"; cat "$work/stderr"; exit 1; }
helper=$(cat /proc/"$nsbind_pid"/task/*/children | awk '{print $1; exit}')
fds() { ls /proc/"$helper"/fd | wc -l; }
rss() { awk '/^VmRSS/ {print $2}' /proc/"$helper"/status; }
fds0=$(fds); rss0=$(rss); rss_max=$rss0

timeout $((seconds + 300)) python3 "$work/soak.py" client "$work/ports.json" "$seconds" "$restart_every" "$udp" "$work/result.json" &
client_pid=$!
while kill -0 "$client_pid" 2>/dev/null; do
  r=$(rss); [ "$r" -gt "$rss_max" ] && rss_max=$r
  sleep 1
done
wait "$client_pid" || { echo "the clients failed or timed out"; exit 1; }
fds1=$(fds)

say "stopping nsbind (SIGTERM)"
kill -TERM "$nsbind_pid"
status=0
for _ in $(seq 300); do kill -0 "$nsbind_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$nsbind_pid" 2>/dev/null; then echo "nsbind did not exit within 30s of SIGTERM"; exit 1; fi
wait "$nsbind_pid" || status=$?
nsbind_pid=
grep -v '^nsbind: debug' "$work/stderr" | tail -n 8
if [ "$status" != 0 ]; then echo "nsbind exited $status, want 0"; exit 1; fi
python3 "$work/soak.py" check "$work/result.json" "$work/stderr" "$udp" "$fds0" "$fds1" "$rss0" "$rss_max"
