package redisadapter_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/await"
)

// lifecycleSuite is what every mode must survive besides delivering
// (watermill's TestReconnect, TestPublisherClose and TestConcurrentClose):
// its connections killed, Close while publishing, Close from many
// goroutines at once; the Emitter's Close too. suite runs it in each mode;
// the tests' names start with "Lifecycle", so that -run can pick them in
// every mode.
func lifecycleSuite(t *testing.T, f features, connect func(name string) redisadapter.Connector) {
	// Both nodes' connections killed, the publisher's, subscribers' and
	// stream readers' alike: broadcasts from one reach the other's client
	// again, to a room and to the namespace, and requests are answered.
	t.Run("LifecycleReconnect", func(t *testing.T) {
		e := newEnv(t, f, connect)
		a, b := e.nodes(t, nil)
		bc := b.client(t, "r")
		e.roomSubscribed(t, "r", 1)
		require.NoError(t, a.a.To("r").Emit(bg(t), "before", 1))
		expect(t, bc, "before", "1")
		resubscribes := [2]uint64{a.a.Stats().Resubscribes, b.a.Stats().Resubscribes}

		killed := killClients(t, e.c)
		// Probes until one to the room and one to the namespace, each sent
		// after the kill, reach bc (in a pub/sub mode those sent while b
		// resubscribes are lost; Emit fails while a's subscriptions are down).
		got := map[string]int{}
		probe := 0
		await.Check(t, 2*wait, 10*time.Millisecond, "a's broadcasts reach b's client again", func(ctx context.Context) error {
			probe++
			_ = a.a.To("r").Emit(ctx, "room", probe)
			_ = a.a.Of("/").Emit(ctx, "all", probe)
			for {
				ev, err := bc.NextAny(100 * time.Millisecond)
				if err != nil {
					break
				}
				got[ev.Name]++
			}
			if got["room"] == 0 || got["all"] == 0 {
				return fmt.Errorf("after %d probes: %v", probe, got)
			}
			return nil
		})
		// In a streams mode the broadcasts flow on the stream readers alone,
		// possibly before the subscriptions are back: their renewal is
		// awaited, and so is a probe after it (one lost in the kill fails
		// Ping until the next comes back).
		await.Check(t, wait, 10*time.Millisecond, "both nodes' subscriptions renewed, requests answered and probes back", func(ctx context.Context) error {
			if a.a.Stats().Resubscribes <= resubscribes[0] || b.a.Stats().Resubscribes <= resubscribes[1] {
				return fmt.Errorf("resubscribes %d and %d, %v before the kill", a.a.Stats().Resubscribes, b.a.Stats().Resubscribes, resubscribes)
			}
			n, err := a.a.Of("/").ServerCount(ctx)
			if err == nil && n != 2 {
				err = fmt.Errorf("%d servers", n)
			}
			return errors.Join(err, a.a.Ping(ctx), b.a.Ping(ctx))
		})
		t.Logf("%d connections killed; %d probes, of which arrived %v", killed, probe, got)
	})

	// Close while Redis holds writes (CLIENT PAUSE WRITE), whatever the
	// machine's pace: when Close begins, a batch is in flight and the
	// queue behind it full, emitters waiting for room. The queue holds a
	// few batches (maxBatch: 1,024 messages) of small messages.
	// The delivery probe would take a pause past ProbeTimeout for a hung
	// Redis and renew the connections, failing the batch in flight: these
	// cases are about Close, so the probe waits longer than any pause.
	small := &redisadapter.Options{PublishQueue: 256 << 10, ProbeTimeout: time.Minute}
	held := &redisadapter.Options{ProbeTimeout: time.Minute}

	t.Run("LifecycleCloseWhilePublishing", func(t *testing.T) {
		e := newEnv(t, f, connect)
		a, b := e.nodes(t, small)
		accepted := closeWhilePublishing(t, e.c, func(ctx context.Context, i int) error {
			return a.a.Of("/").Emit(ctx, "m", i)
		}, a.a.Close)
		require.ErrorIs(t, a.a.Of("/").Emit(bg(t), "m", -1), redisadapter.ErrClosed)
		require.ErrorIs(t, a.a.Flush(bg(t)), redisadapter.ErrClosed)
		require.ErrorIs(t, a.a.Ping(bg(t)), redisadapter.ErrClosed)
		st := a.a.Stats()
		require.Zero(t, st.PublishFailures)
		require.GreaterOrEqual(t, st.Published, accepted, "Close published what was queued")
		eventually(t, "b received every accepted broadcast", func() bool { return b.a.Stats().Received >= accepted })
	})

	t.Run("LifecycleEmitterCloseWhileEmitting", func(t *testing.T) {
		e := newEnv(t, f, connect)
		b := e.node(t, held)
		em := newEmitter(t, e.c, e.options(small))
		accepted := closeWhilePublishing(t, e.c, func(ctx context.Context, i int) error {
			return em.Emit(ctx, "m", i)
		}, em.Close)
		require.ErrorIs(t, em.To("r").Emit(bg(t), "m", -1), redisadapter.ErrClosed)
		require.ErrorIs(t, em.Flush(bg(t)), redisadapter.ErrClosed)
		eventually(t, "b received every accepted broadcast", func() bool { return b.a.Stats().Received >= accepted })
	})

	// Close from many goroutines at once, while Redis holds the queue:
	// each returns nil, nothing panics, the queue is sent once, and no
	// goroutine of the node is left.
	const queued = 1000
	t.Run("LifecycleConcurrentClose", func(t *testing.T) {
		e := newEnv(t, f, connect)
		noGoroutinesLeft(t)
		a := e.node(t, held)
		resume := pauseWrites(t, e.c, 2*wait)
		for i := range queued {
			require.NoError(t, a.a.Of("/").Emit(bg(t), "m", i))
		}
		// One call closes and waits for the queue; the others return nil
		// at once (Close's doc).
		closeConcurrently(t, a.a.Close, closers-1, a.a.Flush, resume)
		require.EqualValues(t, queued, a.a.Stats().Published, "the queue was sent, once")
		require.ErrorIs(t, a.a.Of("/").Emit(bg(t), "m", -1), redisadapter.ErrClosed)
	})

	t.Run("LifecycleEmitterConcurrentClose", func(t *testing.T) {
		e := newEnv(t, f, connect)
		noGoroutinesLeft(t)
		b := e.node(t, held)
		em := newEmitter(t, e.c, e.options(nil))
		resume := pauseWrites(t, e.c, 2*wait)
		for i := range queued {
			require.NoError(t, em.Emit(bg(t), "m", i))
		}
		// As the Adapter's: one call closes and waits for the queue; the
		// others return nil at once (they used to wait in a sync.Once, on
		// the first caller's context).
		closeConcurrently(t, em.Close, closers-1, em.Flush, resume)
		require.ErrorIs(t, em.Emit(bg(t), "m", -1), redisadapter.ErrClosed)
		eventually(t, "b received the queue", func() bool { return b.a.Stats().Received >= queued })
	})
}

