#!/bin/sh
# Decode time of a 2048 x 2048 16-bit chest film: ps_dicom_read vs pydicom (dcmread + pixel_array
# + apply_modality_lut + apply_voi_lut + MONOCHROME1 inversion, tests/ref/dicom_reference.py) in
# the same run, printed as a ratio. Not part of ctest.
#
#   tests/bench/bench_dicom.sh [BUILD_DIR (default build-dicom)] [REPEATS (default 5)]
#
# The film is the 440 x 440 10-bit CR-MONO1 chest upscaled with DCMTK's dcmscale (16-bit kept),
# then re-encoded with dcmconv / dcmcrle / dcmcjpeg / dcmcjpls. Single thread on both sides; times
# are process CPU time (best of REPEATS after a warm-up), so a busy shared machine does not skew them.
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$SRC/build-dicom}
REPS=${2:-5}
PY=${PS_PYTHON:-/usr/bin/python3}
DATA=${PS_SHARED_DATA:-$SRC/../shared/data}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cc -O2 -o "$T/bench_dicom" "$SRC/tests/bench/bench_dicom.c" -I"$SRC/dicom" -I"$SRC/native/core" \
  -L"$BUILD" -lpneumoscope -Wl,-rpath,"$BUILD"
dcmscale +Sxv 2048 +Syv 2048 "$DATA/dicom/CR-MONO1-10-chest.dcm" "$T/big.dcm" 2>/dev/null
dcmconv +te "$T/big.dcm" "$T/native.dcm"
dcmcrle "$T/native.dcm" "$T/rle.dcm"
dcmcjpeg +e1 "$T/native.dcm" "$T/jpegll.dcm" 2>/dev/null
dcmcjpls "$T/native.dcm" "$T/jpegls.dcm" 2>/dev/null
"$T/bench_dicom" "$REPS" "$T/native.dcm" "$T/rle.dcm" "$T/jpegll.dcm" "$T/jpegls.dcm" > "$T/ours.tsv"
OMP_NUM_THREADS=1 "$PY" - "$SRC/tests/ref" "$T" "$REPS" "$T/ours.tsv" <<'PYEOF'
import sys, time
sys.path.insert(0, sys.argv[1])
import pydicom
import dicom_reference as ref
tmp, reps = sys.argv[2], int(sys.argv[3])
ours = dict(l.strip().split("\t") for l in open(sys.argv[4]))
ds = pydicom.dcmread(tmp + "/native.dcm")
print("film: %dx%d, BitsAllocated %d, BitsStored %d, %s" % (ds.Columns, ds.Rows, ds.BitsAllocated,
      ds.BitsStored, ds.PhotometricInterpretation))
for name in ("native", "rle", "jpegll", "jpegls"):
    path = "%s/%s.dcm" % (tmp, name)
    ts = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    o = float(ours[path])
    best = None
    try:
        for r in range(reps + 1):
            t0 = time.process_time()
            ref.display(ref.read(path))
            t = (time.process_time() - t0) * 1e3
            if r > 0 and (best is None or t < best):
                best = t
    except Exception as e:
        print("%-7s %-24s ps_dicom_read %7.1f ms   pydicom: cannot decode (%s)" % (name, ts.name, o,
              str(e).split("\n")[0][:60]))
        continue
    print("%-7s %-24s ps_dicom_read %7.1f ms   pydicom %7.1f ms   speed-up x%.1f" % (name, ts.name, o, best, best / o))
PYEOF
