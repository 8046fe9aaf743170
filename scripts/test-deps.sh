#!/usr/bin/env bash
# Installs the real servers the tests start: Debian's mosquitto (MQTT broker, with mosquitto_passwd)
# and victoria-metrics (an InfluxDB line-protocol server), and chromium for the dashboard's browser test.
# Idempotent; needs root or sudo.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the dashboard's real-browser test (never a downloaded browser)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing test servers: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# the tests start their own instances on free loopback ports; the packaged service is not needed
$SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
