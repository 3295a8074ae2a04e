# native/torch/loader.c: libtorch is loaded only when needed (fresh process, /proc/self/maps and
# libtorch's own at::get_num_threads), a backend that cannot be loaded fails cleanly, and
# ps_torch_set_backend / PNEUMOSCOPE_TORCH_BACKEND take libtorch folders (torch_loader_folder).
ps_add_test(torch_loader SOURCES test_torch_loader.c NEEDS torch TIMEOUT 120 LABELS model)
if(TARGET test_torch_loader)
  target_link_libraries(test_torch_loader PRIVATE ${CMAKE_DL_LIBS} Threads::Threads)
  add_test(NAME torch_loader_missing COMMAND test_torch_loader missing WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(torch_loader_missing PROPERTIES TIMEOUT 120 LABELS model
    ENVIRONMENT "PNEUMOSCOPE_TORCH_BACKEND=/nonexistent.so;OMP_NUM_THREADS=2")
  add_test(NAME torch_loader_folder COMMAND test_torch_loader folder WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(torch_loader_folder PROPERTIES TIMEOUT 300 LABELS model SKIP_RETURN_CODE 77
    ENVIRONMENT "OMP_NUM_THREADS=2")
endif()
