#!/bin/sh
# keepalived vrrp_script: exit 0 only when this box's prefront answers 200 on /readyz.
# /readyz answers 503 when the buffer cannot write (disk full, read-only, I/O errors).
# Usage: check-prefront.sh [URL]   (default http://127.0.0.1:9090/readyz; or PREFRONT_READYZ_URL)
URL="${1:-${PREFRONT_READYZ_URL:-http://127.0.0.1:9090/readyz}}"
if command -v curl >/dev/null 2>&1; then
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$URL") || exit 1
    [ "$code" = "200" ] && exit 0
    exit 1
fi
# No curl: a plain HTTP/1.0 GET over bash's /dev/tcp.
hostport=${URL#http://}; path=/${hostport#*/}; hostport=${hostport%%/*}
host=${hostport%:*}; port=${hostport##*:}; [ "$port" = "$host" ] && port=80
exec bash -c '
exec 3<>"/dev/tcp/$0/$1" || exit 1
printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$0" >&3
IFS= read -r -t 2 status <&3 || exit 1
case "$status" in "HTTP/1."?" 200"*) exit 0 ;; *) exit 1 ;; esac
' "$host" "$port" "$path" 2>/dev/null
