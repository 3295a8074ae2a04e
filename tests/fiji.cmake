# Fiji/ImageJ tests: the JNI bindings from Java (malformed films, corrupt models, threads) and
# real ImageJ running macros that call every PneumoScope menu command, compared with the CLI.
# Both need Java (PS_WITH_JAVA); the ImageJ test also needs xvfb-run (Debian's ImageJ batch
# mode needs a display). Missing parts are reported as SKIP, never a silent pass.
if(NOT PS_WITH_JAVA)
  foreach(_t fiji_bindings fiji_imagej_open fiji_imagej_model fiji_imagej_train fiji_imagej_zip)
    add_test(NAME ${_t} COMMAND ${CMAKE_COMMAND} -E echo "SKIP ${_t}: built without java")
    set_tests_properties(${_t} PROPERTIES SKIP_REGULAR_EXPRESSION "SKIP ${_t}")
  endforeach()
  return()
endif()

include(UseJava)
add_jar(ps_fiji_tests_jar
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fiji/BindingsTest.java
  INCLUDE_JARS pneumoscope_plugin_jar ${PS_IJ_JAR}
  OUTPUT_NAME ps_fiji_tests)
add_dependencies(ps_fiji_tests_jar pneumoscope_jni pneumoscope_cli)
get_target_property(_ps_tests_jar ps_fiji_tests_jar JAR_FILE)
# ctest runs what is built: make the test jar part of `all`.
set_target_properties(ps_fiji_tests_jar PROPERTIES EXCLUDE_FROM_ALL FALSE)

find_program(PS_XVFB_RUN xvfb-run)
set(_ps_fiji_env
  "PS_IJ_JAR=${PS_IJ_JAR}"
  "PS_PLUGIN_JAR=${PS_PLUGIN_JAR}"
  "PS_TESTS_JAR=${_ps_tests_jar}"
  "PS_LIB_DIR=${CMAKE_BINARY_DIR}"
  "PS_BINARY_DIR=${CMAKE_BINARY_DIR}"
  "PS_CLI=$<TARGET_FILE:pneumoscope_cli>"
  "PS_SHARED_DATA=${PS_SHARED_DATA}"
  "PS_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
  "PS_PYTHON=${PS_PYTHON}"
  "PS_JAVA=${Java_JAVA_EXECUTABLE}"
  "PS_XVFB_RUN=${PS_XVFB_RUN}"
  "PS_HAVE_TORCH=${PS_WITH_TORCH}"
  "PS_FIJI_APP=${PS_FIJI_APP}"
  "OMP_NUM_THREADS=2")

add_test(NAME fiji_bindings COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fiji/run_bindings.sh
  WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
# open: Open DICOM vs pneumoscope info/convert; model: Classify, Grad-CAM, Batch, About vs
# pneumoscope classify/gradcam; train: Train Model.../Evaluate Model... vs pneumoscope evaluate.
# zip: the release archive (fiji-zip) unzipped is self-contained and runs without libtorch; Train
# Model's libtorch field: a folder without libtorch gives the message, Debian's libtorch trains.
foreach(_part open model train zip)
  add_test(NAME fiji_imagej_${_part} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fiji/run_imagej.sh ${_part}
    WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
endforeach()
set_tests_properties(fiji_bindings fiji_imagej_open fiji_imagej_model fiji_imagej_train fiji_imagej_zip PROPERTIES
  ENVIRONMENT "${_ps_fiji_env}" SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS fiji)
# one Xvfb + ImageJ at a time keeps the 2-core CI machine from timing out
set_tests_properties(fiji_imagej_open fiji_imagej_model fiji_imagej_train fiji_imagej_zip PROPERTIES
  RESOURCE_LOCK xvfb_imagej)
