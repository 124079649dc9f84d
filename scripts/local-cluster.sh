#!/usr/bin/env bash
# Runs a local 3-peer IPFS Cluster on 127.0.0.1, each peer with its own real
# IPFS daemon (js-ipfs from e2e/ipfs), pins a sample file, and keeps it all
# running until Ctrl-C, which stops every peer and daemon cleanly.
#   scripts/local-cluster.sh [WORK_DIR]     (default ${TMPDIR:-/tmp}/ipfs-cluster-local)
# Peer i: cluster port 9096+100*i, REST API 9094+100*i; its IPFS daemon's API on
# IPFS_BASE+10*i (IPFS_BASE defaults to 15001). A WORK_DIR from an earlier run
# is reused: the peers restart as the cluster they were.
# PROFILE=debug uses (and builds) the debug binaries instead of release ones.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-${TMPDIR:-/tmp}/ipfs-cluster-local}"
profile="${PROFILE:-release}"
ipfs_base="${IPFS_BASE:-15001}"
n=3
secret_file="$work/secret"

say() { printf 'local-cluster: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v cargo >/dev/null || die "cargo not found (install Rust: https://rustup.rs)"
command -v python3 >/dev/null || die "python3 not found (it edits the peers' server.json)"

# --- HTTP: curl when there is one, else python3's urllib.
# http METHOD URL [FILE]: prints the body; FILE is sent as a multipart "file" field.
http() {
  local method="$1" url="$2" file="${3:-}"
  if command -v curl >/dev/null; then
    if [ -n "$file" ]; then
      curl -sS -f -X "$method" -F "file=@$file" "$url"
    else
      curl -sS -f -X "$method" "$url"
    fi
  else
    python3 - "$method" "$url" "$file" <<'EOF'
import sys, urllib.request, uuid, os
method, url, path = sys.argv[1], sys.argv[2], sys.argv[3]
data, headers = None, {}
if path:
    b = uuid.uuid4().hex
    content = open(path, "rb").read()
    data = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{os.path.basename(path)}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{b}--\r\n".encode()
    headers["Content-Type"] = f"multipart/form-data; boundary={b}"
req = urllib.request.Request(url, data=data, method=method, headers=headers)
with urllib.request.urlopen(req, timeout=60) as r:
    sys.stdout.write(r.read().decode())
EOF
  fi
}

# --- Build and install.
say "building the $profile binaries"
if [ "$profile" = release ]; then
  (cd "$root" && cargo build --release -p cluster-node --bins)
else
  (cd "$root" && cargo build -p cluster-node --bins)
fi
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
server="$target/$profile/ipfscluster-server"
[ -x "$server" ] || die "$server is missing after the build"
"$root/scripts/ipfs-install.sh" >&2

mkdir -p "$work"
work="$(cd "$work" && pwd)"
pids=()

# --- Stop everything we started, once, on Ctrl-C, TERM or any exit.
stopped=0
stop_all() {
  [ "$stopped" = 1 ] && return
  stopped=1
  say "stopping the peers"
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  say "stopping the IPFS daemons"
  "$root/e2e/ipfs/ipfs-down.sh" "$work/ipfs" || true
  say "stopped; configs and data kept in $work"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# --- IPFS daemons.
say "starting $n IPFS daemons in $work/ipfs"
"$root/e2e/ipfs/ipfs-up.sh" "$n" "$work/ipfs" "$ipfs_base" >&2

# --- Peers: init once, then edit server.json (ports, IPFS, cluster_peers).
[ -f "$secret_file" ] || python3 -c 'import secrets; print(secrets.token_hex(32))' >"$secret_file"
secret="$(cat "$secret_file")"
contact=""
for i in $(seq 0 $((n - 1))); do
  dir="$work/peer-$i"
  cluster_port=$((9096 + 100 * i)); rest_port=$((9094 + 100 * i))
  if [ ! -f "$dir/server.json" ]; then
    "$server" --config "$dir" init --secret "$secret" >/dev/null 2>&1 \
      || die "init of peer $i failed: $("$server" --config "$dir" init --secret "$secret" 2>&1)"
    python3 - "$dir/server.json" "$cluster_port" "$rest_port" "$((ipfs_base + 10 * i))" "$i" "$contact" <<'EOF'
import json, sys
path, cport, rport, iport, i, contact = sys.argv[1:7]
i = int(i)
c = json.load(open(path))
c["cluster"]["listen_multiaddress"] = [f"/ip4/127.0.0.1/tcp/{cport}"]
c["cluster"]["cluster_peers"] = [contact] if contact else []
c["rest_api"]["listen_address"] = f"127.0.0.1:{rport}"
# Every peer on one machine: move the other listeners apart too.
c["ipfs_proxy"]["listen_address"] = f"127.0.0.1:{9095 + 100 * i}"
c["pinning_service"]["listen_address"] = f"127.0.0.1:{9097 + 100 * i}"
c["ipfs_http"]["node_multiaddress"] = f"/ip4/127.0.0.1/tcp/{iport}"
json.dump(c, open(path, "w"), indent=2)
EOF
  fi
  id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cluster"]["id"])' "$dir/server.json")"
  [ -n "$contact" ] || contact="/ip4/127.0.0.1/tcp/$cluster_port/p2p/$id"
  say "starting peer $i ($id), REST API http://127.0.0.1:$rest_port"
  "$server" --config "$dir" daemon >"$work/peer-$i.log" 2>&1 &
  pids+=("$!")
  # Peer 0 first: the others join through it.
  for _ in $(seq 1 600); do
    grep -q 'IPFS Cluster is READY' "$work/peer-$i.log" && break
    kill -0 "${pids[$i]}" 2>/dev/null || die "peer $i exited; see $work/peer-$i.log"
    sleep 0.1
  done
  grep -q 'IPFS Cluster is READY' "$work/peer-$i.log" || die "peer $i not READY after 60 s; see $work/peer-$i.log"
done
say "all $n peers are READY"

# --- A sample file: added to daemon 0, pinned through peer 0's REST API.
sample="$work/sample.txt"
echo "Hello from ipfs-cluster-rs, $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$sample"
cid="$(http POST "http://127.0.0.1:$ipfs_base/api/v0/add?pin=false&cid-version=0" "$sample" \
  | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["Hash"])')"
say "added $sample to IPFS daemon 0: $cid; pinning it through http://127.0.0.1:9094"
http POST "http://127.0.0.1:9094/pins/$cid" >/dev/null
status=""
for _ in $(seq 1 120); do
  status="$(http GET "http://127.0.0.1:9094/pins/$cid")"
  pinned="$(printf '%s' "$status" | python3 -c 'import json,sys; m=json.load(sys.stdin)["peer_map"]; print(sum(v["status"]=="pinned" for v in m.values()))')"
  [ "$pinned" = "$n" ] && break
  sleep 0.5
done
[ "$pinned" = "$n" ] || die "$cid pinned on $pinned of $n peers after 60 s: $status"
printf '%s' "$status" | python3 -m json.tool

cat <<EOF

The cluster is running ($n peers, each with its own IPFS daemon); $cid is pinned on all of them.

  REST APIs:   http://127.0.0.1:9094  http://127.0.0.1:9194  http://127.0.0.1:9294
               curl -s http://127.0.0.1:9094/peers
               curl -s -X POST http://127.0.0.1:9094/pins/<cid>     # pin
               curl -s http://127.0.0.1:9094/pins/<cid>             # status on every peer
  CLI:         $target/$profile/ipfscluster --host /ip4/127.0.0.1/tcp/9094 status $cid
               $target/$profile/ipfscluster --host /ip4/127.0.0.1/tcp/9194 peers ls
  IPFS APIs:   http://127.0.0.1:$ipfs_base  http://127.0.0.1:$((ipfs_base + 10))  http://127.0.0.1:$((ipfs_base + 20))  (Kubo RPC, /api/v0/...)
  configs:     $work/peer-{0,1,2}   (server.json, identity.key, data/)
  logs:        $work/peer-{0,1,2}.log   $work/ipfs/ipfs-{0,1,2}.log

Press Ctrl-C to stop every peer and daemon.
EOF

# Wait for Ctrl-C; sleep in the background so the trap runs at once.
while :; do
  sleep 1 &
  wait $! || true
done
