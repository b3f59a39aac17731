#!/usr/bin/env bash
# A short field session on the station-agent command line: a social worker of
# the 泽当街道 station initialises a phone, opens case files, records visits, an
# activity and a correction, then looks at the cases due for a follow-up. A
# city hub is started, the phone syncs, a colleague's phone receives the cases,
# and the bureau reads the indicators. KEEP_SERVING=1 keeps the hub and its
# dashboard running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p station-agent -p station-hub
agent() { target/debug/station-agent --data "$DATA" "$@"; }
hub() { target/debug/station-hub "$@"; }

WORK="${1:-$(mktemp -d)}"
DATA="$WORK/phone-1"
echo "== working folder: $WORK"

agent init --station 540502001 --worker zd-sw-01
day() { date -d "$1 days ago" +%F; }

echo "== open two case files (一人一档)"
C1=$(agent case open --name "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ" --id-number 11010519491231002X \
      --community 540502001001 --category 低保 --category elderly --tier 1 \
      --source outreach --language bo --date "$(day 40)" | sed -E 's/.*case_id=([^ ]+).*/\1/')
C2=$(agent case open --name "扎西顿珠" --id-number 540502201203150014 \
      --community 540502001003 --category left-behind-child --tier 2 \
      --source referral --date "$(day 35)" | sed -E 's/.*case_id=([^ ]+).*/\1/')

echo "== visits, an assessment, an activity"
agent visit --case "$C1" --date "$(day 30)" --kind home --minutes 40 --note "取暖不足" --need 取暖
agent visit --case "$C2" --date "$(day 20)" --kind home --minutes 30
agent case assess --case "$C2" --tier 3 --reason "监护落实，情况稳定" --date "$(day 20)"
agent activity --kind child-care --date "$(day 10)" --community 540502001003 \
      --participants 18 --person-times 18 --volunteers 3 --volunteer-hours 6 --title "儿童之家 བྱིས་པའི་ཁྱིམ"
agent resource --case "$C1" --kind in-kind --source 区民政局 --in-kind 600 --date "$(day 9)" --description 冬季取暖物资

echo "== a mistaken entry, then its correction"
WRONG=$(agent visit --case "$C1" --date "$(day 2)" --kind phone | sed -E 's/.*event_id=([^ ]+).*/\1/')
agent void --event "$WRONG" --reason "误录：当天未联系"

echo "== a refused entry (wrong ID check character): nothing is recorded"
agent case open --name "某某" --id-number 110105194912310021 --community 540502001001 \
      --category dibao --tier 2 || true

echo "== the station's cases"
agent cases
echo "== due and overdue follow-ups"
agent cases --due
echo "== device status"
agent status

echo "== the city hub: enroll two phones of the station, then serve"
TOKEN1=$(hub enroll --data "$WORK/hub" --station 540502001 --device zd-phone-1 2>/dev/null)
TOKEN2=$(hub enroll --data "$WORK/hub" --station 540502001 --device zd-phone-2 2>/dev/null)
BUREAU=$(hub enroll --data "$WORK/hub" --bureau 山南市民政局 2>/dev/null)
hub serve --data "$WORK/hub" --listen 127.0.0.1:0 --http 127.0.0.1:0 > "$WORK/hub.out" 2> "$WORK/hub.log" &
HUB_PID=$!
trap 'kill $HUB_PID 2>/dev/null || true' EXIT
until grep -q "listening on" "$WORK/hub.out" 2>/dev/null; do
  kill -0 $HUB_PID 2>/dev/null || { cat "$WORK/hub.log"; exit 1; }
  sleep 0.1
done
HUB_URL="http://$(sed -n 's/^listening on //p' "$WORK/hub.out")"
until grep -q "http on" "$WORK/hub.out" 2>/dev/null; do sleep 0.1; done
DASHBOARD="http://$(sed -n 's/^http on //p' "$WORK/hub.out")"
echo "   hub at $HUB_URL, dashboard at $DASHBOARD"

echo "== phone 1 syncs its entries to the hub"
agent sync --hub "$HUB_URL" --token "$TOKEN1"
agent status

echo "== a colleague's phone joins the station and receives its cases"
DATA="$WORK/phone-2"
agent init --station 540502001 --worker zd-sw-02 --hub "$HUB_URL" --token "$TOKEN2"
agent sync
agent cases --due

echo "== the bureau's view: indicators of this month, as JSON"
if command -v curl >/dev/null; then
  curl -s -H "Authorization: Bearer $BUREAU" "$DASHBOARD/api/indicators?period=$(date +%Y-%m)&station=540502001" | head -c 600; echo
fi

if [[ -n "${KEEP_SERVING:-}" ]]; then
  echo "== dashboard: $DASHBOARD (log in with the bureau token: $BUREAU); Ctrl-C to stop"
  wait $HUB_PID
fi
kill -TERM $HUB_PID
wait $HUB_PID || true
trap - EXIT
echo "== the hub stopped cleanly; its data is in $WORK/hub"
