/* Lung-field segmentation: a phantom whose lungs are known by construction, the real films of
 * sample_data/ (pediatric Kermany JPEGs, NIH PNG, adult DICOM after windowing) and a sweep over
 * ../shared/data/kaggle, checked for anatomical plausibility; refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_image_io.h"
#include "ps_lung.h"
#include "test_util.h"

/* Plausibility of a mask on a frontal film; returns NULL when plausible, else the reason. */
static const char *implausible(const ps_image *img, const uint8_t *mask, const ps_lung_info *in) {
  static char why[256];
  int w = img->width, h = img->height;
  if (in->lungs != 2) return snprintf(why, sizeof why, "%d lung fields", in->lungs), why;
  if (in->area_fraction < 0.07 || in->area_fraction > 0.50)
    return snprintf(why, sizeof why, "area %.3f outside 0.07..0.50", in->area_fraction), why;
  if (!(in->centroid_x[0] < in->midline_x && in->midline_x < in->centroid_x[1]))
    return snprintf(why, sizeof why, "centroids %.2f / %.2f not either side of midline %.2f", in->centroid_x[0],
                    in->centroid_x[1], in->midline_x),
           why;
  if (in->midline_x < 0.3 || in->midline_x > 0.7) return snprintf(why, sizeof why, "midline %.2f", in->midline_x), why;
  for (int s = 0; s < 2; s++) {
    if (in->centroid_y[s] < 0.2 || in->centroid_y[s] > 0.75)
      return snprintf(why, sizeof why, "lung %d centroid y %.2f outside 0.20..0.75", s, in->centroid_y[s]), why;
    if (in->area[s] < 0.02) return snprintf(why, sizeof why, "lung %d area %.3f", s, in->area[s]), why;
  }
  /* mostly darker than the body: mean inside the mask below the mean of the non-lung pixels of
   * the central box (x 15..85%, y 15..85%), and most mask pixels below that mean */
  double sin = 0, sout = 0;
  size_t nin = 0, nout = 0;
  for (int y = h * 15 / 100; y < h * 85 / 100; y++)
    for (int x = w * 15 / 100; x < w * 85 / 100; x++) {
      float v = img->data[(size_t)y * w + x];
      if (mask[(size_t)y * w + x]) sin += v, nin++;
      else sout += v, nout++;
    }
  if (!nin || !nout) return "empty central box";
  double body = sout / nout, lung = sin / nin;
  size_t darker = 0;
  for (size_t i = 0; i < (size_t)w * h; i++)
    if (mask[i] && img->data[i] < body) darker++;
  double frac = (double)darker / (in->area_fraction * w * h);
  if (!(lung < body - 0.03)) return snprintf(why, sizeof why, "lung mean %.3f not below body %.3f", lung, body), why;
  if (frac < 0.6) return snprintf(why, sizeof why, "only %.0f%% of the mask darker than the body", 100 * frac), why;
  return NULL;
}

static void test_phantom(void **state) {
  (void)state;
  /* body: bright ellipse on black air; lungs: two dark ellipses inside; spine bright */
  int w = 400, h = 360;
  ps_image *img = NULL;
  assert_int_equal(ps_image_create(w, h, &img), PS_OK);
  uint8_t *truth = calloc((size_t)w * h, 1);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double bx = (x - 200.0) / 175, by = (y - 190.0) / 200;
      double v = 0.05;
      if (bx * bx + by * by < 1) v = 0.7;
      for (int s = -1; s <= 1; s += 2) {
        double lx = (x - (200.0 + s * 85)) / 60, ly = (y - 160.0) / 105;
        if (lx * lx + ly * ly < 1) v = 0.25, truth[(size_t)y * w + x] = 1;
      }
      if (fabs(x - 200.0) < 12 && y > 40) v = 0.9;
      /* deterministic texture (ribs-like stripes) */
      v += 0.04 * sin(y * 0.25);
      img->data[(size_t)y * w + x] = (float)v;
    }
  uint8_t *mask = NULL;
  ps_lung_info in;
  assert_int_equal(ps_lung_segment(img, NULL, &mask, &in), PS_OK);
  size_t inter = 0, uni = 0;
  for (size_t i = 0; i < (size_t)w * h; i++) inter += mask[i] && truth[i], uni += mask[i] || truth[i];
  double iou = (double)inter / uni;
  print_message("phantom: lungs %d found %d area %.3f IoU %.3f\n", in.lungs, in.lungs_found, in.area_fraction, iou);
  assert_int_equal(in.lungs, 2);
  assert_int_equal(in.lungs_found, 2);
  assert_true(iou > 0.85);
  assert_true(fabs(in.midline_x - 0.5) < 0.05);
  free(mask);
  /* mirrored: one lung made as bright as the body (opacified) */
  for (int y = 0; y < h; y++)
    for (int x = w / 2; x < w; x++)
      if (truth[(size_t)y * w + x]) img->data[(size_t)y * w + x] = 0.7f + 0.04f * (float)sin(y * 0.25);
  assert_int_equal(ps_lung_segment(img, NULL, &mask, &in), PS_OK);
  inter = uni = 0;
  for (size_t i = 0; i < (size_t)w * h; i++) inter += mask[i] && truth[i], uni += mask[i] || truth[i];
  print_message("phantom, right lung opacified: lungs %d found %d mirrored %d IoU %.3f\n", in.lungs, in.lungs_found,
                in.mirrored, (double)inter / uni);
  assert_int_equal(in.lungs_found, 1);
  assert_int_equal(in.mirrored, 1);
  assert_int_equal(in.lungs, 2);
  assert_true((double)inter / uni > 0.7);
  free(mask);
  ps_lung_opts o = ps_lung_opts_default();
  o.no_mirror = 1;
  assert_int_equal(ps_lung_segment(img, &o, &mask, &in), PS_OK);
  assert_int_equal(in.lungs, 1);
  free(mask);
  free(truth);
  ps_image_free(img);
}

