package redisadapter

// Connectors from strings: ParseURL's grammar and FromEnv.

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// ParseURL returns the Connector a Redis URL describes:
//
//	redis[s]://[[username]:password@]host[:port][,host[:port]...][/db][?key=value&...]
//
// rediss:// turns on TLS (a TLSConfig verifying the first host against the
// system roots). Ports default to 6379, the database to 0. One host is a
// Standalone server; several hosts need a query key saying what they are.
// The query keys are
//
//	master_name        Sentinel: the hosts are sentinels watching this master
//	sentinel_username  Sentinel: the ACL user on the sentinels
//	sentinel_password  Sentinel: the password on the sentinels
//	cluster            Cluster when "true": the hosts are cluster nodes
//	sharded            Cluster with sharded pub/sub (Redis 7) when "true"
//	room_subscriptions classic mode with RoomSubscriptions when "true"
//	streams            streams mode when "true": the shape above wrapped in Streams
//	dial_timeout       Standalone.DialTimeout (time.ParseDuration)
//	protocol           Standalone.Protocol: "2" or "3"
//
// Any other key is an error, so a typo is not silently ignored. For example,
// "rediss://app:s3cret@redis.internal:6380/2?dial_timeout=2s" is
// Standalone{Addr: "redis.internal:6380", Username: "app", Password:
// "s3cret", DB: 2, DialTimeout: 2 * time.Second} with TLS, and
// "redis://:pw@10.0.0.1:26379,10.0.0.2:26379?master_name=mymaster" is the
// master "mymaster" found through two sentinels, with password pw on the
// data nodes.
func ParseURL(raw string) (Connector, error) {
	u, err := parseURL(raw)
	if err != nil {
		return nil, err
	}
	return u.connector()
}

// redisURL is a parsed Redis URL.
type redisURL struct {
	tls                bool
	host               string // the first host, for TLS server name verification
	username, password string
	addrs              []string
	db                 int
	dialTimeout        time.Duration
	protocol           int // 2 or 3; 0 when not given
	masterName         string
	sentinelUser       string
	sentinelPass       string
	cluster            bool
	sharded            bool
	roomSubs           bool
	streams            bool
	clusterOff         bool // cluster=false said explicitly
}

func parseURL(raw string) (redisURL, error) {
	var r redisURL
	scheme, rest, ok := strings.Cut(raw, "://")
	switch {
	case !ok:
		return r, errorf("%w: redis URL %q: want redis://host[:port]", ErrConfig, raw)
	case scheme == "rediss":
		r.tls = true
	case scheme != "redis":
		return r, errorf("%w: redis URL scheme %q: want redis or rediss", ErrConfig, scheme)
	}
	// url.Parse rejects several hosts, so split them off first and parse the
	// rest with the first host in their place.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo := ""
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, authority = authority[:at+1], authority[at+1:]
	}
	hosts := strings.Split(authority, ",")
	u, err := url.Parse(scheme + "://" + userinfo + hosts[0] + tail)
	if err != nil {
		return r, errorf("%w: redis URL: %w", ErrConfig, err)
	}
	for _, h := range hosts {
		hu, err := url.Parse("redis://" + h)
		if err != nil || hu.Hostname() == "" {
			return r, errorf("%w: redis URL host %q is not host[:port]", ErrConfig, h)
		}
		port := hu.Port()
		if port == "" {
			port = "6379"
		}
		r.addrs = append(r.addrs, net.JoinHostPort(hu.Hostname(), port))
	}
	r.host = u.Hostname()
	if u.User != nil {
		r.username = u.User.Username()
		r.password, _ = u.User.Password()
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return r, errorf("%w: redis URL database %q is not a number", ErrConfig, db)
		}
		r.db = n
	}
	for key, vals := range u.Query() {
		v := vals[0]
		switch key {
		case "dial_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return r, errorf("%w: redis URL dial_timeout %q", ErrConfig, v)
			}
			r.dialTimeout = d
		case "protocol":
			if v != "2" && v != "3" {
				return r, errorf("%w: redis URL protocol=%q is not 2 or 3", ErrConfig, v)
			}
			r.protocol, _ = strconv.Atoi(v)
		case "master_name":
			r.masterName = v
		case "sentinel_username":
			r.sentinelUser = v
		case "sentinel_password":
			r.sentinelPass = v
		case "cluster":
			if r.cluster, err = strconv.ParseBool(v); err != nil {
				return r, errorf("%w: redis URL cluster=%q is not true or false", ErrConfig, v)
			}
			r.clusterOff = !r.cluster
		case "streams":
			if r.streams, err = strconv.ParseBool(v); err != nil {
				return r, errorf("%w: redis URL streams=%q is not true or false", ErrConfig, v)
			}
		case "sharded":
			if r.sharded, err = strconv.ParseBool(v); err != nil {
				return r, errorf("%w: redis URL sharded=%q is not true or false", ErrConfig, v)
			}
		case "room_subscriptions":
			if r.roomSubs, err = strconv.ParseBool(v); err != nil {
				return r, fmt.Errorf("%w: redis URL room_subscriptions=%q is not true or false", ErrConfig, v)
			}
		default:
			return r, errorf("%w: redis URL query key %q is not supported", ErrConfig, key)
		}
	}
	return r, nil
}

func (r redisURL) tlsConfig() *tls.Config {
	if !r.tls {
		return nil
	}
	return &tls.Config{ServerName: r.host, MinVersion: tls.VersionTLS12}
}

