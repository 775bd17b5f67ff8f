// Package redistest starts real Redis servers for tests: in a container
// through testcontainers-go when a Docker engine answers (host networking,
// loopback ports, the locally built image of .ci/redis-image.sh), else a
// redis-server binary from PATH; REDISADAPTER_BACKEND=process picks the
// binary even when Docker answers. REDISADAPTER_REDIS_SERVER names another
// server binary (a valkey-server, a newer redis-server) and implies the
// process backend: the same tests then run against that server. Without
// either, tests skip, unless REDISADAPTER_REQUIRE_INTEGRATION is set (CI
// sets it): then they fail.
package redistest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Image is the container image; .ci/redis-image.sh builds it from the host's
// redis-server (no registry is needed). REDISADAPTER_REDIS_IMAGE overrides it.
var Image = envOr("REDISADAPTER_REDIS_IMAGE", "local/redisadapter-redis:7")

// Label marks every container started here, so a crashed run's leftovers can
// be removed by label (.ci/run does).
const Label = "redisadapter.test"

// ServerBinary is the server the process backend runs (as a sentinel too,
// with --sentinel): REDISADAPTER_REDIS_SERVER, else redis-server from PATH.
var ServerBinary = envOr("REDISADAPTER_REDIS_SERVER", "redis-server")

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

// Server is one Redis server (or sentinel) on 127.0.0.1.
type Server struct {
	Port         int
	args         []string          // "{dir}" in an argument stands for the directory of files
	files        map[string]string // name -> content, written into the server's directory
	sentinelConf string            // non-empty: run as a sentinel with this configuration

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
		if os.Getenv("REDISADAPTER_BACKEND") != "process" && os.Getenv("REDISADAPTER_REDIS_SERVER") == "" && dockerHealthy() {
			useDocker = true
			return
		}
		if _, err := exec.LookPath(ServerBinary); err != nil {
			backendErr = fmt.Errorf("no Docker engine and no %s: %v", ServerBinary, err)
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

// Ports handed out come from below the kernel's ephemeral range (32768 and
// up on Linux): a port picked by the kernel for a listener is free only
// until some outgoing connection takes it, which the tests make by thousands
// while other packages start their servers. Base ports and their
// cluster-bus twins (port+10000) come from disjoint ranges, so no server's
// port is another's bus port. A port is handed out once per process, so a
// stopped server's port is still its own when it restarts, and reserved
// across the test processes `go test ./...` runs at once (reserve).
const portLow, portHigh = 10000, 16384

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreePort returns a TCP port free on 127.0.0.1 whose cluster-bus twin
// (port+10000) is free too.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := portLow + rand.IntN(portHigh-portLow)
		if given[port] || !free(port) || !free(port+10000) || !reserve(port) {
			continue
		}
		given[port] = true
		return port
	}
	t.Fatal("no free port pair")
	return 0
}

func free(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Start starts a Redis server with extra redis-server arguments and stops it
// when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return startAll(t, &Server{Port: FreePort(t), args: args})[0]
}

// StartWithFiles is Start with files (name -> content) in the server's
// directory; "{dir}" in args stands for that directory and "{port}" for the
// server's port (TLS certificates and --tls-port, for example).
func StartWithFiles(t testing.TB, files map[string]string, args ...string) *Server {
	t.Helper()
	return startAll(t, &Server{Port: FreePort(t), args: args, files: files})[0]
}

// startAll starts servers concurrently and stops them when the test ends.
func startAll(t testing.TB, servers ...*Server) []*Server {
	t.Helper()
	Backend(t)
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		t.Cleanup(func() { s.terminate() })
		wg.Go(func() { errs[i] = s.start() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start redis on %d: %v", servers[i].Port, err)
		}
	}
	return servers
}

// Exec runs a command (redis-cli ...) where the server runs: inside its
// container, or on the host.
func (s *Server) Exec(ctx context.Context, cmd ...string) (string, error) {
	s.mu.Lock()
	ctr := s.ctr
	s.mu.Unlock()
	if ctr == nil {
		out, err := exec.CommandContext(ctx, cmd[0], cmd[1:]...).CombinedOutput()
		return string(out), err
	}
	code, r, err := ctr.Exec(ctx, cmd, tcexec.Multiplexed()) // plain output, as on the host
	if err != nil {
		return "", err
	}
	out, _ := io.ReadAll(r)
	if code != 0 {
		return string(out), fmt.Errorf("%v exited %d", cmd, code)
	}
	return string(out), nil
}

