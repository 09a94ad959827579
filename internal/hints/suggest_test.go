package hints

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/nsbind/nsbind/forward"
)

func mustSpec(t testing.TB, arg string) forward.Spec {
	t.Helper()
	s, err := forward.ParseSpec(arg)
	if err != nil {
		t.Fatalf("ParseSpec(%q): %v", arg, err)
	}
	return s
}

func TestSwapHint(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  string
		limit int
		want  string // "" when no swap is suggested
	}{
		{"docker's order", "8080:80", 1024, "80:8080"},
		{"docker's order, udp", "8080:80/udp", 1024, "80:8080/udp"},
		{"https", "8443:443", 1024, "443:8443"},
		{"host address kept", "8080:0.0.0.0:80", 1024, "80:0.0.0.0:8080"},
		{"IPv6 host address kept", "8080:[::1]:80", 1024, "80:[::1]:8080"},
		{"ranges", "8000-8009:80-89", 1024, "80-89:8000-8009"},
		{"host's own lower limit", "8080:80", 100, "80:8080"},
		{"both privileged, one number", "80", 1024, ""},
		{"both privileged", "80:443", 1024, ""},
		{"already nsbind's order", "80:8080", 1024, ""},
		{"both unprivileged", "8080:9090", 1024, ""},
		{"kernel picks the host port", "80:0", 1024, ""},
		{"inside port privileged under a high limit", "1500:80", 2000, ""},
		{"host port unprivileged under a low limit", "8080:443", 100, ""},
		{"nothing privileged", "8080:80", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := swapHint(mustSpec(t, tc.spec), tc.limit)
			switch {
			case tc.want == "" && ok:
				t.Fatalf("swapHint(%s, %d) = %s, want no swap", tc.spec, tc.limit, specArg(got))
			case tc.want != "" && !ok:
				t.Fatalf("swapHint(%s, %d): no swap, want %s", tc.spec, tc.limit, tc.want)
			case ok && got != mustSpec(t, tc.want):
				t.Fatalf("swapHint(%s, %d) = %s, want %s", tc.spec, tc.limit, specArg(got), tc.want)
			}
		})
	}
}

// privilegedError is the BindError nsbind returns when the first host socket
// of specs[failed] is refused.
func privilegedError(t *testing.T, specs []forward.Spec, failed int) *forward.BindError {
	t.Helper()
	bindings, err := forward.Expand(specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bindings {
		if b.Spec == specs[failed] {
			return &forward.BindError{Binding: b, Err: syscall.EACCES}
		}
	}
	t.Fatalf("no binding of %s", specs[failed])
	return nil
}

func TestDescribePrivileged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		specs  []string
		failed int  // index of the refused spec
		alone  bool // describe with be's spec only (specs not known)
		limit  int
		// want is the suggestion and the sysctl: the line's end from "e.g. ".
		want string
		// swapped is whether the line explains docker's order.
		swapped bool
	}{
		{name: "docker's order", specs: []string{"8080:80"}, want: "-p 80:8080, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80", swapped: true},
		{name: "docker's order, udp", specs: []string{"8080:80/udp"}, want: "-p 80:8080/udp, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80", swapped: true},
		{name: "https", specs: []string{"8443:443"}, want: "-p 443:8443, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=443", swapped: true},
		{name: "host address kept", specs: []string{"8080:0.0.0.0:80"}, want: "-p 80:0.0.0.0:8080, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80", swapped: true},
		{name: "two in docker's order, each its own swap", specs: []string{"8443:443", "8080:80"},
			want: "-p 443:8443 -p 80:8080, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80", swapped: true},
		{name: "two in docker's order, the second refused", specs: []string{"8443:443", "8080:80"}, failed: 1,
			want: "-p 80:8080 -p 443:8443, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80", swapped: true},
		{name: "two in docker's order, specs not known", specs: []string{"8443:443", "8080:80"}, alone: true,
			want: "-p 443:8443, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=443", swapped: true},
		{name: "one port", specs: []string{"80"}, want: "-p 80:8080, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"},
		{name: "one port, udp kept", specs: []string{"80/udp"}, want: "-p 80:8080/udp, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"},
		{name: "both privileged", specs: []string{"80:443"}, want: "-p 80:8080, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=443"},
		{name: "both privileged, address kept", specs: []string{"80:0.0.0.0:443"}, want: "-p 80:0.0.0.0:8080, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=443"},
		{name: "two privileged get distinct host ports", specs: []string{"80", "443"}, want: "-p 80:8080 -p 443:8081, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"},
		{name: "suggestion skips a host port another spec has", specs: []string{"81:8080", "80"}, failed: 1, want: "-p 80:8081, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"},
		{name: "other protocol does not take the port", specs: []string{"81:8080/udp", "80"}, failed: 1, want: "-p 80:8080, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"},
		{name: "swap whose host port is taken", specs: []string{"90:8080", "8080:80"}, failed: 1, want: "-p 8080:8081, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"},
		{name: "ranges swapped", specs: []string{"8000-8009:80-89"}, want: "-p 80-89:8000-8009, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80", swapped: true},
		{name: "range moved whole", specs: []string{"80-89"}, want: "-p 80-89:8080-8089, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"},
		{name: "host's limit above 8080", specs: []string{"80"}, limit: 9000, want: "-p 80:9000, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"},
		{name: "no room left: the kernel picks", specs: []string{"80-89"}, limit: 65530, want: "-p 80-89:0, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.limit == 0 {
				tc.limit = 1024
			}
			var specs []forward.Spec
			for _, a := range tc.specs {
				specs = append(specs, mustSpec(t, a))
			}
			be := privilegedError(t, specs, tc.failed)
			if tc.alone {
				specs = nil
			}
			got := describePrivileged(be, specs, tc.limit)
			_, tail, ok := strings.Cut(got, "e.g. ")
			if !ok || tail != tc.want {
				t.Errorf("describePrivileged:\n got %s\nwant ...e.g. %s", got, tc.want)
			}
			if docker := strings.Contains(got, "docker's -p is the other way round"); docker != tc.swapped {
				t.Errorf("mentions docker's order: %v, want %v: %s", docker, tc.swapped, got)
			}
		})
	}
}

