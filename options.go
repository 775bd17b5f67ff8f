package redisadapter

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
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
	// SocketQueue is how many bytes of events wait for one slow local socket; past it, new events to that socket are dropped and counted. default: 32 MiB
	SocketQueue int
	// PublishQueue is how many bytes of encoded messages wait to be published; when full, publishing blocks (up to its context and RequestTimeout). default: 4 MiB
	PublishQueue int
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
		o.SocketQueue = 32 << 20
	}
	if o.PublishQueue == 0 {
		o.PublishQueue = 4 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate() error {
	if strings.ContainsRune(o.Key, 0) {
		return fmt.Errorf("%w: Key %q contains a NUL byte", ErrConfig, o.Key)
	}
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
	case o.ReceiveQueue < 0 || o.SocketQueue < 0 || o.PublishQueue < 0:
		return fmt.Errorf("%w: queue sizes must not be negative", ErrConfig)
	}
	return nil
}

// validNamespace rejects a namespace that would break the channel names.
func validNamespace(nsp string) error {
	if !strings.HasPrefix(nsp, "/") || strings.ContainsAny(nsp, "#\x00") {
		return fmt.Errorf("%w: namespace %q must start with '/' and contain neither '#' nor a NUL byte", ErrConfig, nsp)
	}
	return nil
}
