#include <stdio.h>

#include "cli.h"
#ifdef PS_HAVE_MODEL
#include "ps_model.h"
#endif

const char ps_cli_version_help[] = "print the version and the optional parts built in";

int ps_cli_version(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("pneumoscope %s\nfeatures: %s\nthreads: %d\n", ps_version(), ps_build_features(), ps_default_threads());
#ifdef PS_HAVE_MODEL
  printf("cpu classification: %s\n", ps_model_cpu_engine());
#endif
  return 0;
}
