package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/nodetest"
	"github.com/blogstack/redisadapter/internal/redistest"
)

func TestMain(m *testing.M) {
	// The nodes are processes; what runs in this one must end with it.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"))
}

// exampleNode is one blogstack process.
type exampleNode struct {
	name, url string
	port      int
	cmd       *exec.Cmd
	exited    chan error
	stderr    *prefixWriter
	client    *http.Client // trusts the node's certificate, when it serves TLS
}

// buildExample builds this command once per test binary.
func buildExample(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "blogstack")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// startFleet starts n nodes on redisURL and waits for their health checks.
func startFleet(t *testing.T, bin, redisURL string, n int, extra ...string) []*exampleNode {
	t.Helper()
	return startFleetWith(t, bin, redisURL, n, nil, extra...)
}

// startFleetWith is startFleet; with pki, the nodes serve HTTPS and wss://
// with its certificate.
func startFleetWith(t *testing.T, bin, redisURL string, n int, pki *testPKI, extra ...string) []*exampleNode {
	t.Helper()
	scheme, client := "http", http.DefaultClient
	if pki != nil {
		scheme, client = "https", pki.client(nil)
		extra = append([]string{"-tls-cert", pki.cert, "-tls-key", pki.key}, extra...)
	}
	if _, err := os.Stat("node_modules/socket.io-client/dist/socket.io.js"); err != nil {
		redistest.Skip(t, "npm packages missing: run `npm ci` in examples/blogstack")
	}
	var nodes []*exampleNode
	for i := range n {
		port := redistest.FreePort(t)
		nd := &exampleNode{name: fmt.Sprintf("n%d", i+1), port: port, url: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port),
			exited: make(chan error, 1), client: client}
		nd.cmd = exec.Command(bin, append([]string{"-addr", fmt.Sprintf("127.0.0.1:%d", port), "-node", nd.name, "-assets", "."}, extra...)...)
		nd.cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL)
		nd.stderr = &prefixWriter{t: t, prefix: nd.name}
		nd.cmd.Stderr = nd.stderr
		require.NoError(t, nd.cmd.Start())
		go func() { nd.exited <- nd.cmd.Wait() }()
		t.Cleanup(func() {
			_ = nd.cmd.Process.Kill()
			<-nd.exited
		})
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		waitHealthyWith(t, nd.client, nd.url)
	}
	return nodes
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	waitHealthyWith(t, http.DefaultClient, base)
}

func waitHealthyWith(t *testing.T, client *http.Client, base string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(base + "/health-check")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/health-check not 200 within 15s: %v", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// prefixWriter logs a process's stderr in the test's log, and keeps it.
type prefixWriter struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	all    strings.Builder
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s: %s", w.prefix, strings.TrimSpace(string(b)))
	w.mu.Lock()
	w.all.Write(b)
	w.mu.Unlock()
	return len(b), nil
}

func (w *prefixWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func number(t *testing.T, ack []json.RawMessage) int {
	t.Helper()
	require.Len(t, ack, 1)
	var n int
	require.NoError(t, json.Unmarshal(ack[0], &n), "ack %s is not a number", ack[0])
	return n
}

// commentsOnce checks the contract on clients in one post: a comment from
// the first reaches every one of them, once, with the node that took it.
func commentsOnce(t *testing.T, clients []*nodetest.Client, post, takenBy string) {
	t.Helper()
	for i, text := range []string{"first", "second"} {
		require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)},
			clients[0].Call(t, "comment", map[string]string{"post": post, "text": text}))
		want := fmt.Sprintf(`[{"post":%q,"text":%q,"node":%q}]`, post, text, takenBy)
		for _, c := range clients {
			// "second" right after "first": nothing came twice.
			require.JSONEq(t, want, c.NextNamed(t, "comment"), "client %s, comment %d", c.ID, i)
		}
	}
}

