#!/usr/bin/env bash
# Installs the data sets that come from Debian packages (see README, "Data"). Idempotent.
# Needs root or sudo on Debian/Ubuntu; elsewhere it says what to install and carries on:
# the loaders then name the missing package and the path they look in
# (TOKENWORKS_DATA overrides it).
#  - dataset-fashion-mnist: /usr/share/datasets/fashion-mnist
#  - assimp-testmodels:     /usr/share/assimp/models (OFF meshes among others)
#  - libcgal-demo:          only downloaded (`apt-get download`) and unpacked (`dpkg -x`): its
#                           data/meshes/*.off go to /usr/share/datasets/cgal-meshes
set -u
pkgs=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || pkgs+=(dataset-fashion-mnist)
[ -d /usr/share/assimp/models/OFF ] || pkgs+=(assimp-testmodels)
cgal_dir=/usr/share/datasets/cgal-meshes
need_cgal=0
[ -f "$cgal_dir/bunny00.off" ] || need_cgal=1
[ ${#pkgs[@]} -eq 0 ] && [ $need_cgal -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: not a Debian/Ubuntu system; install ${pkgs[*]} libcgal-demo (or set TOKENWORKS_DATA) for the data loaders" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "note: run 'sudo apt-get install ${pkgs[*]}' and this script as root for the data sets" >&2; exit 0; fi
fi
export DEBIAN_FRONTEND=noninteractive
if [ ${#pkgs[@]} -gt 0 ]; then
  $sudo apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q "${pkgs[@]}" >/dev/null; } \
    || echo "warning: could not install ${pkgs[*]}; the loaders will say what is missing" >&2
fi
if [ $need_cgal -eq 1 ]; then
  tmp=$(mktemp -d)
  if (cd "$tmp" && { apt-get download libcgal-demo >/dev/null 2>&1 || { $sudo apt-get update -q >/dev/null 2>&1 && apt-get download libcgal-demo >/dev/null 2>&1; }; }) \
     && dpkg -x "$tmp"/libcgal-demo_*.deb "$tmp/x" \
     && tar -xzf "$tmp/x/usr/share/doc/libcgal-dev/data.tar.gz" -C "$tmp" data/meshes; then
    $sudo mkdir -p "$cgal_dir" && $sudo cp "$tmp"/data/meshes/*.off "$cgal_dir"/
  else
    echo "warning: could not unpack libcgal-demo's meshes into $cgal_dir; the point-cloud loader will say what is missing" >&2
  fi
  rm -rf "$tmp"
fi
exit 0
