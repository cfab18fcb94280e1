#!/bin/bash
# Cost of one write at 10,000 routes on PostgreSQL, and of the configuration cache it triggers.
set -e
BIN=${BIN:-$(dirname "$0")/../../target/release/gatehouse}
S=m10k_$$
psql -q postgres://postgres@127.0.0.1:5432/test -c "CREATE SCHEMA $S"
URL="postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D$S"
D=$(mktemp -d)
export GATEHOUSE_ADMIN_TOKEN=t GATEHOUSE_MASTER_KEY=$(printf '5a%.0s' $(seq 32))
start() { RUST_LOG=gatehouse_admin=debug,gatehouse_proxy=debug,info $BIN serve --database "$URL" --data-dir $D --proxy-listen 127.0.0.1:18000 --proxy-listen-tls off --admin-listen 127.0.0.1:18001 --identity-listen 127.0.0.1:18002 >$D/out 2>>$D/log & PID=$!; for i in $(seq 100); do curl -sf -m1 -H 'Authorization: Bearer t' localhost:18001/status >/dev/null && break; sleep 0.2; done; }
start
A="curl -sf -H Authorization:Bearer\ t -H content-type:application/json"
curl -sf -H 'Authorization: Bearer t' -H 'content-type: application/json' localhost:18001/services -d '{"name":"up","url":"http://127.0.0.1:9/"}' >/dev/null
curl -sf -H 'Authorization: Bearer t' -H 'content-type: application/json' localhost:18001/routes -d '{"name":"r-0","paths":["/r-0"],"service":{"name":"up"}}' >/dev/null
psql -q "postgres://postgres@127.0.0.1:5432/test" -c "SET search_path=$S; INSERT INTO core_entities (control_plane_id, kind, id, endpoint_key, alt_key, service_id, route_id, consumer_id, created_at, body) SELECT c.control_plane_id, c.kind, g.id, 'r-'||g.i, c.alt_key, c.service_id, c.route_id, c.consumer_id, c.created_at, (c.body::jsonb || jsonb_build_object('id', g.id, 'name', 'r-'||g.i, 'paths', jsonb_build_array('/r-'||g.i)))::text FROM core_entities c, (SELECT i, gen_random_uuid()::text AS id FROM generate_series(1, 9999) i) g WHERE c.kind='routes' AND c.endpoint_key='r-0'"
sleep 3
echo "routes: $(curl -sf -H 'Authorization: Bearer t' 'localhost:18001/routes?size=1' | head -c 0; psql -tA "postgres://postgres@127.0.0.1:5432/test" -c "SELECT count(*) FROM $S.core_entities WHERE kind='routes'")"
: > $D/log.writes
for i in $(seq 1 20); do
  s=$(date +%s%N)
  curl -sf -H 'Authorization: Bearer t' -H 'content-type: application/json' localhost:18001/routes -d "{\"name\":\"x-$i\",\"paths\":[\"/x-$i\"],\"service\":{\"name\":\"up\"}}" >/dev/null
  e=$(date +%s%N); echo $(( (e-s)/1000 )) >> $D/post_us
  sleep 0.3
done
sleep 1
echo "POST /routes at 10k, median us: $(sort -n $D/post_us | sed -n 10p)"
grep "configuration cache written" $D/log | sed 's/\x1b\[[0-9;]*m//g' | tail -20 | grep -o "bytes=[0-9]* elapsed_us=[0-9]*" | sort -t= -k3 -n | sed -n 10p | sed 's/^/cache write median: /'
ls -la $D/config-cache.json
# restart without the database? (not here: shared server) — time a restart from the database
kill $PID; wait $PID 2>/dev/null || true
s=$(date +%s%N); start; e=$(date +%s%N); echo "restart to ready at 10k routes: $(( (e-s)/1000000 )) ms"
kill $PID; wait $PID 2>/dev/null || true
psql -q postgres://postgres@127.0.0.1:5432/test -c "DROP SCHEMA $S CASCADE" 2>/dev/null
grep "configuration applied" $D/log | sed "s/\x1b\[[0-9;]*m//g" | tail -5; rm -rf $D
