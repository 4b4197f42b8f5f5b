#!/usr/bin/env bash
# phonekit set-up on Debian: system packages, a virtualenv, phonekit itself; then the demo or the tests.
#   bash bootstrap.sh demo   # checks this machine on virtual audio devices and loopback services
#   bash bootstrap.sh test   # ruff, mypy, then the whole pytest suite against the real test bed
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  python3 python3-venv python3-pip            # the toolkit itself
  python3-dev build-essential                 # builds PyPI 'pesq' (ITU-T P.862), which has no wheel
  libportaudio2 libasound2-plugins            # sounddevice -> PortAudio -> ALSA 'pulse' device
  pulseaudio pulseaudio-utils sox espeak-ng   # virtual audio devices, test signals and speech
  kamailio kamailio-tls-modules               # SIP registrar/proxy of the test bed
  baresip-core                                # independent SIP peer (and echo service)
  linphone-cli                                # linphonec: proves generated Linphone configs register
  coturn                                      # STUN server
  sipsak sip-tester openssl procps iproute2   # SIP probes, certificates, process and network tools
  dnsmasq-base                                # DNS server (NAPTR/SRV) of the test bed
  nftables                                    # NAT and firewall scenes in the tests' own namespaces
  chromium                                    # headless: opens the HTML report offline in tests (screenshot, DOM)
)
VENV=${VENV:-.venv}

install_system_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  elif command -v sudo >/dev/null; then
    echo "installing ${missing[*]} with sudo" >&2
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "phonekit needs these Debian packages; as root run:" >&2
    echo "  apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
}

install_python() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  local stamp="$VENV/.phonekit-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    touch "$stamp"
  fi
}

case "${1:-}" in
  demo)
    install_system_packages
    install_python
    # A fresh workstation image has no sound card: the demo brings up virtual devices and
    # loopback services, runs every check against them, and stops them again.
    exec "$VENV/bin/python" -m tests.testbed demo
    ;;
  test)
    install_system_packages
    install_python
    "$VENV/bin/ruff" check .
    "$VENV/bin/mypy"
    exec "$VENV/bin/python" -m pytest -q "${@:2}"
    ;;
  setup)
    install_system_packages
    install_python
    ;;
  *)
    echo "usage: bash bootstrap.sh demo|test|setup" >&2
    exit 2
    ;;
esac
