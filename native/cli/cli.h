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
/* Parse an int / double option value; prints an error and returns non-zero when invalid. */
int ps_cli_int(const char *cmd, const char *name, const char *v, int *out);
int ps_cli_double(const char *cmd, const char *name, const char *v, double *out);

#endif
