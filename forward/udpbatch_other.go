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
	c      *net.UDPConn
	buf    []byte
	n      int
	sender netip.AddrPort
}

func newBatchReader(c *net.UDPConn) (*batchReader, error) {
	return &batchReader{c: c, buf: make([]byte, maxDatagram)}, nil
}

// serve reads one datagram and hands it to handle.
func (br *batchReader) serve(handle func(n int)) error {
	var err error
	br.n, br.sender, err = br.c.ReadFromUDPAddrPort(br.buf)
	if err != nil {
		return err
	}
	handle(1)
	return nil
}

func (br *batchReader) from(int) netip.AddrPort { return br.sender }

func (br *batchReader) appendDatagrams(dgrams [][]byte, _ int) [][]byte {
	return append(dgrams, br.buf[:br.n])
}

// segmenter sends every datagram alone here.
type segmenter struct{}

func newSegmenter(*atomic.Bool) *segmenter { return &segmenter{} }

func (*segmenter) run([][]byte) int { return 1 }

func (*segmenter) send(syscall.RawConn, [][]byte) error {
	return errors.New("UDP segmentation is not supported on this system")
}

func (*segmenter) write(c *net.UDPConn, _ syscall.RawConn, b []byte) (int, error) { return c.Write(b) }

func readNonBlocking(fd uintptr, b []byte) (int, error) { return syscall.Read(int(fd), b) }

// clientSender is a flow's client as the host socket sends to it.
type clientSender struct {
	host *net.UDPConn
	to   netip.AddrPort
}

func newClientSender(s *udpServer, client netip.AddrPort) *clientSender {
	return &clientSender{host: s.host, to: client}
}

func newReplyBuffers() any {
	b := make([]byte, maxDatagram)
	return &b
}

// replyReader moves the server's replies to the client one at a time.
type replyReader struct {
	f    *udpFlow
	conn *net.UDPConn
	rd   *pooledReader
}

func newReplyReader(f *udpFlow, conn *net.UDPConn) (*replyReader, error) {
	rd, err := newPooledReader(conn, &f.s.bufs)
	if err != nil {
		return nil, err
	}
	return &replyReader{f: f, conn: conn, rd: rd}, nil
}

// serve moves one reply.
func (rd *replyReader) serve() error {
	n, err := rd.rd.read()
	if err != nil {
		return err
	}
	rd.f.received(rd.conn)
	_, err = rd.f.out.host.WriteToUDPAddrPort((*rd.rd.buf)[:n], rd.f.out.to)
	rd.rd.release()
	if err != nil {
		rd.f.replyFailed(err)
		return nil
	}
	rd.f.s.countOut(n, 1)
	return nil
}

func hostFamily(*net.UDPConn) (syscall.RawConn, bool, error) { return nil, false, nil }

// received marks f used by replies of the server that arrived on conn,
// which confirm its family.
func (f *udpFlow) received(conn *net.UDPConn) {
	f.s.flows.touch(f.entry)
	if !f.confirmed.Load() {
		f.confirm(conn)
	}
}
