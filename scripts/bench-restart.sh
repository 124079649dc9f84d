#!/usr/bin/env bash
# Restart benchmark (issue "Node"): a peer holding N pins (default 1,000,000)
# restarts; how long until its REST API serves a pin's status.
#   scripts/bench-restart.sh [N] [WORKDIR]
# Builds the release binary, imports N pins into a fresh peer (state import),
# then starts the daemon three times and times, each run, the wait from the
# process start until `GET /pins/<cid>` answers 200. IPFS is a closed port:
# the figure is the peer's own start-up (store open, snapshot load, Raft,
# drivers, REST), not a daemon's.
set -euo pipefail
n="${1:-1000000}"
work="${2:-${TMPDIR:-/tmp}/ipfs-cluster-bench-restart}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release -q -p cluster-node --bin ipfscluster-server
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/release/ipfscluster-server"
rm -rf "$work"
mkdir -p "$work"
peer="$work/peer"
"$bin" --config "$peer" init >/dev/null 2>&1
python3 - "$peer/server.json" <<'PY'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["cluster"]["listen_multiaddress"] = ["/ip4/127.0.0.1/tcp/19696"]
c["rest_api"]["listen_address"] = "127.0.0.1:19694"
c["pinning_service"]["listen_address"] = "127.0.0.1:19697"
c["ipfs_proxy"]["listen_address"] = "127.0.0.1:19695"
c["ipfs_http"]["node_multiaddress"] = "/ip4/127.0.0.1/tcp/19601"
json.dump(c, open(path, "w"), indent=2)
PY
echo "writing $n pins"
python3 - "$n" "$work/pins.ndjson" <<'PY'
import base64, hashlib, sys
n, out = int(sys.argv[1]), open(sys.argv[2], "w")
for i in range(n):
    mh = b"\x12\x20" + hashlib.sha256(str(i).encode()).digest()
    cid = "b" + base64.b32encode(b"\x01\x55" + mh).decode().lower().rstrip("=")
    out.write('{"replication_factor_min":-1,"replication_factor_max":-1,"name":"bench-%d",'
              '"mode":"recursive","cid":"%s","type":"pin","allocations":[],"max_depth":-1,'
              '"timestamp":"2026-12-06T00:00:00Z"}\n' % (i, cid))
    if i == n - 1:
        open(sys.argv[2] + ".last", "w").write(cid)
PY
start=$(date +%s.%N)
"$bin" --config "$peer" state import "$work/pins.ndjson" >/dev/null 2>"$work/import.log"
echo "state import of $n pins: $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
du -sh "$peer/data" | sed 's/^/store on disk: /'
cid="$(cat "$work/pins.ndjson.last")"
for run in 1 2 3; do
  start=$(date +%s.%N)
  RUST_LOG=warn "$bin" --config "$peer" daemon 2>"$work/daemon-$run.log" &
  pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:19694/pins/$cid"; do
    kill -0 "$pid" 2>/dev/null || { echo "daemon exited:"; cat "$work/daemon-$run.log"; exit 1; }
    sleep 0.05
  done
  ready=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  echo "run $run: status of a pin served ${ready} s after start (RSS $((rss / 1024)) MiB)"
  kill -TERM "$pid"
  wait "$pid" || true
done
