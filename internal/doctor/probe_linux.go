package doctor

import (
	"fmt"
	"os"

	"github.com/nsbind/nsbind/nsutil"
)

// exitFailed is the probe's status when it cannot report: nsbind's own
// failure.
const exitFailed = 125

// ProbeMain is the probe (argv[0] nsutil.RoleProbe): Run starts it in
// fresh namespaces, exactly as run starts its helper, and it reports what
// works inside over its control channel on descriptor nsutil.CtrlFD.
func ProbeMain() int {
	ctrl, err := nsutil.NewCtrl(os.NewFile(nsutil.CtrlFD, "ctrl"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	if err := nsutil.ProbeInside(ctrl); err != nil {
		fmt.Fprintf(os.Stderr, "nsbind: reporting the probe: %v\n", err)
		return exitFailed
	}
	return 0
}
