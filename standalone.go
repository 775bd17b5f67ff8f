package redisadapter

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/redis/rueidis"
)

var _ Connector = Standalone{}

// Standalone connects to one Redis server. ParseURL makes one from a
// redis:// URL.
type Standalone struct {
	// Addr is the server's host:port. default: "127.0.0.1:6379"
	Addr string
	// Username is the ACL user. default: none
	Username string
	// Password is the password. default: none
	Password string
	// DB is the database number. default: 0
	DB int
	// TLSConfig, when set, is used for the connection. default: nil (no TLS)
	TLSConfig *tls.Config
	// DialTimeout bounds the opening of a connection. default: 5s
	DialTimeout time.Duration
	// Protocol is the RESP version: 3 negotiates RESP3; 2 speaks RESP2 only, for servers and proxies that accept HELLO 3 but cannot mix pub/sub and commands on one RESP3 connection (miniredis, some proxies). default: 3
	Protocol int
	// RoomSubscriptions makes the node SUBSCRIBE to the namespace's channel
	// and to the channel of each room it holds local sockets in (socket-id
	// rooms included), instead of PSUBSCRIBE to every channel of the
	// namespace: it reads only the broadcasts that concern it. Node.js
	// servers and other nodes of the fleet are unaffected (same wire). Use
	// Adapter.Join rather than conn.Join when the first broadcasts to a
	// room matter. See "Which mode?" in docs/modes.md. default: false (PSUBSCRIBE)
	RoomSubscriptions bool
}

func (s *Standalone) setDefaults() {
	if s.Addr == "" {
		s.Addr = "127.0.0.1:6379"
	}
	if s.DialTimeout == 0 {
		s.DialTimeout = 5 * time.Second
	}
	if s.Protocol == 0 {
		s.Protocol = 3
	}
}

func (s *Standalone) validate() error {
	if s.Protocol != 2 && s.Protocol != 3 {
		return errorf("%w: Standalone.Protocol %d is not 2 or 3", ErrConfig, s.Protocol)
	}
	return errors.Join(
		validAddrs("Standalone.Addr", s.Addr),
		negative("Standalone.DB", s.DB),
		negative("Standalone.DialTimeout", s.DialTimeout),
	)
}

func (s Standalone) configured() (Connector, error) {
	s.setDefaults()
	return s, s.validate()
}

func (s Standalone) protocol(key, uid string) protocol {
	return classic{key: key, uid: uid, perRoom: s.RoomSubscriptions, counted: true}
}

func (s Standalone) clientOption() rueidis.ClientOption {
	opt := rueidis.ClientOption{
		InitAddress:       []string{s.Addr},
		Username:          s.Username,
		Password:          s.Password,
		SelectDB:          s.DB,
		TLSConfig:         s.TLSConfig,
		AlwaysRESP2:       s.Protocol == 2,
		ForceSingleClient: true,
	}
	opt.Dialer.Timeout = s.DialTimeout
	return opt
}
