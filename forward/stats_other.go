//go:build !linux

package forward

import "errors"

// AcceptCounter counts connections on the native path, which is Linux's.
type AcceptCounter struct {
	Conns map[uint16]int64
}

// NewAcceptCounter counts nothing here.
func NewAcceptCounter([]uint16) *AcceptCounter { return &AcceptCounter{Conns: map[uint16]int64{}} }

// Poll fails here.
func (c *AcceptCounter) Poll() error { return errors.New("not on this system") }
