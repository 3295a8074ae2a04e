/* cli.h — helpers shared by the pneumoscope subcommands (argument handling and output only;
 * the work itself is always one library call, the same one the JNI layer makes). */
#ifndef PS_CLI_H
#define PS_CLI_H

#include <stdio.h>

#include "ps_common.h"

/* Print "pneumoscope <cmd>: <what>: <ps_last_error or strerror>" on stderr; returns 1. */
int ps_cli_fail(const char *cmd, const char *what, int status);
/* Write s as a JSON string literal (with quotes, escaped). NULL prints null. */
void ps_cli_json_string(FILE *f, const char *s);
/* Write s as one CSV field (quoted when needed). */
void ps_cli_csv_field(FILE *f, const char *s);
/* True when arg equals name, or is "name=value" (then *value points at value). */
int ps_cli_opt(const char *arg, const char *name, const char **value);
/* The value of option argv[*i] ("--name value" or "--name=value"): when *v is still NULL (no
 * "="), take the next argument and advance *i. Returns 0, or prints
 * "pneumoscope <cmd>: <option> needs a value" and returns 2 (the usage exit status). */
int ps_cli_take_value(const char *cmd, int argc, char **argv, int *i, const char **v);
/* In an option loop over `i` with `v` from ps_cli_opt: fetch the value or return 2. */
#define PS_CLI_NEXT(cmd)                                          \
  do {                                                            \
    int rc_ = ps_cli_take_value((cmd), argc, argv, &i, &v);       \
    if (rc_) return rc_;                                          \
  } while (0)
/* Parse an int / double option value; prints an error and returns non-zero when invalid. */
int ps_cli_int(const char *cmd, const char *name, const char *v, int *out);
int ps_cli_double(const char *cmd, const char *name, const char *v, double *out);

#ifdef PS_HAVE_GRADCAM
#include "ps_model.h"
/* Load the model for a subcommand: path NULL -> the bundled default model; threads > 0 sets
 * libtorch's threads; device "cpu", "cuda", else automatic. The path used is copied into
 * used[cap]. On failure prints the one-line error (ps_cli_fail) and returns 1. */
int ps_cli_load_model(const char *cmd, const char *path, const char *device, int threads, char *used, size_t cap,
                      ps_model **out);
#endif

#endif
