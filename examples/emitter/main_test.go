package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"))
}

// The command, built and run as a user would, reaches a reader on a node.
func TestEmitterCommand(t *testing.T) {
	redis := redistest.Start(t)
	srv := socketio.NewServer(&engineio.Options{SessionIDGenerator: redisadapter.SessionIDGenerator{}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := redisadapter.New(ctx, srv, redisadapter.Standalone{Addr: redis.Addr()}, nil)
	require.NoError(t, err)
	srv.OnEvent("/", "join", func(s socketio.Conn, post string) int { s.Join("post:" + post); return 1 })
	go srv.Serve()
	hs := httptest.NewServer(srv)
	defer func() { hs.Close(); a.Close(context.Background()); srv.Close() }()

	reader, err := siotest.Dial(hs.URL)
	require.NoError(t, err)
	defer reader.Close()
	_, err = reader.Call(5*time.Second, "join", "42")
	require.NoError(t, err)

	bin := filepath.Join(t.TempDir(), "emitter")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	cmd := exec.Command(bin, "-post", "42", "-text", "Comments are back")
	cmd.Env = append(os.Environ(), "REDIS_URL="+redis.URL())
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	e, err := reader.Next("comment", 5*time.Second)
	require.NoError(t, err)
	require.JSONEq(t, `{"post":"42","text":"Comments are back","node":"emitter"}`, string(e.Args[0]))

	out, err = exec.Command(bin).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "usage")

	// The fleet's answers: the reader's node answers the command's requests.
	emitter := func(args ...string) (stdout string, stderr string, err error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "REDIS_URL="+redis.URL())
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err = cmd.Run()
		return o.String(), e.String(), err
	}
	stdout, stderr, err := emitter("-count", "post:42")
	require.NoError(t, err, stderr)
	require.Equal(t, "1\n", stdout)
	stdout, stderr, err = emitter("-fetch", "post:42")
	require.NoError(t, err, stderr)
	var s struct {
		ID, Node string
		Rooms    []string
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &s), stdout)
	require.Equal(t, reader.ID(), s.ID)
	require.Equal(t, a.UID(), s.Node)
	require.ElementsMatch(t, []string{reader.ID(), "post:42"}, s.Rooms)
	stdout, stderr, err = emitter("-servers")
	require.NoError(t, err, stderr)
	require.Equal(t, "1\n", stdout)
	stdout, stderr, err = emitter("-rooms")
	require.NoError(t, err, stderr)
	require.Contains(t, strings.Split(stdout, "\n"), "post:42")

	reader.AckWith(func(siotest.Event) []any { return []any{"read"} })
	stdout, stderr, err = emitter("-post", "42", "-text", "Still there?", "-ack")
	require.NoError(t, err, stderr)
	require.Equal(t, "\"read\"\n", stdout)
	// A reader that does not answer: the ack that came is printed, and the
	// command fails with the timeout.
	silent, err := siotest.Dial(hs.URL)
	require.NoError(t, err)
	defer silent.Close()
	_, err = silent.Call(5*time.Second, "join", "42")
	require.NoError(t, err)
	stdout, stderr, err = emitter("-post", "42", "-text", "Anyone?", "-ack", "-timeout", "1s")
	require.Error(t, err)
	require.Equal(t, "\"read\"\n", stdout)
	require.Contains(t, stderr, "1 of 2 known clients did not answer")
}
