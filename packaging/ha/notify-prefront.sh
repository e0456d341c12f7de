#!/bin/sh
# keepalived notify hook: `notify /usr/lib/prefront/ha/notify-prefront.sh` in a vrrp_instance.
# keepalived calls it as: notify-prefront.sh <GROUP|INSTANCE> <name> <MASTER|BACKUP|FAULT|STOP> [priority]
# It logs the role change (syslog/journal, tag prefront-vrrp) and writes the state atomically to
# the state file that prefront's /status shows ([admin] vrrp_state_file).
# The file: PREFRONT_VRRP_STATE_FILE, default /run/prefront/vrrp-state.
TYPE="$1"; NAME="$2"; STATE="$3"
FILE="${PREFRONT_VRRP_STATE_FILE:-/run/prefront/vrrp-state}"
logger -t prefront-vrrp "vrrp $TYPE $NAME is now $STATE" 2>/dev/null || true
case "$STATE" in
    MASTER|BACKUP|FAULT) ;;
    STOP) STATE=BACKUP ;;   # keepalived stopping: this box no longer holds the VIP
    *) exit 0 ;;
esac
dir=$(dirname "$FILE")
mkdir -p "$dir" || exit 1
tmp="$dir/.vrrp-state.$$"
printf '%s\n' "$STATE" >"$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$FILE"
