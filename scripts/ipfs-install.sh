#!/usr/bin/env bash
# Installs the real IPFS daemon the connector's tests run against (js-ipfs,
# Kubo-compatible RPC API) into e2e/ipfs/node_modules. Idempotent: does
# nothing when the daemon is already there.
#
# A fresh install takes about 1.5 min and 290 MB, so the installed tree is
# kept in a cache under ~/.cache keyed by the lock file's hash and copied
# from there on later runs (a copy, not a symlink: node resolves modules by
# their real path, and a clone must not share a mutable tree with another).
#   scripts/ipfs-install.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)/e2e/ipfs"
jsipfs="$here/node_modules/.bin/jsipfs"
if [ -x "$jsipfs" ]; then
  echo "ipfs-install: already installed ($jsipfs)"
  exit 0
fi
command -v npm >/dev/null || { echo "ipfs-install: npm not found (Node 20 and npm are needed)" >&2; exit 1; }
key="$(sha256sum "$here/package-lock.json" | cut -c1-16)"
cache="${IPFS_INSTALL_CACHE:-$HOME/.cache/ipfs-cluster-rs/node_modules-$key}"
if [ -x "$cache/.bin/jsipfs" ]; then
  echo "ipfs-install: copying the cached install ($cache)"
  rm -rf "$here/node_modules.partial.$$"
  cp -a "$cache" "$here/node_modules.partial.$$"
  mv -T "$here/node_modules.partial.$$" "$here/node_modules"
  exit 0
fi
echo "ipfs-install: npm install in $here (about 1.5 min)"
# `npm install`, not `npm ci`: npm ci rejects this lock file over an optional
# dependency, while npm install honours it.
(cd "$here" && npm install --no-audit --no-fund)
[ -x "$jsipfs" ] || { echo "ipfs-install: npm finished but $jsipfs is missing" >&2; exit 1; }
# Fill the cache through a temporary name so a crash never leaves half a tree under the key.
mkdir -p "$(dirname "$cache")"
# Another clone may fill the same key at the same time: the first rename wins.
cp -a "$here/node_modules" "$cache.partial.$$"
mv -T "$cache.partial.$$" "$cache" 2>/dev/null || rm -rf "$cache.partial.$$"
echo "ipfs-install: done (cached in $cache)"
