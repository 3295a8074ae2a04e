#!/usr/bin/env bash
# ctest fiji_bindings: BindingsTest against the JNI library in the build folder (see fiji.cmake).
set -euo pipefail
model_args=()
if [ "${PS_HAVE_TORCH:-OFF}" = ON ] && [ -n "${PS_TEST_MODEL:-}" ]; then model_args=("$PS_TEST_MODEL"); fi
exec "$PS_JAVA" -Xcheck:jni -Dpneumoscope.lib.dir="$PS_LIB_DIR" \
  -cp "$PS_PLUGIN_JAR:$PS_IJ_JAR:$PS_TESTS_JAR" BindingsTest "$PS_SHARED_DATA" "${model_args[@]}"
