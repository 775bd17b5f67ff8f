package redisadapter

import (
	"errors"
	"log/slog"
	"strings"
	"time"
)

// Options tune an Adapter. The zero value (or a nil *Options) is a working
// configuration, wire-compatible with Node's adapter defaults. A negative
// number is an error wrapping ErrConfig, not a default.
type Options struct {
	// Key is the prefix of every channel name, Node's "key" option. default: "socket.io"
	Key string
	// Namespaces are the namespaces the adapter serves. default: ["/"]
	Namespaces []string
	// RequestTimeout bounds every request to other nodes and every publish. default: 5s
	RequestTimeout time.Duration
	// MaxMessageSize is the largest message, in bytes, a node publishes to or accepts from Redis (not ClientLimits.MaxMessageSize, a client's message to this server). default: 1 MiB
	MaxMessageSize int
	// ReceiveQueue is how many received messages of each kind (broadcasts, requests, responses) wait to be handled; when full, new ones are dropped and counted. default: 8192
	ReceiveQueue int
	// SocketQueue is how many bytes of events wait for one slow local socket; past it, new events to that socket are dropped and counted. default: 32 MiB
	SocketQueue int
	// PublishQueue is how many bytes of encoded messages wait to be published; when full, publishing blocks (up to its context and RequestTimeout). default: 4 MiB
	PublishQueue int
	// Logger receives what the adapter drops and why. default: slog.Default()
	Logger *slog.Logger
	// ProbeInterval is how long a node's own channel (and each room channels' connection) may stay quiet before the node publishes a delivery probe on it (see Ping), and how long a stream reader's XREAD blocks. default: 400ms
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe (or a stream reader's XREAD, past its block time) may take to come back before the connection is declared dead and renewed. default: 800ms
	ProbeTimeout time.Duration
}

// Every options struct and connector is configured the same way, as
// go-redis's Options.init: setDefaults fills the zero fields, then validate
// rejects what is left that makes no sense (a negative number, a missing
// address) with an error wrapping ErrConfig that names the field. open
// does it for Options and the connector, Transports for ClientLimits.
//
// The two MaxMessageSize limits differ on purpose. Options.MaxMessageSize
// (1 MiB) bounds what nodes send each other through Redis;
// ClientLimits.MaxMessageSize (1e6, Node's maxHttpBufferSize) bounds what
// one client may send this server. A text event a client sent at its limit
// and broadcast on unchanged gains the sender's uid, the namespace, the
// rooms and the flags on its way between nodes: the larger limit leaves it
// that room.

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
		o.SocketQueue = 32 << 20
	}
	if o.PublishQueue == 0 {
		o.PublishQueue = 4 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ProbeInterval == 0 {
		o.ProbeInterval = 400 * time.Millisecond
	}
	if o.ProbeTimeout == 0 {
		o.ProbeTimeout = 800 * time.Millisecond
	}
}

func (o *Options) validate() error {
	if strings.ContainsRune(o.Key, 0) {
		return errorf("%w: Options.Key %q contains a NUL byte", ErrConfig, o.Key)
	}
	if strings.Contains(o.Key, "#") {
		return errorf("%w: Options.Key %q contains '#', the channel separator", ErrConfig, o.Key)
	}
	for _, n := range o.Namespaces {
		if err := validNamespace(n); err != nil {
			return err
		}
	}
	return errors.Join(
		negative("Options.RequestTimeout", o.RequestTimeout),
		negative("Options.MaxMessageSize", o.MaxMessageSize),
		negative("Options.ReceiveQueue", o.ReceiveQueue),
		negative("Options.SocketQueue", o.SocketQueue),
		negative("Options.PublishQueue", o.PublishQueue),
		negative("Options.ProbeInterval", o.ProbeInterval),
		negative("Options.ProbeTimeout", o.ProbeTimeout),
	)
}

// negative is an error wrapping ErrConfig when the field's value v is
// negative, else nil.
func negative[T int | time.Duration](field string, v T) error {
	if v < 0 {
		return errorf("%w: %s %v is negative", ErrConfig, field, v)
	}
	return nil
}

// validNamespace rejects a namespace that would break the channel names.
func validNamespace(nsp string) error {
	if !strings.HasPrefix(nsp, "/") || strings.ContainsAny(nsp, "#\x00") {
		return errorf("%w: namespace %q must start with '/' and contain neither '#' nor a NUL byte", ErrConfig, nsp)
	}
	return nil
}