func TestThreeNodesOneRedis(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nodes := startFleet(t, bin, redis.URL(), 3)

	var clients []*nodetest.Client
	for i, nd := range nodes {
		c := nodetest.Dial(t, nd.url, "")
		require.GreaterOrEqual(t, number(t, c.Call(t, "join", "42")), i+1)
		clients = append(clients, c)
	}
	commentsOnce(t, clients, "42", "n1")
	require.Equal(t, 3, number(t, clients[2].Call(t, "readers", "42")))

	for input, want := range map[string]any{
		"empty text":   map[string]string{"post": "42", "text": "  "},
		"missing post": map[string]string{"text": "x"},
		"too long":     map[string]string{"post": "42", "text": strings.Repeat("x", 2001)},
		"not object":   "hello",
	} {
		ack := clients[1].Call(t, "comment", want)
		require.Len(t, ack, 1, input)
		require.Contains(t, string(ack[0]), "error", input)
	}

	require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)}, clients[1].Call(t, "leave", "42"))
	require.Equal(t, 2, number(t, clients[0].Call(t, "readers", "42")))

	// The operators' view: the adapter's counters in Prometheus text format.
	resp, err := http.Get(nodes[0].url + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	published := regexp.MustCompile(`(?m)^redisadapter_published_total (\d+)`).FindSubmatch(body)
	require.NotNil(t, published, "%s", body)
	require.NotEqual(t, "0", string(published[1]), "n1 published the comments")
	for _, name := range []string{"received_total", "malformed_total", "queue_full_total", "slow_socket_drops_total",
		"request_timeouts_total", "resubscribes_total", "id_collisions_total", "queue_depth", "sockets", "subscribed", "publish_failures_total",
		"stream_gaps_total", "resent_total", "stream_duplicates_total", "outages_total", `connections{kind="pipelined"}`, `subscriptions{kind="channel"}`} {
		require.Contains(t, string(body), "redisadapter_"+name+" ")
	}

	// SIGTERM: stop accepting, close the adapter, exit 0.
	for _, nd := range nodes {
		require.NoError(t, nd.cmd.Process.Signal(syscall.SIGTERM))
		select {
		case err := <-nd.exited:
			require.NoError(t, err, "%s exit status", nd.name)
			nd.exited <- err // for the cleanup
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not exit after SIGTERM", nd.name)
		}
	}
}

// Delivery receipts: readers who opted in, on two nodes, confirm each
// comment; its author learns how many did. A reader who did not opt in
// gets the comment as before, once, and is not counted; one that opted in
// and does not answer makes the receipt incomplete.
func TestCommentReceipts(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nodes := startFleet(t, bin, redis.URL(), 2)
	author := nodetest.Dial(t, nodes[0].url, "")
	confirming := nodetest.Dial(t, nodes[1].url, "")
	plain := nodetest.Dial(t, nodes[1].url, "")
	for _, c := range []*nodetest.Client{author, confirming, plain} {
		number(t, c.Call(t, "join", "9"))
	}
	require.Equal(t, []json.RawMessage{json.RawMessage(`"error: join the post first"`)}, plain.Call(t, "receipts", "10"),
		"receipts only for a post the connection reads: -max-posts bounds them too")
	for _, c := range []*nodetest.Client{author, confirming} {
		require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)}, c.Call(t, "receipts", "9"))
		c.AutoAck(t, true)
	}
	receipt := func(text string) map[string]any {
		require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)},
			author.Call(t, "comment", map[string]string{"post": "9", "text": text}))
		want := fmt.Sprintf(`[{"post":"9","text":%q,"node":"n1"}]`, text)
		for _, c := range []*nodetest.Client{author, confirming, plain} {
			require.JSONEq(t, want, c.NextNamed(t, "comment"), "client %s", c.ID)
		}
		var r []map[string]any
		require.NoError(t, json.Unmarshal([]byte(author.NextNamed(t, "comment:receipt")), &r))
		require.Len(t, r, 1)
		return r[0]
	}
	require.Equal(t, map[string]any{"post": "9", "text": "first", "delivered": 2.0, "complete": true}, receipt("first"))

	confirming.AutoAck(t, false)
	require.Equal(t, map[string]any{"post": "9", "text": "second", "delivered": 1.0, "complete": false}, receipt("second"))

	// An author who did not ask for receipts: everyone gets the comment as
	// before, and nobody a receipt (the author's next one is for "fourth").
	require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)},
		plain.Call(t, "comment", map[string]string{"post": "9", "text": "third"}))
	for _, c := range []*nodetest.Client{author, confirming, plain} {
		require.JSONEq(t, `[{"post":"9","text":"third","node":"n2"}]`, c.NextNamed(t, "comment"), "client %s", c.ID)
	}
	confirming.AutoAck(t, true)
	require.Equal(t, map[string]any{"post": "9", "text": "fourth", "delivered": 2.0, "complete": true}, receipt("fourth"))
}

