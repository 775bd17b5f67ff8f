#!/usr/bin/env sh
# The BlogStack demo in one command, on a fresh clone:
#   ./examples/demo.sh [blogstack flags...]      then open http://localhost:3000/?post=1
# Installs the page's socket.io-client 2.5.0 from npm when it is missing (into
# examples/blogstack/node_modules, never committed), then runs one node with
# the embedded Redis, or the Redis in REDIS_URL if set.
set -eu
cd "$(dirname "$0")/.."
if [ ! -f examples/blogstack/node_modules/socket.io-client/dist/socket.io.js ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "demo: npm is needed to install the page's socket.io-client 2.5.0 (Debian: apt-get install npm)" >&2
    exit 1
  fi
  echo "demo: installing the page's socket.io-client 2.5.0 (npm ci in examples/blogstack)" >&2
  (cd examples/blogstack && npm ci --no-audit --no-fund --loglevel=error)
fi
exec go run ./examples/blogstack "$@"
