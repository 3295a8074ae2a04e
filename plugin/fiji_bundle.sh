#!/usr/bin/env bash
# A Fiji install that runs on any x86-64 Linux with glibc: every native library the plugin needs
# sits in Fiji.app/lib/linux64, found through RUNPATH $ORIGIN. Only glibc's own libraries come from
# the system. Two uses:
#
#   fiji_bundle.sh libs LIBDIR
#       copy into LIBDIR every library libpneumoscope.so and libpneumoscope_jni.so need
#       (transitively, glibc's excepted), each under its soname, and set RUNPATH $ORIGIN on all of
#       them; prints the glibc floor (the newest GLIBC_x.y symbol version they use). What
#       `cmake --install --component fiji` runs on the installed lib/linux64.
#   fiji_bundle.sh zip OUT.zip JAR LIBDIR SOURCE_DIR
#       the release archive: Fiji.app/{plugins/PneumoScope_.jar, lib/linux64 (as above),
#       macros/PneumoScope, models/pneumoscope} from the build, zipped (cmake -E tar, zip format).
#
# libtorch (about 300 libraries) is not part of the bundle; classification, CAM and layer4
# Grad-CAM, the lung mask and lung focus run without it. The archive carries the libtorch backend
# built here under its libtorch version's name (libpneumoscope_torch-1.13.so for Debian 12's
# libtorch), with the libraries it needs besides libtorch: native/torch/loader.c uses it when that
# libtorch is found at run time (on the library path, e.g. Debian's libtorch1.13 package, or in a
# folder named in Train Model's libtorch field or PNEUMOSCOPE_TORCH_BACKEND).
set -euo pipefail

# glibc's own libraries (the dynamic loader and what ships in the libc6 package)
glibc='^(ld-linux-x86-64\.so\.2|libc\.so\.6|libm\.so\.6|libmvec\.so\.1|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libresolv\.so\.2|libutil\.so\.1|libanl\.so\.1|libnsl\.so\.1|libBrokenLocale\.so\.1|libcrypt\.so\.1)$'

needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

