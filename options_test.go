package redisadapter

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url      string
		addr     string
		user     string
		password string
		db       int
		tls      bool
		dial     time.Duration
		resp2    bool
		err      string
	}{
		{url: "redis://localhost", addr: "localhost:6379"},
		{url: "redis://127.0.0.1:7000/3", addr: "127.0.0.1:7000", db: 3},
		{url: "redis://:pw@h:1", addr: "h:1", password: "pw"},
		{url: "redis://app:pw@h:1/0", addr: "h:1", user: "app", password: "pw"},
		{url: "rediss://h", addr: "h:6379", tls: true},
		{url: "redis://h?dial_timeout=250ms", addr: "h:6379", dial: 250 * time.Millisecond},
		{url: "redis://h?protocol=2", addr: "h:6379", resp2: true},
		{url: "redis://h?protocol=3", addr: "h:6379"},
		{url: "redis://h?protocol=1", err: "protocol"},
		{url: "redis://[::1]:6380", addr: "[::1]:6380"},
		{url: "http://h", err: `scheme "http"`},
		{url: "redis://", err: `host ""`},
		{url: "redis://h/x", err: `database "x"`},
		{url: "redis://h?foo=1", err: `query key "foo"`},
		{url: "redis://h?dial_timeout=soon", err: "dial_timeout"},
		{url: "::", err: "redis URL"},
		{url: "redis://a:1,b:2", err: "one host"},
		{url: "redis://a,", err: `host ""`},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u, err := parseURL(tc.url)
			var opt rueidis.ClientOption
			if err == nil {
				opt, err = u.clientOption()
			}
			if tc.err != "" {
				require.ErrorIs(t, err, ErrConfig)
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, []string{tc.addr}, opt.InitAddress)
			require.Equal(t, tc.user, opt.Username)
			require.Equal(t, tc.password, opt.Password)
			require.Equal(t, tc.db, opt.SelectDB)
			require.Equal(t, tc.tls, opt.TLSConfig != nil)
			require.Equal(t, tc.dial, opt.Dialer.Timeout)
			require.Equal(t, tc.resp2, opt.AlwaysRESP2)
		})
	}
}

func TestParseURLPicksTheShape(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want Connector
		err  string
	}{
		{url: "redis://h:1", want: Standalone{URL: "redis://h:1"}},
		{url: "redis://u:p@a:26379,b:26380?master_name=mymaster&sentinel_password=sp",
			want: Sentinel{MasterName: "mymaster", Addrs: []string{"a:26379", "b:26380"}, Username: "u", Password: "p", SentinelPassword: "sp"}},
		{url: "redis://:p@a,b:7001,c:7002?cluster=true",
			want: Cluster{Addrs: []string{"a:6379", "b:7001", "c:7002"}, Password: "p"}},
		{url: "redis://a:7000?sharded=true",
			want: Cluster{Addrs: []string{"a:7000"}, Sharded: true}},
		{url: "redis://a?sharded=true&cluster=false", err: "needs a cluster"},
		{url: "redis://a?sharded=true&master_name=m", err: "exclude each other"},
		{url: "redis://a,b", err: "2 hosts"},
		{url: "redis://a?master_name=m&cluster=true", err: "exclude each other"},
		{url: "redis://a?sentinel_password=x", err: "without a master name"},
		{url: "redis://a,b?cluster=true&dial_timeout=1s", err: "standalone server only"},
		{url: "redis://a,b?cluster=true&protocol=2", err: "standalone server only"},
		{url: "redis://a/3?cluster=1", err: "only database 0"},
		{url: "redis://a?cluster=maybe", err: "true or false"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			c, err := ParseURL(tc.url)
			if tc.err != "" {
				require.ErrorIs(t, err, ErrConfig)
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, c)
			_, err = c.clientOption()
			require.NoError(t, err)
		})
	}
	_, err := Sentinel{Addrs: []string{"a:1"}}.clientOption()
	require.ErrorIs(t, err, ErrConfig)
	_, err = Cluster{}.clientOption()
	require.ErrorIs(t, err, ErrConfig)
}

func TestStandaloneOverrides(t *testing.T) {
	custom := &tls.Config{ServerName: "x"}
	opt, err := Standalone{URL: "rediss://u:old@h", Password: "new", TLSConfig: custom}.clientOption()
	require.NoError(t, err)
	require.Equal(t, "new", opt.Password)
	require.Same(t, custom, opt.TLSConfig)
	require.True(t, opt.ForceSingleClient)

	opt, err = Standalone{}.clientOption()
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:6379"}, opt.InitAddress)
}

