#!/usr/bin/env bash
# Two writers behind Debian's nginx as an L7 gRPC proxy (grpc_pass, the way a mesh sidecar sits),
# a collector whose bounded Write streams (--max-stream-bytes) go through it: every stream ends
# with its summary through the proxy, successive streams spread over both writers, and the table is
# exact. Exit 77 = skipped (no nginx, or no PostgreSQL configured).
#   nginx_grpc_proxy_test.sh BIN_DIR
set -euo pipefail
bin=$1
command -v nginx >/dev/null || { echo "nginx not installed (scripts/setup installs it): skipped"; exit 77; }
[ -n "${PGPORT:-}" ] || { echo "no PostgreSQL configured: skipped"; exit 77; }
work=$(mktemp -d /tmp/etl-nginx-test.XXXXXX)
# A database of its own: a collector claims every claimable job of its ledger, so tests running at
# the same time must not share one.
server_db=${PGDATABASE:-postgres}
own_db="etl_nginx_$$_${RANDOM}"
psql -X -q -c "CREATE DATABASE $own_db" >/dev/null
export PGDATABASE=$own_db
unset DATABASE_URL
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
  PGDATABASE=$server_db psql -X -q -c "DROP DATABASE IF EXISTS $own_db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
wait_file() {  # wait_file FILE SECONDS: poll until FILE is non-empty
  local deadline=$((SECONDS + $2))
  until [ -s "$1" ]; do [ $SECONDS -lt $deadline ] || { echo "timeout waiting for $1"; return 1; }; sleep 0.05; done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for w in 1 2; do
  "$bin/writer_server" --listen=127.0.0.1:0 --port_file="$work/w$w.port" >"$work/w$w.log" 2>&1 &
  pids+=($!)
done
"$bin/sample_api" --listen=127.0.0.1:0 --port_file="$work/api.port" --records=3000 >"$work/api.log" 2>&1 &
pids+=($!)
for f in w1.port w2.port api.port; do wait_file "$work/$f" 20; done
proxy_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 256; }
http {
  log_format calls '\$request_uri \$upstream_addr \$status';
  access_log $work/nginx/access.log calls;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream writers {
    server 127.0.0.1:$(cat "$work/w1.port");
    server 127.0.0.1:$(cat "$work/w2.port");
  }
  server {
    listen 127.0.0.1:$proxy_port http2;
    client_max_body_size 0;
    location / {
      grpc_pass grpc://writers;
      grpc_read_timeout 120s;
      grpc_send_timeout 120s;
    }
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx.conf" -e "$work/nginx/error.log" &
pids+=($!)
deadline=$((SECONDS + 20))
until "$bin/etl_health_probe" --quiet "127.0.0.1:$proxy_port"; do
  [ $SECONDS -lt $deadline ] || { echo "nginx does not proxy the writers' health"; cat "$work/nginx/error.log"; exit 1; }
  sleep 0.1
done
"$bin/collector_server" --listen=127.0.0.1:0 --port_file="$work/c.port" \
  --writer="127.0.0.1:$proxy_port" --allow-private-networks --max-stream-bytes=1 >"$work/c.log" 2>&1 &
pids+=($!)
wait_file "$work/c.port" 20
cliente="nginx$$"
ETL_COLLECTOR="127.0.0.1:$(cat "$work/c.port")" "$bin/etlctl" run --cliente="$cliente" --rota=pedidos \
  --url="http://127.0.0.1:$(cat "$work/api.port")/v1/clientes/$cliente/pedidos/page" --pagination=page \
  --page-size=100 --total-pages-path=/total_pages --records-path=/data >"$work/run.log" 2>&1 \
  || { cat "$work/run.log" "$work/c.log"; exit 1; }
rows=$(psql -tAc "SELECT count(*), count(DISTINCT payload->>'id') FROM dados_raw_cliente_${cliente}_pedidos")
[ "$rows" = "3000|3000" ] || { echo "table not exact: $rows"; exit 1; }
# 30 pages, one stream each, every one through the proxy and spread over both writers.
streams=$(grep -c "^/etl.v1.WriterService/Write " "$work/nginx/access.log" || true)
writers=$(grep "^/etl.v1.WriterService/Write " "$work/nginx/access.log" | awk '{print $2}' | sort -u | wc -l)
echo "rows $rows; Write streams through nginx: $streams over $writers writers"
[ "$streams" -ge 30 ] || { echo "expected >= 30 Write streams through nginx"; exit 1; }
[ "$writers" -eq 2 ] || { echo "expected the streams on both writers"; exit 1; }
echo PASS
