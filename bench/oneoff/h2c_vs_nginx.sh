#!/bin/bash
# HTTP/2 with prior knowledge (h2c) through Gatehouse's proxy against nginx's `http2` proxy,
# side by side: h2load (Debian's nghttp2-client) on one core, each proxy on another with one
# worker, both in front of the same nginx upstream answering `200 ok` (keep-alive pool).
# Rounds alternate; the medians and their ratio are printed. Needs nginx and h2load
# (apt-get install nginx-light nghttp2-client). Set BIN= or it uses target/release/gatehouse.
#
#   bench/oneoff/h2c_vs_nginx.sh [rounds] [requests per round]
set -euo pipefail
BIN=${BIN:-$(dirname "$0")/../../target/release/gatehouse}
ROUNDS=${1:-5}
N=${2:-200000}
D=$(mktemp -d)
trap 'kill $GH 2>/dev/null; nginx -p $D -c $D/nginx.conf -s quit 2>/dev/null; rm -rf $D' EXIT
UP=18180; NG=18181; GHP=18100; GHA=18101; GHI=18102
mkdir -p $D/logs
cat > $D/nginx.conf <<CONF
worker_processes 1;
daemon on;
pid $D/nginx.pid;
error_log $D/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    upstream up { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 10000000; }
    server { listen 127.0.0.1:$UP; location / { return 200 "ok"; } }
    server {
        listen 127.0.0.1:$NG http2;
        http2_max_concurrent_streams 128;
        location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
taskset -c 1 nginx -p $D -c $D/nginx.conf
export GATEHOUSE_ADMIN_TOKEN=t
taskset -c 1 $BIN serve --data-dir $D/gh --proxy-workers 1 --proxy-listen 127.0.0.1:$GHP --proxy-listen-tls off \
  --admin-listen 127.0.0.1:$GHA --identity-listen 127.0.0.1:$GHI >$D/gh.out 2>$D/gh.log & GH=$!
for i in $(seq 100); do curl -sf -m1 -H 'Authorization: Bearer t' localhost:$GHA/status >/dev/null && break; sleep 0.1; done
curl -sf -H 'Authorization: Bearer t' -H 'content-type: application/json' localhost:$GHA/services \
  -d "{\"name\":\"up\",\"url\":\"http://127.0.0.1:$UP/\"}" >/dev/null
curl -sf -H 'Authorization: Bearer t' -H 'content-type: application/json' localhost:$GHA/services/up/routes \
  -d '{"name":"r","paths":["/"]}' >/dev/null
for port in $GHP $NG; do
  [ "$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_version} %{http_code}' http://127.0.0.1:$port/x)" = "2 200" ] \
    || { echo "port $port does not answer h2c 200"; exit 1; }
done
run() { taskset -c 0 h2load -n $N -c 10 -m 10 "http://127.0.0.1:$1/x" 2>&1 | awk '/^finished in/ {gsub(",","",$4); print $4}'; }
run $GHP >/dev/null; run $NG >/dev/null   # warm-up
gh=(); ng=()
for r in $(seq $ROUNDS); do gh+=("$(run $GHP)"); ng+=("$(run $NG)"); done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
g=$(median "${gh[@]}"); n=$(median "${ng[@]}")
echo "gatehouse h2c req/s: ${gh[*]} (median $g)"
echo "nginx http2 req/s:   ${ng[*]} (median $n)"
echo "ratio (gatehouse / nginx): $(awk -v g=$g -v n=$n 'BEGIN {printf "%.2f", g/n}')"
