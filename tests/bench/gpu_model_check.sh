#!/bin/sh
# Builds native/torch + native/model + native/core alone against the libtorch of a CUDA machine
# (python torch's TorchConfig, or $Torch_DIR) and runs tests/bench/gpu_model_check.c. Not ctest.
#   tests/bench/gpu_model_check.sh
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$(mktemp -d)}
PY=${PS_PYTHON:-python3}
TORCH=$("$PY" -c 'import torch, os; print(os.path.dirname(torch.__file__))')
echo "torch at $TORCH: $("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())')"
ABI=$("$PY" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
INC="-I$TORCH/include -I$TORCH/include/torch/csrc/api/include -I$SRC/native/core -I$SRC/native/torch -I$SRC/native/model"
B="$OUT/gpu_build"; mkdir -p "$B"
g++ -std=c++17 -O2 -fPIC -D_GLIBCXX_USE_CXX11_ABI=$ABI $INC -c "$SRC/native/torch/torch.cpp" -o "$B/torch.o" &
for f in native/model/resnet.c native/model/safetensors.c native/core/common.c native/core/image.c; do
  gcc -std=c11 -O2 -fPIC $INC -c "$SRC/$f" -o "$B/$(basename "$f" .c).o" &
done
gcc -std=c11 -O2 $INC -c "$SRC/tests/bench/gpu_model_check.c" -o "$B/check.o" &
wait
g++ -o "$B/gpu_model_check" "$B"/*.o -L"$TORCH/lib" -Wl,-rpath,"$TORCH/lib" -Wl,--no-as-needed -ltorch_cuda -ltorch_cpu -ltorch -lc10_cuda -lc10 -Wl,--as-needed -lpthread -lm
"$B/gpu_model_check"
