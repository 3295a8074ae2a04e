#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#ifdef PS_HAVE_INFER
#include "ps_infer.h"
#endif
#ifdef PS_HAVE_TRAIN
#include "ps_train.h"
#endif

int ps_cli_fail(const char *cmd, const char *what, int status) {
  const char *detail = ps_last_error();
  fprintf(stderr, "pneumoscope %s: %s: %s\n", cmd, what, (detail && *detail) ? detail : ps_strerror(status));
  return 1;
}

int ps_cli_fail_film(const char *cmd, const char *file, int status) {
  const char *detail = ps_last_error();
  if (!detail || !*detail || !strstr(detail, file)) return ps_cli_fail(cmd, file, status);
  fprintf(stderr, "pneumoscope %s: %s\n", cmd, detail);
  return 1;
}

void ps_cli_csv_field(FILE *f, const char *s) {
  if (!s) return;
  if (strpbrk(s, ",\"\n\r") == NULL) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (const char *p = s; *p; p++) {
    if (*p == '"') fputc('"', f);
    fputc(*p, f);
  }
  fputc('"', f);
}

/* ---- options ------------------------------------------------------------------------------ */

#ifdef PS_HAVE_MODEL
const ps_cli_choice ps_cli_devices[] = {
    {"cpu", PS_DEVICE_CPU}, {"cuda", PS_DEVICE_CUDA}, {"auto", PS_DEVICE_AUTO}, {NULL, 0}};
#endif
#ifdef PS_HAVE_TRAIN
const ps_cli_choice ps_cli_train_devices[] = {
    {"cpu", PS_TRAIN_DEVICE_CPU}, {"cuda", PS_TRAIN_DEVICE_CUDA}, {"auto", PS_TRAIN_DEVICE_AUTO}, {NULL, 0}};
#endif

enum { MAX_OPTIONS = 40 };

/* x within a range as ps_cli_option.range writes it. */
static int in_range(const char *range, double x) {
  double lo, hi;
  char open, close;
  if (!range) return 1;
  if (sscanf(range, ">= %lf", &lo) == 1) return x >= lo;
  if (sscanf(range, "> %lf", &lo) == 1) return x > lo;
  if (sscanf(range, "in %c%lf, %lf%c", &open, &lo, &hi, &close) == 4)
    return (open == '[' ? x >= lo : x > lo) && (close == ']' ? x <= hi : x < hi);
  return 0; /* a range this cannot read refuses every value, so the table gets fixed */
}

/* Store option o's value v (NULL for a flag). Returns 0, or prints why not and returns 2. */
static int store(const char *cmd, const ps_cli_option *o, const char *v) {
  switch (o->kind) {
    case PS_OPT_FLAG: *(int *)o->to = 1; return 0;
    case PS_OPT_SET: *(int *)o->to = o->value; return 0;
    case PS_OPT_STRING:
    case PS_OPT_OPTIONAL: *(const char **)o->to = v ? v : ""; return 0;
    case PS_OPT_CHOICE:
      for (const ps_cli_choice *c = o->choices; c->name; c++)
        if (!strcmp(v, c->name)) return *(int *)o->to = c->value, 0;
      fprintf(stderr, "pneumoscope %s: --%s is ", cmd, o->name);
      for (const ps_cli_choice *c = o->choices; c->name; c++)
        fprintf(stderr, "%s%s", c == o->choices ? "" : c[1].name ? ", " : " or ", c->name);
      fprintf(stderr, ", got '%s'\n", v);
      return 2;
    case PS_OPT_INT:
    case PS_OPT_DOUBLE: break;
  }
  int is_int = o->kind == PS_OPT_INT;
  char *end = NULL;
  errno = 0;
  double x = is_int ? (double)strtol(v, &end, 10) : strtod(v, &end);
  if (!*v || *end || errno || (is_int && (x < -2147483647.0 || x > 2147483647.0))) {
    fprintf(stderr, "pneumoscope %s: --%s needs %s, got '%s'\n", cmd, o->name, is_int ? "an integer" : "a number", v);
    return 2;
  }
  if (!in_range(o->range, x)) {
    fprintf(stderr, "pneumoscope %s: --%s must be %s, got '%s'\n", cmd, o->name, o->range, v);
    return 2;
  }
  if (is_int) *(int *)o->to = (int)x;
  else *(double *)o->to = x;
  return 0;
}

