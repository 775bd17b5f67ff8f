package redisadapter

import (
	"crypto/tls"

	"github.com/redis/rueidis"
)

var _ Connector = Standalone{}

// Standalone connects to one Redis server.
type Standalone struct {
	// URL is the server, in the grammar of ParseURL. default: "redis://127.0.0.1:6379"
	URL string
	// Password, when set, replaces the URL's password (REDIS_PASSWORD in FromEnv). default: the URL's
	Password string
	// TLSConfig is used for the connection; rediss:// without it verifies the server against the system roots. default: nil
	TLSConfig *tls.Config
}

func (Standalone) protocol(key, uid string) protocol { return classic{key, uid} }

func (s Standalone) clientOption() (rueidis.ClientOption, error) {
	raw := s.URL
	if raw == "" {
		raw = "redis://127.0.0.1:6379"
	}
	u, err := parseURL(raw)
	if err != nil {
		return rueidis.ClientOption{}, err
	}
	opt, err := u.clientOption()
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
	return opt, nil
}
