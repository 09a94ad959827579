package hints

// Hints that recognise what the user meant. Most people come to -p from
// docker, whose order is the other way round (docker: HOSTPORT:PORT, nsbind:
// INSIDEPORT:HOSTPORT): `-p 8080:80` typed for "serve the container's 80 on
// host 8080" asks nsbind for host port 80, which fails as privileged, and
// `-p 127.0.0.1:8080:80` is not a spec nsbind can read at all. The functions
// here turn both into the nsbind spelling of what was meant; they are pure, so
// every hint has a table test.

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/nsbind/nsbind/forward"
)

// dockerPrivileged is the port limit that tells docker's order apart by its
// shape alone, where the host's own limit does not matter: docker users
// publish a well-known port (below 1024) on a high one. The hint for a
// refused bind uses the host's actual limit instead (swapHint).
const dockerPrivileged = 1024

// swapHint returns spec with its two port numbers swapped when the spec looks
// like docker's order: its host port is privileged on this host (below
// hostPortStart, net.ipv4.ip_unprivileged_port_start) while its inside port is
// not, as in `-p 8080:80` meant as "host 8080 → server 80". The host address
// and the protocol are kept. It returns false when a swap would not help:
// both numbers privileged (`-p 80`, `-p 80:443`), or a host port the kernel
// chooses (`-p 80:0`).
func swapHint(spec forward.Spec, hostPortStart int) (forward.Spec, bool) {
	if spec.Host.Start == 0 || int(spec.Host.Start) >= hostPortStart || int(spec.Inside.Start) < hostPortStart {
		return forward.Spec{}, false
	}
	swapped := spec
	swapped.Inside, swapped.Host = spec.Host, spec.Inside
	return swapped, true
}

// unprivilegedHint returns spec with its host port moved to the first free
// unprivileged range of its length: from 8080 (or hostPortStart when that is
// higher), past every range of the same protocol in taken. The inside port,
// the host address and the protocol are kept. When no range fits below 65536,
// the host port is 0: the kernel picks one.
func unprivilegedHint(spec forward.Spec, hostPortStart int, taken []forward.Spec) forward.Spec {
	n := spec.Inside.Len()
	start := max(8080, hostPortStart)
	for start+n-1 <= 65535 {
		r := forward.PortRange{Start: uint16(start), End: uint16(start + n - 1)}
		clash := false
		for _, t := range taken {
			if t.Proto == spec.Proto && t.Host.Start != 0 && overlap(t.Host, r) {
				clash = true
				start = int(t.Host.End) + 1
				break
			}
		}
		if !clash {
			spec.Host = r
			return spec
		}
	}
	spec.Host = forward.PortRange{}
	return spec
}

func overlap(a, b forward.PortRange) bool { return a.Start <= b.End && b.Start <= a.End }

// privilegedFixes returns what to write instead of failed (a spec the host
// refused as privileged) and of every other spec in specs whose host port is
// privileged too, failed's first, so that one hint fixes the whole command
// line: each spec in docker's order gets its own swap, the others a free
// unprivileged host port. swapped says whether any fix is a swap; lowest is
// the lowest privileged host port among them (what the sysctl would need).
// specs may be nil or leave failed out.
func privilegedFixes(failed forward.Spec, specs []forward.Spec, hostPortStart int) (fixes []forward.Spec, swapped bool, lowest uint16) {
	privileged := func(s forward.Spec) bool { return s.Host.Start != 0 && int(s.Host.Start) < hostPortStart }
	todo := []forward.Spec{failed}
	var taken []forward.Spec
	seen := false
	for _, s := range specs {
		switch {
		case s == failed && !seen:
			seen = true
		case privileged(s):
			todo = append(todo, s)
		default:
			taken = append(taken, s)
		}
	}
	lowest = failed.Host.Start
	for _, s := range todo {
		lowest = min(lowest, s.Host.Start)
		fix, ok := swapHint(s, hostPortStart)
		if ok {
			for _, t := range taken {
				if t.Proto == fix.Proto && t.Host.Start != 0 && overlap(t.Host, fix.Host) {
					ok = false // the other number is not free
					break
				}
			}
		}
		if ok {
			swapped = true
		} else {
			fix = unprivilegedHint(s, hostPortStart, taken)
		}
		fixes = append(fixes, fix)
		taken = append(taken, fix)
	}
	return fixes, swapped, lowest
}

// describePrivileged is the line nsbind prints for a host bind refused with
// EACCES below net.ipv4.ip_unprivileged_port_start (hostPortStart). specs are
// all the -p specs of the run (nil for be's alone): the example fixes every
// spec that would fail the same way, and swaps the numbers of a spec written
// in docker's order instead of keeping its well-known port on the inside.
// It is the line for a port below hostPortStart; an EACCES at or above it
// (an LSM's refusal) needs another.
func describePrivileged(be *forward.BindError, specs []forward.Spec, hostPortStart int) string {
	b := be.Binding
	port := b.Host.Port()
	where := fmt.Sprintf("host port %d/%s on %s", port, b.Proto, b.Host.Addr())
	fixes, swapped, lowest := privilegedFixes(b.Spec, specs, hostPortStart)
	order := "the first number of -p is the port inside, the second the port on the host"
	if swapped {
		order += " (docker's -p is the other way round)"
	}
	return fmt.Sprintf("%s is privileged on this host (net.ipv4.ip_unprivileged_port_start=%d): %s, so publish on a host port of %d or above, e.g. %s, or allow it with: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=%d",
		where, hostPortStart, order, hostPortStart, publishArgs(fixes), lowest)
}

