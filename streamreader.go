package redisadapter

// Reading a stream (streams mode): one reader per stream, from where this
// node started, surviving outages; it drops the second copy a publisher's
// resend leaves and counts entries trimmed before it read them.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// startStreams reads where each stream served by this node ends now, so
// that anything added after New returns reaches the node, and starts one
// reader per stream.
func (a *Adapter) startStreams(ctx, loopCtx context.Context, p streams) error {
	seen := make(map[string]bool)
	for _, name := range a.opts.Namespaces {
		stream := streamName(p.name, p.count, name)
		if seen[stream] {
			continue
		}
		seen[stream] = true
		info, err := a.streamInfo(ctx, stream)
		if err != nil {
			return fmt.Errorf("redisadapter: read stream %q: %w", stream, unreachable(err))
		}
		r := &streamReader{a: a, p: p, stream: stream, offset: info.last}
		a.spawn(func() { r.run(loopCtx) })
	}
	return nil
}

// streamState is what XINFO STREAM says about a stream.
type streamState struct {
	last       string // the last id added ("0-0": none yet)
	first      string // the first id still held ("": none)
	maxDeleted string // the highest id XDEL removed ("0-0": none, "": Redis < 7); trimming leaves it
	added      int64  // entries ever added (Redis 7; 0 before)
	length     int64  // entries held
}

// gapAfter reports whether entries added after offset were removed before
// a reader at offset read them. Trimming removes the oldest entries: when
// the first one held is past offset, the entries between are gone (when
// the trim ended exactly at offset nothing was lost, and it is counted
// anyway: the stream does not say).
func (s streamState) gapAfter(offset string) bool {
	if offset == "0-0" { // the stream was empty when the reader started
		return s.added > s.length
	}
	return idLess(offset, s.maxDeleted) || s.first != "" && idLess(offset, s.first)
}

func (a *Adapter) streamInfo(ctx context.Context, stream string) (streamState, error) {
	m, err := a.client.Do(ctx, a.client.B().XinfoStream().Key(stream).Build()).AsMap()
	if err != nil {
		if re, ok := rueidis.IsRedisErr(err); ok && strings.Contains(re.Error(), "no such key") {
			return streamState{last: "0-0"}, nil
		}
		return streamState{}, err
	}
	var s streamState
	last := m["last-generated-id"]
	if s.last, err = last.ToString(); err != nil {
		return s, err
	}
	if v, ok := m["max-deleted-entry-id"]; ok {
		s.maxDeleted, _ = v.ToString()
	}
	if v, ok := m["first-entry"]; ok && !v.IsNil() {
		if e, err := v.AsXRangeEntry(); err == nil {
			s.first = e.ID
		}
	}
	if v, ok := m["entries-added"]; ok {
		s.added, _ = v.AsInt64()
	}
	if v, ok := m["length"]; ok {
		s.length, _ = v.AsInt64()
	}
	return s, nil
}

// streamReader reads one stream from the last entry it read: XREAD BLOCK
// in batches of ReadCount, each entry handed to the broadcast or request
// queue, waiting for room there. So a node catching up holds at most
// ReadCount entries plus its queues, and requests and answers, which come
// on pub/sub, are not stuck behind the backlog.
type streamReader struct {
	a        *Adapter
	p        streams
	stream   string
	offset   string                   // the id of the last entry read
	produced map[string]*producedSeqs // per producer, the numbers read lately
}

// producedSeqs is what a reader read from one producer: its highest
// number, which of the seqWindow numbers up to it it read, and the time (of
// the entry id) of its last entry.
type producedSeqs struct {
	high uint64
	seen [seqWindow / 64]uint64 // bit n%seqWindow: number n read
	ms   uint64
}

// seqWindow bounds how far back a resent copy is recognized: a resend
// carries at most one batch (maxBatch) of entries.
const seqWindow = 4 * maxBatch