func TestFromEnv(t *testing.T) {
	t.Setenv("REDIS_URL", "redis://cache:6390")
	t.Setenv("REDIS_PASSWORD", "pw")
	c, err := FromEnv()
	require.NoError(t, err)
	require.Equal(t, Standalone{URL: "redis://cache:6390", Password: "pw"}, c)

	t.Setenv("REDIS_URL", "")
	c, err = FromEnv()
	require.NoError(t, err)
	require.Equal(t, "redis://127.0.0.1:6379", c.(Standalone).URL)

	t.Setenv("REDIS_URL", "mysql://x")
	_, err = FromEnv()
	require.ErrorIs(t, err, ErrConfig)
	require.ErrorContains(t, err, "REDIS_URL")

	// The deployment guide's examples.
	t.Setenv("REDIS_URL", "redis://sentinel-a:26379,sentinel-b:26379,sentinel-c:26379")
	t.Setenv("REDIS_MASTER_NAME", "mymaster")
	c, err = FromEnv()
	require.NoError(t, err)
	require.Equal(t, Sentinel{MasterName: "mymaster", Addrs: []string{"sentinel-a:26379", "sentinel-b:26379", "sentinel-c:26379"}, Password: "pw"}, c)

	t.Setenv("REDIS_CLUSTER", "true")
	_, err = FromEnv()
	require.ErrorContains(t, err, "exclude each other")

	t.Setenv("REDIS_MASTER_NAME", "")
	t.Setenv("REDIS_URL", "redis://user:pass@host-a:6379,host-b:6379,host-c:6379")
	c, err = FromEnv()
	require.NoError(t, err)
	require.Equal(t, Cluster{Addrs: []string{"host-a:6379", "host-b:6379", "host-c:6379"}, Username: "user", Password: "pw"}, c)

	t.Setenv("REDIS_CLUSTER", "")
	_, err = FromEnv()
	require.ErrorContains(t, err, "3 hosts")

	t.Setenv("REDIS_CLUSTER", "yes please")
	_, err = FromEnv()
	require.ErrorContains(t, err, "REDIS_CLUSTER")

	t.Setenv("REDIS_CLUSTER", "true")
	t.Setenv("REDIS_SHARDED", "true")
	c, err = FromEnv()
	require.NoError(t, err)
	require.True(t, c.(Cluster).Sharded)

	t.Setenv("REDIS_CLUSTER", "false")
	_, err = FromEnv()
	require.ErrorContains(t, err, "needs a cluster")

	t.Setenv("REDIS_CLUSTER", "")
	t.Setenv("REDIS_MASTER_NAME", "mymaster")
	_, err = FromEnv()
	require.ErrorContains(t, err, "exclude each other")
}

func TestOptionsDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Options
		want Options
	}{
		{name: "zero", want: Options{Key: "socket.io", Namespaces: []string{"/"}, RequestTimeout: 5 * time.Second,
			MaxMessageSize: 1 << 20, ReceiveQueue: 8192, SocketQueue: 32 << 20, PublishQueue: 4 << 20}},
		{name: "set", in: Options{Key: "k", Namespaces: []string{"/a"}, RequestTimeout: time.Second,
			MaxMessageSize: 10, ReceiveQueue: 1, SocketQueue: 2, PublishQueue: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want.Key == "" {
				tc.want = tc.in
			}
			o := tc.in
			o.setDefaults()
			require.NoError(t, o.validate())
			require.NotNil(t, o.Logger)
			o.Logger = nil
			require.Equal(t, tc.want, o)
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		in  Options
		err string
	}{
		{Options{Key: "a#b"}, "Options.Key"},
		{Options{Key: "a\x00b"}, "Options.Key"},
		{Options{Namespaces: []string{"chat"}}, `namespace "chat"`},
		{Options{Namespaces: []string{"/a#b"}}, `namespace "/a#b"`},
		{Options{Namespaces: []string{"/a\x00b"}}, "namespace"},
		{Options{RequestTimeout: -1}, "Options.RequestTimeout -1ns is negative"},
		{Options{MaxMessageSize: -1}, "Options.MaxMessageSize -1 is negative"},
		{Options{ReceiveQueue: -1}, "Options.ReceiveQueue -1 is negative"},
		{Options{SocketQueue: -1}, "Options.SocketQueue -1 is negative"},
		{Options{PublishQueue: -1}, "Options.PublishQueue -1 is negative"},
	} {
		t.Run(tc.err, func(t *testing.T) {
			tc.in.setDefaults()
			err := tc.in.validate()
			require.ErrorIs(t, err, ErrConfig)
			require.ErrorContains(t, err, tc.err)
		})
	}
	// New and NewEmitter check the options before they connect.
	_, _, err := open(Standalone{}, &Options{PublishQueue: -1})
	require.ErrorIs(t, err, ErrConfig)
}

func TestClientLimitsDefaultsAndValidation(t *testing.T) {
	var l ClientLimits
	l.setDefaults()
	require.NoError(t, l.validate())
	require.Equal(t, ClientLimits{MaxMessageSize: 1e6, MaxAttachments: 10}, l)

	for _, tc := range []struct {
		in  ClientLimits
		err string
	}{
		{ClientLimits{MaxMessageSize: -1}, "ClientLimits.MaxMessageSize -1 is negative"},
		{ClientLimits{MaxAttachments: -1}, "ClientLimits.MaxAttachments -1 is negative"},
	} {
		t.Run(tc.err, func(t *testing.T) {
			tc.in.setDefaults()
			err := tc.in.validate()
			require.ErrorIs(t, err, ErrConfig)
			require.ErrorContains(t, err, tc.err)
			// Transports, which cannot return it, panics with it.
			defer func() {
				err, _ := recover().(error)
				require.ErrorIs(t, err, ErrConfig)
				require.ErrorContains(t, err, tc.err)
			}()
			tc.in.Transports()
		})
	}
}

// REDIS_STREAMS (and streams=true) wraps any shape in Streams; with
// REDIS_SHARDED its requests use sharded pub/sub.
func TestFromEnvStreams(t *testing.T) {
	for _, k := range []string{"REDIS_URL", "REDIS_PASSWORD", "REDIS_MASTER_NAME", "REDIS_CLUSTER", "REDIS_SHARDED"} {
		t.Setenv(k, "")
	}
	t.Setenv("REDIS_STREAMS", "true")
	t.Setenv("REDIS_URL", "redis://h:6380")
	t.Setenv("REDIS_PASSWORD", "pw")
	c, err := FromEnv()
	require.NoError(t, err)
	require.Equal(t, Streams{Connector: Standalone{URL: "redis://h:6380", Password: "pw"}}, c)
	require.Equal(t, streams{key: "socket.io", uid: "u", name: "socket.io", count: 1, maxLen: 10000, readCount: 100}, c.protocol("socket.io", "u"))

	t.Setenv("REDIS_PASSWORD", "")
	t.Setenv("REDIS_URL", "redis://s1:26379,s2:26379")
	t.Setenv("REDIS_MASTER_NAME", "mymaster")
	c, err = FromEnv()
	require.NoError(t, err)
	require.Equal(t, Streams{Connector: Sentinel{MasterName: "mymaster", Addrs: []string{"s1:26379", "s2:26379"}}}, c)

	t.Setenv("REDIS_MASTER_NAME", "")
	t.Setenv("REDIS_CLUSTER", "true")
	t.Setenv("REDIS_SHARDED", "true")
	c, err = FromEnv()
	require.NoError(t, err)
	require.Equal(t, Streams{Connector: Cluster{Addrs: []string{"s1:26379", "s2:26379"}, Sharded: true}}, c)
	require.True(t, c.protocol("socket.io", "u").(streams).shardedPubSub)

	t.Setenv("REDIS_STREAMS", "maybe")
	_, err = FromEnv()
	require.ErrorIs(t, err, ErrConfig)

	c, err = ParseURL("redis://h?streams=true")
	require.NoError(t, err)
	require.Equal(t, Streams{Connector: Standalone{URL: "redis://h?streams=true"}}, c)
	_, err = ParseURL("redis://h?streams=sometimes")
	require.ErrorIs(t, err, ErrConfig)

	for _, bad := range []Streams{{}, {Connector: Streams{Connector: Standalone{}}}, {Connector: Standalone{}, MaxLen: -1}} {
		_, err := bad.clientOption()
		require.ErrorIs(t, err, ErrConfig, "%+v", bad)
	}
}
