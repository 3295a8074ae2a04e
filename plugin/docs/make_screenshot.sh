#!/usr/bin/env bash
# Regenerate the README screenshots from real ImageJ (not batch mode) under Xvfb (screenshot.ijm):
#   plugin/docs/gradcam-overlay.png  Grad-CAM Overlay on a pediatric film (the image window as shown)
#   plugin/docs/results-table.png    the PneumoScope Results table after Classify Chest Film on that
#                                    film and on an adult film (in_distribution true / false)
#   plugin/docs/make_screenshot.sh BUILD_DIR MODEL [FILM [ADULT_FILM]]
# MODEL: binary | 3class (a bundled model by name) or a .safetensors path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd); model=$2
case $model in binary|3class) ;; *) model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model") ;; esac
film=${3:-$here/../../sample_data/films/kaggle/PNEUMONIA/person449_bacteria_1938.jpeg}
adult=${4:-${PS_SHARED_DATA:-$here/../../../shared/data}/png/nih_00000001_000.png}
test -f "$film" && test -f "$adult"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --component fiji --prefix "$tmp" >/dev/null
timeout 180 xvfb-run -a -s "-screen 0 1280x1024x24" java -Duser.home="$tmp" -Dplugins.dir="$tmp/Fiji.app" \
  -cp /usr/share/java/ij.jar ij.ImageJ -macro "$here/screenshot.ijm" "$film	$model	$tmp	$adult" || true
for png in gradcam-overlay.png results-table.png; do
  test -s "$tmp/$png" || { echo "ImageJ did not write $png" >&2; exit 1; }
  cp "$tmp/$png" "$here/$png"
  echo "wrote $here/$png"
done