// One author's receipted comments, sent back to back without waiting for
// their acks, reach a receipt reader on another node in the order sent, and
// their receipts come back in that order too.
func TestCommentReceiptsInOrder(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nodes := startFleet(t, bin, redis.URL(), 2)
	author := nodetest.Dial(t, nodes[0].url, "")
	confirming := nodetest.Dial(t, nodes[1].url, "")
	for _, c := range []*nodetest.Client{author, confirming} {
		number(t, c.Call(t, "join", "11"))
		require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)}, c.Call(t, "receipts", "11"))
		c.AutoAck(t, true)
	}
	const n = 20 // within the event rate's burst, and the 32 an author may have waiting
	for i := range n {
		author.Send(map[string]any{"id": 1000 + i, "event": "comment",
			"args": []any{map[string]string{"post": "11", "text": fmt.Sprint("c", i)}}})
	}
	for i := range n {
		var got []comment
		require.NoError(t, json.Unmarshal([]byte(confirming.NextNamed(t, "comment")), &got))
		require.Len(t, got, 1)
		require.Equal(t, fmt.Sprint("c", i), got[0].Text, "the reader's comment %d", i)
	}
	for i := range n {
		var r []map[string]any
		require.NoError(t, json.Unmarshal([]byte(author.NextNamed(t, "comment:receipt")), &r))
		require.Len(t, r, 1)
		require.Equal(t, map[string]any{"post": "11", "text": fmt.Sprint("c", i), "delivered": 2.0, "complete": true}, r[0], "receipt %d", i)
	}
}

