/* pneumoscope convert FILE OUT.png [--size N] — the display-ready film as an 8-bit PNG. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ps_image_io.h"
#include "ps_preprocess.h"

const char ps_cli_convert_help[] = "write a film (PNG, JPEG, DICOM) as a display-ready 8-bit PNG";

/* One line on stderr: the library's message names the file; add the name when it does not. */
static int fail_film(const char *file, int status) {
  const char *d = ps_last_error();
  if (d && *d && strstr(d, file)) {
    fprintf(stderr, "pneumoscope convert: %s\n", d);
    return 1;
  }
  return ps_cli_fail("convert", file, status);
}

static void usage(FILE *f) {
  fputs("usage: pneumoscope convert FILE OUT.png [--size N]\n"
        "  Reads FILE (PNG, JPEG or DICOM, by content) and writes the display-ready gray film as\n"
        "  an 8-bit PNG (round(v * 255)); --size N resizes to N x N first (antialiased bilinear,\n"
        "  as Pillow's resize). OUT is written atomically; it is never the input, and an existing\n"
        "  file is only replaced when PneumoScope wrote it.\n",
        f);
}

int ps_cli_convert(int argc, char **argv) {
  const char *in = NULL, *out = NULL;
  int size = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
    if (ps_cli_opt(argv[i], "--size", &v)) {
      if (!v) {
        if (i + 1 >= argc) {
          fprintf(stderr, "pneumoscope convert: --size needs a value\n");
          return 2;
        }
        v = argv[++i];
      }
      if (ps_cli_int("convert", "--size", v, &size)) return 2;
      if (size < 1 || size > 65535) {
        fprintf(stderr, "pneumoscope convert: --size must be between 1 and 65535, got %d\n", size);
        return 2;
      }
      continue;
    }
    if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "pneumoscope convert: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
    if (!in) in = argv[i];
    else if (!out) out = argv[i];
    else {
      fprintf(stderr, "pneumoscope convert: too many arguments ('%s')\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (!in || !out) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(in, out) || ps_image_same_file(in, out)) {
    fprintf(stderr, "pneumoscope convert: refusing to overwrite the input film %s\n", in);
    return 1;
  }
  ps_image *img = NULL, *small = NULL;
  int st = ps_image_read(in, NULL, &img);
  if (st != PS_OK) return fail_film(in, st);
  if (size > 0) {
    st = ps_image_resize(img, size, size, &small);
    if (st != PS_OK) {
      ps_image_free(img);
      return fail_film(in, st);
    }
  }
  st = ps_image_write_png(small ? small : img, out);
  ps_image_free(img);
  ps_image_free(small);
  if (st != PS_OK) return fail_film(out, st);
  return 0;
}
