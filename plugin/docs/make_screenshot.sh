#!/usr/bin/env bash
# Regenerate plugin/docs/gradcam-overlay.png: real ImageJ (not batch mode) under Xvfb shows a film
# with the Grad-CAM overlay and captures the image window (Image > Stacks... > Capture Image).
#   plugin/docs/make_screenshot.sh BUILD_DIR MODEL.safetensors [FILM]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd); model=$2
film=${3:-$here/../../sample_data/films/kaggle/PNEUMONIA/person449_bacteria_1938.jpeg}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --component fiji --prefix "$tmp" >/dev/null
timeout 180 xvfb-run -a -s "-screen 0 1280x1024x24" java -Duser.home="$tmp" -Dplugins.dir="$tmp/Fiji.app" \
  -cp /usr/share/java/ij.jar ij.ImageJ -macro "$here/screenshot.ijm" "$film $model $tmp/shot.png" || true
test -s "$tmp/shot.png"
cp "$tmp/shot.png" "$here/gradcam-overlay.png"
echo "wrote $here/gradcam-overlay.png"