// A reader remembers maxProducers producers at most, forgetting the one
// heard of least recently: a resend comes within seconds of the first try,
// and a restarted node (or a new Emitter) is a new producer. A producer
// name longer than maxProducerName is not ours (ours are 12 characters):
// its entries are read without a duplicate check.
const (
	maxProducers    = 1024
	maxProducerName = 32
)

// duplicate reports whether e is the second copy of an entry already read
// (its producer resent it), and records it otherwise. An entry without a
// number (Node's) is never one. A number read out of order is not a
// duplicate (a resent entry can follow a later one that went through); one
// more than seqWindow below the highest starts the producer's numbers
// afresh (no resend goes that far back), so that a forged high number
// cannot silence a producer.
func (r *streamReader) duplicate(e rueidis.XRangeEntry) bool {
	producer, n, ok := strings.Cut(e.FieldValues["seq"], ":")
	if !ok || len(producer) > maxProducerName {
		return false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		return false
	}
	ms, _, _ := parseID(e.ID)
	p := r.produced[producer]
	if p == nil {
		if r.produced == nil {
			r.produced = make(map[string]*producedSeqs)
		}
		if len(r.produced) >= maxProducers {
			r.forgetOldestProducer()
		}
		p = &producedSeqs{}
		r.produced[producer] = p
	}
	p.ms = ms
	bit := func(n uint64) (*uint64, uint64) { return &p.seen[n%seqWindow/64], 1 << (n % 64) }
	switch {
	case seq > p.high && seq-p.high >= seqWindow, seq+seqWindow <= p.high:
		p.seen = [seqWindow / 64]uint64{}
		p.high = seq
	case seq > p.high:
		for i := p.high + 1; i < seq; i++ {
			w, b := bit(i)
			*w &^= b // numbers skipped: not read
		}
		p.high = seq
	default:
		if w, b := bit(seq); *w&b != 0 {
			return true
		}
	}
	w, b := bit(seq)
	*w |= b
	return false
}

// forgetOldestProducer forgets the producer heard of least recently.
func (r *streamReader) forgetOldestProducer() {
	var oldest string
	var at uint64
	first := true
	for k, q := range r.produced {
		if first || q.ms < at {
			oldest, at, first = k, q.ms, false
		}
	}
	delete(r.produced, oldest)
}

// blockTime is how long one XREAD waits for an entry (Node's blockTimeInMs).
const blockTime = 5 * time.Second

