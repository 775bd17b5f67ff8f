#!/usr/bin/env bash
# Unpacks another Redis-compatible server from Debian's archive into a directory of its own,
# without changing the system's apt sources or its redis-server (the packages would fight over
# redis-* names), and prints the path of an executable that starts it (as a sentinel too, with
# --sentinel). The tests run against it with REDISADAPTER_REDIS_SERVER=<that path>.
#   .ci/server.sh valkey   valkey-server 8.0 from bookworm-backports (built for Debian 12)
#   .ci/server.sh redis6   redis-server 6.0 from Debian 11, with the two libraries Debian 12
#                          no longer ships (libssl1.1, Lua 5.1 and its modules) beside it
set -euo pipefail
which=${1:?usage: .ci/server.sh valkey|redis6}
case "$which" in
  valkey) suite=bookworm-backports; pkgs=(valkey-server/bookworm-backports valkey-tools/bookworm-backports) ;;
  redis6) suite=bullseye; pkgs=(redis-tools/bullseye libssl1.1/bullseye liblua5.1-0/bullseye lua-cjson/bullseye lua-bitop/bullseye) ;;
  *) echo "unknown server $which" >&2; exit 2 ;;
esac
dir=${SERVER_DIR:-/var/cache/redisadapter-servers}/$which
if [ ! -e "$dir/server" ]; then
  apt=$(mktemp -d)
  trap 'rm -rf "$apt"' EXIT
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dir/root"
  echo "deb http://deb.debian.org/debian $suite main" >"$apt/sources.list"
  opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" -qq update >&2
  (cd "$apt" && apt-get "${opts[@]}" -qq download "${pkgs[@]}" >&2)
  for deb in "$apt"/*.deb; do dpkg -x "$deb" "$dir/root"; done
  # The server binary is redis-check-rdb (valkey-check-rdb) under another name: the name
  # picks what it runs.
  case "$which" in
    valkey) name=valkey-server bin=valkey-check-rdb ;;
    redis6) name=redis-server bin=redis-check-rdb ;;
  esac
  printf '#!/bin/bash\nLD_LIBRARY_PATH=%q exec -a %q %q "$@"\n' \
    "$dir/root/usr/lib/x86_64-linux-gnu" "$name" "$dir/root/usr/bin/$bin" >"$dir/server"
  chmod +x "$dir/server"
fi
"$dir/server" --version >&2
echo "$dir/server"