/* The command line's "--name" or "--name=...", not an abbreviation getopt_long would accept. */
static int exact(const char *arg, const char *name) {
  size_t n = strlen(name);
  return !strncmp(arg + 2, name, n) && (arg[2 + n] == '\0' || arg[2 + n] == '=');
}

static int positional(const char *cmd, const char *usage, const char *arg, const char **pos, int room, int *count) {
  if (*count == room) {
    fprintf(stderr, "pneumoscope %s: unexpected argument '%s'\n", cmd, arg);
    fputs(usage, stderr);
    return 2;
  }
  pos[(*count)++] = arg;
  return 0;
}

int ps_cli_parse(const char *cmd, const char *usage, const ps_cli_option *options, int argc, char **argv,
                 const char **pos, int *npos) {
  struct option longs[MAX_OPTIONS + 2];
  char shorts[2 * MAX_OPTIONS + 8] = "-:h"; /* '-': positionals in order; ':': a missing value is told apart */
  int n = 0, len = 3, room = npos ? *npos : 0, count = 0, rc;
  for (; options && options[n].name; n++) {
    const ps_cli_option *o = &options[n];
    if (n == MAX_OPTIONS) return fprintf(stderr, "pneumoscope %s: too many options\n", cmd), 2;
    int has = o->kind == PS_OPT_FLAG || o->kind == PS_OPT_SET ? no_argument
              : o->kind == PS_OPT_OPTIONAL                    ? optional_argument
                                                              : required_argument;
    longs[n] = (struct option){o->name, has, NULL, 0};
    if (o->short_name) {
      shorts[len++] = o->short_name;
      if (has == required_argument) shorts[len++] = ':';
    }
  }
  longs[n] = (struct option){"help", no_argument, NULL, 'h'};
  longs[n + 1] = (struct option){NULL, 0, NULL, 0};
  shorts[len] = '\0';
  optind = 0; /* glibc: start afresh */
  opterr = 0;
  for (;;) {
    int at = optind ? optind : 1, li = -1;
    int c = getopt_long(argc, argv, shorts, longs, &li);
    if (c == -1) break;
    const char *arg = argv[at];
    if (c == 1) {
      if ((rc = positional(cmd, usage, optarg, pos, room, &count))) return rc;
    } else if (c == ':') {
      if (arg[1] == '-') fprintf(stderr, "pneumoscope %s: %s needs a value\n", cmd, arg);
      else fprintf(stderr, "pneumoscope %s: -%c needs a value\n", cmd, optopt);
      return 2;
    } else if (c == '?' || (li >= 0 && !exact(arg, longs[li].name))) {
      if (arg[1] == '-') fprintf(stderr, "pneumoscope %s: unknown option '%s'\n", cmd, arg);
      else fprintf(stderr, "pneumoscope %s: unknown option '-%c'\n", cmd, optopt);
      fputs(usage, stderr);
      return 2;
    } else if (c == 'h') {
      fputs(usage, stdout);
      return 0;
    } else {
      const ps_cli_option *o = options;
      if (li >= 0) o += li;
      else
        while (o->short_name != c) o++;
      const char *v = optarg;
      if (o->kind == PS_OPT_OPTIONAL && !v && count == room && optind < argc && argv[optind][0] != '-')
        v = argv[optind++];
      if ((rc = store(cmd, o, v))) return rc;
    }
  }
  for (; optind < argc; optind++) /* after "--" */
    if ((rc = positional(cmd, usage, argv[optind], pos, room, &count))) return rc;
  if (npos) *npos = count;
  return -1;
}

