#!/usr/bin/env bash
# ctest fiji_bindings: BindingsTest against the JNI library in the build folder (see fiji.cmake).
set -euo pipefail
# With libtorch: a seeded torchvision ResNet18 written as .safetensors by make_test_model.py
# (python reference env); without: BindingsTest checks that Model says "built without".
model_args=()
if [ "${PS_HAVE_TORCH:-OFF}" = ON ]; then
  tmp=$(mktemp -d)
  "$PS_PYTHON" "$(dirname "$0")/make_test_model.py" "$tmp/test-binary.safetensors" 2 7
  model_args=("$tmp/test-binary.safetensors")
fi
# No library where it is looked for: a clear PneumoScopeException, not an UnsatisfiedLinkError
empty=$(mktemp -d); trap 'rm -rf "$empty" "${tmp:-}"' EXIT
"$PS_JAVA" -Dpneumoscope.lib.dir="$empty" -cp "$PS_PLUGIN_JAR:$PS_IJ_JAR:$PS_TESTS_JAR" \
  BindingsTest --no-library "$PS_SHARED_DATA/png/nih_00000001_000.png"
# Java heap exhausted inside a native call: a catchable OutOfMemoryError, the JVM goes on
"$PS_JAVA" -Xmx32m -Xcheck:jni -Dpneumoscope.lib.dir="$PS_LIB_DIR" \
  -cp "$PS_PLUGIN_JAR:$PS_IJ_JAR:$PS_TESTS_JAR" BindingsTest --oom "$PS_SHARED_DATA"
"$PS_JAVA" -Xcheck:jni -Dpneumoscope.lib.dir="$PS_LIB_DIR" \
  -cp "$PS_PLUGIN_JAR:$PS_IJ_JAR:$PS_TESTS_JAR" BindingsTest "$PS_SHARED_DATA" "${model_args[@]}"
