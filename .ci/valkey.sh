#!/usr/bin/env bash
# Unpacks Debian's valkey-server (from bookworm-backports: built for this Debian) into a
# directory of its own, without changing the system's apt sources or its redis-server
# (the two packages would fight over redis-* names), and prints the server's path.
# The tests run against it with REDISADAPTER_REDIS_SERVER=<that path>.
set -euo pipefail
version=${VALKEY_VERSION:-8.0.1+dfsg1-1~bpo12+1}
dir=${VALKEY_DIR:-/var/cache/redisadapter-valkey/$version}
if [ ! -x "$dir/usr/bin/valkey-server" ]; then
  apt=$(mktemp -d)
  trap 'rm -rf "$apt"' EXIT
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
  echo 'deb http://deb.debian.org/debian bookworm-backports main' >"$apt/sources.list"
  opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" -qq update >&2
  (cd "$apt" && apt-get "${opts[@]}" -qq download "valkey-server=$version" "valkey-tools=$version" >&2)
  mkdir -p "$dir"
  for deb in "$apt"/*.deb; do dpkg -x "$deb" "$dir"; done
fi
"$dir/usr/bin/valkey-server" --version >&2
echo "$dir/usr/bin/valkey-server"
