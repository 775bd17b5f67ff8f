package redisadapter

import (
	"crypto/tls"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want Standalone
		err  string
	}{
		{url: "redis://localhost", want: Standalone{Addr: "localhost:6379"}},
		{url: "redis://127.0.0.1:7000/3", want: Standalone{Addr: "127.0.0.1:7000", DB: 3}},
		{url: "redis://:pw@h:1", want: Standalone{Addr: "h:1", Password: "pw"}},
		{url: "redis://app:pw@h:1/0", want: Standalone{Addr: "h:1", Username: "app", Password: "pw"}},
		{url: "rediss://h", want: Standalone{Addr: "h:6379", TLSConfig: &tls.Config{ServerName: "h", MinVersion: tls.VersionTLS12}}},
		{url: "redis://h?dial_timeout=250ms", want: Standalone{Addr: "h:6379", DialTimeout: 250 * time.Millisecond}},
		{url: "redis://h?protocol=2", want: Standalone{Addr: "h:6379", Protocol: 2}},
		{url: "redis://h?protocol=3", want: Standalone{Addr: "h:6379", Protocol: 3}},
		{url: "redis://h?protocol=1", err: "protocol"},
		{url: "redis://[::1]:6380", want: Standalone{Addr: "[::1]:6380"}},
		{url: "http://h", err: `scheme "http"`},
		{url: "redis://", err: `host ""`},
		{url: "redis://h/x", err: `database "x"`},
		{url: "redis://h?foo=1", err: `query key "foo"`},
		{url: "redis://h?dial_timeout=soon", err: "dial_timeout"},
		{url: "redis://h?dial_timeout=-1s", err: "dial_timeout"},
		{url: "::", err: "redis URL"},
		{url: "redis://a:1,b:2", err: "2 hosts"},
		{url: "redis://a,", err: `host ""`},
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
			_, err = c.configured()
			require.NoError(t, err)
		})
	}
}

func TestParseURLPicksTheShape(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want Connector
		err  string
	}{
		{url: "redis://h:1", want: Standalone{Addr: "h:1"}},
		{url: "redis://u:p@a:26379,b:26380?master_name=mymaster&sentinel_password=sp",
			want: Sentinel{MasterName: "mymaster", Addrs: []string{"a:26379", "b:26380"}, Username: "u", Password: "p", SentinelPassword: "sp"}},
		{url: "redis://:p@a,b:7001,c:7002?cluster=true",
			want: Cluster{Addrs: []string{"a:6379", "b:7001", "c:7002"}, Password: "p"}},
		{url: "redis://a:7000?sharded=true",
			want: Cluster{Addrs: []string{"a:7000"}, Sharded: true}},
		{url: "redis://a?sharded=true&cluster=false", err: "needs a cluster"},
		{url: "redis://h:1?room_subscriptions=true", want: Standalone{Addr: "h:1", RoomSubscriptions: true}},
		{url: "redis://a,b?master_name=m&room_subscriptions=true",
			want: Sentinel{MasterName: "m", Addrs: []string{"a:6379", "b:6379"}, RoomSubscriptions: true}},
		{url: "redis://a?cluster=true&room_subscriptions=1", want: Cluster{Addrs: []string{"a:6379"}, RoomSubscriptions: true}},
		{url: "redis://a?sharded=true&room_subscriptions=true", err: "room_subscriptions is for classic"},
		{url: "redis://a?streams=true&room_subscriptions=true", err: "room_subscriptions is for classic"},
		{url: "redis://a?room_subscriptions=maybe", err: "room_subscriptions=\"maybe\""},
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
			_, err = c.configured()
			require.NoError(t, err)
		})
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("REDIS_URL", "redis://cache:6390")
	t.Setenv("REDIS_PASSWORD", "pw")
	c, err := FromEnv()
	require.NoError(t, err)
	require.Equal(t, Standalone{Addr: "cache:6390", Password: "pw"}, c)

	t.Setenv("REDIS_URL", "")
	c, err = FromEnv()
	require.NoError(t, err)
	require.Equal(t, Standalone{Addr: "127.0.0.1:6379", Password: "pw"}, c)

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
			MaxMessageSize: 1 << 20, ReceiveQueue: 8192, SocketQueue: 32 << 20, PublishQueue: 4 << 20,
			ProbeInterval: 400 * time.Millisecond, ProbeTimeout: 800 * time.Millisecond}},
		{name: "set", in: Options{Key: "k", Namespaces: []string{"/a"}, RequestTimeout: time.Second,
			MaxMessageSize: 10, ReceiveQueue: 1, SocketQueue: 2, PublishQueue: 3, ProbeInterval: 4, ProbeTimeout: 5}},
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
		{Options{ProbeInterval: -1}, "Options.ProbeInterval -1ns is negative"},
		{Options{ProbeTimeout: -1}, "Options.ProbeTimeout -1ns is negative"},
	} {
		t.Run(tc.err, func(t *testing.T) {
			tc.in.setDefaults()
			err := tc.in.validate()
			require.ErrorIs(t, err, ErrConfig)
			require.ErrorContains(t, err, tc.err)
		})
	}
	// New and NewEmitter check the options before they connect.
	_, _, _, _, err := open(Standalone{}, &Options{PublishQueue: -1})
	require.ErrorIs(t, err, ErrConfig)
}

