package helper

import (
	"errors"
	"syscall"
)

// verdict is what a program's connect() inside gets for its held SYN,
// decided from what the host's own connect() of the same address got
// (outbound_linux.go gives it to the queue as an nsutil.Verdict).
type verdict int

const (
	accept      verdict = iota // the connection goes on: success
	refuse                     // a TCP reset: ECONNREFUSED
	hostUnreach                // ICMP host unreachable: EHOSTUNREACH
	netUnreach                 // ICMP network unreachable: ENETUNREACH
	prohibited                 // ICMP administratively prohibited: EACCES
	drop                       // nothing: the program's SYN retries time out
)

func (v verdict) String() string {
	return [...]string{"accept", "refuse", "host unreachable", "network unreachable", "prohibited", "drop"}[v]
}

// verdictFor turns the host's connect error into the verdict.
func verdictFor(err error) verdict {
	switch {
	case err == nil:
		return accept
	case errors.Is(err, syscall.ECONNREFUSED):
		return refuse
	case errors.Is(err, syscall.EHOSTUNREACH):
		return hostUnreach
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EAFNOSUPPORT):
		return netUnreach
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return prohibited
	}
	// ETIMEDOUT, or no host socket in time: the program's own SYN
	// retries decide.
	return drop
}
