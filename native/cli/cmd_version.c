#include <stdio.h>

#include "cli.h"

const char ps_cli_version_help[] = "print the version and the optional parts built in";

int ps_cli_version(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("pneumoscope %s\nfeatures: %s\nthreads: %d\n", ps_version(), ps_build_features(), ps_default_threads());
  return 0;
}
