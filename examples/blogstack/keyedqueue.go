package main

import (
	"context"
	"sync"
)

// keyedQueue runs fn(key, v) for each value pushed under a key, off the
// pusher's goroutine: one at a time per key, in the order pushed; keys run
// alongside each other. A key's goroutine lives while its values wait.
//
// The fleet refreshes (a coalescer) and the delivery receipts (an author's
// comments, in order) both use it; they differ in two settings: how many
// values may wait per key, and whether close runs those still waiting.
type keyedQueue[T any] struct {
	fn         func(key string, v T)
	maxWaiting int  // push refuses past it
	finish     bool // close runs the values waiting; false: drops them

	// Add only under mu while !closing: hijacked websockets run handlers
	// after httpSrv.Shutdown, and an Add racing close's Wait is a misuse.
	wg sync.WaitGroup

	mu      sync.Mutex
	closing bool
	waiting map[string][]T // key -> values not yet taken; present while its goroutine runs
}

func newKeyedQueue[T any](maxWaiting int, finish bool, fn func(key string, v T)) *keyedQueue[T] {
	return &keyedQueue[T]{fn: fn, maxWaiting: maxWaiting, finish: finish, waiting: make(map[string][]T)}
}

// push queues v after the key's earlier values; false if it did not: too
// many wait, or the queue is closing.
func (q *keyedQueue[T]) push(key string, v T) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	w, running := q.waiting[key]
	if q.closing || len(w) >= q.maxWaiting {
		return false
	}
	q.waiting[key] = append(w, v)
	if !running {
		q.wg.Add(1)
		go q.run(key)
	}
	return true
}

// run takes the key's values one at a time, and ends when none is left.
func (q *keyedQueue[T]) run(key string) {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		w := q.waiting[key]
		if len(w) == 0 || (q.closing && !q.finish) {
			delete(q.waiting, key)
			q.mu.Unlock()
			return
		}
		v := w[0]
		q.waiting[key] = w[1:]
		q.mu.Unlock()
		q.fn(key, v)
	}
}

// stop refuses new values; wait waits for the runs under way, until ctx
// ends. close is both, without a bound.
func (q *keyedQueue[T]) stop() {
	q.mu.Lock()
	q.closing = true
	q.mu.Unlock()
}

func (q *keyedQueue[T]) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		q.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *keyedQueue[T]) close() {
	q.stop()
	q.wg.Wait()
}

// coalescer runs fn(key) off its caller's goroutine, at most once per key
// at a time: triggers during a run cost one more run after it, not one
// each, and that run starts after them. A run still owed at close is
// dropped.
type coalescer struct{ *keyedQueue[struct{}] }

func newCoalescer(fn func(key string)) *coalescer {
	// One waiting value is the run owed; a trigger finding it there is
	// served by it.
	return &coalescer{newKeyedQueue(1, false, func(key string, _ struct{}) { fn(key) })}
}

func (c *coalescer) trigger(key string) { c.push(key, struct{}{}) }