// closeWhilePublishing calls emit (with a counter) in a loop on several
// goroutines; once emits are accepted, it pauses writes on c's Redis until
// the queue is full, calls closeFn, and resumes Redis once every emitter
// returned. It checks Close's contract with them: every emit returns nil
// or ErrClosed (Redis stays up: no publish fails), none panics, each
// emitter gets ErrClosed while Redis still holds the queue, and closeFn
// waits for Redis and then returns nil, within wait. It returns how many
// emits were accepted (returned nil).
func closeWhilePublishing(t *testing.T, c redisadapter.Connector, emit func(ctx context.Context, i int) error, closeFn func(context.Context) error) (accepted uint64) {
	t.Helper()
	const emitters = 8
	var (
		ok        atomic.Uint64
		lastOK    atomic.Int64 // unix nanoseconds
		mu        sync.Mutex
		unwelcome []string // errors other than ErrClosed, and panics
		wg        sync.WaitGroup
	)
	fail := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(unwelcome) < 10 {
			unwelcome = append(unwelcome, s)
		}
	}
	emitCtx, cancelEmits := context.WithTimeout(context.Background(), 3*wait)
	defer cancelEmits()
	for g := range emitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					fail(fmt.Sprintf("emitter %d panicked: %v", g, r))
				}
			}()
			for i := 0; ; i++ {
				err := emit(emitCtx, g<<20|i)
				switch {
				case err == nil:
					ok.Add(1)
					lastOK.Store(time.Now().UnixNano())
				case errors.Is(err, redisadapter.ErrClosed):
					return
				default:
					fail(fmt.Sprintf("emitter %d: %v", g, err))
					return
				}
			}
		}()
	}
	eventually(t, "emits accepted before Close", func() bool { return ok.Load() >= 100 })
	resume := pauseWrites(t, c, 2*wait)
	eventually(t, "the queue full: no emit accepted for 100 ms", func() bool {
		return time.Since(time.Unix(0, lastOK.Load())) > 100*time.Millisecond
	})

	var (
		closeErr error
		took     time.Duration
		closed   = make(chan struct{})
	)
	go func() {
		defer close(closed)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		start := time.Now()
		closeErr = closeFn(ctx)
		took = time.Since(start)
	}()
	returned := make(chan struct{})
	go func() { wg.Wait(); close(returned) }()
	select {
	case <-returned:
	case <-time.After(wait):
		t.Fatalf("emitters still in Emit %v after Close began", wait)
	}
	select {
	case <-closed:
		t.Fatalf("Close returned (%v) while Redis held queued messages", closeErr)
	default:
	}
	resume()
	select {
	case <-closed:
	case <-time.After(2 * wait):
		t.Fatalf("Close did not return within %v", 2*wait)
	}
	require.NoError(t, closeErr, "Close after %v", took)
	require.Empty(t, unwelcome)
	t.Logf("Close took %v with %d emitters waiting; %d emits accepted", took.Round(time.Millisecond), emitters, ok.Load())
	return ok.Load()
}

