package redisadapter_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/nodetest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// limitedServer is a go-socket.io server (no adapter: the limits need
// none) with ClientLimits of 1000 bytes and an "echo" event.
type limitedServer struct {
	url     string
	mu      sync.Mutex
	rejects []error
}

func startLimitedServer(t *testing.T) *limitedServer {
	t.Helper()
	ls := &limitedServer{}
	srv := socketio.NewServer(&engineio.Options{
		SessionIDGenerator: redisadapter.SessionIDGenerator{},
		Transports: redisadapter.ClientLimits{MaxMessageSize: 1000, OnReject: func(_ net.Addr, err error) {
			ls.mu.Lock()
			ls.rejects = append(ls.rejects, err)
			ls.mu.Unlock()
		}}.Transports(),
	})
	srv.OnEvent("/", "echo", func(_ socketio.Conn, s string) string { return s })
	go srv.Serve()
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		srv.Close()
	})
	ls.url = hs.URL
	return ls
}

// waitRejects waits until n clients were rejected, and checks why.
func (ls *limitedServer) waitRejects(t *testing.T, n int, reason string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d rejects", n), func() bool {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		return len(ls.rejects) >= n
	})
	ls.mu.Lock()
	defer ls.mu.Unlock()
	require.ErrorIs(t, ls.rejects[n-1], redisadapter.ErrClientLimit)
	require.Contains(t, ls.rejects[n-1].Error(), reason)
}

func closedWithin(t *testing.T, c *siotest.Client) {
	t.Helper()
	select {
	case <-c.Closed():
	case <-time.After(wait):
		t.Fatal("client still connected")
	}
}

func TestClientLimitsWebsocket(t *testing.T) {
	ls := startLimitedServer(t)
	c, err := siotest.Dial(ls.url)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	ack, err := c.Call(wait, "echo", strings.Repeat("a", 900)) // 42N["echo","..."]: under 1000
	require.NoError(t, err)
	require.Len(t, ack, 1)

	require.NoError(t, c.Emit("echo", strings.Repeat("a", 1000)))
	closedWithin(t, c)
	ls.waitRejects(t, 1, "message over 1000 bytes")

	bomb, err := siotest.Dial(ls.url)
	require.NoError(t, err)
	t.Cleanup(func() { bomb.Close() })
	require.NoError(t, bomb.SendRaw(`459999999999999-["echo",{"_placeholder":true,"num":0}]`))
	closedWithin(t, bomb)
	ls.waitRejects(t, 2, "more than 10 binary attachments")

	ok, err := siotest.Dial(ls.url)
	require.NoError(t, err)
	t.Cleanup(func() { ok.Close() })
	ack, err = ok.Call(wait, "echo", "still serving")
	require.NoError(t, err)
	require.Equal(t, `"still serving"`, string(ack[0]))
}

// pollingSession opens a long-polling session (text payloads) and returns
// its id.
func pollingSession(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/socket.io/?EIO=3&transport=polling&b64=1")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	m := regexp.MustCompile(`"sid":"([^"]+)"`).FindSubmatch(body)
	require.NotNil(t, m, "%s", body)
	// The socket.io CONNECT: until a poll takes it, go-socket.io reads
	// nothing. go-socket.io registers a session only after the handshake
	// was written (engineio.Server.newSession), so a poll right after it
	// can find "invalid sid": poll until the session is known.
	eventually(t, "the session's first poll", func() bool {
		resp, err = http.Get(base + "/socket.io/?EIO=3&transport=polling&b64=1&sid=" + string(m[1]))
		require.NoError(t, err)
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		return resp.StatusCode != http.StatusBadRequest
	})
	require.Contains(t, string(body), ":40")
	return string(m[1])
}

// sessionGone waits until the server no longer knows sid.
func sessionGone(t *testing.T, base, sid string) {
	t.Helper()
	eventually(t, "session "+sid+" closed", func() bool {
		resp, err := http.Get(base + "/socket.io/?EIO=3&transport=polling&b64=1&sid=" + sid)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusBadRequest // "invalid sid"
	})
}

func TestClientLimitsPolling(t *testing.T) {
	ls := startLimitedServer(t)
	post := func(sid string, body io.Reader, length int64) int {
		req, err := http.NewRequest(http.MethodPost, ls.url+"/socket.io/?EIO=3&transport=polling&b64=1&sid="+sid, body)
		require.NoError(t, err)
		req.ContentLength = length // -1: chunked, the length unknown in advance
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	msg := func(n int) string {
		p := `42["echo","` + strings.Repeat("a", n) + `"]`
		return fmt.Sprintf("%d:%s", len(p), p)
	}

	sid := pollingSession(t, ls.url)
	require.Equal(t, http.StatusOK, post(sid, strings.NewReader(msg(900)), int64(len(msg(900)))))

	// Declared too large: refused before a byte is read.
	big := msg(5000)
	require.Equal(t, http.StatusRequestEntityTooLarge, post(sid, strings.NewReader(big), int64(len(big))))
	ls.waitRejects(t, 1, "request body of")
	sessionGone(t, ls.url, sid)

	// Chunked: read up to the limit, then refused.
	sid = pollingSession(t, ls.url)
	endless := io.MultiReader(strings.NewReader(`100000000:42["echo","`), neverEnding('a'))
	require.NotEqual(t, http.StatusOK, post(sid, endless, -1))
	ls.waitRejects(t, 2, "request body over 1000 bytes")
	sessionGone(t, ls.url, sid)
}

// neverEnding is an endless stream of one byte.
type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// A socket.io-client 3.x/4.x (Engine.IO 4) is refused at the handshake with
// a 400 that says which client to use, and a warning; a 2.x client still
// connects through the same transports.
func TestClientLimitsRefuseEngineIO4(t *testing.T) {
	var logs syncBuffer
	srv := socketio.NewServer(&engineio.Options{
		SessionIDGenerator: redisadapter.SessionIDGenerator{},
		Transports:         redisadapter.ClientLimits{Logger: slog.New(slog.NewTextHandler(&logs, nil))}.Transports(),
	})
	connected := make(chan string, 8)
	srv.OnConnect("/", func(c socketio.Conn) error { connected <- c.ID(); return nil })
	srv.OnEvent("/", "echo", func(_ socketio.Conn, s string) string { return s })
	go srv.Serve()
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		srv.Close()
	})

	for _, transport := range []string{"polling", "websocket"} {
		resp, err := http.Get(hs.URL + "/socket.io/?EIO=4&transport=" + transport)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, transport)
		require.Contains(t, string(body), "use socket.io-client 2.x (or 1.x)", transport)
	}
	require.Equal(t, 2, strings.Count(logs.String(), "client refused: it speaks Engine.IO 4"), logs.String())

	// The real clients, when node and the npm packages are here.
	m := nodetest.DialV4(t, hs.URL, "polling")
	require.Nil(t, m["connected"], "socket.io-client 4 connected over polling")
	require.Equal(t, "400", string(m["description"]), "the refused poll's status")
	m = nodetest.DialV4(t, hs.URL, "websocket")
	require.Nil(t, m["connected"], "socket.io-client 4 connected over websocket")
	select {
	case id := <-connected:
		t.Fatalf("a refused client reached the connect handler as %s", id)
	default:
	}

	c2 := nodetest.Dial(t, hs.URL, "")
	require.Equal(t, []string{`"hi"`}, rawStrings(c2.Call(t, "echo", "hi")))
	require.Equal(t, c2.ID, <-connected)
}

func rawStrings(raw []json.RawMessage) []string {
	out := make([]string, len(raw))
	for i, r := range raw {
		out[i] = string(r)
	}
	return out
}
