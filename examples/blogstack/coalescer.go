package main

import "sync"

// coalescer runs fn(key) off its caller's goroutine, at most once per key
// at a time: triggers during a run cost one more run after it, not one
// each, and that run starts after them.
type coalescer struct {
	fn func(key string)
	wg sync.WaitGroup // Add only under mu while !closing, as blog.receiptsWG

	mu      sync.Mutex
	closing bool
	runs    map[string]bool // key -> a run is under way; true: run again after it
}

func newCoalescer(fn func(string)) *coalescer {
	return &coalescer{fn: fn, runs: make(map[string]bool)}
}

func (c *coalescer) trigger(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	if _, running := c.runs[key]; running {
		c.runs[key] = true // the run under way may have read the state before this change
		return
	}
	c.runs[key] = false
	c.wg.Add(1)
	go c.loop(key)
}

func (c *coalescer) loop(key string) {
	defer c.wg.Done()
	for {
		c.fn(key)
		c.mu.Lock()
		if !c.runs[key] || c.closing {
			delete(c.runs, key)
			c.mu.Unlock()
			return
		}
		c.runs[key] = false
		c.mu.Unlock()
	}
}

// close refuses new runs and waits for those under way.
func (c *coalescer) close() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.wg.Wait()
}
