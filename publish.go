package redisadapter

// The publishing side, shared by Adapter and Emitter: every frame that goes
// out to Redis is built and sent here.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/redis/rueidis"
)

// open applies opts' defaults, checks them and opens the Redis client c
// describes: what New and NewEmitter share.
func open(c Connector, opts *Options) (Options, rueidis.Client, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.setDefaults()
	if err := o.validate(); err != nil {
		return o, nil, err
	}
	copt, err := c.clientOption()
	if err != nil {
		return o, nil, err
	}
	copt.DisableCache = true // pub/sub only: no client-side caching, no tracking
	// The adapter does its own retrying: a subscription that rueidis renews
	// by itself is down without the adapter knowing (and comes back on
	// rueidis's back-off, up to a second after Redis does); a request fails
	// at once rather than after retries that outlast the outage.
	copt.DisableRetry = true
	client, err := rueidis.NewClient(copt)
	if err != nil {
		return o, nil, fmt.Errorf("redisadapter: connect to redis: %w", err)
	}
	return o, client, nil
}

type publisher struct {
	client    rueidis.Client
	proto     protocol
	opts      Options
	uid       string
	published atomic.Uint64
}

// publish sends payload on channel, within RequestTimeout at most.
func (p *publisher) publish(ctx context.Context, channel string, payload []byte) error {
	if len(payload) > p.opts.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(payload), p.opts.MaxMessageSize)
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.RequestTimeout)
	defer cancel()
	if err := p.client.Do(ctx, p.proto.publish(p.client, channel, payload)).Error(); err != nil {
		if errors.Is(err, rueidis.ErrClosing) {
			return ErrClosed // Close ran meanwhile
		}
		return fmt.Errorf("%w: %s: %w", ErrPublish, channel, err)
	}
	p.published.Add(1)
	return nil
}

// publishRemote publishes a join (typ typeRemoteJoin), leave or disconnect
// of the sockets sel matches, for every node to apply.
func (p *publisher) publishRemote(ctx context.Context, nsp string, typ requestType, sel selector, rooms []string, closeConn bool) error {
	sel = sel.wire()
	req := request{UID: p.uid, Type: typ, Opts: &sel, Rooms: rooms}
	if typ == typeRemoteDisconnect {
		req.Close = &closeConn
	}
	return p.publishRequest(ctx, nsp, req)
}

// publishRequest publishes a request in the protocol's form.
func (p *publisher) publishRequest(ctx context.Context, nsp string, req request) error {
	channel, payload, err := p.proto.encodeRequest(p.opts.Key, nsp, req)
	if err != nil {
		return fmt.Errorf("redisadapter: encode %s: %w", req.Type, err)
	}
	return p.publish(ctx, channel, payload)
}

// publishBroadcast encodes a broadcast once and publishes it.
func (p *publisher) publishBroadcast(ctx context.Context, nsp string, sel selector, event string, args []any) error {
	channel, payload, err := p.proto.encodeBroadcast(p.opts.Key, p.uid, nsp, sel, event, args)
	if err != nil {
		return err
	}
	return p.publish(ctx, channel, payload)
}

// publishServerSideEmit publishes a server-side event that wants no
// acknowledgement.
func (p *publisher) publishServerSideEmit(ctx context.Context, nsp string, event string, args []any) error {
	req, err := serverSideEmitRequest(event, args)
	if err != nil {
		return err
	}
	req.UID = p.uid
	return p.publishRequest(ctx, nsp, req)
}

// serverSideEmitRequest is the request carrying [event, ...args].
func serverSideEmitRequest(event string, args []any) (request, error) {
	data, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return request{}, fmt.Errorf("redisadapter: serverSideEmit %q: %w", event, err)
	}
	return request{Type: typeServerSideEmit, Data: data}, nil
}
