# nginx as the load benchmarks configure it (sourced by load.sh and
# callgrind.sh): a plain reverse proxy, keepalive both ways, streaming.

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