func (r *streamReader) run(ctx context.Context) {
	a := r.a
	backoff := minBackoff
	var downSince time.Time
	recheck := false // after an outage: check the stream for a gap before reading it again
	for {
		if recheck {
			// The check must come before the read: the read moves the offset
			// past a gap. The connection it goes out on may come back a little
			// after the read's, so it waits for Redis like the read; only a
			// Redis that refuses the command itself (an ACL without XINFO, a
			// proxy without it) has the stream read without it.
			switch err := r.checkGap(ctx); {
			case err == nil:
				recheck = false
			case commandRefused(err):
				a.log.Warn("stream read again without checking it for a gap", "stream", r.stream, "err", err)
				recheck = false
			default:
				if !sleepCtx(ctx, backoff) {
					return
				}
				backoff = min(backoff*2, maxBackoff)
				continue
			}
		}
		cmd := a.client.B().Xread().Count(int64(r.p.readCount)).Block(blockTime.Milliseconds()).
			Streams().Key(r.stream).Id(r.offset).Build()
		res, err := a.client.Do(ctx, cmd).AsXRead()
		if ctx.Err() != nil || errors.Is(err, rueidis.ErrClosing) {
			return
		}
		if err != nil && !rueidis.IsRedisNil(err) { // nil: the block time passed with nothing new
			if downSince.IsZero() {
				downSince = time.Now()
				a.log.Warn("stream read failed; reading again from the last entry read", "stream", r.stream, "err", err)
			}
			recheck = true
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = minBackoff
		entries := res[r.stream]
		if !downSince.IsZero() {
			a.log.Info("stream read again", "stream", r.stream, "down", time.Since(downSince).Round(time.Millisecond))
			downSince = time.Time{}
		}
		if len(entries) == r.p.readCount {
			_ = r.checkGap(ctx) // behind: the entries after offset may be trimmed before they are read; unchecked if Redis is away
		}
		for _, e := range entries {
			if !r.handle(e) {
				return
			}
			r.offset = e.ID
		}
	}
}

// checkGap counts and logs entries trimmed (or deleted) after the last
// entry read: broadcasts this node will never deliver. It logs a stream
// that ends before the last entry read (a failover lost the tail the
// replica had not received). It fails when it could not look at the
// stream.
func (r *streamReader) checkGap(ctx context.Context) error {
	// A few tries: the first command after an outage may go out on a
	// pipelined connection Redis closed meanwhile (see refreshConnections).
	var info streamState
	var err error
	for range 3 {
		if info, err = r.a.streamInfo(ctx, r.stream); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	if idLess(info.last, r.offset) {
		// Reading goes on after the last entry read: new entries get ids
		// from the new master's clock, past it unless the clocks differ by
		// more than the failover took.
		r.a.log.Warn("the stream ends before the last entry this node read: a failover lost its tail, or it was recreated",
			"stream", r.stream, "last_read", r.offset, "stream_end", info.last)
		return nil
	}
	if info.gapAfter(r.offset) {
		r.a.stats.streamGaps.Add(1)
		r.a.log.Error("stream entries were trimmed before this node read them: broadcasts lost (raise Streams.MaxLen?)",
			"stream", r.stream, "last_read", r.offset, "first_held", info.first)
	}
	return nil
}

// commandRefused reports whether Redis refused a command as such: not
// allowed to this user, or unknown to it (a proxy).
func commandRefused(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "NOPERM") || strings.Contains(msg, "unknown command") || strings.Contains(msg, "unknown subcommand")
}

// idLess compares two stream ids "<ms>-<seq>"; an id that does not parse
// is never less.
func idLess(x, y string) bool {
	xm, xs, ok1 := parseID(x)
	ym, ys, ok2 := parseID(y)
	if !ok1 || !ok2 {
		return false
	}
	return xm < ym || xm == ym && xs < ys
}

func parseID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	if !found {
		return ms, 0, err1 == nil
	}
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}

// handle routes one entry; false once the adapter is closing.
func (r *streamReader) handle(e rueidis.XRangeEntry) bool {
	a := r.a
	a.stats.received.Add(1)
	size := 0
	for k, v := range e.FieldValues {
		size += len(k) + len(v)
	}
	if size > a.opts.MaxMessageSize {
		a.stats.malformed.Add(1)
		return true
	}
	if e.FieldValues["uid"] == a.uid {
		return true // this node applied it before publishing
	}
	ns, ok := a.namespaces[e.FieldValues["nsp"]]
	if !ok {
		return true // another namespace sharing the stream
	}
	if r.duplicate(e) {
		a.stats.streamDuplicates.Add(1)
		return true
	}
	m := rueidis.PubSubMessage{Channel: r.stream}
	entry, err := decodeStreamEntry(e.FieldValues)
	if err != nil {
		a.dropped(m, err)
		return true
	}
	m.Message = entry.msg
	q := a.broadcasts
	switch entry.typ {
	case shardedBroadcast:
	case shardedSocketsJoin, shardedSocketsLeave, shardedDisconnectSockets:
		q = a.requests
	case 1, 2, 13: // heartbeats and adapter close: Node's streams adapter has no use for them
		return true
	default:
		a.dropped(m, malformed("stream entry of type %d", entry.typ))
		return true
	}
	// Waits for room: the stream keeps what is not read yet, so a full
	// queue slows the reader instead of dropping.
	select {
	case q <- inbound{PubSubMessage: m, ns: ns}:
		return true
	case <-a.closing:
		return false
	}
}
