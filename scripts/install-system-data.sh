#!/usr/bin/env bash
# Installs the data sets that come from Debian packages (see README, "Data").
# Needs root or sudo on Debian/Ubuntu; elsewhere it says what to install and carries on:
# the loaders then name the missing package and the path they look in
# (TOKENWORKS_DATA overrides it).
set -u
pkgs=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || pkgs+=(dataset-fashion-mnist)
[ ${#pkgs[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: not a Debian/Ubuntu system; install ${pkgs[*]} (or set TOKENWORKS_DATA) for the image loaders" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "note: run 'sudo apt-get install ${pkgs[*]}' for the image data sets" >&2; exit 0; fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 \
  || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q "${pkgs[@]}" >/dev/null; } \
  || echo "warning: could not install ${pkgs[*]}; the image loaders will say what is missing" >&2
exit 0
