package nsutil

// The steps of creating and setting up nsbind's namespaces that a host can
// refuse, as NamespaceError.Step says them.
const (
	StepCreate     = "creating the namespaces"
	StepLoopback   = "bringing lo up"
	StepPortSysctl = "setting net.ipv4.ip_unprivileged_port_start to 0 inside"
)

// NamespaceError is a host refusing one step of creating or setting up the
// namespaces (Start, SetupLoopback). Err carries the errno; cmd/nsbind turns
// it into the cause and the fix.
type NamespaceError struct {
	Step string
	Err  error
}

func (e *NamespaceError) Error() string { return e.Step + ": " + e.Err.Error() }

func (e *NamespaceError) Unwrap() error { return e.Err }
