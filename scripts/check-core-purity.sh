#!/usr/bin/env bash
# cluster-core must stay sans-IO: no async runtime, networking, HTTP, storage,
# consensus or randomness crates in its normal dependency tree, and no clock,
# thread, file or socket use in its sources.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cargo tree -p cluster-core -e normal --prefix none)
bad=$(echo "$tree" | grep -E '^(tokio|libp2p|axum|redb|rand|openraft|madsim|hyper|mio)( |$)' || true)
if [ -n "$bad" ]; then
  echo "cluster-core depends on forbidden crates:"; echo "$bad"; exit 1
fi
src=$(grep -rnE 'SystemTime::now|Instant::now|std::thread|std::fs|std::net|tokio::|rand::' cluster-core/src | grep -v '^cluster-core/src/transcript.rs' | grep -v '/tests.rs:' || true)
if [ -n "$src" ]; then
  echo "cluster-core sources use IO, clocks, threads or randomness:"; echo "$src"; exit 1
fi
echo "cluster-core is pure: $(echo "$tree" | sort -u | wc -l) crates in its tree, none forbidden"
