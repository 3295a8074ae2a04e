#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int ps_cli_fail(const char *cmd, const char *what, int status) {
  const char *detail = ps_last_error();
  fprintf(stderr, "pneumoscope %s: %s: %s\n", cmd, what, (detail && *detail) ? detail : ps_strerror(status));
  return 1;
}

void ps_cli_json_string(FILE *f, const char *s) {
  if (!s) {
    fputs("null", f);
    return;
  }
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"': fputs("\\\"", f); break;
      case '\\': fputs("\\\\", f); break;
      case '\n': fputs("\\n", f); break;
      case '\r': fputs("\\r", f); break;
      case '\t': fputs("\\t", f); break;
      default:
        if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
  }
  fputc('"', f);
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

int ps_cli_opt(const char *arg, const char *name, const char **value) {
  size_t n = strlen(name);
  if (strncmp(arg, name, n) != 0) return 0;
  if (arg[n] == '\0') {
    if (value) *value = NULL;
    return 1;
  }
  if (arg[n] == '=') {
    if (value) *value = arg + n + 1;
    return 1;
  }
  return 0;
}

int ps_cli_int(const char *cmd, const char *name, const char *v, int *out) {
  char *end = NULL;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || errno || x < -2147483647L || x > 2147483647L) {
    fprintf(stderr, "pneumoscope %s: %s needs an integer, got '%s'\n", cmd, name, v ? v : "");
    return 1;
  }
  *out = (int)x;
  return 0;
}

int ps_cli_double(const char *cmd, const char *name, const char *v, double *out) {
  char *end = NULL;
  errno = 0;
  double x = v ? strtod(v, &end) : 0;
  if (!v || !*v || *end || errno) {
    fprintf(stderr, "pneumoscope %s: %s needs a number, got '%s'\n", cmd, name, v ? v : "");
    return 1;
  }
  *out = x;
  return 0;
}

int ps_cli_take_value(const char *cmd, int argc, char **argv, int *i, const char **v) {
  if (*v) return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "pneumoscope %s: %s needs a value\n", cmd, argv[*i]);
    return 2;
  }
  *v = argv[++*i];
  return 0;
}

#ifdef PS_HAVE_GRADCAM
int ps_cli_load_model(const char *cmd, const char *path, const char *device, int threads, char *used, size_t cap,
                      ps_model **out) {
  int st;
  if (strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "auto")) {
    fprintf(stderr, "pneumoscope %s: --device must be cpu, cuda or auto, got '%s'\n", cmd, device);
    return 2;
  }
  if ((st = ps_model_resolve(path, used, cap))) return ps_cli_fail(cmd, path ? path : "default model", st);
  if (threads && (st = ps_torch_set_threads(threads))) return ps_cli_fail(cmd, "--threads", st);
  ps_device dev = !strcmp(device, "cpu") ? PS_DEVICE_CPU : !strcmp(device, "cuda") ? PS_DEVICE_CUDA : PS_DEVICE_AUTO;
  if ((st = ps_model_load(used, dev, out))) return ps_cli_fail(cmd, used, st);
  return 0;
}
#endif