func TestHealthCheckWithoutRedis(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nodes := startFleet(t, bin, redis.URL(), 1)
	redis.Stop(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(nodes[0].url + "/health-check")
		require.NoError(t, err)
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			require.Equal(t, "error", body["status"])
			require.NotEmpty(t, body["message"])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health check still %d with Redis stopped", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	redis.Restart(t)
	waitHealthy(t, nodes[0].url)
}

// A frozen Redis (SIGSTOP: connections open, nothing answered) turns the
// health check to 503 within the probe's bound, and every answer comes
// within a balancer's patience.
func TestHealthCheckFrozenRedis(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nodes := startFleet(t, bin, redis.URL(), 1)
	redis.Freeze(t)
	frozen := time.Now()
	var slowest time.Duration
	await.True(t, 10*time.Second, 20*time.Millisecond, "/health-check answers 503", func() bool {
		start := time.Now()
		resp, err := http.Get(nodes[0].url + "/health-check")
		require.NoError(t, err)
		resp.Body.Close()
		slowest = max(slowest, time.Since(start))
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	t.Logf("503 %v after the freeze; slowest answer %v", time.Since(frozen).Round(time.Millisecond), slowest)
	// A balancer's check gives up after a second or more (HAProxy's
	// default: its 2 s interval); one waiting on the frozen Redis would
	// take until the freeze ends.
	require.Less(t, slowest, time.Second, "every /health-check answer")
	redis.Thaw(t)
	waitHealthy(t, nodes[0].url)
}

func TestConnectionRateLimit(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nodes := startFleet(t, bin, redis.URL(), 1, "-conn-limit", "3", "-trusted-proxies", "127.0.0.1")
	open := func(forwardedFor string) int {
		req, _ := http.NewRequest("GET", nodes[0].url+"/socket.io/?EIO=3&transport=polling", nil)
		if forwardedFor != "" {
			req.Header.Set("X-Forwarded-For", forwardedFor)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 3 {
		require.Equal(t, http.StatusOK, open("203.0.113.7"))
	}
	require.Equal(t, http.StatusTooManyRequests, open("203.0.113.7"))
	require.Equal(t, http.StatusOK, open("203.0.113.8"), "another client behind the trusted proxy")

	req, _ := http.NewRequest("GET", nodes[0].url+"/socket.io/?EIO=3&transport=polling", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

// The same contract through nginx (Debian's package) with the shipped
// config, TLS included: wss:// clients connect to nginx only, from different loopback addresses
// so that its per-IP hash spreads them over the nodes.
func TestThreeNodesBehindNginx(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		redistest.Skip(t, "nginx is not installed (apt-get install nginx)")
	}
	lb := behindBalancer(t, "nginx.conf", map[string]string{
		"listen 443 ssl;": "listen 127.0.0.1:{https} ssl;",
		"listen 80;":      "listen 127.0.0.1:{http};",
		"ssl_certificate     /etc/ssl/blogstack/fullchain.pem;": "ssl_certificate {cert};",
		"ssl_certificate_key /etc/ssl/blogstack/privkey.pem;":   "ssl_certificate_key {key};",
	}, func(dir, path string) *exec.Cmd {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
		return exec.Command(nginx, "-p", dir, "-c", path, "-g", "daemon off;")
	})

	// Find source addresses that nginx sends to each of the three nodes: the
	// page names the node that served it.
	byNode := map[string]string{}
	for i := 2; i < 200 && len(byNode) < 3; i++ {
		src := fmt.Sprintf("127.0.0.%d", i)
		name := servedBy(t, lb, src)
		if _, ok := byNode[name]; !ok {
			byNode[name] = src
		}
	}
	require.Len(t, byNode, 3, "nginx spread 200 client addresses over fewer than 3 nodes")

	var clients []*nodetest.Client
	for _, name := range []string{"n1", "n2", "n3"} {
		c := nodetest.DialTLS(t, lb.url, byNode[name], lb.pki.ca)
		number(t, c.Call(t, "join", "42"))
		clients = append(clients, c)
	}
	commentsOnce(t, clients, "42", "n1")
	require.Equal(t, 3, number(t, clients[1].Call(t, "readers", "42")))
}

// The same contract through HAProxy (Debian's package) with the shipped
// config, TLS included. It balances round-robin, so three wss:// clients land on three
// nodes: each comments, and the node named in its comment says where it is.
func TestThreeNodesBehindHAProxy(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		redistest.Skip(t, "haproxy is not installed (apt-get install haproxy)")
	}
	lb := behindBalancer(t, "haproxy.cfg", map[string]string{
		"bind :443 ssl crt /etc/haproxy/certs/blogstack.pem": "bind 127.0.0.1:{https} ssl crt {bundle}",
		"bind :80\n": "bind 127.0.0.1:{http}\n",
	}, func(_, path string) *exec.Cmd {
		return exec.Command(haproxy, "-db", "-f", path) // -db: in the foreground
	})

	var clients []*nodetest.Client
	for range 3 {
		c := nodetest.DialTLS(t, lb.url, "", lb.pki.ca)
		number(t, c.Call(t, "join", "7"))
		clients = append(clients, c)
	}
	require.Equal(t, 3, number(t, clients[0].Call(t, "readers", "7")))
	takenBy := map[string]bool{}
	for i, from := range clients {
		text := fmt.Sprintf("from client %d", i)
		require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)},
			from.Call(t, "comment", map[string]string{"post": "7", "text": text}))
		var node string
		for _, c := range clients {
			var got []struct{ Post, Text, Node string }
			require.NoError(t, json.Unmarshal([]byte(c.NextNamed(t, "comment")), &got))
			require.Len(t, got, 1)
			require.Equal(t, text, got[0].Text, "client %s: comments arrive once and in order", c.ID)
			node = got[0].Node
		}
		takenBy[node] = true
	}
	require.Len(t, takenBy, 3, "HAProxy sent the three clients to fewer than three nodes: %v", takenBy)
}

// balancer is a load balancer in front of three nodes.
type balancer struct {
	url     string // https://127.0.0.1:port
	httpURL string // its plain-HTTP port, which only redirects
	pki     *testPKI
}

// behindBalancer starts three nodes on one Redis, trusting the balancer's
// X-Forwarded-For, and in front of them the balancer that command builds:
// it runs the shipped examples/deploy/<config>, written to path in dir with
// only its ports and certificate paths changed: the nodes' 127.0.0.1:300x,
// and each key of subst (which must occur exactly once) by its value, in
// which {https}, {http} are free ports and {cert}, {key}, {bundle} the files
// of a CA generated here. It returns once the nodes' health check answers
// through it over HTTPS, and TLS 1.1 and plain HTTP are checked refused.
func behindBalancer(t *testing.T, config string, subst map[string]string, command func(dir, path string) *exec.Cmd) balancer {
	t.Helper()
	bin := buildExample(t)
	redis := redistest.Start(t)
	nodes := startFleet(t, bin, redis.URL(), 3, "-trusted-proxies", "127.0.0.1")

	conf, err := os.ReadFile(filepath.Join("../deploy", config))
	require.NoError(t, err)
	cfg := string(conf)
	for i, nd := range nodes {
		cfg = strings.Replace(cfg, fmt.Sprintf("127.0.0.1:%d", 3001+i), fmt.Sprintf("127.0.0.1:%d", nd.port), 1)
	}
	lb := balancer{pki: newPKI(t)}
	httpsPort, httpPort := redistest.FreePort(t), redistest.FreePort(t)
	vars := strings.NewReplacer("{https}", fmt.Sprint(httpsPort), "{http}", fmt.Sprint(httpPort),
		"{cert}", lb.pki.cert, "{key}", lb.pki.key, "{bundle}", lb.pki.bundle)
	for from, to := range subst {
		require.Equal(t, 1, strings.Count(cfg, from), "%s: %q", config, from)
		cfg = strings.Replace(cfg, from, vars.Replace(to), 1)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, config)
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o644))

	cmd := command(dir, path)
	cmd.Stderr = &prefixWriter{t: t, prefix: strings.TrimSuffix(config, filepath.Ext(config))}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // nginx's master and worker, stopped together
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	lb.url = fmt.Sprintf("https://127.0.0.1:%d", httpsPort)
	lb.httpURL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitHealthyWith(t, lb.pki.client(nil), lb.url)
	checkTLSOnly(t, lb.pki, lb.url, lb.httpURL)
	return lb
}

