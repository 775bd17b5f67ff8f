//go:build unix

package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// reserve takes an exclusive lock on a file named for port, held until the
// process exits (the kernel drops it then, even after a crash), so another
// test process that picked the same port before either server started
// moves on to another.
func reserve(port int) bool {
	name := filepath.Join(os.TempDir(), fmt.Sprintf("redistest-port-%d.lock", port))
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true // no lock file, no cross-process guard: the listen checks still hold
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return false
	}
	locks = append(locks, f) // kept open: closing would release the lock
	return true
}

var locks []*os.File
