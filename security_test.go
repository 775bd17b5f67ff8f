package redisadapter_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/testpki"
)

// Two applications on one Redis with different keys: neither sees the
// other's events or requests.
func TestKeyPrefixIsolation(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	blog := &redisadapter.Options{Key: "blog"}
	shop := &redisadapter.Options{Key: "shop"}
	blogA, blogB := startNodes(t, c, blog)
	shopA, shopB := startNodes(t, c, shop)
	blogClient, shopClient := blogB.client(t, "r"), shopB.client(t, "r")

	require.NoError(t, blogA.a.To("r").Emit(bg(t), "from-blog"))
	require.NoError(t, shopA.a.To("r").Emit(bg(t), "from-shop"))
	expect(t, blogClient, "from-blog")
	expect(t, shopClient, "from-shop") // not "from-blog" first

	for _, n := range []*node{blogA, shopA} {
		count, err := n.a.Of("/").ServerCount(bg(t))
		require.NoError(t, err)
		require.Equal(t, 2, count, "each application counts its own servers")
	}
	sockets, err := blogA.a.Of("/").FetchSockets(bg(t))
	require.NoError(t, err)
	require.Len(t, sockets, 1)
	require.Equal(t, blogClient.ID(), sockets[0].ID)
	require.NoError(t, shopA.a.Of("/").DisconnectSockets(bg(t), true))
	select {
	case <-shopClient.Closed():
	case <-time.After(wait):
		t.Fatal("shop's disconnect did not reach its client")
	}
	expectOpen(t, blogB, blogClient)
}

// expectOpen checks c is still connected to n by a round trip.
func expectOpen(t *testing.T, n *node, c interface{ ID() string }) {
	t.Helper()
	count, err := n.a.To(c.ID()).Local().CountSockets(bg(t))
	require.NoError(t, err)
	require.Equal(t, 1, count, "socket %s still connected", c.ID())
}

// aclLine is the ACL for the adapter in docs/operations.md: its channels only, the
// pub/sub commands it sends, nothing on keys.
const aclLine = "adapter on >s3cret resetchannels &socket.io* &socket.io#/#* resetkeys -@all +@connection " +
	"+publish +subscribe +psubscribe +unsubscribe +punsubscribe +pubsub|numsub " +
	"+spublish +ssubscribe +sunsubscribe +pubsub|shardnumsub"

func TestACLUserLimitedToItsChannels(t *testing.T) {
	// redis-server takes a config line's words as separate arguments.
	args := append([]string{"--user"}, strings.Fields(aclLine)...)
	args = append(args, "--user", "intruder", "on", ">pw", "resetchannels", "&other*", "-@all", "+@connection", "+@pubsub")
	srv := redistest.Start(t, args...)
	c := redisadapter.Standalone{Addr: srv.Addr(), Username: "adapter", Password: "s3cret"}
	a, b := startNodes(t, c, nil)
	bc := b.client(t, "r")
	require.NoError(t, a.a.To("r").Emit(bg(t), "allowed"))
	expect(t, bc, "allowed")
	fetched, err := a.a.To("r").FetchSockets(bg(t))
	require.NoError(t, err)
	require.Len(t, fetched, 1)

	// The user really is limited: a key command is refused.
	raw := rawClient(t, c)
	require.ErrorContains(t, raw.Do(bg(t), raw.B().Get().Key("k").Build()).Error(), "NOPERM")

	// A user without the adapter's channels fails fast, saying why.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = redisadapter.New(ctx, socketio.NewServer(nil), redisadapter.Standalone{Addr: srv.Addr(), Username: "intruder", Password: "pw"}, nil)
	require.ErrorContains(t, err, "NOPERM")

	// Wrong credentials fail New at once, saying so.
	_, err = redisadapter.New(ctx, socketio.NewServer(nil), redisadapter.Standalone{Addr: srv.Addr(), Username: "adapter", Password: "wrong"}, nil)
	require.ErrorContains(t, err, "WRONGPASS")
}

// A server that refuses PSUBSCRIBE (ElastiCache Serverless, an ACL without
// it): classic mode fails at New with ErrConfig, at once, naming the command
// and the modes that do without it; RoomSubscriptions does.
func TestClassicWithoutPSubscribe(t *testing.T) {
	srv := redistest.Start(t, "--user", "nopattern", "on", ">pw", "~*", "&*", "+@all", "-psubscribe")
	c := redisadapter.Standalone{Addr: srv.Addr(), Username: "nopattern", Password: "pw"}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	_, err := redisadapter.New(ctx, socketio.NewServer(nil), c, &redisadapter.Options{RequestTimeout: wait})
	require.ErrorIs(t, err, redisadapter.ErrConfig)
	for _, says := range []string{"refused PSUBSCRIBE", "NOPERM", "RoomSubscriptions", "Sharded"} {
		require.ErrorContains(t, err, says)
	}
	require.Less(t, time.Since(start), wait/2, "New waited for a subscription Redis refused")

	c.RoomSubscriptions = true
	a, b := startNodes(t, c, nil)
	bc := b.client(t, "r")
	channelSubscribers(t, c, defaultNames.room("/", "r"), 1)
	require.NoError(t, a.a.To("r").Emit(bg(t), "delivered"))
	expect(t, bc, "delivered")
}

// TLS with a custom CA and client certificates (tls-auth-clients yes).
func TestTLS(t *testing.T) {
	ca := testpki.NewCA(t)
	serverCert, serverKey := ca.Issue(t, "redis", false)
	clientCert, clientKey := ca.Issue(t, "adapter", true)
	srv := redistest.StartWithFiles(t, map[string]string{
		"ca.crt": ca.CertPEM, "server.crt": serverCert, "server.key": serverKey,
	}, "--port", "0", "--tls-port", "{port}", "--tls-cert-file", "{dir}/server.crt",
		"--tls-key-file", "{dir}/server.key", "--tls-ca-cert-file", "{dir}/ca.crt", "--tls-auth-clients", "yes")

	pair, err := tls.X509KeyPair([]byte(clientCert), []byte(clientKey))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM([]byte(ca.CertPEM)))
	c := redisadapter.Standalone{Addr: srv.Addr(), TLSConfig: &tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12,
	}}
	a, b := startNodes(t, c, nil)
	bc := b.client(t, "r")
	require.NoError(t, a.a.To("r").Emit(bg(t), "over-tls"))
	expect(t, bc, "over-tls")
	require.NoError(t, a.a.Ping(bg(t)))

	// Without a client certificate, or trusting another CA, New fails.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	noCert := c
	noCert.TLSConfig = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	_, err = redisadapter.New(ctx, socketio.NewServer(nil), noCert, nil)
	require.Error(t, err)
	systemRoots, err := redisadapter.ParseURL("rediss://" + srv.Addr())
	require.NoError(t, err)
	_, err = redisadapter.New(ctx, socketio.NewServer(nil), systemRoots, nil)
	require.ErrorContains(t, err, "certificate")
}
