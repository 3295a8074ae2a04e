# native/torch, native/model, native/infer + classify CLI: against torch / torchvision (PS_PYTHON).
ps_add_test(torch SOURCES test_torch.c NEEDS torch python TIMEOUT 300 LABELS model)
ps_add_test(model SOURCES test_model.c NEEDS torch python TIMEOUT 300 LABELS model)
if(PS_DNNL_LIBRARY AND PS_DNNL_INCLUDE AND TARGET test_model)
  target_compile_definitions(test_model PRIVATE PS_TEST_DNNL) # the default kernels must be oneDNN's
endif()
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_classify.c)
  ps_add_test(classify SOURCES test_classify.c NEEDS torch python TIMEOUT 300 LABELS model)
endif()
ps_add_test(ood SOURCES test_ood.c NEEDS torch python TIMEOUT 1200 LABELS model)
