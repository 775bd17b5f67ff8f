package redisadapter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

var _ Connector = Sentinel{}

// Sentinel connects to the master of a Redis Sentinel deployment and
// follows it through failovers: after +switch-master, publishes and
// subscriptions move to the new master without any call from the user.
type Sentinel struct {
	// MasterName is the name the sentinels monitor, e.g. "mymaster". required
	MasterName string
	// Addrs are the sentinels' host:port addresses. required
	Addrs []string
	// Username is the ACL user on the data nodes (master and replicas). default: none
	Username string
	// Password is the password on the data nodes. default: none
	Password string
	// SentinelUsername is the ACL user on the sentinels. default: none
	SentinelUsername string
	// SentinelPassword is the password on the sentinels. default: none
	SentinelPassword string
	// DB is the database number on the data nodes. default: 0
	DB int
	// TLSConfig, when set, is used for the data nodes and the sentinels. default: nil (no TLS)
	TLSConfig *tls.Config
	// RoomSubscriptions makes the node SUBSCRIBE to the namespace's channel
	// and to the channel of each room it holds local sockets in (socket-id
	// rooms included), instead of PSUBSCRIBE to every channel of the
	// namespace: it reads only the broadcasts that concern it. Node.js
	// servers and other nodes of the fleet are unaffected (same wire). Use
	// Adapter.Join rather than conn.Join when the first broadcasts to a
	// room matter. See "Which mode?" in docs/modes.md. default: false (PSUBSCRIBE)
	RoomSubscriptions bool

	// dial, when set, opens the TCP connection to each server, sentinels
	// included (TLS, if any, on top), in place of the client's dialer: a
	// test seam, through which the fault matrix puts a proxy of its own
	// before each data node (export_test.go's SentinelDialingVia).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Sentinel has no defaults to fill: MasterName and Addrs are required.

func (s *Sentinel) validate() error {
	if s.MasterName == "" {
		return errorf("%w: Sentinel.MasterName is empty", ErrConfig)
	}
	return errors.Join(
		validAddrs("Sentinel.Addrs", s.Addrs...),
		negative("Sentinel.DB", s.DB),
	)
}

func (s Sentinel) configured() (Connector, error) { return s, s.validate() }

func (s Sentinel) protocol(key, uid string) protocol {
	return classic{key: key, uid: uid, perRoom: s.RoomSubscriptions, counted: true}
}

func (s Sentinel) clientOption() rueidis.ClientOption {
	return rueidis.ClientOption{
		InitAddress: s.Addrs,
		Username:    s.Username,
		Password:    s.Password,
		SelectDB:    s.DB,
		TLSConfig:   s.TLSConfig,
		Sentinel: rueidis.SentinelOption{
			MasterSet: s.MasterName,
			Username:  s.SentinelUsername,
			Password:  s.SentinelPassword,
			TLSConfig: s.TLSConfig,
			// rueidis follows the master on the sentinels' +switch-master,
			// on one sentinel connection: an event missed (that connection
			// broken; or closed while a refresh waits on a frozen master,
			// after which rueidis watches no sentinel) would leave it on the
			// old master for good. Asking periodically brings it back.
			TopologyRefreshInterval: sentinelRefreshInterval,
			Dialer:                  sentinelDialer(),
		},
	}
}

// sentinelRefreshInterval is how often rueidis asks a sentinel for the
// master even without an event: four commands on one sentinel (and a ROLE
// on the master) per node and interval.
const sentinelRefreshInterval = 5 * time.Second

// sentinelMaster asks the sentinels of the Sentinel client option opt,
// all at once, for the address of the master, and returns the one most of
// those that answer name (the first sentinel's among equals): the
// sentinels are the authority on which server is the master (a demoted
// master says it is one for seconds after it comes back), but one cut off
// from the others may name an old one. Each is asked on a connection of
// its own, closed after, within timeout and ctx.
func sentinelMaster(ctx context.Context, opt *rueidis.ClientOption, timeout time.Duration) (string, error) {
	masters, err := sentinelMasters(ctx, opt, timeout)
	if err != nil {
		return "", err
	}
	votes := make(map[string]int)
	var best string
	for _, m := range masters {
		votes[m]++
		if votes[m] > votes[best] {
			best = m
		}
	}
	return best, nil
}

// sentinelMasters asks the sentinels as sentinelMaster does and returns
// the masters those that answer name, in the order of opt.InitAddress: an
// error only when none answers.
func sentinelMasters(ctx context.Context, opt *rueidis.ClientOption, timeout time.Duration) ([]string, error) {
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	type answer struct {
		master string
		err    error
	}
	answers := make([]answer, len(opt.InitAddress))
	var wg sync.WaitGroup
	for i, addr := range opt.InitAddress {
		wg.Go(func() {
			m, err := askSentinel(ctx, opt, addr, timeout)
			answers[i] = answer{m, err}
		})
	}
	wg.Wait()
	var masters []string
	var errs []error
	for _, a := range answers {
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		masters = append(masters, a.master)
	}
	if len(masters) == 0 {
		return nil, errors.Join(errs...)
	}
	return masters, nil
}

// askSentinel asks the sentinel at addr for the master's address.
func askSentinel(ctx context.Context, opt *rueidis.ClientOption, addr string, timeout time.Duration) (string, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true, DisableRetry: true,
		Username: opt.Sentinel.Username, Password: opt.Sentinel.Password, TLSConfig: opt.Sentinel.TLSConfig,
		Dialer: net.Dialer{Timeout: timeout}, ConnWriteTimeout: timeout,
	})
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", addr, err)
	}
	defer c.Close()
	m, err := c.Do(ctx, c.B().SentinelGetMasterAddrByName().Master(opt.Sentinel.MasterSet).Build()).AsStrSlice()
	switch {
	case err != nil:
		return "", fmt.Errorf("sentinel %s: %w", addr, err)
	case len(m) != 2:
		return "", fmt.Errorf("sentinel %s: no master named %q", addr, opt.Sentinel.MasterSet)
	}
	return net.JoinHostPort(m[0], m[1]), nil
}