// sentinelPath is where a sentinel's configuration lives: Sentinel rewrites
// it, so it is a writable file of the server's own.
const sentinelPath = "sentinel.conf"

func (s *Server) cmdline(dir string) []string {
	if s.sentinelConf != "" {
		return []string{"redis-server", sentinelPath, "--sentinel"}
	}
	cmd := []string{"redis-server", "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--repl-diskless-sync-delay", "0"}
	for _, a := range s.args {
		cmd = append(cmd, strings.NewReplacer("{dir}", dir, "{port}", strconv.Itoa(s.Port)).Replace(a))
	}
	return cmd
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if useDocker {
		if s.ctr != nil { // restart the stopped container on the same port
			if err := s.ctr.Start(ctx); err != nil {
				return err
			}
			// The wait strategy reads the container's whole log, whose line
			// from the first start matches at once: wait for the server.
			return waitPing(ctx, s.Addr())
		}
		ready := "Ready to accept connections"
		var files []testcontainers.ContainerFile
		if s.sentinelConf != "" {
			ready = "+monitor master" // a sentinel never logs "Ready"
			files = []testcontainers.ContainerFile{{
				Reader: strings.NewReader(s.sentinelConf), ContainerFilePath: "/data/" + sentinelPath, FileMode: 0o666,
			}}
		}
		for name, content := range s.files {
			files = append(files, testcontainers.ContainerFile{
				Reader: strings.NewReader(content), ContainerFilePath: "/data/" + name, FileMode: 0o644,
			})
		}
		ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
			ContainerRequest: testcontainers.ContainerRequest{
				Image:  Image,
				Cmd:    s.cmdline("/data"),
				Files:  files,
				Labels: map[string]string{Label: "1"},
				HostConfigModifier: func(hc *container.HostConfig) {
					hc.NetworkMode = "host" // loopback only, no port mapping
				},
				WaitingFor: wait.ForLog(ready).
					WithPollInterval(50 * time.Millisecond).WithStartupTimeout(30 * time.Second),
			},
			Started: true,
		})
		s.ctr = ctr
		if err != nil && ctr != nil {
			if logs, lerr := ctr.Logs(ctx); lerr == nil {
				out, _ := io.ReadAll(io.LimitReader(logs, 4096))
				logs.Close()
				err = fmt.Errorf("%w; its log:\n%s", err, out)
			}
		}
		return err
	}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "redistest")
		if err != nil {
			return err
		}
		s.dir = dir
		if s.sentinelConf != "" {
			if err := os.WriteFile(filepath.Join(dir, sentinelPath), []byte(s.sentinelConf), 0o666); err != nil {
				return err
			}
		}
		for name, content := range s.files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				return err
			}
		}
	}
	args := s.cmdline(s.dir)[1:]
	if s.sentinelConf == "" {
		args = append(args, "--dir", s.dir)
	}
	cmd := exec.Command(ServerBinary, args...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	s.proc = cmd
	if s.tlsOnly() {
		return waitListening(ctx, s.Addr())
	}
	return waitPing(ctx, s.Addr())
}

// tlsOnly reports whether the server speaks TLS only (--port 0 --tls-port):
// it cannot answer a plain PING.
func (s *Server) tlsOnly() bool { return slices.Contains(s.args, "--tls-port") }

func waitListening(ctx context.Context, addr string) error {
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing listens on %s: %w", addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
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

// waitPing waits until the server answers a PING. A server started with
// --requirepass answers -NOAUTH, which says just as well that it serves.
func waitPing(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			_, err = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 64)
			n := 0
			if err == nil {
				n, err = c.Read(buf)
			}
			c.Close()
			if reply := string(buf[:n]); err == nil && (strings.HasPrefix(reply, "+PONG") || strings.HasPrefix(reply, "-NOAUTH")) {
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
