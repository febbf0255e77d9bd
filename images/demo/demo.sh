#!/bin/sh
# Serves "demo VERSION on HOSTNAME" at / and "ok" at /healthz (missing when BROKEN=1).
mkdir -p /www
echo "demo $VERSION on $(hostname)" > /www/index.html
if [ "$BROKEN" != 1 ]; then echo ok > /www/healthz; fi
echo "demo $VERSION starting on :8080 (host $(hostname))"
exec httpd -f -v -p 8080 -h /www
