package helper

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsbind/nsbind/forward"
)

// A published TCP port the server never binds: on the native path its
// clients wait in the backlog of a host socket nobody accepts on (the
// relay would reset them after --connect-timeout). The reaper polls the
// listening host sockets still Waiting; a client that has waited
// --connect-timeout gets a reset (accept4, SO_LINGER 0, close) and
// nsbind says once per port that nothing inside listens there. It polls
// the raw descriptors and accepts with SOCK_NONBLOCK, so it changes no
// flag of a socket the server may get, and only under the director's
// lock, on a socket still Waiting, so never on one the server has.

// reapTick bounds how often the reaper looks.
const (
	reapTickMin = 20 * time.Millisecond
	reapTickMax = 500 * time.Millisecond
)

func (d *director) startReaper() {
	tick := min(max(d.cfg.ConnectTimeout/10, reapTickMin), reapTickMax)
	d.relays.Add(1)
	go func() {
		defer d.relays.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		since := make(map[int]time.Time) // when a client was first seen waiting
		said := make(map[uint16]bool)
		for {
			select {
			case <-d.ctx.Done():
				return
			case now := <-t.C:
				d.reap(now, since, said)
			}
		}
	}()
}

// reap looks at every listening TCP host socket still Waiting once.
func (d *director) reap(now time.Time, since map[int]time.Time, said map[uint16]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.disabled {
		return
	}
	h := d.handovers.h
	var idx []int
	var fds []unix.PollFd
	for i := range h.Len() {
		s := h.Socket(i)
		if s.Proto != forward.TCP || !s.Listens() || h.State(i) != forward.Waiting {
			delete(since, i)
			continue
		}
		idx = append(idx, i)
		fds = append(fds, unix.PollFd{Fd: int32(d.fds[i]), Events: unix.POLLIN})
	}
	if len(fds) == 0 {
		return
	}
	if _, err := unix.Poll(fds, 0); err != nil {
		return
	}
	for k, i := range idx {
		if fds[k].Revents&unix.POLLIN == 0 {
			delete(since, i)
			continue
		}
		first, ok := since[i]
		if !ok {
			since[i] = now
			continue
		}
		if now.Sub(first) < d.cfg.ConnectTimeout {
			continue
		}
		n := resetWaiting(d.fds[i])
		delete(since, i)
		d.stats[i].Failed.Add(int64(n))
		if port := h.Socket(i).Inside; !said[port] && n > 0 {
			said[port] = true
			d.logger.Info(nothingListens(d.cfg.Sockets, port))
		}
	}
}

// resetWaiting accepts every client waiting on the listener fd and resets
// it, and returns how many there were.
func resetWaiting(fd int) int {
	n := 0
	for {
		c, _, err := unix.Accept4(fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
			continue
		}
		if err != nil {
			return n
		}
		unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(c)
		n++
	}
}