// leaveOldMaster closes the connections the client holds, and abandons
// the dials it makes, to another server than the master it sends to, once
// every sentinel that answers names that master, and returns how many.
// rueidis closes the old master's connections when it moves to the new
// one, but not a connection it was dialing then (to a frozen master, a
// handshake nobody answers yet): one that connects after the move carries
// the subscriptions renewed on it to the old master, where they read
// nothing the fleet publishes on the new one, and the probe, published on
// the new one, would wait ProbeTimeout to tell. A sentinel naming another
// server (rueidis may be moving) leaves them all be: the probe and
// checkRole decide then. The prober asks before each probe, and
// followMaster as soon as the client dials another server.
func (a *Adapter) leaveOldMaster(ctx context.Context) int {
	at := a.soleNode()
	if at == "" || !a.conns.elsewhere(at) {
		return 0
	}
	masters, err := sentinelMasters(ctx, a.conns.sentinel, a.opts.ProbeTimeout)
	if err != nil {
		return 0
	}
	for _, m := range masters {
		if m != at {
			return 0
		}
	}
	return a.conns.closeElsewhere(at)
}

// followMaster leaves the old master (leaveOldMaster) as soon as the
// client has moved to a new one, until ctx ends. rueidis closes the old
// master's connections when it moves, but lets a command in flight finish
// first: a stream reader's XREAD, blocked on the old master for its
// ProbeInterval, kept that node's broadcasts from being read for 0.4 s
// after the election, where the prober, asking before its next probe
// only, left it once its ProbeInterval of quiet had passed. The client
// dials the new master before it moves (to ask its ROLE): each dial to
// another server than the one the client sends to wakes this loop, which
// looks for the move every minBackoff, for up to ProbeTimeout. The
// sentinels, each asked on a connection of its own, are asked when the
// client sends to another server than when they were last asked, and
// otherwise once per followAsk: during a failover, every node of a fleet
// does this.
func (a *Adapter) followMaster(ctx context.Context) {
	const followAsk = 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.conns.dialedElsewhere:
		}
		var askedAt string
		var asked time.Time
		for deadline := time.Now().Add(a.opts.ProbeTimeout); time.Now().Before(deadline); {
			if at := a.soleNode(); at != "" && (at != askedAt || time.Since(asked) >= followAsk) {
				askedAt, asked = at, time.Now()
				if n := a.leaveOldMaster(ctx); n > 0 {
					a.log.Info("left the old Sentinel master: closed the connections to it", "closed", n)
					break
				}
			}
			if !sleepCtx(ctx, minBackoff) {
				return
			}
		}
	}
}