// The whole line, so that a change of wording is seen here.
func TestDescribePrivilegedLine(t *testing.T) {
	specs := []forward.Spec{mustSpec(t, "8443:443"), mustSpec(t, "8080:80")}
	got := describePrivileged(privilegedError(t, specs, 0), specs, 1024)
	want := "host port 443/tcp on 127.0.0.1 is privileged on this host (net.ipv4.ip_unprivileged_port_start=1024): " +
		"the first number of -p is the port inside, the second the port on the host (docker's -p is the other way round), " +
		"so publish on a host port of 1024 or above, e.g. -p 443:8443 -p 80:8080, " +
		"or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestDockerSpelling(t *testing.T) {
	for _, tc := range []struct {
		name string
		arg  string
		want string // "" when the argument must not be flagged
	}{
		// docker → nsbind
		{"docker's HOSTIP:HOSTPORT:PORT", "127.0.0.1:8080:80", "80:127.0.0.1:8080"},
		{"bracketed IPv6", "[::1]:8080:80", "80:[::1]:8080"},
		{"IPv6 wildcard", "[::]:8080:80", "80:[::]:8080"},
		{"unbracketed IPv6", "::1:8080:80", "80:[::1]:8080"},
		{"udp", "0.0.0.0:8080:80/udp", "80:0.0.0.0:8080/udp"},
		{"protocol in capitals", "127.0.0.1:8080:80/TCP", "80:127.0.0.1:8080"},
		{"docker's any host port", "127.0.0.1::80", "80:127.0.0.1:0"},
		{"docker's ranges", "127.0.0.1:8000-8009:80-89", "80-89:127.0.0.1:8000-8009"},
		{"docker's HOSTPORT:PORT", "8080:80", "80:8080"},
		{"docker's HOSTPORT:PORT, https", "8443:443", "443:8443"},
		{"docker's HOSTPORT:PORT, udp", "5353:53/udp", "53:5353/udp"},
		{"docker's HOSTPORT:PORT, ranges", "8000-8009:80-89", "80-89:8000-8009"},
		// nsbind's own: never flagged
		{"nsbind's order", "80:8080", ""},
		{"nsbind's with IPv6 address", "80:[::]:8080", ""},
		{"nsbind's with IPv4 address", "80:127.0.0.1:8080", ""},
		{"nsbind's udp", "53:5353/udp", ""},
		{"nsbind's ranges", "8000-8009:18000-18009", ""},
		{"kernel picks", "80:0", ""},
		{"one port", "80", ""},
		{"both privileged", "80:443", ""},
		{"both unprivileged", "8080:9090", ""},
		{"nsbind's with address, docker's numbers", "8080:0.0.0.0:80", ""},
		// neither reading is valid: no suggestion to make
		{"address and one port", "127.0.0.1:80", ""},
		{"inside port 0", "127.0.0.1:8080:0", ""},
		{"docker's sctp", "127.0.0.1:8080:80/sctp", ""},
		{"not an address", "localhost:8080:80", ""},
		{"bad address", "999.0.0.1:8080:80", ""},
		{"missing bracket", "[::1:8080:80", ""},
		{"ranges of different lengths", "127.0.0.1:8000-8009:80", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := dockerSpelling(tc.arg)
			switch {
			case tc.want == "" && ok:
				t.Fatalf("dockerSpelling(%q) = %q, want not flagged", tc.arg, got)
			case tc.want != "" && (!ok || got != tc.want):
				t.Fatalf("dockerSpelling(%q) = %q, %v, want %q", tc.arg, got, ok, tc.want)
			}
		})
	}
}

