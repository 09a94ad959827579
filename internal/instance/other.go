//go:build !linux

package instance

import (
	"context"
	"errors"
	"syscall"
)

// Instances need unix sockets with SO_PEERCRED; elsewhere every call fails.

var errUnsupported = errors.New("nsbind instances need Linux")

// Dir returns "" where instances are not supported.
func Dir() string { return "" }

// Server is not supported here.
type Server struct{}

// Listen fails: not supported here.
func Listen(name string, h Handler) (*Server, error) { return nil, errUnsupported }

// Name returns "".
func (s *Server) Name() string { return "" }

// Path returns "".
func (s *Server) Path() string { return "" }

// Serve fails: not supported here.
func (s *Server) Serve(ctx context.Context) error { return errUnsupported }

// Close does nothing.
func (s *Server) Close() error { return nil }

// Client is not supported here.
type Client struct{}

// Dial fails: not supported here.
func Dial(name string) (*Client, error) { return nil, errUnsupported }

// Name returns "".
func (c *Client) Name() string { return "" }

// Pid returns 0.
func (c *Client) Pid() int { return 0 }

// UID returns 0.
func (c *Client) UID() int { return 0 }

// Close does nothing.
func (c *Client) Close() error { return nil }

// Info fails: not supported here.
func (c *Client) Info(ctx context.Context) (Info, error) { return Info{}, errUnsupported }

// PortAdd fails: not supported here.
func (c *Client) PortAdd(ctx context.Context, specs []string) ([]Socket, error) {
	return nil, errUnsupported
}

// PortRm fails: not supported here.
func (c *Client) PortRm(ctx context.Context, specs []string) ([]Socket, error) {
	return nil, errUnsupported
}

// PortList fails: not supported here.
func (c *Client) PortList(ctx context.Context) ([]Socket, error) { return nil, errUnsupported }

// Stats fails: not supported here.
func (c *Client) Stats(ctx context.Context) ([]SocketStats, error) { return nil, errUnsupported }

// Stop fails: not supported here.
func (c *Client) Stop(ctx context.Context) error { return errUnsupported }

// Exec is not supported here.
type Exec struct{ Pid int }

// Exec fails: not supported here.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (*Exec, error) {
	return nil, errUnsupported
}

// Signal fails: not supported here.
func (e *Exec) Signal(sig syscall.Signal) error { return errUnsupported }

// Wait fails: not supported here.
func (e *Exec) Wait() (ExitStatus, error) { return ExitStatus{}, errUnsupported }

// Close does nothing.
func (e *Exec) Close() error { return nil }

// InstanceInfo is one instance as List found it.
type InstanceInfo struct {
	Info
	Socket string `json:"socket"`
	Error  string `json:"error,omitempty"`
}

// List fails: not supported here.
func List() ([]InstanceInfo, error) { return nil, errUnsupported }
