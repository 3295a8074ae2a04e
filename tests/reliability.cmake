# Reliability: malformed films/models/CSVs (catalogue made from the real films by
# tests/malformed/make_catalogue.py + fuzzing regressions in tests/malformed/regress/),
# threads sharing one model, SIGKILLed training, no writes outside the named folder.
# The libFuzzer runs (tests/fuzz/run.sh) and the sanitizer build (.ci/sanitize) are not ctest.
ps_add_test(malformed SOURCES test_malformed.c NEEDS dicom python TIMEOUT 180 LABELS reliability)
ps_add_test(malformed_models SOURCES test_malformed_models.c NEEDS torch TIMEOUT 240 LABELS reliability)
ps_add_test(concurrency SOURCES test_concurrency.c NEEDS torch TIMEOUT 240 LABELS reliability)
if(PS_WITH_TORCH)
  add_test(NAME killsafe COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_killsafe.sh $<TARGET_FILE:pneumoscope_cli>
           ${PS_SHARED_DATA} ${CMAKE_CURRENT_BINARY_DIR}/killsafe)
  set_tests_properties(killsafe PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS reliability
                       ENVIRONMENT "OMP_NUM_THREADS=2")
else()
  add_test(NAME killsafe COMMAND ${CMAKE_COMMAND} -E echo "SKIP killsafe: built without torch")
  set_tests_properties(killsafe PROPERTIES SKIP_REGULAR_EXPRESSION "SKIP killsafe")
endif()