func TestDescribeSpecError(t *testing.T) {
	for _, tc := range []struct {
		name, arg, want string
	}{
		{"docker's HOSTIP:HOSTPORT:PORT", "127.0.0.1:8080:80",
			`invalid port spec "127.0.0.1:8080:80": that is docker's HOSTIP:HOSTPORT:PORT order; nsbind's is INSIDEPORT:HOSTIP:HOSTPORT: -p 80:127.0.0.1:8080`},
		{"bracketed IPv6", "[::1]:8080:80",
			`invalid port spec "[::1]:8080:80": that is docker's HOSTIP:HOSTPORT:PORT order; nsbind's is INSIDEPORT:HOSTIP:HOSTPORT: -p 80:[::1]:8080`},
		{"udp", "0.0.0.0:8080:80/udp",
			`invalid port spec "0.0.0.0:8080:80/udp": that is docker's HOSTIP:HOSTPORT:PORT order; nsbind's is INSIDEPORT:HOSTIP:HOSTPORT: -p 80:0.0.0.0:8080/udp`},
		{"docker's any host port", "127.0.0.1::80",
			`invalid port spec "127.0.0.1::80": that is docker's HOSTIP::PORT order; nsbind's is INSIDEPORT:HOSTIP:0: -p 80:127.0.0.1:0`},
		{"not docker's: the parser's reason stays", "80:abc",
			`invalid port spec "80:abc": host port "abc" is not a number`},
		{"docker's sctp: the parser's reason stays", "127.0.0.1:8080:80/sctp",
			`invalid port spec "127.0.0.1:8080:80/sctp": unknown protocol "sctp" (use /tcp or /udp)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := forward.ParseSpec(tc.arg)
			var se *forward.SpecError
			if !errors.As(err, &se) {
				t.Fatalf("ParseSpec(%q) = %v, want a SpecError", tc.arg, err)
			}
			if got := describeSpecError(se); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// FuzzDockerSpelling checks that a suggestion is always a spec nsbind reads
// and is itself never flagged as docker's (the hint cannot send the user
// round in circles).
func FuzzDockerSpelling(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8080:80", "[::1]:8080:80/udp", "127.0.0.1::80", "8080:80", "80:8080", "::1:8080:80", "1.2.3.4:1-2:3-4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		got, ok := dockerSpelling(arg)
		if !ok {
			return
		}
		if _, err := forward.ParseSpec(got); err != nil {
			t.Fatalf("dockerSpelling(%q) = %q, which nsbind cannot read: %v", arg, got, err)
		}
		if again, ok := dockerSpelling(got); ok {
			t.Fatalf("dockerSpelling(%q) = %q, flagged again as %q", arg, got, again)
		}
	})
}

// A busy host port: the line points at whatever holds the port (ss -a: a
// connection in TIME_WAIT holds it too), and for a range spec suggests a
// range past it, not the next port, which is in the range.
func TestDescribeBusyHostPort(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"80:41522", "host port 41522/tcp on 127.0.0.1 is already in use (-p 80:41522/tcp): " +
			"stop what uses it (see: ss -anp 'sport = :41522') or choose another host port, " +
			"e.g. -p 80:41523, or -p 80:0 to let the kernel pick one"},
		{"8000-8002:41522-41524", "host port 41522/tcp on 127.0.0.1 is already in use (-p 8000-8002:41522-41524/tcp): " +
			"stop what uses it (see: ss -anp 'sport = :41522') or choose another host port, " +
			"e.g. -p 8000-8002:41525-41527"},
	} {
		bindings, err := forward.Expand([]forward.Spec{mustSpec(t, tc.spec)})
		if err != nil {
			t.Fatal(err)
		}
		got := Describe(&forward.BindError{Binding: bindings[0], Err: syscall.EADDRINUSE})
		if got != tc.want {
			t.Errorf("%s:\ngot  %s\nwant %s", tc.spec, got, tc.want)
		}
	}
}
