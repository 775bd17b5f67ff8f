package main

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/nodetest"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/testpki"
)

// testPKI is a self-signed CA and a server certificate it signed for
// 127.0.0.1 and localhost, as PEM files in a temporary directory.
type testPKI struct {
	ca, cert, key string // PEM files: CA certificate, server certificate, its key
	bundle        string // certificate then key in one file, as HAProxy's crt wants
	pool          *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t)
	cert, key := ca.Issue(t, "blogstack", false)
	p := &testPKI{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "fullchain.pem"),
		key: filepath.Join(dir, "privkey.pem"), bundle: filepath.Join(dir, "bundle.pem"), pool: ca.Pool()}
	for path, content := range map[string]string{p.ca: ca.CertPEM, p.cert: cert, p.key: key, p.bundle: cert + key} {
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	}
	return p
}

// client trusts only the test CA; dial, if set, picks the source address.
func (p *testPKI) client(local net.IP) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	if local != nil {
		dialer.LocalAddr = &net.TCPAddr{IP: local}
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{RootCAs: p.pool}},
		// Redirects are checked, not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

// checkTLSOnly checks what a TLS front end promises: TLS 1.1 and older
// are refused, and plain HTTP (at httpURL, if any) only redirects to HTTPS.
func checkTLSOnly(t *testing.T, p *testPKI, httpsURL, httpURL string) {
	t.Helper()
	host := strings.TrimPrefix(httpsURL, "https://")
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: p.pool, MinVersion: v, MaxVersion: v})
		if err == nil {
			conn.Close()
		}
		require.Error(t, err, "%s accepted %s", httpsURL, tls.VersionName(v))
		// The server's protocol_version alert: refused for its version. Without
		// the config's protocol setting it would fail later, for want of a
		// shared cipher (a handshake_failure alert), and prove nothing here.
		require.ErrorContains(t, err, "protocol version", "%s refused %s for another reason than its version", httpsURL, tls.VersionName(v))
	}
	conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12})
	require.NoError(t, err, "TLS 1.2")
	conn.Close()
	if httpURL == "" {
		return
	}
	resp, err := p.client(nil).Get(httpURL + "/?post=3")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMovedPermanently, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Location"), "https://"), "Location: %s", resp.Header.Get("Location"))
	require.True(t, strings.HasSuffix(resp.Header.Get("Location"), "/?post=3"), "Location: %s", resp.Header.Get("Location"))
}

// TLS on the nodes themselves (-tls-cert, -tls-key), no balancer: wss://
// clients on two nodes, a comment from one reaches both.
func TestNodesServeTLS(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	pki := newPKI(t)
	nodes := startFleetWith(t, bin, redis.URL(), 2, pki)
	checkTLSOnly(t, pki, nodes[0].url, "")
	var clients []*nodetest.Client
	for _, nd := range nodes {
		require.True(t, strings.HasPrefix(nd.url, "https://"))
		c := nodetest.DialTLS(t, nd.url, "", pki.ca)
		number(t, c.Call(t, "join", "5"))
		clients = append(clients, c)
	}
	commentsOnce(t, clients, "5", "n1")
}
