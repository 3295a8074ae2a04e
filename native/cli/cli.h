/* cli.h — helpers shared by the pneumoscope subcommands (argument handling and output only;
 * the work itself is always one library call, the same one the JNI layer makes).
 *
 *   const ps_cli_option options[] = {
 *       {"model", 0, PS_OPT_STRING, &model},
 *       {"out", 'o', PS_OPT_STRING, &out},
 *       {"threads", 0, PS_OPT_INT, &threads, .range = ">= 0"},
 *       {"device", 0, PS_OPT_CHOICE, &device, .choices = ps_cli_devices},
 *       {0}};
 *   const char *films[1];
 *   int nfilms = 1, rc = ps_cli_parse("gradcam", usage_text, options, argc, argv, films, &nfilms);
 *   if (rc >= 0) return rc;  (--help printed: 0; a usage error printed: 2)
 */
#ifndef PS_CLI_H
#define PS_CLI_H

#include <jansson.h>
#include <stdio.h>

#include "ps_common.h"
#include "ps_gradcam.h"
#ifdef PS_HAVE_MODEL
#include "ps_model.h"
#endif

/* --shard K/N or auto (SLURM array / RANK, WORLD_SIZE) -> 0-based *k and *n; 0, or the exit
 * status after saying why (2: bad usage, 1: auto without the environment). */
int ps_cli_shard(const char *cmd, const char *shard, int *k, int *n);
/* Print "pneumoscope <cmd>: <what>: <ps_last_error or strerror>" on stderr; returns 1. */
int ps_cli_fail(const char *cmd, const char *what, int status);
/* The same for a film, without repeating its name when the library's message holds it. */
int ps_cli_fail_film(const char *cmd, const char *file, int status);
/* Write s as one CSV field (quoted when needed). */
void ps_cli_csv_field(FILE *f, const char *s);

/* ---- options: one table per subcommand, parsed by getopt_long ---------------------------- */

typedef enum {
  PS_OPT_FLAG,     /* no value: *(int *)to = 1 */
  PS_OPT_SET,      /* no value: *(int *)to = value */
  PS_OPT_STRING,   /* *(const char **)to = the value */
  PS_OPT_OPTIONAL, /* --name or --name=V: *(const char **)to = V, or "" without one; the next
                      argument is V when every positional is already given and it is no option */
  PS_OPT_INT,      /* *(int *)to, within range */
  PS_OPT_DOUBLE,   /* *(double *)to, within range */
  PS_OPT_CHOICE    /* *(int *)to = the value of the choice named */
} ps_opt_kind;

typedef struct ps_cli_choice {
  const char *name; /* NULL ends the list */
  int value;
} ps_cli_choice;

typedef struct ps_cli_option {
  const char *name;             /* long name, without "--"; NULL ends the table */
  char short_name;              /* 'o' for -o, or 0 */
  ps_opt_kind kind;
  void *to;                     /* where the value goes, as the kind says */
  const char *range;            /* INT, DOUBLE: ">= 1", "> 0", "in [1, 65535]", "in (0, 1]"; NULL: any */
  const ps_cli_choice *choices; /* CHOICE */
  int value;                    /* SET */
} ps_cli_option;

/* cpu, cuda, auto as ps_device (classify, gradcam, audit) and as ps_train_device (train, evaluate). */
extern const ps_cli_choice ps_cli_devices[], ps_cli_train_devices[];

/* Parse argv[1..argc) with getopt_long against options (NULL: none), in order, stopping at the
 * first error; -h and --help are added and print usage on stdout. "--name value", "--name=value",
 * "-o value", "-ovalue"; long names are matched exactly (no abbreviations). Options and
 * positionals may come in any order; after "--" everything is positional. The positionals go to
 * pos[0..*npos) (*npos: the room in pos on entry, how many there were on return; npos NULL: none
 * allowed). Returns -1 to go on, 0 after --help, or 2 after a one-line usage error on stderr
 * "pneumoscope <cmd>: ..." (an unknown option or one positional too many: then the usage text). */
int ps_cli_parse(const char *cmd, const char *usage, const ps_cli_option *options, int argc, char **argv,
                 const char **pos, int *npos);

/* A subcommand of a build without libtorch: --help prints usage (0), anything else says so (1). */
int ps_cli_without_torch(const char *cmd, const char *usage, int argc, char **argv);

/* Grad-CAM's --layer (layer1..layer4 or 1..4) and --method (ps_cam_method_parse) into o; NULL
 * keeps o's. CAM works at layer4 only. Returns 0, or prints why and returns 2 (bad usage). */
int ps_cli_cam_opts(const char *cmd, const char *layer, const char *method, ps_gradcam_opts *o);

/* ---- JSON output (jansson) ------------------------------------------------------------- */

/* s as a JSON string (NULL: null; bytes that are not UTF-8 are read as Latin-1). */
json_t *ps_cli_json_string(const char *s);
/* v rounded as printf's fmt prints it ("%.4f", "%.9g"), or null when v is not finite. */
json_t *ps_cli_json_number(double v, const char *fmt);
/* Write j on f and free it; newline adds "\n". flags: 0 (one line, ", " and ": ") or JSON_COMPACT;
 * reals get 15 significant digits unless flags has a JSON_REAL_PRECISION (a value rounded by
 * ps_cli_json_number then prints as fmt did). Returns 0, or -1 when j is NULL or writing failed. */
int ps_cli_json_print(json_t *j, FILE *f, size_t flags, int newline);

#ifdef PS_HAVE_MODEL
/* Load the model for a subcommand: path NULL -> the bundled default model; threads > 0 sets
 * libtorch's threads. The path used is copied into used[cap]. On failure prints the one-line
 * error (ps_cli_fail) and returns 1. */
int ps_cli_load_model(const char *cmd, const char *path, ps_device device, int threads, char *used, size_t cap,
                      ps_model **out);
#endif

#endif
