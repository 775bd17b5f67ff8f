//go:build !unix

package redistest

import "testing"

// Freeze needs signals: the test is skipped elsewhere.
func (s *Server) Freeze(t testing.TB) { t.Skip("freezing a server needs SIGSTOP") }

// Thaw does nothing where Freeze cannot run.
func (s *Server) Thaw(t testing.TB) {}
