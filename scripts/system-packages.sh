#!/usr/bin/env bash
# Install the Debian packages the demo (or the tests) need, if missing.
# As root (or with passwordless sudo) this runs apt-get; otherwise it lists what to install.
set -euo pipefail
# rubberband-cli: the time stretch; oxygen-sounds, sound-theme-freedesktop: the non-speech
# recordings (whisper_spi.corpus.stress.RECORDINGS)
demo=(rubberband-cli oxygen-sounds sound-theme-freedesktop)
test=("${demo[@]}" pocketsphinx-testdata chromium chromium-driver)
case "${1:-demo}" in
  demo) want=("${demo[@]}") ;;
  test) want=("${test[@]}") ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=(); elif sudo -n true 2>/dev/null; then sudo=(sudo -n); else
  echo "Please install these Debian packages, then rerun: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
