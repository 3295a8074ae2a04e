/* pneumoscope info FILE... — one JSON object per film per line (what ps_image_read reports). */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "ps_image_io.h"

const char ps_cli_info_help[] = "print each film's format, size and header fields as one JSON line";

static const char usage_text[] =
    "usage: pneumoscope info FILE...\n"
    "  Reads each film (PNG, JPEG or DICOM, recognised by content) and prints one JSON object\n"
    "  per line: file, format, width, height, rows, columns, components, bits_stored,\n"
    "  photometric, DICOM header fields (\"\" when absent), patient_age_years (PatientAge, else\n"
    "  study minus birth date; null when neither) and the window applied.\n"
    "  \"warnings\" lists what the decoder reported about damaged data (a corrupt JPEG scan, a PNG\n"
    "  CRC error, DICOM pixel data shorter than its header says); such a film is still described\n"
    "  here, with a line on stderr, but classify, gradcam, evaluate and train refuse it.\n"
    "  A film that cannot be read gets one line on stderr; the others are still reported.\n"
    "  Exit status: 0 when every film was read cleanly, 1 when any failed or is damaged, 2 on bad usage.\n";

static void print_film(const char *path, const ps_image *img, char **warnings, int nwarnings) {
  const ps_film_meta *m = &img->meta;
  json_t *j = json_pack("{s:o, s:o, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "file", ps_cli_json_string(path), "format",
                        ps_cli_json_string(ps_format_name(m->format)), "width", img->width, "height", img->height,
                        "rows", m->rows, "columns", m->columns, "components", m->components, "bits_stored",
                        m->bits_stored, "frames", m->frames);
  static const char *keys[] = {"photometric", "modality", "patient_id", "study_uid", "series_uid", "sop_uid",
                               "view_position", "body_part", "transfer_syntax"};
  const char *vals[] = {m->photometric, m->modality, m->patient_id, m->study_uid, m->series_uid, m->sop_uid,
                        m->view_position, m->body_part, m->transfer_syntax};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    json_object_set_new(j, keys[i], ps_cli_json_string(vals[i]));
  json_t *spacing = json_null();
  if (m->pixel_spacing[0] > 0 && m->pixel_spacing[1] > 0)
    spacing = json_pack("[o, o]", ps_cli_json_number(m->pixel_spacing[0], "%.17g"),
                        ps_cli_json_number(m->pixel_spacing[1], "%.17g"));
  json_object_set_new(j, "pixel_spacing", spacing);
  json_object_set_new(j, "patient_age_years",
                      m->has_patient_age ? ps_cli_json_number(m->patient_age_years, "%.6g") : json_null());
  json_object_set_new(j, "pixel_spacing_is_imager", json_boolean(m->pixel_spacing_is_imager));
  json_object_set_new(j, "window_center", ps_cli_json_number(m->window_center, "%.17g"));
  json_object_set_new(j, "window_width", ps_cli_json_number(m->window_width, "%.17g"));
  json_object_set_new(j, "rescale_slope", ps_cli_json_number(m->rescale_slope, "%.17g"));
  json_object_set_new(j, "rescale_intercept", ps_cli_json_number(m->rescale_intercept, "%.17g"));
  json_t *w = json_array();
  for (int i = 0; i < nwarnings; i++) json_array_append_new(w, ps_cli_json_string(warnings[i]));
  json_object_set_new(j, "warnings", w);
  ps_cli_json_print(j, stdout, JSON_COMPACT | JSON_REAL_PRECISION(17), 1);
  fflush(stdout);
}

int ps_cli_info(int argc, char **argv) {
  const char **files = calloc((size_t)argc, sizeof *files);
  int nfiles = argc, failed = 0;
  if (!files) return ps_cli_fail("info", "arguments", PS_ENOMEM);
  int rc = ps_cli_parse("info", usage_text, NULL, argc, argv, files, &nfiles);
  if (rc < 0 && nfiles == 0) fputs(usage_text, stderr), rc = 2;
  if (rc >= 0) return free(files), rc;
  for (int i = 0; i < nfiles; i++) {
    ps_image *img = NULL;
    char **warn = NULL;
    int nwarn = 0;
    int st = ps_image_read_warnings(files[i], NULL, &img, &warn, &nwarn);
    if (st != PS_OK) {
      ps_cli_fail_film("info", files[i], st);
      failed++;
      continue;
    }
    print_film(files[i], img, warn, nwarn);
    if (nwarn) {
      fprintf(stderr, "pneumoscope info: %s: damaged (%d decoder warning%s, first: %s); classify, gradcam, evaluate and train refuse it\n",
              files[i], nwarn, nwarn > 1 ? "s" : "", warn[0]);
      failed++;
    }
    ps_image_warnings_free(warn, nwarn);
    ps_image_free(img);
  }
  free(files);
  return failed ? 1 : 0;
}
