# nginx as the load benchmarks configure it (sourced by load.sh,
# callgrind.sh and perf.sh): a plain reverse proxy, keepalive both ways,
# streaming.

# nginx_main DIR WORKERS: the main context: in the foreground, WORKERS
# worker processes, its pid and error log in DIR.
nginx_main() {
  cat <<CONF
worker_processes $2;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
CONF
}

# nginx_server PORT UPSTREAM SCHEME ACCESS_LOG: a TLS server on PORT
# proxying everything to the upstream block UPSTREAM over SCHEME.
nginx_server() {
  cat <<CONF
  server {
    listen 127.0.0.1:$1 ssl http2;  # nginx 1.22 (bookworm) syntax
    $4
    location / {
      proxy_pass $3://$2;
    }
  }
CONF
}

# nginx_upstream NAME HOST:PORT: an upstream block with keepalive connections.
nginx_upstream() {
  cat <<CONF
  upstream $1 {
    server $2;
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 90s;
  }
CONF
}

# nginx_proxy_settings DIR CERT KEY CA: the http-level settings, temporary
# files in DIR, serving CERT/KEY, verifying the upstream with CA.
nginx_proxy_settings() {
  cat <<CONF
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  # Client keepalive like Paddock's hyper server: no request cap per connection.
  keepalive_timeout 90s;
  keepalive_requests 1000000;
  ssl_certificate $2;
  ssl_certificate_key $3;
  ssl_protocols TLSv1.2 TLSv1.3;
  # rustls' server default: an in-memory session cache, no tickets.
  ssl_session_cache shared:SSL:10m;
  ssl_session_tickets off;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  # Stream like a Kubernetes proxy must (watches): no response buffering.
  proxy_buffering off;
  proxy_request_buffering off;
  proxy_ssl_trusted_certificate $4;
  proxy_ssl_verify on;
  proxy_ssl_name localhost;
  proxy_ssl_session_reuse on;
CONF
}
