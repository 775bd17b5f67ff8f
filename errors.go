package redisadapter

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/rueidis"
)

// Errors returned by the adapter. Callers branch on them with errors.Is; the
// returned errors wrap them with the details (the namespace, the node count,
// the Redis error underneath).
var (
	// ErrClosed is returned by every method of an Adapter (or Emitter) after
	// Close, and by requests that were pending when Close was called.
	ErrClosed = errors.New("redisadapter: closed")

	// ErrTimeout is returned by a request when some nodes did not answer
	// before its deadline, and by EmitWithAck when some nodes or clients
	// did not. The request still returns what did arrive; the wrapping
	// error says how many nodes (and clients) answered or did not.
	ErrTimeout = errors.New("redisadapter: request timed out")

	// ErrMessageTooLarge is returned when an encoded broadcast or request
	// would exceed Options.MaxMessageSize. Receivers drop such messages.
	ErrMessageTooLarge = errors.New("redisadapter: message too large")

	// ErrUnknownNamespace is returned when an operation names a namespace
	// that is not in Options.Namespaces.
	ErrUnknownNamespace = errors.New("redisadapter: namespace not served by this adapter")

	// ErrPublish is returned when a message did not reach Redis, or will
	// not: Redis was unreachable or refused it, the context ended first, the
	// publish queue stayed full, or this node's subscriptions are down or
	// its delivery probe is failing (then ErrUnavailable is wrapped too). Flush and Close return it for queued
	// messages that failed. The cause is wrapped.
	ErrPublish = errors.New("redisadapter: publish failed")

	// ErrUnavailable is returned while this node cannot take part in the
	// fleet: Redis does not answer, or the node's subscriptions are down
	// (after a dropped connection or a failover, until they are renewed),
	// so it would not hear other nodes' broadcasts and answers. New and
	// NewEmitter wrap it when they cannot reach Redis, and a publish or
	// request that failed because Redis could not be reached wraps it
	// (with ErrPublish for a publish); the cause is wrapped too.
	ErrUnavailable = errors.New("redisadapter: redis unavailable")

	// ErrClientLimit is wrapped by the reason ClientLimits gives when it
	// disconnects a client: a message or request body over MaxMessageSize,
	// or too many binary attachments.
	ErrClientLimit = errors.New("redisadapter: client over its limit")

	// ErrClientVersion is the reason ClientLimits gives a client it refuses
	// at the handshake for speaking Engine.IO 4 (socket.io-client 3.x or
	// 4.x): go-socket.io v1.7.0 serves socket.io-client 1.x and 2.x only.
	ErrClientVersion = errors.New("redisadapter: client version not supported")

	// ErrConfig is returned for an invalid connector, URL or option; the
	// error wrapping it names the field. New returns it too when Redis
	// refuses a command the chosen mode needs: classic mode's PSUBSCRIBE
	// (ElastiCache Serverless, an ACL without it), where RoomSubscriptions
	// or sharded mode do without. ClientLimits.Transports panics with it.
	ErrConfig = errors.New("redisadapter: invalid configuration")
)

// unreachable wraps err, a failed exchange with Redis, with ErrUnavailable
// too, unless Redis answered it (a refusal: a wrong password, an unknown
// command; a publish that reached no subscriber) or the client was closed.
func unreachable(err error) error {
	if _, answered := rueidis.IsRedisErr(err); answered || err == nil || errors.Is(err, rueidis.ErrClosing) || errors.Is(err, ErrUnavailable) || errors.Is(err, errReachedNobody) || errors.Is(err, errReachedFewer) {
		return err
	}
	return errorf("%w: %w", ErrUnavailable, err)
}

// refusal reports whether err is Redis refusing a command for good: the
// user lacks the permission (NOPERM) or the server (or a proxy) does not
// have the command. Retrying it is pointless; a LOADING or CLUSTERDOWN is not one.
func refusal(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "NOPERM") || strings.Contains(msg, "unknown command") || strings.Contains(msg, "unknown subcommand")
}

// errorf is fmt.Errorf for the errors the package returns: the message
// says "redisadapter: " once, at its start, however many of the package's
// errors it wraps (errors.Is and errors.As still find each of them).
func errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &prefixedError{msg: "redisadapter: " + strings.ReplaceAll(err.Error(), "redisadapter: ", ""), err: err}
}

type prefixedError struct {
	msg string
	err error
}

func (e *prefixedError) Error() string { return e.msg }
func (e *prefixedError) Unwrap() error { return e.err }
