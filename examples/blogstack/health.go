package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/blogstack/redisadapter"
)

// healthTimeout bounds the ping: a balancer's check gives up soon after.
// Ping reads state the adapter's delivery probe keeps and answers at once,
// whatever Redis does; the bound is only a guard.
const healthTimeout = 250 * time.Millisecond

// healthHandler answers 200 while the adapter's subscriptions are live and
// its delivery probe comes back (what this node publishes now reaches it),
// else 503 with the reason.
func healthHandler(a *redisadapter.Adapter) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		status, body := http.StatusOK, map[string]string{"status": "ok"}
		if err := a.Ping(ctx); err != nil {
			status, body = http.StatusServiceUnavailable, map[string]string{"status": "error", "message": err.Error()}
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	}
}
