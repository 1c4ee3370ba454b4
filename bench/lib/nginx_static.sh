#!/usr/bin/env bash
# nginx serving DIR/www as static files on 127.0.0.1:PORT (sendfile on), in the foreground:
# the ceiling a DICOMweb stream is compared with. Config, pid and logs go in DIR.
#
#   bench/lib/nginx_static.sh DIR PORT &
set -euo pipefail
dir=$(cd "$1" && pwd) port=$2
chmod a+rx "$dir" "$dir/www"
chmod -R a+r "$dir/www"
cat > "$dir/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $dir;
  proxy_temp_path $dir;
  fastcgi_temp_path $dir;
  uwsgi_temp_path $dir;
  scgi_temp_path $dir;
  server { listen 127.0.0.1:$port; root $dir/www; }
}
CONF
exec nginx -c "$dir/nginx.conf" -p "$dir"
