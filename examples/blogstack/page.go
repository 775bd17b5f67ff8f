package main

import (
	_ "embed"
	"html/template"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
)

//go:embed index.html
var indexHTML string

// addPage serves the page, which names the node that served it, and its
// socket.io-client script from assets/node_modules.
func addPage(mux *http.ServeMux, assets, node string, log *slog.Logger) {
	clientJS := filepath.Join(assets, "node_modules/socket.io-client/dist/socket.io.js")
	if _, err := os.Stat(clientJS); err != nil {
		// Without it the page would load and stay silent.
		log.Warn("the page's socket.io-client is missing: run ./examples/demo.sh, or `npm ci` in examples/blogstack (then -assets there)", "want", clientJS)
	}
	mux.HandleFunc("GET /socket.io-client.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, clientJS)
	})
	page := template.Must(template.New("index").Parse(indexHTML))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		_, err := os.Stat(clientJS) // at each request: installing it needs no restart
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, map[string]any{"Node": node, "ClientMissing": err != nil})
	})
}
