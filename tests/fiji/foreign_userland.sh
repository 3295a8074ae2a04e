#!/usr/bin/env bash
# The release archive in a foreign userland (issue 16): a chroot of another Linux release (made with
# debootstrap, e.g. `debootstrap --variant=minbase trixie DIR http://deb.debian.org/debian`), whose
# DCMTK, ICU and libstdc++ differ from Debian 12's or are absent. foreign_probe (built here against
# the archive's lib/linux64, RUNPATH there) loads the bundled binary model, classifies films and
# draws a layer4 CAM, on this machine and inside the chroot; the outputs must be equal, libtorch
# never loaded. Needs root (chroot). Not part of ctest: it needs a chroot of another release.
#   tests/fiji/foreign_userland.sh CHROOT BUILD_DIR
set -euo pipefail
root=${1:?usage: foreign_userland.sh CHROOT BUILD_DIR}
build=$(cd "${2:?usage: foreign_userland.sh CHROOT BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
data=${PS_SHARED_DATA:-$src/../shared/data}
work=$root/tmp/pneumoscope-foreign
rm -rf "$work"
mkdir -p "$work/films"
trap 'rm -rf "$work"' EXIT
bash "$src/plugin/fiji_bundle.sh" zip "$work/ps.zip" "$build/plugin/PneumoScope_.jar" "$build" "$src" >/dev/null
(cd "$work" && cmake -E tar xf ps.zip)
lib=$work/Fiji.app/lib/linux64
inc=()
for d in core image model infer gradcam torch lung preprocess; do inc+=(-I"$src/native/$d"); done
cc -O2 "${inc[@]}" "$src/tests/fiji/foreign_probe.c" -o "$work/probe" -L"$lib" -l:libpneumoscope.so.0 \
  -Wl,-rpath,/tmp/pneumoscope-foreign/Fiji.app/lib/linux64
cp "$data/kaggle/PNEUMONIA/$(ls "$data/kaggle/PNEUMONIA" | head -1)" "$data/dicom/CR-MONO1-10-chest.dcm" \
  "$data/png/nih_00000001_000.png" "$work/films/"
films=()
for f in "$work"/films/*; do films+=("/tmp/pneumoscope-foreign/films/$(basename "$f")"); done
model=/tmp/pneumoscope-foreign/Fiji.app/models/pneumoscope/pneumoscope-binary.safetensors
# on this machine, through the same absolute paths (a bind of the chroot's /tmp folder)
mkdir -p /tmp/pneumoscope-foreign
here_out=$(mount --bind "$work" /tmp/pneumoscope-foreign && PNEUMOSCOPE_TORCH_BACKEND=/nonexistent \
  /tmp/pneumoscope-foreign/probe "$model" "${films[@]}"; umount /tmp/pneumoscope-foreign)
there_out=$(PNEUMOSCOPE_TORCH_BACKEND=/nonexistent chroot "$root" /tmp/pneumoscope-foreign/probe "$model" "${films[@]}")
echo "chroot: $(. "$root/etc/os-release"; echo "$PRETTY_NAME"), glibc $(chroot "$root" ldd --version | head -1 | awk '{print $NF}')"
echo "chroot's own DCMTK / ICU / libstdc++: $(cd "$root" && ls usr/lib/x86_64-linux-gnu | grep -E '^(libdcmdata|libicuuc|libstdc\+\+)\.so\.[0-9]+$' | tr '\n' ' ' || true)"
echo "--- inside the chroot:"
echo "$there_out"
! grep -q ': error:' <<<"$there_out" && [ "$here_out" = "$there_out" ] && echo "equal to this machine's output" || { echo "--- here:"; echo "$here_out"; echo "DIFFERENT"; exit 1; }
