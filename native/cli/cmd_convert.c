/* pneumoscope convert FILE OUT.png [--size N] — the display-ready film as an 8-bit PNG. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ps_image_io.h"
#include "ps_preprocess.h"

const char ps_cli_convert_help[] = "write a film (PNG, JPEG, DICOM) as a display-ready 8-bit PNG";

static const char usage_text[] =
    "usage: pneumoscope convert FILE OUT.png [--size N]\n"
    "  Reads FILE (PNG, JPEG or DICOM, by content) and writes the display-ready gray film as\n"
    "  an 8-bit PNG (round(v * 255)); --size N resizes to N x N first (antialiased bilinear,\n"
    "  as Pillow's resize). OUT is written atomically; it is never the input, and an existing\n"
    "  file is only replaced when PneumoScope wrote it.\n";

int ps_cli_convert(int argc, char **argv) {
  int size = 0;
  const ps_cli_option options[] = {{"size", 0, PS_OPT_INT, &size, .range = "in [1, 65535]"}, {0}};
  const char *files[2];
  int nfiles = 2, rc = ps_cli_parse("convert", usage_text, options, argc, argv, files, &nfiles);
  if (rc >= 0) return rc;
  if (nfiles < 2) return fputs(usage_text, stderr), 2;
  const char *in = files[0], *out = files[1];
  if (!strcmp(in, out) || ps_image_same_file(in, out)) {
    fprintf(stderr, "pneumoscope convert: refusing to overwrite the input film %s\n", in);
    return 1;
  }
  ps_image *img = NULL, *small = NULL;
  int st = ps_image_read(in, NULL, &img);
  if (st != PS_OK) return ps_cli_fail_film("convert", in, st);
  if (size > 0) {
    st = ps_image_resize(img, size, size, &small);
    if (st != PS_OK) {
      ps_image_free(img);
      return ps_cli_fail_film("convert", in, st);
    }
  }
  st = ps_image_write_png(small ? small : img, out);
  ps_image_free(img);
  ps_image_free(small);
  if (st != PS_OK) return ps_cli_fail_film("convert", out, st);
  return 0;
}
