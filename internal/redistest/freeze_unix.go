//go:build unix

package redistest

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// Freeze stops the server's process with SIGSTOP (for a container, its
// process as the host sees it): it keeps every connection open and answers
// nothing, as a Redis in a long fork or on a stalled VM does, until Thaw.
// A frozen server is thawed when the test ends.
func (s *Server) Freeze(t testing.TB) {
	t.Helper()
	if err := s.signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze redis: %v", err)
	}
	t.Cleanup(func() { _ = s.signal(syscall.SIGCONT) })
}

// Thaw resumes a server Freeze stopped (SIGCONT).
func (s *Server) Thaw(t testing.TB) {
	t.Helper()
	if err := s.signal(syscall.SIGCONT); err != nil {
		t.Fatalf("thaw redis: %v", err)
	}
}

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pid int
	switch {
	case s.ctr != nil:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		info, err := s.ctr.Inspect(ctx)
		if err != nil {
			return err
		}
		if info.State == nil || info.State.Pid == 0 {
			return fmt.Errorf("container %s runs no process", s.ctr.GetContainerID())
		}
		pid = info.State.Pid
	case s.proc != nil:
		pid = s.proc.Process.Pid
	default:
		return fmt.Errorf("redis on %d is not running", s.Port)
	}
	return syscall.Kill(pid, sig)
}
