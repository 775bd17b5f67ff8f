// Package nodetest runs the real Node.js peers of the interop tests
// (server.js, client.js in this directory; `npm ci` here installs them) and
// talks to them over stdin/stdout in JSON lines.
package nodetest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/blogstack/redisadapter/internal/redistest"
)

// Msg is one JSON line from a Node process.
type Msg map[string]json.RawMessage

// Str returns the string field k ("" if absent).
func (m Msg) Str(k string) string {
	var s string
	_ = json.Unmarshal(m[k], &s)
	return s
}

// Proc is a running Node process.
type Proc struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan Msg

	mu      sync.Mutex
	nextID  int
	backlog []Msg // lines read but not yet matched, in order
}

// Dir is this package's directory, where the scripts and node_modules are.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Start runs `node <script> args...` with env added, and stops it (by PID)
// when the test ends. It skips (fails in CI) when node or the npm packages
// are missing.
func Start(t testing.TB, script string, env []string, args ...string) *Proc {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		redistest.Skip(t, "node is not installed")
	}
	if _, err := os.Stat(filepath.Join(Dir(), "node_modules", "socket.io")); err != nil {
		redistest.Skip(t, "npm packages missing: run `npm ci` in internal/nodetest")
	}
	cmd := exec.Command("node", append([]string{filepath.Join(Dir(), script)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &testWriter{t: t, prefix: script}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{t: t, cmd: cmd, stdin: stdin, lines: make(chan Msg, 4096)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var m Msg
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.lines <- m
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
	})
	return p
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Send writes v as one JSON line.
func (p *Proc) Send(v any) {
	p.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("write to node: %v", err)
	}
}

// Wait returns the first line, in order, for which match is true, within
// timeout. Lines that do not match stay for later calls.
func (p *Proc) Wait(timeout time.Duration, what string, match func(Msg) bool) Msg {
	p.t.Helper()
	p.mu.Lock()
	for i, m := range p.backlog {
		if match(m) {
			p.backlog = append(p.backlog[:i], p.backlog[i+1:]...)
			p.mu.Unlock()
			return m
		}
	}
	p.mu.Unlock()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-p.lines:
			if match(m) {
				return m
			}
			p.mu.Lock()
			p.backlog = append(p.backlog, m)
			p.mu.Unlock()
		case <-deadline:
			p.t.Fatalf("node: no %s within %v", what, timeout)
			return nil
		}
	}
}

// Call sends cmd with a fresh "id" and returns the answer carrying it.
func (p *Proc) Call(timeout time.Duration, cmd map[string]any) Msg {
	p.t.Helper()
	return p.Go(cmd)(timeout)
}

// Go sends cmd with a fresh "id" and returns a function that waits up to
// timeout for the answer carrying it: for commands answered later, while
// others run.
func (p *Proc) Go(cmd map[string]any) func(timeout time.Duration) Msg {
	p.t.Helper()
	return p.answers(p.send(cmd), cmd)
}

// send sends cmd with a fresh "id" and returns that id.
func (p *Proc) send(cmd map[string]any) string {
	p.t.Helper()
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	p.mu.Unlock()
	cmd["id"] = id
	p.Send(cmd)
	return fmt.Sprint(id)
}

// answers returns a function that waits up to timeout for the next answer
// to cmd, sent with id: a command may answer more than once.
func (p *Proc) answers(id string, cmd map[string]any) func(timeout time.Duration) Msg {
	return func(timeout time.Duration) Msg {
		p.t.Helper()
		m := p.Wait(timeout, fmt.Sprintf("answer to %v", cmd), func(m Msg) bool { return string(m["id"]) == id })
		if e := m.Str("error"); e != "" {
			p.t.Fatalf("node: %v failed: %s", cmd, e)
		}
		return m
	}
}

type testWriter struct {
	t      testing.TB
	prefix string
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s: %s", w.prefix, b)
	return len(b), nil
}
