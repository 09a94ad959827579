package main

import (
	"bytes"
	"strings"
	"testing"
)

// Every check of nsbind run's flags stops it before anything starts, with
// one line that says what to do: no namespace needed.
func TestRunFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"unknown flag", []string{"--no-such-flag", "true"}, 125, "unknown flag: --no-such-flag"},
		{"no command", nil, 125, "no command to run"},
		{"log level", []string{"--log-level", "loud", "true"}, 125, `invalid --log-level "loud"`},
		{"negative connect timeout", []string{"--connect-timeout", "-1s", "true"}, 125, "--connect-timeout must not be negative"},
		{"source address", []string{"--source-address", "nat", "true"}, 125, `invalid --source-address "nat"`},
		{"proxy protocol", []string{"--proxy-protocol", "v3", "true"}, 125, `invalid --proxy-protocol "v3"`},
		{"direct and proxy protocol", []string{"--direct", "--proxy-protocol", "v2", "true"}, 125, "--direct and --proxy-protocol do not go together"},
		{"direct and veth", []string{"--direct", "--net=veth", "true"}, 125, "--direct and --net=veth are two different data paths"},
		{"direct and relay", []string{"--direct", "--relay", "true"}, 125, "--direct and --relay are the two data paths"},
		{"direct and loopback source", []string{"--direct", "--source-address", "loopback", "true"}, 125, "--direct and --source-address=loopback do not go together"},
		{"direct-udp and relay", []string{"--relay", "--direct-udp", "true"}, 125, "--direct-udp needs the native path"},
		{"direct-udp and isolated", []string{"--direct-udp", "--isolated", "true"}, 125, "--direct-udp and --isolated do not go together"},
		{"unknown net", []string{"--net=tap", "true"}, 125, `invalid --net "tap"`},
		{"subnet without veth", []string{"--subnet", "10.1.0.0/30", "true"}, 125, "--subnet is for --net=veth"},
		{"subnet too small", []string{"--net=veth", "--subnet", "10.1.0.0/31", "true"}, 125, "use a /30 or larger"},
		{"udp timeout zero", []string{"--udp-timeout", "0s", "true"}, 125, "--udp-timeout must be positive"},
		{"udp timeout not a duration", []string{"--udp-timeout", "soon", "true"}, 125, "--udp-timeout"},
		{"udp max flows", []string{"--udp-max-flows", "0", "true"}, 125, "--udp-max-flows must be at least 1"},
		{"bad spec", []string{"-p", "80:x", "true"}, 125, `invalid port spec "80:x"`},
		{"two specs claim a host port", []string{"-p", "80:8080", "-p", "81:8080", "true"}, 125, "both claim"},
		{"bad to-host", []string{"--to-host", "5432:x", "true"}, 125, `invalid --to-host "5432:x"`},
		{"to-host and isolated", []string{"--isolated", "--to-host", "5432", "true"}, 125, "contradict"},
		{"to-host on a published port", []string{"-p", "5432:0", "--to-host", "5432", "true"}, 125, "both use port 5432/tcp inside"},
		{"missing resolv.conf", []string{"--resolv-conf", "/nonexistent/resolv.conf", "true"}, 125, "--resolv-conf: open /nonexistent/resolv.conf"},
		{"resolv.conf a directory", []string{"--resolv-conf", "/tmp", "true"}, 125, "--resolv-conf /tmp is a directory: give a file"},
		{"command not found", []string{"no-such-command-nsbind"}, 127, "command not found: no-such-command-nsbind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderrBuf bytes.Buffer
			code := runCommand(tt.args, &stdout, &stderrBuf)
			stderr := stderrBuf.String()
			if code != tt.code || !strings.HasPrefix(stderr, "nsbind: ") || !strings.Contains(stderr, tt.says) {
				t.Fatalf("exit %d, stderr %q; want %d saying %q", code, stderr, tt.code, tt.says)
			}
		})
	}
}

// doctorCommand is nsbind doctor: its flags are checked before any probe.
func TestDoctorFlagErrors(t *testing.T) {
	for _, args := range [][]string{{"--jsn"}, {"now"}} {
		var stdout, stderr bytes.Buffer
		if code := doctorCommand(args, &stdout, &stderr); code != exitFailed || stdout.Len() > 0 || !strings.HasPrefix(stderr.String(), "nsbind: ") {
			t.Errorf("nsbind doctor %q: exit %d, stdout %q, stderr %q; want 125 and one error", args, code, stdout.String(), stderr.String())
		}
	}
}
