package redisadapter

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Options tune an Adapter. The zero value (or a nil *Options) is a working
// configuration, wire-compatible with Node's adapter defaults.
type Options struct {
	// Key is the prefix of every channel name, Node's "key" option. default: "socket.io"
	Key string
	// Namespaces are the namespaces the adapter serves. default: ["/"]
	Namespaces []string
	// RequestTimeout bounds every request to other nodes and every publish. default: 5s
	RequestTimeout time.Duration
	// MaxMessageSize is the largest message, in bytes, published or accepted. default: 1 MiB
	MaxMessageSize int
	// ReceiveQueue is how many received messages of each kind (broadcasts, requests, responses) wait to be handled; when full, new ones are dropped and counted. default: 8192
	ReceiveQueue int
	// SocketQueue is how many events wait for one slow local socket; when full, new events to that socket are dropped and counted. default: 1024
	SocketQueue int
	// Logger receives what the adapter drops and why. default: slog.Default()
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Key == "" {
		o.Key = "socket.io"
	}
	if len(o.Namespaces) == 0 {
		o.Namespaces = []string{"/"}
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = 1 << 20
	}
	if o.ReceiveQueue == 0 {
		o.ReceiveQueue = 8192
	}
	if o.SocketQueue == 0 {
		o.SocketQueue = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate() error {
	if strings.Contains(o.Key, "#") {
		return fmt.Errorf("%w: Key %q contains '#', the channel separator", ErrConfig, o.Key)
	}
	for _, n := range o.Namespaces {
		if err := validNamespace(n); err != nil {
			return err
		}
	}
	switch {
	case o.RequestTimeout < 0:
		return fmt.Errorf("%w: RequestTimeout %v is negative", ErrConfig, o.RequestTimeout)
	case o.MaxMessageSize < 0:
		return fmt.Errorf("%w: MaxMessageSize %d is negative", ErrConfig, o.MaxMessageSize)
	case o.ReceiveQueue < 0 || o.SocketQueue < 0:
		return fmt.Errorf("%w: queue sizes must not be negative", ErrConfig)
	}
	return nil
}

// validNamespace rejects a namespace that would break the channel names.
func validNamespace(nsp string) error {
	if !strings.HasPrefix(nsp, "/") || strings.Contains(nsp, "#") {
		return fmt.Errorf("%w: namespace %q must start with '/' and not contain '#'", ErrConfig, nsp)
	}
	return nil
}

// A Connector opens the adapter's Redis client for one deployment shape.
// Standalone is the only one so far; ParseURL and FromEnv build one from a
// string or the environment.
type Connector interface {
	clientOption() (rueidis.ClientOption, error)
}

var _ Connector = Standalone{}

// Standalone connects to one Redis server.
type Standalone struct {
	// URL is the server, in the grammar of ParseURL. default: "redis://127.0.0.1:6379"
	URL string
	// Password, when set, replaces the URL's password (REDIS_PASSWORD in FromEnv). default: the URL's
	Password string
	// TLSConfig is used for the connection; rediss:// without it verifies the server against the system roots. default: nil
	TLSConfig *tls.Config
	// AlwaysRESP2 speaks RESP2 only, for servers whose HELLO 3 rueidis cannot use (miniredis). default: false
	AlwaysRESP2 bool
}

func (s Standalone) clientOption() (rueidis.ClientOption, error) {
	raw := s.URL
	if raw == "" {
		raw = "redis://127.0.0.1:6379"
	}
	opt, err := parseRedisURL(raw)
	if err != nil {
		return opt, err
	}
	if s.Password != "" {
		opt.Password = s.Password
	}
	if s.TLSConfig != nil {
		opt.TLSConfig = s.TLSConfig
	}
	opt.ForceSingleClient = true
	opt.AlwaysRESP2 = s.AlwaysRESP2
	return opt, nil
}

// ParseURL returns the Connector for a Redis URL:
//
//	redis[s]://[[username]:password@]host[:port][/db][?key=value]
//
// rediss:// turns on TLS, verified against the system roots. The port
// defaults to 6379 and the database to 0. The query keys are
//
//	dial_timeout  how long to wait for a connection, as time.ParseDuration reads it (default 5s)
//
// Any other key is an error, so a typo is not silently ignored. For example,
// "rediss://app:s3cret@redis.internal:6380/2?dial_timeout=2s" is database 2
// on redis.internal:6380 over TLS, as ACL user app.
func ParseURL(raw string) (Connector, error) {
	if _, err := parseRedisURL(raw); err != nil {
		return nil, err
	}
	return Standalone{URL: raw}, nil
}

func parseRedisURL(raw string) (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	u, err := url.Parse(raw)
	if err != nil {
		return opt, fmt.Errorf("%w: redis URL: %w", ErrConfig, err)
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		opt.TLSConfig = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	default:
		return opt, fmt.Errorf("%w: redis URL scheme %q: want redis or rediss", ErrConfig, u.Scheme)
	}
	if u.Hostname() == "" {
		return opt, fmt.Errorf("%w: redis URL %q has no host", ErrConfig, u.Redacted())
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	opt.InitAddress = []string{net.JoinHostPort(u.Hostname(), port)}
	if u.User != nil {
		opt.Username = u.User.Username()
		opt.Password, _ = u.User.Password()
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return opt, fmt.Errorf("%w: redis URL database %q is not a number", ErrConfig, db)
		}
		opt.SelectDB = n
	}
	for key, vals := range u.Query() {
		switch key {
		case "dial_timeout":
			d, err := time.ParseDuration(vals[0])
			if err != nil || d <= 0 {
				return opt, fmt.Errorf("%w: redis URL dial_timeout %q", ErrConfig, vals[0])
			}
			opt.Dialer.Timeout = d
		default:
			return opt, fmt.Errorf("%w: redis URL query key %q is not supported", ErrConfig, key)
		}
	}
	return opt, nil
}

// FromEnv returns the Connector the environment describes, with the names of
// the Socket.IO deployment guide:
//
//	REDIS_URL       the server, in the grammar of ParseURL (default redis://127.0.0.1:6379)
//	REDIS_PASSWORD  the password, replacing the URL's if set
func FromEnv() (Connector, error) {
	raw := os.Getenv("REDIS_URL")
	if raw == "" {
		raw = "redis://127.0.0.1:6379"
	}
	if _, err := parseRedisURL(raw); err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	return Standalone{URL: raw, Password: os.Getenv("REDIS_PASSWORD")}, nil
}