// closers is how many goroutines call Close at once.
const closers = 16

// closeConcurrently calls closeFn from closers goroutines released at
// once, while Redis holds the queue. Once flush (the same Adapter's or
// Emitter's) returns ErrClosed, Close is under way: atOnce calls must have
// returned, and no more, before resume lets Redis go on. Then every call
// returns nil within wait, and none panicked.
func closeConcurrently(t *testing.T, closeFn func(context.Context) error, atOnce int, flush func(context.Context) error, resume func()) {
	t.Helper()
	var (
		ready, done sync.WaitGroup
		start       = make(chan struct{})
		results     = make(chan string, closers)
	)
	for range closers {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			defer func() {
				if r := recover(); r != nil {
					results <- fmt.Sprintf("panic: %v", r)
				}
			}()
			ready.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := closeFn(ctx); err != nil {
				results <- err.Error()
				return
			}
			results <- "nil"
		}()
	}
	ready.Wait()
	close(start)
	canceled, cancel := context.WithCancel(context.Background())
	cancel() // a Flush before Close queues a marker and returns at once
	eventually(t, "Close under way", func() bool { return errors.Is(flush(canceled), redisadapter.ErrClosed) })
	if atOnce > 0 {
		eventually(t, fmt.Sprintf("%d calls returned at once", atOnce), func() bool { return len(results) >= atOnce })
		require.Equal(t, atOnce, len(results), "calls returned while Redis held the queue")
	}
	resume()
	returned := make(chan struct{})
	go func() { done.Wait(); close(returned) }()
	select {
	case <-returned:
	case <-time.After(2 * wait):
		t.Fatalf("Close called from %d goroutines: not all returned within %v", closers, 2*wait)
	}
	close(results)
	var got, want []string
	for r := range results {
		got = append(got, r)
		want = append(want, "nil")
	}
	require.Equal(t, want, got, "what each Close returned")
}

// noGoroutinesLeft checks, when t ends, that every goroutine started
// since the call has returned (but those TestMain ignores too), waiting
// for them up to wait. It runs after the cleanups registered later, which
// close the nodes, servers, emitters and Redis clients the test started.
func noGoroutinesLeft(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		await.Check(t, wait, 50*time.Millisecond, "the goroutines the test started are gone", func(context.Context) error {
			return goleak.Find(append([]goleak.Option{before}, ignoredGoroutines...)...)
		})
	})
}

// killClients closes, on every Redis node c reaches, the connections of
// ordinary and pub/sub clients: the nodes' publishers, subscribers and
// stream readers. It spares its own and the sentinels' (a sentinel that
// loses its link may think the master down), and returns how many it
// closed.
func killClients(t *testing.T, c redisadapter.Connector) int {
	t.Helper()
	killed := 0
	eachRedis(t, c, func(addr string, n rueidis.Client) {
		for _, list := range []rueidis.Completed{n.B().ClientList().TypeNormal().Build(), n.B().ClientList().TypePubsub().Build()} {
			clients, err := n.Do(bg(t), list).ToString()
			require.NoError(t, err, addr)
			// A verbatim string, whose text rueidis gives with its "txt:" format.
			clients = strings.TrimPrefix(clients, "txt:")
			for _, line := range strings.Split(strings.TrimSpace(clients), "\n") {
				var id int64 = -1
				var name string
				for _, field := range strings.Fields(line) {
					k, v, _ := strings.Cut(field, "=")
					switch k {
					case "id":
						id, _ = strconv.ParseInt(v, 10, 64)
					case "name":
						name = v
					}
				}
				if id < 0 || strings.HasPrefix(name, "sentinel-") {
					continue
				}
				// CLIENT KILL ID skips the caller's own connection (SKIPME yes).
				k, err := n.Do(bg(t), n.B().ClientKill().Id(id).Build()).AsInt64()
				if err == nil {
					killed += int(k)
				}
			}
		}
	})
	return killed
}