int ps_cli_without_torch(const char *cmd, const char *usage, int argc, char **argv) {
  for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return fputs(usage, stdout), 0;
  fprintf(stderr, "pneumoscope %s: built without libtorch\n", cmd);
  return 1;
}

int ps_cli_cam_opts(const char *cmd, const char *layer, const char *method, ps_gradcam_opts *o) {
  if (layer) {
    const char *d = !strncmp(layer, "layer", 5) ? layer + 5 : layer;
    if (strlen(d) != 1 || d[0] < '1' || d[0] > '4')
      return fprintf(stderr, "pneumoscope %s: --layer is layer1..layer4, got '%s'\n", cmd, layer), 2;
    o->layer = d[0] - '0';
  }
  if (method && ps_cam_method_parse(method, &o->method) != PS_OK)
    return fprintf(stderr, "pneumoscope %s: --method is cam, gradcam or gradcam++, got '%s'\n", cmd, method), 2;
  if (o->method == PS_CAM_CAM && o->layer != 4)
    return fprintf(stderr, "pneumoscope %s: --method cam works at layer4 only (use gradcam for layer%d)\n", cmd,
                   o->layer),
           2;
  return 0;
}

/* ---- JSON --------------------------------------------------------------------------------- */

json_t *ps_cli_json_string(const char *s) {
  if (!s) return json_null();
  json_t *j = json_string(s);
  if (j) return j;
  /* not UTF-8 (a Latin-1 file name or DICOM field): every byte as the code point it is in Latin-1 */
  size_t n = strlen(s), k = 0;
  char *u = malloc(2 * n + 1);
  if (!u) return NULL;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p < 0x80) u[k++] = (char)*p;
    else u[k++] = (char)(0xC0 | *p >> 6), u[k++] = (char)(0x80 | (*p & 0x3F));
  }
  j = json_stringn(u, k);
  free(u);
  return j;
}

json_t *ps_cli_json_number(double v, const char *fmt) {
  char buf[512]; /* room for "%.6f" of any double */
  if (!isfinite(v)) return json_null();
  snprintf(buf, sizeof buf, fmt, v);
  return json_real(strtod(buf, NULL));
}

int ps_cli_json_print(json_t *j, FILE *f, size_t flags, int newline) {
  if (!(flags & JSON_REAL_PRECISION(31))) flags |= JSON_REAL_PRECISION(15);
  int rc = j ? json_dumpf(j, f, flags) : -1;
  json_decref(j);
  if (newline && fputc('\n', f) == EOF) rc = -1;
  return rc;
}

#ifdef PS_HAVE_MODEL
int ps_cli_load_model(const char *cmd, const char *path, ps_device device, int threads, char *used, size_t cap,
                      ps_model **out) {
  int st;
  if ((st = ps_model_resolve(path, used, cap))) return ps_cli_fail(cmd, path ? path : "default model", st);
  if (threads && (st = ps_torch_set_threads(threads))) return ps_cli_fail(cmd, "--threads", st);
  if ((st = ps_model_load(used, device, out))) return ps_cli_fail(cmd, used, st);
  return 0;
}
#endif

#ifdef PS_HAVE_INFER
int ps_cli_shard(const char *cmd, const char *s, int *k, int *n) {
  char tail = 0;
  if (!strcmp(s, "auto")) {
    int st = ps_infer_shard_from_env(k, n);
    return st ? ps_cli_fail(cmd, "--shard auto", st) : 0;
  }
  if (sscanf(s, "%d/%d%c", k, n, &tail) == 2 && *n >= 1 && *k >= 1 && *k <= *n) return --*k, 0;
  fprintf(stderr, "pneumoscope %s: --shard is K/N with 1 <= K <= N, or auto; got '%s'\n", cmd, s);
  return 2;
}
#endif