// connector picks the deployment shape, in streams mode when asked.
func (r redisURL) connector() (Connector, error) {
	c, err := r.shape()
	if err != nil || !r.streams {
		return c, err
	}
	return Streams{Connector: c}, nil
}

// shape is the Standalone, Sentinel or Cluster connector r describes.
func (r redisURL) shape() (Connector, error) {
	if r.sharded && r.clusterOff {
		return nil, errorf("%w: sharded pub/sub needs a cluster, and cluster is false", ErrConfig)
	}
	r.cluster = r.cluster || r.sharded
	switch {
	case r.roomSubs && (r.sharded || r.streams):
		return nil, fmt.Errorf("%w: room_subscriptions is for classic pub/sub: sharded mode always subscribes per room, streams mode has no room channels", ErrConfig)
	case r.masterName != "" && r.cluster:
		return nil, errorf("%w: a master name (Sentinel) and a cluster (cluster or sharded true) exclude each other", ErrConfig)
	case r.masterName == "" && (r.sentinelUser != "" || r.sentinelPass != ""):
		return nil, errorf("%w: sentinel credentials without a master name", ErrConfig)
	case (r.dialTimeout != 0 || r.protocol != 0) && (r.masterName != "" || r.cluster):
		return nil, errorf("%w: dial_timeout and protocol apply to a standalone server only", ErrConfig)
	case r.masterName != "":
		return Sentinel{MasterName: r.masterName, Addrs: r.addrs, Username: r.username, Password: r.password,
			SentinelUsername: r.sentinelUser, SentinelPassword: r.sentinelPass, DB: r.db, TLSConfig: r.tlsConfig(),
			RoomSubscriptions: r.roomSubs}, nil
	case r.cluster:
		if r.db != 0 {
			return nil, errorf("%w: a cluster has only database 0", ErrConfig)
		}
		return Cluster{Addrs: r.addrs, Username: r.username, Password: r.password, TLSConfig: r.tlsConfig(), Sharded: r.sharded,
			RoomSubscriptions: r.roomSubs}, nil
	case len(r.addrs) > 1:
		return nil, errorf("%w: %d hosts in the redis URL: say what they are (master_name for Sentinel, cluster=true)", ErrConfig, len(r.addrs))
	}
	return Standalone{Addr: r.addrs[0], Username: r.username, Password: r.password, DB: r.db,
		TLSConfig: r.tlsConfig(), DialTimeout: r.dialTimeout, Protocol: r.protocol, RoomSubscriptions: r.roomSubs}, nil
}

// FromEnv returns the Connector the environment describes, with the names of
// the Socket.IO deployment guide:
//
//	REDIS_URL          the server(s), in the grammar of ParseURL (default redis://127.0.0.1:6379);
//	                   several hosts comma-separated: redis://user:pass@host-a:6379,host-b:6379
//	REDIS_PASSWORD     the password on the data nodes, replacing the URL's
//	REDIS_MASTER_NAME  Sentinel: the URL's hosts are sentinels watching this master
//	REDIS_CLUSTER      "true": the URL's hosts are Redis Cluster nodes
//	REDIS_SHARDED      "true": a Redis Cluster with sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7)
//	REDIS_ROOM_SUBSCRIPTIONS "true": classic pub/sub with RoomSubscriptions (any shape above)
//	REDIS_STREAMS      "true": streams mode (Streams, Node's redis-streams-adapter) over any of the
//	                   shapes above; with REDIS_SHARDED=true its requests and answers use sharded pub/sub
//
// A bad combination (a master name with a cluster, REDIS_SHARDED=true with
// REDIS_CLUSTER=false, several hosts with neither) is an error wrapping ErrConfig, so a misconfigured node fails at
// start instead of hanging.
func FromEnv() (Connector, error) {
	raw := os.Getenv("REDIS_URL")
	if raw == "" {
		raw = "redis://127.0.0.1:6379"
	}
	u, err := parseURL(raw)
	if err != nil {
		return nil, errorf("REDIS_URL: %w", err)
	}
	if name := os.Getenv("REDIS_MASTER_NAME"); name != "" {
		u.masterName = name
	}
	if v := os.Getenv("REDIS_CLUSTER"); v != "" {
		if u.cluster, err = strconv.ParseBool(v); err != nil {
			return nil, errorf("%w: REDIS_CLUSTER=%q is not true or false", ErrConfig, v)
		}
		u.clusterOff = !u.cluster
	}
	if v := os.Getenv("REDIS_SHARDED"); v != "" {
		if u.sharded, err = strconv.ParseBool(v); err != nil {
			return nil, errorf("%w: REDIS_SHARDED=%q is not true or false", ErrConfig, v)
		}
	}
	if v := os.Getenv("REDIS_ROOM_SUBSCRIPTIONS"); v != "" {
		if u.roomSubs, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("%w: REDIS_ROOM_SUBSCRIPTIONS=%q is not true or false", ErrConfig, v)
		}
	}
	if v := os.Getenv("REDIS_STREAMS"); v != "" {
		if u.streams, err = strconv.ParseBool(v); err != nil {
			return nil, errorf("%w: REDIS_STREAMS=%q is not true or false", ErrConfig, v)
		}
	}
	if pw := os.Getenv("REDIS_PASSWORD"); pw != "" {
		u.password = pw
	}
	c, err := u.connector()
	if err != nil {
		return nil, errorf("REDIS_URL and REDIS_*: %w", err)
	}
	return c, nil
}