// publishArgs formats specs as the -p flags that ask for them.
func publishArgs(specs []forward.Spec) string {
	args := make([]string, len(specs))
	for i, s := range specs {
		args[i] = "-p " + specArg(s)
	}
	return strings.Join(args, " ")
}

// specArg is s as a user would type it: the canonical form without the
// default /tcp.
func specArg(s forward.Spec) string {
	return strings.TrimSuffix(s.String(), "/"+string(forward.TCP))
}

// dockerMatch is a -p argument recognised as docker's.
type dockerMatch struct {
	docker string // docker's pattern, e.g. "HOSTIP:HOSTPORT:PORT"
	ours   string // nsbind's pattern for the same, e.g. "INSIDEPORT:HOSTIP:HOSTPORT"
	nsbind string // the argument in nsbind's spelling
}

// dockerSpelling recognises a -p argument written in one of docker's forms
// where it cannot be meant as nsbind's, and returns the nsbind spelling of
// what docker would do with it:
//
//	127.0.0.1:8080:80     → 80:127.0.0.1:8080      (a leading address is never nsbind's)
//	[::1]:8080:80/udp     → 80:[::1]:8080/udp
//	127.0.0.1::80         → 80:127.0.0.1:0         (docker's "any host port")
//	8080:80               → 80:8080                (a well-known port published on a high one)
//
// A spec that is good nsbind (80:8080, 80:[::]:8080, 53:5353/udp, 80:0) is
// not flagged, nor one whose docker reading would not be a valid spec either.
func dockerSpelling(arg string) (nsbind string, ok bool) {
	m, ok := dockerForm(arg)
	return m.nsbind, ok
}

func dockerForm(arg string) (dockerMatch, bool) {
	rest, suffix := arg, ""
	if i := strings.LastIndexByte(arg, '/'); i >= 0 {
		p := forward.Proto(strings.ToLower(arg[i+1:]))
		if p != forward.TCP && p != forward.UDP {
			return dockerMatch{}, false
		}
		rest, suffix = arg[:i], "/"+string(p)
	}
	if s, err := forward.ParseSpec(arg); err == nil {
		// nsbind reads it; docker's HOSTPORT:PORT is meant only when the
		// numbers are the wrong way round for nsbind.
		if s.HostAddr.IsValid() || strings.Count(rest, ":") != 1 {
			return dockerMatch{}, false
		}
		swapped, ok := swapHint(s, dockerPrivileged)
		if !ok {
			return dockerMatch{}, false
		}
		return dockerMatch{"HOSTPORT:PORT", "INSIDEPORT:HOSTPORT", specArg(swapped)}, true
	}
	// HOSTIP:HOSTPORT:PORT and HOSTIP::PORT: the two last fields are ports,
	// everything before them an address, bracketed or not.
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return dockerMatch{}, false
	}
	inside := rest[i+1:]
	j := strings.LastIndexByte(rest[:i], ':')
	if j < 0 {
		return dockerMatch{}, false
	}
	hostPort, addrText := rest[j+1:i], rest[:j]
	if strings.HasPrefix(addrText, "[") && strings.HasSuffix(addrText, "]") {
		addrText = addrText[1 : len(addrText)-1]
	}
	addr, err := netip.ParseAddr(addrText)
	if err != nil {
		return dockerMatch{}, false
	}
	m := dockerMatch{docker: "HOSTIP:HOSTPORT:PORT", ours: "INSIDEPORT:HOSTIP:HOSTPORT"}
	if hostPort == "" {
		m = dockerMatch{docker: "HOSTIP::PORT", ours: "INSIDEPORT:HOSTIP:0"}
		hostPort = "0"
	}
	hostAddr := addr.String()
	if addr.Is6() {
		hostAddr = "[" + hostAddr + "]"
	}
	s, err := forward.ParseSpec(inside + ":" + hostAddr + ":" + hostPort + suffix)
	if err != nil {
		return dockerMatch{}, false
	}
	m.nsbind = specArg(s)
	return m, true
}

// describeSpecError is the line for a -p argument nsbind cannot read: for
// one in docker's spelling, what to write instead; otherwise the parse error
// as it is.
func describeSpecError(se *forward.SpecError) string {
	m, ok := dockerForm(se.Spec)
	if !ok {
		return se.Error()
	}
	return fmt.Sprintf("invalid port spec %q: that is docker's %s order; nsbind's is %s: -p %s",
		se.Spec, m.docker, m.ours, m.nsbind)
}
