package nsutil

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// ownedTable fails when the kernel refuses the table: a table of that name
// without the owner flag already there (the rules would otherwise go into
// it, and it outlives the run), or a name longer than the kernel takes.
// It runs in a network namespace of its own, where it may add tables.
func TestOwnedTableRefused(t *testing.T) {
	if os.Getenv(insideEnv) != "1" {
		inNamespace(t, "TestOwnedTableRefused")
		return
	}
	const name = "nsbtest"
	plain, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	plain.AddTable(&nftables.Table{Name: name, Family: nftables.TableFamilyINet})
	if err := plain.Flush(); err != nil {
		t.Fatalf("adding a table without the owner flag: %v", err)
	}
	conn, _, err := ownedTable(name)
	if conn != nil {
		conn.CloseLasting()
	}
	if !errors.Is(err, unix.EEXIST) {
		t.Errorf("ownedTable(%q) over an existing table: %v, want EEXIST", name, err)
	}

	long := strings.Repeat("n", 300) // NFT_TABLE_MAXNAMELEN is 256
	conn, _, err = ownedTable(long)
	if conn != nil {
		conn.CloseLasting()
	}
	if err == nil {
		t.Errorf("ownedTable with a %d-byte name: no error", len(long))
	}
}
