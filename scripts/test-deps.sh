#!/usr/bin/env bash
# Installs the real servers the tests start: Debian's mosquitto (MQTT broker, with mosquitto_passwd)
# and victoria-metrics (an InfluxDB line-protocol server), and chromium for the dashboard's browser test.
# Idempotent; needs root or sudo.
set -euo pipefail
# A Sparkplug B edge node for the tests: pysparkplug's own publisher needs paho-mqtt 1.x, so it lives in a virtual
# environment of its own (the project's runs on paho 2); the test starts it as a separate process, like a gateway.
if [ ! -x .venv-edge/bin/python ] || ! .venv-edge/bin/python -c "import pysparkplug" 2>/dev/null; then
    python3 -m venv .venv-edge
    .venv-edge/bin/python -m pip install --quiet --disable-pip-version-check "pysparkplug==${PYSPARKPLUG:-0.6.1}"
fi
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
