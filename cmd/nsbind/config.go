package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// helperConfig is what the parent tells the helper, as JSON in configEnv.
type helperConfig struct {
	Command []string `json:"command"`
	// Sockets are the inherited host sockets, in descriptor order from
	// nsutil.FirstFD on.
	Sockets        []socketConfig `json:"sockets"`
	Root           bool           `json:"root,omitempty"`
	Foreground     bool           `json:"foreground,omitempty"`
	LogLevel       string         `json:"log_level"`
	ConnectTimeout time.Duration  `json:"connect_timeout"`
	// SourceAddress is "client" (dial the server from the client's
	// address) or "loopback".
	SourceAddress string `json:"source_address"`
	// ProxyProtocol is 1 or 2 to send a PROXY protocol header first.
	ProxyProtocol int `json:"proxy_protocol,omitempty"`
	// Outbound says how programs inside reach out (outbound.go).
	Outbound outboundConfig `json:"outbound"`
	// UDP flows: idle timeout and bound per host socket (0: the defaults).
	UDPTimeout  time.Duration `json:"udp_timeout,omitempty"`
	UDPMaxFlows int           `json:"udp_max_flows,omitempty"`
	// Veth, with --net=veth, is the helper's end of the veth pair.
	Veth *vethConfig `json:"veth,omitempty"`
	// Direct gives the server the host sockets at its bind (--direct).
	Direct bool `json:"direct,omitempty"`
}

type socketConfig struct {
	Proto  string         `json:"proto"`
	Host   netip.AddrPort `json:"host"`
	Inside uint16         `json:"inside"`
}

func loadHelperConfig() (helperConfig, error) {
	var c helperConfig
	if err := json.Unmarshal([]byte(os.Getenv(configEnv)), &c); err != nil {
		return c, fmt.Errorf("reading the helper's configuration: %w", err)
	}
	if len(c.Command) == 0 {
		return c, fmt.Errorf("reading the helper's configuration: no command")
	}
	return c, nil
}

// serverEnv is env without nsbind's own variables: the server must not see
// them (nor start another helper by accident).
func serverEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "NSBIND_") {
			out = append(out, kv)
		}
	}
	return out
}
