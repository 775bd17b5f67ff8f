package main

// The deployment guide's advice for a public Socket.IO server: limit the
// connection rate per client IP, check the Origin, and believe
// X-Forwarded-For only from a proxy you run.

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
)

type guard struct {
	perMinute int
	anyOrigin bool
	origins   map[string]bool
	proxies   []netip.Prefix

	mu      sync.Mutex
	window  time.Time
	counted map[string]int // new connections per client IP in the current minute
}

func newGuard(perMinute int, origins, proxies string) (*guard, error) {
	g := &guard{perMinute: perMinute, origins: make(map[string]bool), counted: make(map[string]int)}
	for _, o := range splitList(origins) {
		if o == "*" {
			g.anyOrigin = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("-origins: %q is not an origin like https://blog.example.com", o)
		}
		g.origins[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	for _, p := range splitList(proxies) {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, err2 := netip.ParseAddr(p)
			if err2 != nil {
				return nil, fmt.Errorf("-trusted-proxies: %q is neither an IP nor a CIDR", p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		g.proxies = append(g.proxies, prefix.Masked())
	}
	return g, nil
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// wrap checks every Socket.IO request's origin and every new connection's rate.
func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.originAllowed(r) {
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		// A request without a session id opens a new engine.io connection.
		if r.URL.Query().Get("sid") == "" && !g.allowConnection(g.clientIP(r)) {
			w.Header().Set("Retry-After", "60")
			http.Error(w, "too many connections from this address; retry in a minute", http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// originAllowed accepts requests without an Origin (not from a browser),
// same-origin requests, and the configured origins.
func (g *guard) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || g.anyOrigin {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return g.origins[strings.ToLower(u.Scheme+"://"+u.Host)]
}

func (g *guard) allowConnection(ip string) bool {
	if g.perMinute <= 0 {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := time.Now(); now.Sub(g.window) >= time.Minute {
		g.window, g.counted = now, make(map[string]int)
	}
	g.counted[ip]++
	return g.counted[ip] <= g.perMinute
}

// clientIP is the peer's address, or, when the peer is a trusted proxy, the
// last address in X-Forwarded-For that is not a trusted proxy.
func (g *guard) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !g.trusted(host) {
		return host
	}
	hops := splitList(strings.Join(r.Header.Values("X-Forwarded-For"), ","))
	for i := len(hops) - 1; i >= 0; i-- {
		if !g.trusted(hops[i]) {
			return hops[i]
		}
	}
	return host
}

func (g *guard) trusted(ip string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range g.proxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
