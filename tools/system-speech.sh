#!/bin/sh
# Install the speech synthesizers that build speech-keywords (and pocketsphinx), as root.
# The recorded speakers of MBROLA, Pico, RHVoice and festival's rab/don/us1-us3/en1 voices live in Debian's
# contrib and non-free components: this script adds those components to the apt sources when they are
# missing, saying which file it changes, then runs apt-get update. Usage: tools/system-speech.sh MAIN -- EXTRA
set -eu
main=""; extra=""; seen=0
for p in "$@"; do
  if [ "$p" = "--" ]; then seen=1; elif [ $seen = 0 ]; then main="$main $p"; else extra="$extra $p"; fi
done
missing() { for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done; }
need_main=$(missing $main); need_extra=$(missing $extra)
if [ -z "$need_main$need_extra" ]; then echo "speech packages present"; exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "system-speech needs root: sudo make system-speech (it would install:" $need_main $need_extra")" >&2
  exit 1
fi
if [ -n "$need_main" ]; then
  apt-get install -y -q $need_main || (apt-get update -q && apt-get install -y -q $need_main)
fi
[ -z "$need_extra" ] && exit 0
changed=0
deb822=/etc/apt/sources.list.d/debian.sources
if [ -f "$deb822" ]; then
  if grep -q '^Components:' "$deb822" && grep '^Components:' "$deb822" | grep -qv 'non-free\( \|$\)'; then
    echo "system-speech: adding 'contrib non-free' to the Components lines of $deb822 (a copy stays in $deb822.bak)"
    cp "$deb822" "$deb822.bak"
    sed -i -E '/^Components:/{/ contrib( |$)/! s/$/ contrib/; / non-free( |$)/! s/$/ non-free/}' "$deb822"
    changed=1
  fi
elif [ -f /etc/apt/sources.list ] && grep -qE '^deb .* main' /etc/apt/sources.list \
    && ! grep -qE '^deb .* non-free( |$)' /etc/apt/sources.list; then
  echo "system-speech: adding 'contrib non-free' to the deb lines of /etc/apt/sources.list (copy: sources.list.bak)"
  cp /etc/apt/sources.list /etc/apt/sources.list.bak
  sed -i -E '/^deb .* main/{/ contrib( |$)/! s/$/ contrib/; / non-free( |$)/! s/$/ non-free/}' /etc/apt/sources.list
  changed=1
fi
if [ $changed = 1 ] || ! apt-cache show mbrola >/dev/null 2>&1; then apt-get update -q; fi
# one by one when the batch fails: a voice whose package cannot be had is skipped by the build, with a warning
apt-get install -y -q $need_extra || for p in $need_extra; do
  apt-get install -y -q "$p" || echo "warning: could not install $p; speech-keywords will skip its voices" >&2
done
