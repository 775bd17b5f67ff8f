#!/usr/bin/env bash
# Builds the local Redis image the tests use (local/redisadapter-redis:7) with `docker import`
# from the host's Debian redis-server and a static busybox: no registry is needed.
set -euo pipefail
image=${1:-local/redisadapter-redis:7}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/bin "$root"/usr/local/bin "$root"/data "$root"/tmp
cp /bin/busybox "$root"/bin/busybox
for tool in sh cat ls sleep env; do ln -sf busybox "$root/bin/$tool"; done
# The Debian redis-server is a symlink to redis-check-rdb; copy the file under the name redis-server.
cp -L /usr/bin/redis-server "$root"/usr/local/bin/redis-server
cp -L /usr/bin/redis-cli "$root"/usr/local/bin/redis-cli
for bin in /usr/bin/redis-server /usr/bin/redis-cli; do
  for lib in $(ldd "$bin" | awk '/=> \//{print $3} /ld-linux/{print $1}'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
chmod 1777 "$root"/tmp
tar -C "$root" -cf "$root.tar" .
docker import \
  --change 'ENV PATH=/usr/local/bin:/bin' \
  --change 'WORKDIR /data' \
  --change 'CMD ["redis-server"]' \
  "$root.tar" "$image" >/dev/null
rm -f "$root.tar"
echo "built $image"