func TestClientLimitsDefaultsAndValidation(t *testing.T) {
	var l ClientLimits
	l.setDefaults()
	require.NoError(t, l.validate())
	require.Equal(t, ClientLimits{MaxMessageSize: 1e6, MaxAttachments: 10, Logger: slog.Default()}, l)

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

// configured is c as open configures it.
func configured(t *testing.T, c Connector) Connector {
	t.Helper()
	c, err := c.configured()
	require.NoError(t, err)
	return c
}

func TestConnectorDefaults(t *testing.T) {
	standalone := Standalone{Addr: "127.0.0.1:6379", DialTimeout: 5 * time.Second, Protocol: 3}
	for _, tc := range []struct {
		name     string
		in, want Connector
	}{
		{name: "standalone zero", in: Standalone{}, want: standalone},
		{name: "standalone set", in: Standalone{Addr: "h:1", Username: "u", Password: "p", DB: 2, DialTimeout: time.Second, Protocol: 2}},
		{name: "sentinel", in: Sentinel{MasterName: "m", Addrs: []string{"a:1", "b:2"}, DB: 1}},
		{name: "cluster", in: Cluster{Addrs: []string{"a:1"}, Sharded: true}},
		{name: "streams zero", in: Streams{Connector: Standalone{}},
			want: Streams{Connector: standalone, Name: "socket.io", Count: 1, MaxLen: 10000, ReadCount: 100}},
		{name: "streams set", in: Streams{Connector: standalone, Name: "s", Count: 4, MaxLen: 5, ReadCount: 6, ShardedPubSub: true}},
		{name: "streams sharded cluster", in: Streams{Connector: Cluster{Addrs: []string{"a:1"}, Sharded: true}},
			want: Streams{Connector: Cluster{Addrs: []string{"a:1"}, Sharded: true}, Name: "socket.io", Count: 1, MaxLen: 10000, ReadCount: 100, ShardedPubSub: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				tc.want = tc.in
			}
			require.Equal(t, tc.want, configured(t, tc.in))
		})
	}
}

