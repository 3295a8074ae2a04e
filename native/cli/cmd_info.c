/* pneumoscope info FILE... — one JSON object per film per line (what ps_image_read reports). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ps_image_io.h"

const char ps_cli_info_help[] = "print each film's format, size and header fields as one JSON line";

/* One line on stderr: the library's message names the file; add the name when it does not. */
static int fail_film(const char *file, int status) {
  const char *d = ps_last_error();
  if (d && *d && strstr(d, file)) {
    fprintf(stderr, "pneumoscope info: %s\n", d);
    return 1;
  }
  return ps_cli_fail("info", file, status);
}

static void usage(FILE *f) {
  fputs("usage: pneumoscope info FILE...\n"
        "  Reads each film (PNG, JPEG or DICOM, recognised by content) and prints one JSON object\n"
        "  per line: file, format, width, height, rows, columns, components, bits_stored,\n"
        "  photometric, DICOM header fields (\"\" when absent) and the window applied.\n"
        "  A film that cannot be read gets one line on stderr; the others are still reported.\n"
        "  Exit status: 0 when every film was read, 1 when any failed, 2 on bad usage.\n",
        f);
}

static void json_num(FILE *f, double v) {
  if (isfinite(v)) fprintf(f, "%.17g", v);
  else fputs("null", f);
}

static void print_film(const char *path, const ps_image *img) {
  const ps_film_meta *m = &img->meta;
  FILE *o = stdout;
  fputs("{\"file\":", o);
  ps_cli_json_string(o, path);
  fputs(",\"format\":", o);
  ps_cli_json_string(o, ps_format_name(m->format));
  fprintf(o, ",\"width\":%d,\"height\":%d,\"rows\":%d,\"columns\":%d,\"components\":%d,\"bits_stored\":%d,\"frames\":%d",
          img->width, img->height, m->rows, m->columns, m->components, m->bits_stored, m->frames);
  static const char *keys[] = {"photometric", "modality", "patient_id", "study_uid", "series_uid", "sop_uid",
                               "view_position", "body_part", "transfer_syntax"};
  const char *vals[] = {m->photometric, m->modality, m->patient_id, m->study_uid, m->series_uid, m->sop_uid,
                        m->view_position, m->body_part, m->transfer_syntax};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    fprintf(o, ",\"%s\":", keys[i]);
    ps_cli_json_string(o, vals[i]);
  }
  fputs(",\"pixel_spacing\":", o);
  if (m->pixel_spacing[0] > 0 && m->pixel_spacing[1] > 0) {
    fputc('[', o);
    json_num(o, m->pixel_spacing[0]);
    fputc(',', o);
    json_num(o, m->pixel_spacing[1]);
    fputc(']', o);
  } else {
    fputs("null", o);
  }
  fprintf(o, ",\"pixel_spacing_is_imager\":%s", m->pixel_spacing_is_imager ? "true" : "false");
  fputs(",\"window_center\":", o);
  json_num(o, m->window_center);
  fputs(",\"window_width\":", o);
  json_num(o, m->window_width);
  fputs(",\"rescale_slope\":", o);
  json_num(o, m->rescale_slope);
  fputs(",\"rescale_intercept\":", o);
  json_num(o, m->rescale_intercept);
  fputs("}\n", o);
  fflush(o);
}

int ps_cli_info(int argc, char **argv) {
  int nfiles = 0, only_files = 0;
  for (int i = 1; i < argc; i++) {
    if (!only_files && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
      usage(stdout);
      return 0;
    }
    if (!only_files && !strcmp(argv[i], "--")) {
      only_files = 1;
      continue;
    }
    if (!only_files && argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "pneumoscope info: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
    nfiles++;
  }
  if (!nfiles) {
    usage(stderr);
    return 2;
  }
  int failed = 0;
  only_files = 0;
  for (int i = 1; i < argc; i++) {
    if (!only_files && !strcmp(argv[i], "--")) {
      only_files = 1;
      continue;
    }
    if (!only_files && argv[i][0] == '-' && argv[i][1]) continue;
    ps_image *img = NULL;
    int st = ps_image_read(argv[i], NULL, &img);
    if (st != PS_OK) {
      fail_film(argv[i], st);
      failed++;
      continue;
    }
    print_film(argv[i], img);
    ps_image_free(img);
  }
  return failed ? 1 : 0;
}
