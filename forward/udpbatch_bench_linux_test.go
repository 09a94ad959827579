package forward

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BenchmarkUDPSendPath sends 64-byte datagrams on a connected socket to a
// sink nobody reads (the kernel drops what does not fit), the way the
// relay sends to the server: "net" with (*net.UDPConn).Write, which enters
// the scheduler's syscall state around every call, "raw" with the
// segmenter's write, a raw system call inside a RawConn callback. ctxsw/op
// counts the process's context switches: where the process was idle in
// between, entersyscall wakes sysmon, which then polls every 20 µs.
//
//	go test -run '^$' -bench UDPSendPath -count 5 ./forward
func BenchmarkUDPSendPath(b *testing.B) {
	for _, path := range []string{"net", "raw"} {
		b.Run(path, func(b *testing.B) {
			sink := udpListen(b, netip.AddrPortFrom(loopback4, 0))
			c := udpClient(b, udpAddrOf(sink))
			rc, err := c.SyscallConn()
			if err != nil {
				b.Fatal(err)
			}
			var off atomic.Bool
			seg := newSegmenter(&off)
			msg := make([]byte, 64)
			cs0 := ctxSwitches()
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				if path == "net" {
					_, err = c.Write(msg)
				} else {
					_, err = seg.write(c, rc, msg)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportCPU(b, cpu0)
			b.ReportMetric(float64(ctxSwitches()-cs0)/float64(b.N), "ctxsw/op")
		})
	}
}

// ctxSwitches is the number of context switches of this process so far.
func ctxSwitches() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Nvcsw + ru.Nivcsw
}

// BenchmarkUDPBulkSegmented is BenchmarkUDPBulk with a sender that sends
// runs of 16 datagrams with one UDP_SEGMENT send each, as QUIC stacks do:
// through the relay, the host socket takes each run whole (UDP_GRO) and
// the relay sends it on whole.
//
//	go test -run '^$' -bench UDPBulkSegmented -count 5 ./forward
func BenchmarkUDPBulkSegmented(b *testing.B) {
	const run = 16
	for _, size := range []int{1400} {
		for _, via := range []string{"direct", "relay"} {
			b.Run(fmt.Sprintf("%s/size=%d/run=%d", via, size, run), func(b *testing.B) {
				buf := make([]byte, size*run)
				oob := make([]byte, unix.CmsgSpace(2))
				h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
				h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
				h.SetLen(unix.CmsgLen(2))
				*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(size)
				benchBulk(b, via == "relay", size, func(c *net.UDPConn, _ []byte) (int, error) {
					_, _, err := c.WriteMsgUDP(buf, oob, nil)
					return run, err
				})
			})
		}
	}
}
