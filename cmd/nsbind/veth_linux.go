package main

import (
	"errors"
	"fmt"

	"github.com/nsbind/nsbind/nsutil"
)

// checkNet validates --net and --subnet, and for --net=veth the privilege
// it needs, before anything is bound or started.
func checkNet(o *runOptions) error {
	switch o.net {
	case netRelay:
		if len(o.subnets) > 0 {
			return errors.New("--subnet is for --net=veth: the relay needs no subnet")
		}
		return nil
	case netVeth:
	default:
		return fmt.Errorf("invalid --net %q: use relay (the default, no privilege needed) or veth (needs CAP_NET_ADMIN on the host)", o.net)
	}
	var err error
	o.subnet4, o.subnet6, err = parseSubnets(o.subnets)
	if err != nil {
		return err
	}
	if err := nsutil.CheckHostNetAdmin(); err != nil {
		if errors.Is(err, nsutil.ErrNoNetAdmin) {
			return errors.New("--net=veth needs CAP_NET_ADMIN in the host's network namespace, which nsbind does not have (run it as root, as in a CI container); the default --net=relay needs no privilege: leave --net out")
		}
		return err
	}
	return nil
}
