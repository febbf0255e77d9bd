#!/bin/sh
# Serves "demo VERSION on HOSTNAME" at / and "ok" at /healthz (missing when BROKEN=1).
# Stops at once on SIGTERM, as a well-behaved app does: as PID 1 a process without a handler
# ignores it, and every stop (each step of a rolling update) would wait for the engine's kill.
mkdir -p /www
echo "demo $VERSION on $(hostname)" > /www/index.html
if [ "$BROKEN" != 1 ]; then echo ok > /www/healthz; fi
echo "demo $VERSION starting on :8080 (host $(hostname))"
httpd -f -v -p 8080 -h /www &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid; exit 0' TERM INT
wait $pid
