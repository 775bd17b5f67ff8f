package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/nodetest"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// memKB reads a field of /proc/<pid>/status (VmRSS, VmHWM: the peak) in KiB.
func memKB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		redistest.Skip(t, "no /proc: cannot read the node's memory")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			require.NoError(t, err, line)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// Oversized comments (64 MB each, the attack) from websocket and
// long-polling clients: each client is disconnected, the node's peak memory
// hardly moves, and the node keeps serving.
func TestOversizedMessagesDisconnect(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nd := startFleet(t, bin, redis.URL(), 1)[0]
	pid := nd.cmd.Process.Pid
	reader := nodetest.Dial(t, nd.url, "")
	require.Equal(t, 1, number(t, reader.Call(t, "join", "9")))

	// At the limit's edge: a message just under it is a normal (refused) comment.
	ack := reader.Call(t, "comment", map[string]string{"post": "9", "text": strings.Repeat("y", 900_000)})
	require.Contains(t, string(ack[0]), "longer than")

	before := memKB(t, pid, "VmHWM")
	const size = 64 << 20
	for i, dial := range []func() *nodetest.Client{
		func() *nodetest.Client { return nodetest.Dial(t, nd.url, "") },
		func() *nodetest.Client { return nodetest.Dial(t, nd.url, "") },
		func() *nodetest.Client { return nodetest.Dial(t, nd.url, "") },
		func() *nodetest.Client { return nodetest.DialPolling(t, nd.url) },
		func() *nodetest.Client { return nodetest.DialPolling(t, nd.url) },
		func() *nodetest.Client { return nodetest.DialPolling(t, nd.url) },
	} {
		c := dial()
		c.Send(map[string]any{"id": 1, "event": "comment", "args": []any{map[string]string{"post": "9", "text": "big"}}, "pad": size})
		reason := c.Disconnected(t, 60*time.Second)
		t.Logf("client %d (%s): disconnected: %s", i, c.ID, reason)
	}
	after := memKB(t, pid, "VmHWM")
	t.Logf("node peak RSS (VmHWM) %d KiB before, %d KiB after 6 x 64 MiB messages; RSS now %d KiB", before, after, memKB(t, pid, "VmRSS"))
	require.Less(t, after-before, 16<<10, "six 64 MiB messages grew the node's peak RSS by %d KiB", after-before)

	require.Equal(t, 6, metric(t, nd.url, "blogstack_clients_rejected_total"))

	// The node still serves, and the reader that did nothing wrong is still there.
	require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)}, reader.Call(t, "comment", map[string]string{"post": "9", "text": "still here"}))
	require.JSONEq(t, `[{"post":"9","text":"still here","node":"n1"}]`, reader.NextNamed(t, "comment"))
}

// A message only a few bytes over a small limit disconnects its client;
// one at the limit does not.
func TestMessageSizeLimitFlag(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nd := startFleet(t, bin, redis.URL(), 1, "-max-message-size", "1000")[0]
	for _, dial := range []func() *nodetest.Client{
		func() *nodetest.Client { return nodetest.Dial(t, nd.url, "") },
		func() *nodetest.Client { return nodetest.DialPolling(t, nd.url) },
	} {
		c := dial()
		// 42["comment",{"post":"9","text":"..."}] is 38 bytes around the text.
		ack := c.Call(t, "comment", map[string]string{"post": "9", "text": strings.Repeat("a", 900)})
		require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)}, ack)
		c.Send(map[string]any{"id": 99, "event": "comment", "args": []any{map[string]string{"post": "9", "text": strings.Repeat("a", 1000)}}})
		t.Logf("%s: %s", c.ID, c.Disconnected(t, 10*time.Second))
	}
}

// A binary event announcing billions of attachments (go-socket.io would
// allocate a slot for each before reading one) disconnects its client and
// nothing else.
func TestAttachmentBomb(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nd := startFleet(t, bin, redis.URL(), 1)[0]
	reader := nodetest.Dial(t, nd.url, "")
	bomb := nodetest.Dial(t, nd.url, "")
	bomb.Send(map[string]any{"raw": `59999999999999-["comment",{"_placeholder":true,"num":0}]`})
	t.Logf("bomb: %s", bomb.Disconnected(t, 10*time.Second))
	require.Equal(t, 1, number(t, reader.Call(t, "join", "9")), "the node survived")
}

// Past -max-posts joined posts, or past -event-rate, a connection's events
// get an error ack; it stays connected and recovers.
func TestReaderLimits(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nd := startFleet(t, bin, redis.URL(), 1, "-max-posts", "3", "-event-rate", "5")[0]
	c := nodetest.Dial(t, nd.url, "")

	waitOK := func(event string, arg any) (ack []json.RawMessage) {
		t.Helper()
		eventually(t, 10*time.Second, "the rate limit lets "+event+" through", func() bool {
			ack = c.Call(t, event, arg)
			return !strings.Contains(string(ack[0]), "per second")
		})
		return ack
	}
	for _, p := range []string{"1", "2", "3"} {
		number(t, waitOK("join", p))
	}
	ack := waitOK("join", "4")
	require.Contains(t, string(ack[0]), "at most 3 posts")
	number(t, waitOK("join", "2")) // already joined: not a fourth
	require.Equal(t, `"ok"`, string(waitOK("leave", "1")[0]))
	number(t, waitOK("join", "4"))

	limited := 0
	for range 40 {
		if strings.Contains(string(c.Call(t, "readers", "4")[0]), "per second") {
			limited++
		}
	}
	t.Logf("%d of 40 back-to-back calls limited at 5/s", limited)
	require.Positive(t, limited)
	require.GreaterOrEqual(t, metric(t, nd.url, "blogstack_events_limited_total"), limited+1, "rate and posts limits counted")
	number(t, waitOK("readers", "4")) // still connected, served again
}

// Without the page's client script the node says at start, in one line,
// what to run, and the page says it too; with it, neither does.
func TestClientScriptMissing(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nodes := startFleet(t, bin, redis.URL(), 2)
	missing := startFleet(t, bin, redis.URL(), 1, "-assets", t.TempDir())[0]
	page := func(nd *exampleNode) string {
		resp, err := http.Get(nd.url + "/")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	var warned []string
	// The health check can answer before the pipe from the process's
	// stderr has handed over the warning logged just before it listened.
	eventually(t, 5*time.Second, "the warning logged", func() bool {
		warned = warned[:0]
		for _, line := range strings.Split(missing.stderr.String(), "\n") {
			if strings.Contains(line, "socket.io-client is missing") {
				warned = append(warned, line)
			}
		}
		return len(warned) > 0
	})
	require.Len(t, warned, 1, "one line at start")
	require.Contains(t, warned[0], "./examples/demo.sh")
	require.Contains(t, page(missing), `id="missing"`)
	require.Contains(t, page(missing), "./examples/demo.sh")

	require.NotContains(t, nodes[0].stderr.String(), "socket.io-client is missing")
	require.NotContains(t, page(nodes[0]), `id="missing"`)
}

// eventually calls cond until it holds, failing t past timeout; between
// calls it waits a tick, as a polite client backs off.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	await.True(t, timeout, 100*time.Millisecond, what, cond)
}

// metric reads a counter of the node's /metrics.
func metric(t *testing.T, base, name string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^` + name + ` (\d+)`).FindSubmatch(body)
	require.NotNil(t, m, "no %s in /metrics", name)
	n, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	return n
}
