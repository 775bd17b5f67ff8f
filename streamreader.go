package redisadapter

// Reading a stream (streams mode): one reader per stream, from where this
// node started, surviving outages; it drops the second copy a publisher's
// resend leaves and counts entries trimmed before it read them.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

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

func streamInfo(ctx context.Context, c rueidis.Client, stream string) (streamState, error) {
	m, err := c.Do(ctx, c.B().XinfoStream().Key(stream).Build()).AsMap()
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
	n        *node
	p        streams
	stream   string
	offset   string                   // the id of the last entry read
	recheck  bool                     // a read failed: check the stream for a gap before reading it again
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

// errSilentReader: an XREAD BLOCK got no answer, not even the empty one
// its block time ends with.
type errSilentReader struct{ waited time.Duration }

func (e errSilentReader) Error() string {
	return "XREAD BLOCK got no answer within " + e.waited.String() + ": the connection is silent"
}

// run reads the stream until ctx ends, through the adapter's supervisor.
func (r *streamReader) run(ctx context.Context) {
	r.n.stats.streamReaders.Add(1)
	defer r.n.stats.streamReaders.Add(-1)
	r.n.loops.run(ctx, loop{what: "stream reader", attrs: []any{"stream", r.stream}, attempt: r.read})
}

// read reads the stream from the last entry read until a read fails. After
// a failed read it first checks the stream for a gap: the check must come
// before the read, which moves the offset past a gap. The connection the
// check goes out on may come back a little after the read's, so it waits
// for Redis like the read (a failed check is a failed attempt); only a
// Redis that refuses the command itself (an ACL without XINFO, a proxy
// without it) has the stream read without it.
func (r *streamReader) read(ctx context.Context, up func()) error {
	n := r.n
	if r.recheck {
		switch err := r.checkGap(ctx); {
		case err == nil:
		case refusal(err):
			n.log.Warn("stream read again without checking it for a gap", "stream", r.stream, "err", err)
		default:
			return err
		}
		r.recheck = false
	}
	xctx := withConnKind(ctx, connStreamReader) // the connection XREAD BLOCK takes, for Stats
	// The block time is the probe's interval: each XREAD is this reader's
	// delivery probe. One unanswered ProbeTimeout past its block time is
	// on a silent connection (a dropped flow) if that connection has read
	// no byte since it sent it; one answered slowly (a slow link, a large
	// batch) keeps reading bytes. rueidis does not say which connection an
	// XREAD took: a late one has every connection silent that long closed
	// (closeSilent), its own among them if it is. An answer that stops
	// halfway is bounded by the time a busy namespace probe is waited for
	// (busyProbeWait ProbeTimeouts). A frozen Redis or a node cut off is
	// found sooner by the namespace's probe, which closes this connection
	// too. Node blocks for 5 s; only the idle cost differs (an empty XREAD
	// each ProbeInterval), entries come as soon as they are added.
	block := max(n.probeInterval, time.Millisecond) // BLOCK 0 would block for ever
	late := block + n.probeTimeout
	for {
		cmd := n.client.B().Xread().Count(int64(r.p.readCount)).Block(block.Milliseconds()).
			Streams().Key(r.stream).Id(r.offset).Build()
		start := time.Now()
		rctx, cancel := context.WithTimeout(xctx, block+busyProbeWait*n.probeTimeout)
		watch := closeSilentWhileLate(rctx, n.conns, late, max(n.probeTimeout/8, time.Millisecond))
		res, err := n.client.Do(rctx, cmd).AsXRead()
		watch.Stop()
		// rueidis sets the connection's deadline to the context's: the
		// read can time out a moment before the context's timer ends it.
		silent := errors.Is(err, errSilentConn) ||
			err != nil && (rctx.Err() != nil || errors.Is(err, context.DeadlineExceeded))
		cancel()
		if ctx.Err() != nil {
			return nil // ErrClosing with ctx alive: a Sentinel client moved to a new master (receive)
		}
		if silent {
			// rueidis closes a blocking command's connection when it
			// fails: the next attempt takes another one, or dials.
			n.stats.probeFailures.Add(1)
			r.recheck = true
			return errSilentReader{time.Since(start).Round(time.Millisecond)}
		}
		if err != nil && !rueidis.IsRedisNil(err) { // nil: the block time passed with nothing new
			r.recheck = true
			return err
		}
		up()
		entries := res[r.stream]
		if len(entries) == r.p.readCount {
			_ = r.checkGap(ctx) // behind: the entries after offset may be trimmed before they are read; unchecked if Redis is away
		}
		for _, e := range entries {
			if !r.handle(e) {
				return nil
			}
			r.offset = e.ID
		}
	}
}

// closeSilentWhileLate closes the connections silent for longer than
// late (closeSilent), late from now and again every period until ctx ends:
// a reader's XREAD goes out a moment after the call, or later when it
// dials. Stopping the timer it returns ends it sooner.
func closeSilentWhileLate(ctx context.Context, conns *connCounter, late, period time.Duration) *time.Timer {
	return time.AfterFunc(late, func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			conns.closeSilent(late)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
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
		if info, err = streamInfo(ctx, r.n.client, r.stream); err == nil {
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
		r.n.log.Warn("the stream ends before the last entry this node read: a failover lost its tail, or it was recreated",
			"stream", r.stream, "last_read", r.offset, "stream_end", info.last)
		return nil
	}
	if info.gapAfter(r.offset) {
		r.n.stats.streamGaps.Add(1)
		r.n.log.Error("stream entries were trimmed before this node read them: broadcasts lost (raise Streams.MaxLen?)",
			"stream", r.stream, "last_read", r.offset, "first_held", info.first)
	}
	return nil
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
	n := r.n
	n.stats.received.Add(1)
	size := 0
	for k, v := range e.FieldValues {
		size += len(k) + len(v)
	}
	if size > n.in.maxSize {
		n.stats.malformed.Add(1)
		return true
	}
	if e.FieldValues["uid"] == n.uid {
		return true // this node applied it before publishing
	}
	ns, ok := n.in.namespaces[e.FieldValues["nsp"]]
	if !ok {
		return true // another namespace sharing the stream
	}
	if r.duplicate(e) {
		n.stats.streamDuplicates.Add(1)
		return true
	}
	m := rueidis.PubSubMessage{Channel: r.stream}
	entry, err := decodeStreamEntry(e.FieldValues)
	if err != nil {
		n.in.dropped(m, err)
		return true
	}
	if entry.skip {
		return true
	}
	m.Message = entry.msg
	// Waits for room: the stream keeps what is not read yet, so a full
	// queue slows the reader instead of dropping.
	return n.in.put(entry.queue, inbound{PubSubMessage: m, ns: ns, req: entry.req})
}
