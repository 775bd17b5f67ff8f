package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/blogstack/redisadapter"
)

// healthTimeout bounds the ping: a balancer's check gives up soon after.
const healthTimeout = 2 * time.Second

// healthHandler answers 200 when Redis answers the adapter's ping, on the
// adapter's own connection, else 503 with the reason.
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