// servedBy returns the node name on the page nginx serves to a client at src.
func servedBy(t *testing.T, lb balancer, src string) string {
	t.Helper()
	resp, err := lb.pki.client(net.ParseIP(src)).Get(lb.url + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := regexp.MustCompile(`<b id="node">([^<]+)</b>`).FindSubmatch(body)
	require.NotNil(t, m, "no node name on the page")
	return string(m[1])
}

// A real browser on two nodes: a comment typed on one appears on the other,
// and each page shows the fleet: its socket's node, the readers on each.
// The screenshots are kept in $BLOGSTACK_ARTIFACTS (default: testdata/artifacts).
func TestBrowserTwoNodes(t *testing.T) {
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		redistest.Skip(t, "chromium is not installed (apt-get install chromium)")
	}
	bin := buildExample(t)
	redis := redistest.Start(t)
	nodes := startFleet(t, bin, redis.URL(), 2)
	shots := os.Getenv("BLOGSTACK_ARTIFACTS")
	if shots == "" {
		shots = filepath.Join("testdata", "artifacts")
	}
	shots, err := filepath.Abs(shots)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(shots, 0o755))
	p := nodetest.Start(t, "browser.js", nil, nodes[0].url, nodes[1].url, shots)
	m := p.Wait(90*time.Second, "browser result", func(m nodetest.Msg) bool { return m["ok"] != nil || m["error"] != nil })
	require.Nil(t, m["error"], "browser: %s", m["error"])
	require.Contains(t, m.Str("seen"), "via n1", "the comment shows the node that took it")
	require.Equal(t, "2", m.Str("readersB"))
	require.Equal(t, "Delivered to 2 readers (you included)", m.Str("receiptA"), "both tabs confirmed the comment")
	// The fleet: each page names the node of its socket and the post's readers on each node.
	require.Equal(t, "n1", m.Str("nodeA"))
	require.Equal(t, "n2", m.Str("nodeB"))
	require.Equal(t, "node n1: 1 (you)", m.Str("fleetAlone"))
	require.Equal(t, "node n1: 1 (you)|node n2: 1", m.Str("fleetA"), "A was told when B joined")
	require.Equal(t, "node n1: 1|node n2: 1 (you)", m.Str("fleetB"))
	for _, f := range []string{"node-a.png", "node-b.png"} {
		st, err := os.Stat(filepath.Join(shots, f))
		require.NoError(t, err)
		require.Positive(t, st.Size())
	}
	t.Logf("screenshots in %s", shots)
}