static void test_refusals(void **state) {
  (void)state;
  uint8_t *mask = (uint8_t *)1;
  ps_lung_info in;
  assert_int_equal(ps_lung_segment(NULL, NULL, &mask, &in), PS_EINVAL);
  assert_null(mask);
  ps_image *img = NULL;
  assert_int_equal(ps_image_create(8, 8, &img), PS_OK);
  assert_int_equal(ps_lung_segment(img, NULL, &mask, &in), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "too small"));
  ps_image_free(img);
  assert_int_equal(ps_image_create(100, 100, &img), PS_OK);
  img->is_raw = 1;
  assert_int_equal(ps_lung_segment(img, NULL, &mask, &in), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "raw"));
  img->is_raw = 0;
  ps_lung_opts o = {.work_size = 20};
  assert_int_equal(ps_lung_segment(img, &o, &mask, &in), PS_EINVAL);
  /* a flat film has no lungs: empty mask, PS_OK */
  assert_int_equal(ps_lung_segment(img, NULL, &mask, &in), PS_OK);
  assert_int_equal(in.lungs, 0);
  for (int i = 0; i < 100 * 100; i++) assert_int_equal(mask[i], 0);
  free(mask);
  /* NaN pixels do not crash it */
  for (int i = 0; i < 100 * 100; i++) img->data[i] = (i % 7) ? 0.5f : NAN;
  assert_int_equal(ps_lung_segment(img, NULL, &mask, &in), PS_OK);
  free(mask);
  ps_image_free(img);
}

static int check_film(const char *path, int verbose) {
  ps_image *img = NULL;
  int st = ps_image_read(path, NULL, &img);
  if (st != PS_OK) {
    print_message("cannot read %s: %s\n", path, ps_last_error());
    return -1;
  }
  uint8_t *mask = NULL;
  ps_lung_info in;
  assert_int_equal(ps_lung_segment(img, NULL, &mask, &in), PS_OK);
  const char *why = implausible(img, mask, &in);
  if (verbose || why)
    print_message("%-40.40s %5dx%-5d lungs %d (found %d) area %.3f L(%.2f,%.2f) R(%.2f,%.2f) %s\n",
                  strrchr(path, '/') + 1, img->width, img->height, in.lungs, in.lungs_found, in.area_fraction,
                  in.centroid_x[0], in.centroid_y[0], in.centroid_x[1], in.centroid_y[1], why ? why : "ok");
  free(mask);
  ps_image_free(img);
  return why ? 0 : 1;
}

static void test_sample_films(void **state) {
  (void)state;
  /* every frontal film bundled in sample_data/ (the fake MONOCHROME1 file is excluded: its
   * photometric tag was flipped on purpose, so its display is a negative) */
  const char *const *films = ps_test_sample_films;
  int n = PS_TEST_N_FRONTAL, ok = 0, read = 0;
  for (int i = 0; i < n; i++) {
    int r = check_film(ps_test_src(films[i]), 1);
    if (r >= 0) read++, ok += r;
  }
  print_message("sample_data: %d/%d plausible (%d read)\n", ok, n, read);
  assert_int_equal(read, n);
  assert_true(ok >= n - 1);
}

static void test_shared_kaggle_sweep(void **state) {
  (void)state;
  /* every 25th film of ../shared/data/kaggle (manifest order): pediatric films, normal and both
   * pneumonia kinds, including opacified lungs */
  FILE *f = fopen(ps_test_data("kaggle/manifest.csv"), "r");
  PS_TEST_SKIP_UNLESS(f != NULL, "../shared/data/kaggle/manifest.csv not present");
  char line[2048];
  int row = 0, tried = 0, ok = 0;
  if (!fgets(line, sizeof line, f)) line[0] = 0;
  while (fgets(line, sizeof line, f)) {
    if (row++ % 25) continue;
    char *comma = strchr(line, ',');
    if (!comma) continue;
    *comma = 0;
    char rel[1100];
    snprintf(rel, sizeof rel, "kaggle/%s", line);
    int r = check_film(ps_test_data(rel), 0);
    assert_true(r >= 0);
    tried++, ok += r;
  }
  fclose(f);
  print_message("shared kaggle sweep: %d/%d plausible\n", ok, tried);
  assert_true(tried >= 25);
  assert_true(ok >= 0.85 * tried);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_phantom),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_sample_films),
      cmocka_unit_test(test_shared_kaggle_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