bundle_libs() {
  local dir=$1 f name path todo=() done=" "
  command -v patchelf >/dev/null || { echo "fiji_bundle: patchelf is needed (apt-get install patchelf)" >&2; exit 1; }
  for f in "$dir"/libpneumoscope.so.* "$dir"/libpneumoscope_jni.so "$dir"/libpneumoscope_torch-*.so; do
    [ -f "$f" ] && [ ! -L "$f" ] && todo+=("$f")
  done
  [ ${#todo[@]} -ge 2 ] || { echo "fiji_bundle: no libpneumoscope.so.N and libpneumoscope_jni.so in $dir" >&2; exit 1; }
  # what libpneumoscope opens only when needed: the BLAS library of the fallback kernels
  # (ldconfig lives in /sbin, outside a user's PATH on Debian; awk reads all of its output: an early
  # exit would end ldconfig with SIGPIPE, and pipefail this script, as it did once in CI)
  local ldconfig
  ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
  for name in libblas.so.3; do
    path=$("$ldconfig" -p 2>/dev/null | awk -v n="$name" '$1 == n && /x86-64/ && !found {print $NF; found = 1}')
    if [ -z "$path" ]; then
      echo "fiji_bundle: $name not found: the archive's BLAS fallback kernels (PNEUMOSCOPE_ENGINE=blas) will be missing" >&2
      continue
    fi
    [ -e "$dir/$name" ] || { cp -L "$path" "$dir/$name"; chmod 644 "$dir/$name"; }
    todo+=("$dir/$name")
  done
  while [ ${#todo[@]} -gt 0 ]; do
    f=${todo[0]}
    todo=("${todo[@]:1}")
    case $done in *" $f "*) continue ;; esac
    done="$done$f "
    # where this machine's loader finds each dependency (ldd resolves them all at once)
    declare -A where=()
    while read -r name _ path _; do
      [ -n "${path:-}" ] && where[$name]=$path
    done < <(ldd "$f" | grep '=> /')
    for name in $(needed "$f"); do
      [[ $name =~ $glibc ]] && continue
      [[ $name =~ ^lib(torch|c10) ]] && continue # a versioned backend's libtorch: found at run time
      if [ ! -e "$dir/$name" ]; then
        path=${where[$name]:-}
        [ -n "$path" ] || { echo "fiji_bundle: $f needs $name, which this machine does not have" >&2; exit 1; }
        cp -L "$path" "$dir/$name"
        chmod 644 "$dir/$name"
      fi
      todo+=("$dir/$name")
    done
    unset where
  done
  for f in $done; do
    patchelf --set-rpath '$ORIGIN' "$f"
  done
  # DCMTK's data dictionary, which it reads from a file at run time (its built-in path is
  # Debian's); libpneumoscope loads dcmtk/*.dic beside itself when that path does not exist
  local dict
  dict=$(sed -n 's/^#define DCM_DICT_DEFAULT_PATH "\(.*\)"/\1/p' /usr/include/dcmtk/config/osconfig.h 2>/dev/null || true)
  if [ -n "$dict" ]; then
    mkdir -p "$dir/dcmtk"
    for f in ${dict//:/ }; do cp "$f" "$dir/dcmtk/"; done
  fi
  local floor
  floor=$(for f in $done; do objdump -T "$f"; done | grep -o 'GLIBC_[0-9][0-9.]*' | sort -u -V | tail -1)
  echo "fiji_bundle: $(echo $done | wc -w) libraries in $dir ($(du -sm "$dir" | cut -f1) MB), RUNPATH \$ORIGIN; needs glibc >= ${floor#GLIBC_}"
}

case ${1:-} in
  libs)
    bundle_libs "${2:?usage: fiji_bundle.sh libs LIBDIR}"
    ;;
  zip)
    out=${2:?usage: fiji_bundle.sh zip OUT.zip JAR LIBDIR SOURCE_DIR}
    jar=$3 lib=$4 src=$5
    case $out in /*) ;; *) out=$PWD/$out ;; esac
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    app=$stage/Fiji.app
    mkdir -p "$app/plugins" "$app/lib/linux64" "$app/macros/PneumoScope" "$app/models/pneumoscope"
    cp "$jar" "$app/plugins/PneumoScope_.jar"
    # libpneumoscope under its soname (what the JNI library needs), the plain name as a link
    soname=$(objdump -p "$lib/libpneumoscope.so" | sed -n 's/^ *SONAME *//p')
    cp -L "$lib/$soname" "$lib/libpneumoscope_jni.so" "$app/lib/linux64/"
    ln -s "$soname" "$app/lib/linux64/libpneumoscope.so"
    # the libtorch backend, named for the libtorch it needs (its versioned libtorch_cpu soname)
    if [ -f "$lib/libpneumoscope_torch.so" ]; then
      tv=$(needed "$lib/libpneumoscope_torch.so" | sed -n 's/^libtorch_cpu\.so\.\([0-9]*\.[0-9]*\).*/\1/p')
      if [ -n "$tv" ]; then
        cp "$lib/libpneumoscope_torch.so" "$app/lib/linux64/libpneumoscope_torch-$tv.so"
      else
        echo "fiji_bundle: $lib/libpneumoscope_torch.so needs an unversioned libtorch: not bundled" >&2
      fi
    fi
    bundle_libs "$app/lib/linux64"
    cp "$src"/plugin/macros/*.ijm "$app/macros/PneumoScope/"
    for m in pneumoscope-binary.safetensors pneumoscope-3class.safetensors MODELS.md; do
      [ -f "$src/sample_data/models/$m" ] && cp "$src/sample_data/models/$m" "$app/models/pneumoscope/"
    done
    rm -f "$out"
    (cd "$stage" && cmake -E tar cf "$out" --format=zip Fiji.app)
    echo "fiji_bundle: $out ($(du -m "$out" | cut -f1) MB; unzip it into the folder that holds Fiji.app)"
    ;;
  *)
    sed -n '2,20p' "$0" >&2
    exit 2
    ;;
esac
