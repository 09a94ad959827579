//go:build !linux

package forward

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
)

// batchReader reads the host socket one datagram at a time
// (udpbatch_linux.go reads a batch with recvmmsg).
type batchReader struct {
	c    *net.UDPConn
	buf  []byte
	n    int
	from netip.AddrPort
}

func newBatchReader(c *net.UDPConn) (*batchReader, error) {
	return &batchReader{c: c, buf: make([]byte, maxDatagram)}, nil
}

func (br *batchReader) read() (int, error) {
	var err error
	br.n, br.from, err = br.c.ReadFromUDPAddrPort(br.buf)
	if err != nil {
		return 0, err
	}
	return 1, nil
}

func (br *batchReader) datagram(int) ([]byte, netip.AddrPort) { return br.buf[:br.n], br.from }

// segmenter sends every datagram alone here.
type segmenter struct{}

func newSegmenter(*atomic.Bool) *segmenter { return &segmenter{} }

func (*segmenter) run([][]byte) int { return 1 }

func (*segmenter) send(syscall.RawConn, [][]byte) error {
	return errors.New("UDP segmentation is not supported on this system")
}

func (*segmenter) write(c *net.UDPConn, _ syscall.RawConn, b []byte) (int, error) { return c.Write(b) }

func readNonBlocking(fd uintptr, b []byte) (int, error) { return syscall.Read(int(fd), b) }

// clientSender sends a flow's replies to its client from the host socket.
type clientSender struct {
	host *net.UDPConn
	to   netip.AddrPort
}

func newClientSender(s *udpServer, client netip.AddrPort) *clientSender {
	return &clientSender{host: s.host, to: client}
}

func (cs *clientSender) send(b []byte) error {
	_, err := cs.host.WriteToUDPAddrPort(b, cs.to)
	return err
}

func hostFamily(*net.UDPConn) (syscall.RawConn, bool, error) { return nil, false, nil }