func TestConnectorValidation(t *testing.T) {
	ok := Standalone{}
	for _, tc := range []struct {
		in  Connector
		err string
	}{
		{Standalone{Addr: "redis://h:1"}, `Standalone.Addr "redis://h:1" is not host:port (for a redis:// URL, use ParseURL)`},
		{Standalone{Addr: "h"}, `Standalone.Addr "h" is not host:port`},
		{Standalone{DB: -1}, "Standalone.DB -1 is negative"},
		{Standalone{DialTimeout: -1}, "Standalone.DialTimeout -1ns is negative"},
		{Standalone{Protocol: -1}, "Standalone.Protocol -1 is not 2 or 3"},
		{Standalone{Protocol: 4}, "Standalone.Protocol 4 is not 2 or 3"},
		{Sentinel{Addrs: []string{"a:1"}}, "Sentinel.MasterName is empty"},
		{Sentinel{MasterName: "m"}, "Sentinel.Addrs is empty"},
		{Sentinel{MasterName: "m", Addrs: []string{"a:1", "b"}}, `Sentinel.Addrs "b" is not host:port`},
		{Sentinel{MasterName: "m", Addrs: []string{"a:1"}, DB: -1}, "Sentinel.DB -1 is negative"},
		{Cluster{}, "Cluster.Addrs is empty"},
		{Cluster{Addrs: []string{"a:1", "redis://b:2"}}, `Cluster.Addrs "redis://b:2" is not host:port`},
		{Streams{}, "Streams.Connector is nil"},
		{Streams{Connector: Streams{Connector: ok}}, "Streams.Connector is a Streams"},
		{Streams{Connector: Cluster{}}, "Cluster.Addrs is empty"},
		{Streams{Connector: ok, Name: "a\x00"}, "Streams.Name"},
		{Streams{Connector: ok, Count: -1}, "Streams.Count -1 is negative"},
		{Streams{Connector: ok, MaxLen: -1}, "Streams.MaxLen -1 is negative"},
		{Streams{Connector: ok, ReadCount: -1}, "Streams.ReadCount -1 is negative"},
	} {
		t.Run(tc.err, func(t *testing.T) {
			_, err := tc.in.configured()
			require.ErrorIs(t, err, ErrConfig)
			require.ErrorContains(t, err, tc.err)
			_, _, _, _, err = open(tc.in, nil)
			require.ErrorIs(t, err, ErrConfig)
		})
	}
}

func TestConnectorClientOption(t *testing.T) {
	custom := &tls.Config{ServerName: "x"}
	opt := configured(t, Standalone{Addr: "h:1", Username: "u", Password: "p", DB: 3, TLSConfig: custom, Protocol: 2}).clientOption()
	require.Equal(t, []string{"h:1"}, opt.InitAddress)
	require.Equal(t, "u", opt.Username)
	require.Equal(t, "p", opt.Password)
	require.Equal(t, 3, opt.SelectDB)
	require.Same(t, custom, opt.TLSConfig)
	require.Equal(t, 5*time.Second, opt.Dialer.Timeout)
	require.True(t, opt.AlwaysRESP2)
	require.True(t, opt.ForceSingleClient)

	opt = configured(t, Standalone{}).clientOption()
	require.Equal(t, []string{"127.0.0.1:6379"}, opt.InitAddress)
	require.False(t, opt.AlwaysRESP2)

	opt = configured(t, Sentinel{MasterName: "m", Addrs: []string{"a:1"}, Password: "p", SentinelPassword: "sp", DB: 1}).clientOption()
	require.Equal(t, "m", opt.Sentinel.MasterSet)
	require.Equal(t, "sp", opt.Sentinel.Password)
	require.Equal(t, 1, opt.SelectDB)

	opt = configured(t, Streams{Connector: Cluster{Addrs: []string{"a:1"}}}).clientOption()
	require.Equal(t, []string{"a:1"}, opt.InitAddress)
	require.NotZero(t, opt.ClusterOption.ShardsRefreshInterval)
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
	require.Equal(t, Streams{Connector: Standalone{Addr: "h:6380", Password: "pw"}}, c)
	require.Equal(t, streams{key: "socket.io", uid: "u", name: "socket.io", count: 1, maxLen: 10000, readCount: 100}, configured(t, c).protocol("socket.io", "u"))

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
	require.True(t, configured(t, c).protocol("socket.io", "u").(streams).shardedPubSub)

	t.Setenv("REDIS_STREAMS", "maybe")
	_, err = FromEnv()
	require.ErrorIs(t, err, ErrConfig)

	c, err = ParseURL("redis://h?streams=true")
	require.NoError(t, err)
	require.Equal(t, Streams{Connector: Standalone{Addr: "h:6379"}}, c)
	_, err = ParseURL("redis://h?streams=sometimes")
	require.ErrorIs(t, err, ErrConfig)
}
