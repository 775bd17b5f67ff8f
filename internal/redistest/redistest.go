// Package redistest starts real Redis servers for tests: in a container
// through testcontainers-go when a Docker engine answers (host networking,
// loopback ports, the locally built image of .ci/redis-image.sh), else a
// redis-server binary from PATH. Without either, tests skip, unless
// REDISADAPTER_REQUIRE_INTEGRATION is set (CI sets it): then they fail.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Image is the container image; .ci/redis-image.sh builds it from the host's
// redis-server (no registry is needed). REDISADAPTER_REDIS_IMAGE overrides it.
var Image = envOr("REDISADAPTER_REDIS_IMAGE", "local/redisadapter-redis:7")

// Label marks every container started here, so a crashed run's leftovers can
// be removed by label (.ci/run does).
const Label = "redisadapter.test"

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func init() {
	// Ryuk's image cannot be pulled here; containers are removed by
	// t.Cleanup instead. testcontainers reads these once, on first use.
	for k, v := range map[string]string{
		"TESTCONTAINERS_RYUK_DISABLED": "true",
		"TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
	} {
		if os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
	// Container lifecycle chatter drowns the tests' own output.
	tclog.SetDefault(tclog.NewNoopLogger())
}

// Server is one Redis server on 127.0.0.1.
type Server struct {
	Port int
	args []string

	mu   sync.Mutex
	ctr  testcontainers.Container // container backend
	proc *exec.Cmd                // process backend
	dir  string
}

// Addr is "127.0.0.1:<port>".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() }

var (
	backendOnce sync.Once
	useDocker   bool
	backendErr  error
)

// Backend reports which backend tests use: "container" or "process".
func Backend(t testing.TB) string {
	t.Helper()
	backendOnce.Do(func() {
		if os.Getenv("REDISADAPTER_BACKEND") != "process" && dockerHealthy() {
			useDocker = true
			return
		}
		if _, err := exec.LookPath("redis-server"); err != nil {
			backendErr = fmt.Errorf("no Docker engine and no redis-server on PATH")
		}
	})
	if backendErr != nil {
		Skip(t, backendErr.Error())
	}
	if useDocker {
		return "container"
	}
	return "process"
}

// Skip skips t, or fails it when REDISADAPTER_REQUIRE_INTEGRATION is set:
// in CI an integration test that does not run is a failure.
func Skip(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("REDISADAPTER_REQUIRE_INTEGRATION") != "" {
		t.Fatalf("integration test cannot run (REDISADAPTER_REQUIRE_INTEGRATION is set): %s", why)
	}
	t.Skip(why)
}

func dockerHealthy() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return false
	}
	defer p.Close()
	return p.Health(ctx) == nil
}

// FreePort returns a TCP port free on 127.0.0.1 whose cluster-bus twin
// (port+10000) is free too.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 {
			continue
		}
		if l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000)); err == nil {
			l2.Close()
			return port
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// Start starts a Redis server with extra redis-server arguments and stops it
// when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	Backend(t)
	s := &Server{Port: FreePort(t), args: args}
	t.Cleanup(func() { s.terminate() })
	if err := s.start(); err != nil {
		t.Fatalf("start redis: %v", err)
	}
	return s
}

func (s *Server) cmdline() []string {
	return append([]string{"redis-server", "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no"}, s.args...)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if useDocker {
		if s.ctr != nil { // restart the stopped container on the same port
			return s.ctr.Start(ctx)
		}
		ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
			ContainerRequest: testcontainers.ContainerRequest{
				Image:  Image,
				Cmd:    s.cmdline(),
				Labels: map[string]string{Label: "1"},
				HostConfigModifier: func(hc *container.HostConfig) {
					hc.NetworkMode = "host" // loopback only, no port mapping
				},
				WaitingFor: wait.ForLog("Ready to accept connections").
					WithPollInterval(50 * time.Millisecond).WithStartupTimeout(30 * time.Second),
			},
			Started: true,
		})
		s.ctr = ctr
		return err
	}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "redistest")
		if err != nil {
			return err
		}
		s.dir = dir
	}
	cmd := exec.Command("redis-server", append(s.cmdline()[1:], "--dir", s.dir)...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	s.proc = cmd
	return waitPing(ctx, s.Addr())
}

// Stop stops the server (a container stop, or SIGKILL to the process) and
// waits until it is gone; Restart brings it back on the same port.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("stop redis: %v", err)
	}
}

func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctr != nil {
		zero := time.Duration(0)
		return s.ctr.Stop(context.Background(), &zero)
	}
	if s.proc != nil {
		_ = s.proc.Process.Kill()
		_ = s.proc.Wait()
		s.proc = nil
	}
	return nil
}

// Restart starts a stopped server again, with no data, on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("restart redis: %v", err)
	}
}

func (s *Server) terminate() {
	_ = s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctr != nil {
		_ = s.ctr.Terminate(context.Background())
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

func waitPing(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			_, err = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			if err == nil {
				_, err = c.Read(buf)
			}
			c.Close()
			if err == nil && string(buf) == "+PONG\r\n" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis on %s did not answer PING: %w", addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
