/* The lung region of interest (ps_lung_roi) and models that see only it (metadata roi "lungs", and
 * "lungmask": the box gray outside the dilated lung mask — the pixels in the 8-bit and float paths,
 * a Pillow + scipy reference of the masked input, the dilation chosen on the sample films, its
 * metadata, cache, training and Grad-CAM);
 * the box on a phantom with known lungs, on every sample film and a sweep of the Kermany films
 * (coverage of the lung mask, area, fallbacks); the film path unchanged bit for bit; metadata round
 * trip and refusal; classify equal to Pillow crop + torchvision Resize/ToTensor/Normalize + torch
 * ResNet18 on the same box; Grad-CAM zero outside the box and equal inside to the CAM of the crop;
 * `train --roi lungs` writes a lungs model whose cache a film run does not reuse; likewise lungmask. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_gradcam.h"
#include "ps_image_io.h"
#include "ps_infer.h"
#include "ps_lung.h"
#include "ps_model.h"
#include "ps_preprocess.h"
#include "ps_train.h"
#include "test_util.h"

/* Every frontal film of sample_data/ (the fake MONOCHROME1 file is a deliberate negative). */
#define g_sample ps_test_sample_films
#define N_SAMPLE PS_TEST_N_FRONTAL
#define N_JPEG_PNG 10 /* the first ten: files Pillow reads */

static char *g_lungs_model; /* the bundled model's weights with metadata roi = lungs (tmp) */

static double box_area(const double b[4]) { return (b[2] - b[0]) * (b[3] - b[1]); }

/* Share of mask pixels inside the pixel box of b. */
static double coverage(const uint8_t *mask, int w, int h, const double b[4]) {
  int px[4];
  assert_int_equal(ps_lung_box_pixels(b, w, h, px), PS_OK);
  size_t tot = 0, in = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      if (mask[(size_t)y * w + x]) tot++, in += x >= px[0] && x < px[2] && y >= px[1] && y < px[3];
  return tot ? (double)in / tot : 1.0;
}

/* The box is inside [0, 1], non-empty and snapped to whole pixels. */
static void check_box_shape(const double b[4], int w, int h) {
  assert_true(b[0] >= 0 && b[1] >= 0 && b[2] <= 1 && b[3] <= 1 && b[0] < b[2] && b[1] < b[3]);
  assert_true(fabs(b[0] * w - lround(b[0] * w)) < 1e-6 && fabs(b[2] * w - lround(b[2] * w)) < 1e-6);
  assert_true(fabs(b[1] * h - lround(b[1] * h)) < 1e-6 && fabs(b[3] * h - lround(b[3] * h)) < 1e-6);
}

/* ---- the box -------------------------------------------------------------------------------- */

/* tests/ref/roi_reference.py ARGS OUT1 OUT2 (files in the test's folder): the two arrays it writes,
 * of nd1 and nd2 dimensions. Returns the first (malloc'd); *second the other. */
static double *roi_reference(const char *args, const char *out1, int nd1, size_t s1[4], const char *out2, int nd2,
                             size_t s2[4], double **second) {
  char *p1 = ps_test_join(ps_test_tmpdir(), out1), *p2 = ps_test_join(ps_test_tmpdir(), out2);
  assert_int_equal(ps_test_system("'%s' '%s' %s '%s' '%s'", PS_PYTHON, ps_test_src("tests/ref/roi_reference.py"), args,
                                  p1, p2),
                   0);
  int n1 = 0, n2 = 0;
  double *a = ps_test_read_npy(p1, s1, &n1);
  *second = ps_test_read_npy(p2, s2, &n2);
  assert_non_null(a);
  assert_non_null(*second);
  assert_int_equal(n1, nd1);
  assert_int_equal(n2, nd2);
  free(p1);
  free(p2);
  return a;
}

static void test_box_phantom(void **state) {
  (void)state;
  /* test_lung.c's phantom: bright body ellipse on black air, two dark lung ellipses, bright spine */
  int w = 400, h = 360;
  ps_image *img = NULL;
  assert_int_equal(ps_image_create(w, h, &img), PS_OK);
  uint8_t *truth = calloc((size_t)w * h, 1);
  int tx0 = w, ty0 = h, tx1 = 0, ty1 = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double bx = (x - 200.0) / 175, by = (y - 190.0) / 200, v = 0.05;
      if (bx * bx + by * by < 1) v = 0.7;
      for (int s = -1; s <= 1; s += 2) {
        double lx = (x - (200.0 + s * 85)) / 60, ly = (y - 160.0) / 105;
        if (lx * lx + ly * ly < 1) {
          v = 0.25, truth[(size_t)y * w + x] = 1;
          tx0 = x < tx0 ? x : tx0, tx1 = x > tx1 ? x : tx1, ty0 = y < ty0 ? y : ty0, ty1 = y > ty1 ? y : ty1;
        }
      }
      if (fabs(x - 200.0) < 12 && y > 40) v = 0.9;
      v += 0.04 * sin(y * 0.25);
      img->data[(size_t)y * w + x] = (float)v;
    }
  double b[4];
  ps_lung_info in;
  assert_int_equal(ps_lung_roi(img, NULL, b, &in), PS_OK);
  check_box_shape(b, w, h);
  double cov = coverage(truth, w, h, b);
  print_message("phantom: true lungs x %d..%d y %d..%d; box x %.0f..%.0f y %.0f..%.0f, %.1f%% of the film, "
                "covers %.1f%% of the true lungs\n",
                tx0, tx1 + 1, ty0, ty1 + 1, b[0] * w, b[2] * w, b[1] * h, b[3] * h, 100 * box_area(b), 100 * cov);
  assert_int_equal(in.roi_fallback, 0);
  assert_true(cov == 1.0);              /* every true lung pixel is inside */
  assert_true(box_area(b) < 0.8);       /* and the air and body around are cut */
  assert_true(b[1] * h <= ty0 - 5);     /* a margin above the apices */
  /* the margins can be switched off: the box shrinks towards the lungs' own box */
  ps_lung_roi_opts tight = ps_lung_roi_opts_default();
  tight.margin = tight.margin_top = tight.margin_bottom = tight.min_width = tight.min_aspect = -1;
  double t[4];
  assert_int_equal(ps_lung_roi(img, &tight, t, NULL), PS_OK);
  assert_true(box_area(t) < box_area(b));
  assert_true(coverage(truth, w, h, t) > 0.9);
  free(truth);
  ps_image_free(img);
}

static void test_box_fallbacks_and_refusals(void **state) {
  (void)state;
  double b[4] = {-1, -1, -1, -1};
  ps_lung_info in;
  assert_int_equal(ps_lung_roi(NULL, NULL, b, &in), PS_EINVAL);
  ps_image *img = NULL;
  assert_int_equal(ps_image_create(120, 100, &img), PS_OK);
  /* a flat film: no lung, the whole film, flagged, and no error */
  for (int i = 0; i < 120 * 100; i++) img->data[i] = 0.5f;
  assert_int_equal(ps_lung_roi(img, NULL, b, &in), PS_OK);
  assert_int_equal(in.lungs, 0);
  assert_int_equal(in.roi_fallback, 1);
  assert_true(b[0] == 0 && b[1] == 0 && b[2] == 1 && b[3] == 1);
  img->is_raw = 1;
  assert_int_equal(ps_lung_roi(img, NULL, b, &in), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "raw"));
  ps_image_free(img);
  /* a real film: an implausibly small box (here: min_area 0.99) falls back to the whole film */
  assert_int_equal(ps_image_read(ps_test_src(g_sample[4]), NULL, &img), PS_OK);
  ps_lung_roi_opts o = ps_lung_roi_opts_default();
  o.min_area = 0.99;
  assert_int_equal(ps_lung_roi(img, &o, b, &in), PS_OK);
  assert_int_equal(in.roi_fallback, 1);
  assert_int_equal(in.lungs, 2);
  assert_true(b[0] == 0 && b[1] == 0 && b[2] == 1 && b[3] == 1);
  o = ps_lung_roi_opts_default();
  o.margin = 50;
  assert_int_equal(ps_lung_roi(img, &o, b, &in), PS_EINVAL);
  /* from_info agrees with ps_lung_roi on the same segmentation */
  uint8_t *mask = NULL;
  double b2[4];
  int fb = -1;
  assert_int_equal(ps_lung_segment(img, NULL, &mask, &in), PS_OK);
  assert_int_equal(ps_lung_roi(img, NULL, b, NULL), PS_OK);
  assert_int_equal(ps_lung_roi_from_info(&in, img->width, img->height, NULL, b2, &fb), PS_OK);
  assert_int_equal(fb, 0);
  assert_memory_equal(b, b2, sizeof b);
  free(mask);
  /* pixel boxes: rounding, refusals */
  int px[4];
  double bad[4] = {0.5, 0.2, 0.4, 0.9};
  assert_int_equal(ps_lung_box_pixels(bad, 100, 100, px), PS_EINVAL);
  double nan_box[4] = {NAN, 0, 1, 1};
  assert_int_equal(ps_lung_box_pixels(nan_box, 100, 100, px), PS_EINVAL);
  uint8_t out[64 * 64];
  assert_int_equal(ps_lung_crop_input_u8(img, bad, 64, out), PS_EINVAL);
  assert_int_equal(ps_lung_roi_for(img, 7, b, NULL), PS_EINVAL);
  int roi = -1;
  assert_int_equal(ps_roi_parse("lungs", &roi), PS_OK);
  assert_int_equal(roi, PS_ROI_LUNGS);
  assert_int_equal(ps_roi_parse("chest", &roi), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "chest"));
  ps_image_free(img);
}

/* The lungmask dilations tried (PS_LUNGMASK_DILATE is index 2) and the input size they are
 * measured at. */
static const double g_dil[] = {0, 0.02, 0.04, 0.06, 0.08};
#define N_DIL 5
#define DIL_S 224

/* For each dilation: the share of the lungmask input (DIL_S px) kept, and the share of a second
 * mask's pixels (where the input samples the film) that the kept region covers. */
static void dilation_one(const uint8_t *mask, const uint8_t *mask2, int w, int h, const double box[4],
                         double kept[N_DIL], double cover[N_DIL]) {
  uint8_t *keep = malloc((size_t)DIL_S * DIL_S), *other = malloc((size_t)DIL_S * DIL_S);
  assert_int_equal(ps_lung_mask_keep(mask2, w, h, box, 0, DIL_S, other), PS_OK);
  for (int k = 0; k < N_DIL; k++) {
    assert_int_equal(ps_lung_mask_keep(mask, w, h, box, g_dil[k], DIL_S, keep), PS_OK);
    size_t no = 0, nk = 0, both = 0;
    for (int j = 0; j < DIL_S * DIL_S; j++) no += other[j], nk += keep[j], both += other[j] && keep[j];
    cover[k] = no ? (double)both / no : 1.0;
    kept[k] = (double)nk / (DIL_S * DIL_S);
  }
  free(keep);
  free(other);
}

/* Box of one film (ps_lung_roi's, from the default segmentation: test_box_fallbacks_and_refusals
 * checks that from_info equals ps_lung_roi) and the share of its lung mask inside; with cov_other,
 * also the share of a second, differently made mask (finer grid, no convex hull: it picks its own
 * threshold), and with kept / cover the lungmask dilation figures against that mask
 * (dilation_one). Returns 1 when the box fell back to the whole film. */
static int box_one(const char *path, double *area, double *cov_default, double *cov_other, int verbose,
                   double kept[N_DIL], double cover[N_DIL]) {
  ps_image *img = NULL;
  assert_int_equal(ps_image_read(path, NULL, &img), PS_OK);
  double b[4];
  ps_lung_info in;
  int fb = -1;
  uint8_t *mask = NULL;
  assert_int_equal(ps_lung_segment(img, NULL, &mask, &in), PS_OK);
  assert_int_equal(ps_lung_roi_from_info(&in, img->width, img->height, NULL, b, &fb), PS_OK);
  check_box_shape(b, img->width, img->height);
  *cov_default = coverage(mask, img->width, img->height, b);
  if (cov_other) {
    ps_lung_opts lo = ps_lung_opts_default();
    lo.work_size = 384;
    lo.no_hull = 1;
    ps_lung_info in2;
    uint8_t *mask2 = NULL;
    assert_int_equal(ps_lung_segment(img, &lo, &mask2, &in2), PS_OK);
    *cov_other = in2.lungs ? coverage(mask2, img->width, img->height, b) : 1.0;
    if (kept && cover && !fb && in2.lungs) dilation_one(mask, mask2, img->width, img->height, b, kept, cover);
    free(mask2);
  }
  free(mask);
  *area = box_area(b);
  if (verbose)
    print_message("%-44.44s %5dx%-5d box x %.3f..%.3f y %.3f..%.3f area %.3f%s cover %.3f / %.3f\n",
                  strrchr(path, '/') + 1, img->width, img->height, b[0], b[2], b[1], b[3], *area,
                  fb ? " FALLBACK" : "", *cov_default, cov_other ? *cov_other : NAN);
  ps_image_free(img);
  return fb;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void test_box_sample_films(void **state) {
  (void)state;
  double areas[N_SAMPLE];
  static double kept[N_DIL][N_SAMPLE], cover[N_DIL][N_SAMPLE];
  int small = 0, fallbacks = 0;
  for (int i = 0; i < N_SAMPLE; i++) {
    double cd, co, kp[N_DIL], cv[N_DIL];
    fallbacks += box_one(ps_test_src(g_sample[i]), &areas[i], &cd, &co, 1, kp, cv);
    for (int k = 0; k < N_DIL; k++) kept[k][i] = kp[k], cover[k][i] = cv[k];
    print_message("  lungmask input kept / other mask covered, dilation 0 .. 0.08: %.2f/%.3f %.2f/%.3f %.2f/%.3f "
                  "%.2f/%.3f %.2f/%.3f\n",
                  kp[0], cv[0], kp[1], cv[1], kp[2], cv[2], kp[3], cv[3], kp[4], cv[4]);
    assert_true(cd == 1.0);  /* the box holds all of the mask it was made from */
    assert_true(co >= 0.95); /* and >= 95 % of the other mask */
    small += areas[i] <= 0.8;
  }
  qsort(areas, N_SAMPLE, sizeof *areas, cmp_double);
  print_message("sample films: %d, fallbacks %d, box area min %.3f median %.3f max %.3f, %d of %d boxes <= 80%% of "
                "the film\n",
                N_SAMPLE, fallbacks, areas[0], areas[N_SAMPLE / 2], areas[N_SAMPLE - 1], small, N_SAMPLE);
  assert_int_equal(fallbacks, 0);
  assert_true(areas[N_SAMPLE / 2] <= 0.9); /* the median film loses at least a tenth of its area */
  assert_true(areas[N_SAMPLE - 1] < 1.0);  /* and no film keeps all of it */
  /* The lungmask dilation (PS_LUNGMASK_DILATE, 4 % of the box width), chosen here: the input must
   * hold the lung fields the second mask finds, while graying most of what is not lung. */
  for (int k = 0; k < N_DIL; k++) {
    qsort(cover[k], N_SAMPLE, sizeof(double), cmp_double);
    qsort(kept[k], N_SAMPLE, sizeof(double), cmp_double);
    print_message("lungmask dilation %.2f at %d px: input kept median %.3f (max %.3f); other mask covered min %.3f "
                  "median %.3f\n",
                  g_dil[k], DIL_S, kept[k][N_SAMPLE / 2], kept[k][N_SAMPLE - 1], cover[k][0], cover[k][N_SAMPLE / 2]);
    if (k) assert_true(kept[k][N_SAMPLE / 2] > kept[k - 1][N_SAMPLE / 2]); /* a larger disk keeps more */
  }
  /* the default (index 2): >= 94 % of the other mask on every film, all of it on the median film,
   * with well over half of the median input gray; without dilation the worst film loses > 10 % */
  assert_true(g_dil[2] == PS_LUNGMASK_DILATE);
  assert_true(cover[2][0] >= 0.94 && cover[2][N_SAMPLE / 2] >= 0.999);
  assert_true(kept[2][N_SAMPLE / 2] <= 0.45);
  assert_true(cover[0][0] < 0.9);
}

static void test_box_kaggle_sweep(void **state) {
  (void)state;
  /* every 20th film of ../shared/data/kaggle (manifest order): 33 pediatric films, normal and both
   * pneumonia kinds (PS_ROI_SWEEP_STEP=1 sweeps all 651) */
  FILE *f = fopen(ps_test_data("kaggle/manifest.csv"), "r");
  PS_TEST_SKIP_UNLESS(f != NULL, "../shared/data/kaggle/manifest.csv not present");
  int step = getenv("PS_ROI_SWEEP_STEP") ? atoi(getenv("PS_ROI_SWEEP_STEP")) : 20;
  if (step < 1) step = 1;
  char line[2048];
  int row = 0, n = 0, fallbacks = 0, small = 0;
  static double areas[1000];
  if (!fgets(line, sizeof line, f)) line[0] = 0;
  while (fgets(line, sizeof line, f) && n < 1000) {
    if (row++ % step) continue;
    char *comma = strchr(line, ',');
    if (!comma) continue;
    *comma = 0;
    char rel[1100];
    snprintf(rel, sizeof rel, "kaggle/%s", line);
    double a, cd;
    int fb = box_one(ps_test_data(rel), &a, &cd, NULL, 0, NULL, NULL);
    fallbacks += fb;
    if (fb) continue;
    assert_true(cd == 1.0);
    small += a <= 0.8;
    areas[n++] = a;
  }
  fclose(f);
  int scored = n;
  qsort(areas, (size_t)scored, sizeof *areas, cmp_double);
  print_message("kaggle sweep: %d films, %d fallbacks (whole film); boxes: area min %.3f p10 %.3f median %.3f p90 %.3f "
                "max %.3f; %d of %d <= 80%% of the film\n",
                scored + fallbacks, fallbacks, areas[0], areas[scored / 10], areas[scored / 2],
                areas[scored * 9 / 10], areas[scored - 1], small, scored);
  assert_true(scored + fallbacks >= 30);
  assert_true(fallbacks <= (scored + fallbacks) / 20); /* <= 5 % fall back to the whole film */
  assert_true(areas[scored / 2] <= 0.9);
}

/* ---- the one input path ----------------------------------------------------------------------- */

static void test_input_film_path_unchanged(void **state) {
  (void)state;
  /* film models: ps_lung_roi_input is ps_preprocess_tensor_ex, bit for bit (JPEG, PNG, DICOM) */
  const int idx[] = {0, 4, 9, 11};
  const int S = 96;
  float *a = malloc(sizeof(float) * 3 * S * S), *b = malloc(sizeof(float) * 3 * S * S);
  const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
  for (int k = 0; k < 4; k++) {
    ps_image *img = NULL;
    assert_int_equal(ps_image_read(ps_test_src(g_sample[idx[k]]), NULL, &img), PS_OK);
    double box[4] = {-1, -1, -1, -1};
    int fb = -1;
    assert_int_equal(ps_preprocess_tensor_ex(img, S, mean, std, a), PS_OK);
    assert_int_equal(ps_lung_roi_input(img, PS_ROI_FILM, S, mean, std, b, box, &fb), PS_OK);
    assert_memory_equal(a, b, sizeof(float) * 3 * S * S);
    assert_true(box[0] == 0 && box[1] == 0 && box[2] == 1 && box[3] == 1 && fb == 0);
    /* an explicit whole-film box is the same too */
    double whole[4] = {0, 0, 1, 1};
    assert_int_equal(ps_lung_crop_input(img, whole, S, mean, std, b), PS_OK);
    assert_memory_equal(a, b, sizeof(float) * 3 * S * S);
    /* a lungs input differs (it is a crop) */
    assert_int_equal(ps_lung_roi_input(img, PS_ROI_LUNGS, S, mean, std, b, box, &fb), PS_OK);
    assert_int_equal(fb, 0);
    assert_true(box_area(box) < 1);
    assert_true(memcmp(a, b, sizeof(float) * 3 * S * S) != 0);
    ps_image_free(img);
  }
  free(a);
  free(b);
}

/* ---- roi lungmask: the lung box and nothing but the dilated lung fields ----------------------- */

static const float g_mean[3] = {0.485f, 0.456f, 0.406f}, g_std[3] = {0.229f, 0.224f, 0.225f};

/* One film's lungmask input against its lungs input and the mask: outside the dilated mask the
 * fill, inside the lungs pixels, in the 8-bit and the float path alike. Returns the kept share. */
static double check_lungmask_film(const ps_image *img, int S, const char *name) {
  size_t m = (size_t)S * S;
  uint8_t *um = malloc(m), *ul = malloc(m), *keep = malloc(m);
  float *fm = malloc(sizeof(float) * 3 * m), *fl = malloc(sizeof(float) * 3 * m);
  double bm[4], bl[4];
  int fbm = -1, fbl = -1;
  assert_int_equal(ps_lung_roi_input_u8(img, PS_ROI_LUNGMASK, S, um, bm, &fbm), PS_OK);
  assert_int_equal(ps_lung_roi_input_u8(img, PS_ROI_LUNGS, S, ul, bl, &fbl), PS_OK);
  assert_memory_equal(bm, bl, sizeof bm); /* the same box as lungs */
  assert_int_equal(fbm, fbl);
  assert_int_equal(ps_lung_roi_input(img, PS_ROI_LUNGMASK, S, g_mean, g_std, fm, NULL, NULL), PS_OK);
  assert_int_equal(ps_lung_roi_input(img, PS_ROI_LUNGS, S, g_mean, g_std, fl, NULL, NULL), PS_OK);
  /* the mask it is made from: the default segmentation (what ps_lung_roi uses) */
  uint8_t *mask = NULL, *rmask = (uint8_t *)1;
  double rb[4];
  int rfb = -1;
  assert_int_equal(ps_lung_segment(img, NULL, &mask, NULL), PS_OK);
  assert_int_equal(ps_lung_roi_mask(img, rb, &rfb, &rmask), PS_OK);
  assert_memory_equal(rb, bm, sizeof rb);
  assert_int_equal(rfb, fbm);
  if (fbm) {
    assert_null(rmask); /* fallback: nothing masked, the lungs (= whole film) input */
    memset(keep, 1, m);
  } else {
    assert_non_null(rmask);
    assert_memory_equal(rmask, mask, (size_t)img->width * img->height);
    assert_int_equal(ps_lung_mask_keep(mask, img->width, img->height, bm, PS_LUNGMASK_DILATE, S, keep), PS_OK);
    /* the box + mask entry points give the same pixels as the roi ones */
    uint8_t *u2 = malloc(m);
    float *f2 = malloc(sizeof(float) * 3 * m);
    assert_int_equal(ps_lung_mask_input_u8(img, bm, mask, S, u2), PS_OK);
    assert_memory_equal(u2, um, m);
    assert_int_equal(ps_lung_mask_input(img, bm, mask, S, g_mean, g_std, f2), PS_OK);
    assert_memory_equal(f2, fm, sizeof(float) * 3 * m);
    free(u2);
    free(f2);
  }
  free(rmask);
  size_t kept = 0;
  for (size_t i = 0; i < m; i++) {
    kept += keep[i];
    assert_int_equal(um[i], keep[i] ? ul[i] : PS_LUNGMASK_FILL_U8);
    for (int c = 0; c < 3; c++) {
      float want = keep[i] ? fl[c * m + i] : ((float)PS_LUNGMASK_FILL_U8 / 255.0f - g_mean[c]) / g_std[c];
      assert_true(fm[c * m + i] == want); /* bit for bit */
    }
  }
  /* the mask as the input sees it, sampled without dilation: every kept pixel of it is kept */
  if (!fbm) {
    uint8_t *k0 = malloc(m);
    assert_int_equal(ps_lung_mask_keep(mask, img->width, img->height, bm, 0, S, k0), PS_OK);
    size_t k0n = 0;
    for (size_t i = 0; i < m; i++) {
      k0n += k0[i];
      if (k0[i]) assert_int_equal(keep[i], 1);
    }
    assert_true(kept > k0n); /* the dilation adds a rim */
    free(k0);
  }
  if (name)
    print_message("lungmask %-40.40s %dpx: box x %.3f..%.3f y %.3f..%.3f%s, %.1f%% of the input kept\n", name, S, bm[0],
                  bm[2], bm[1], bm[3], fbm ? " FALLBACK" : "", 100.0 * kept / m);
  free(mask);
  free(um), free(ul), free(keep), free(fm), free(fl);
  return (double)kept / m;
}

static void test_lungmask_pixels(void **state) {
  (void)state;
  /* JPEG, PNG and DICOM at the deployment size, the JPEG also at a smoke-training size */
  const int idx[] = {4, 9, 12};
  for (int k = 0; k < 3; k++) {
    ps_image *img = NULL;
    assert_int_equal(ps_image_read(ps_test_src(g_sample[idx[k]]), NULL, &img), PS_OK);
    const int sizes[] = {224, 64};
    for (int s = 0; s < (k ? 1 : 2); s++) {
      double kept = check_lungmask_film(img, sizes[s], strrchr(g_sample[idx[k]], '/') + 1);
      assert_true(kept > 0.2 && kept < 0.95); /* lungs shown, something else grayed */
    }
    ps_image_free(img);
  }
  /* no lungs: the whole film, not masked, flagged */
  ps_image *img = NULL;
  assert_int_equal(ps_image_create(120, 100, &img), PS_OK);
  for (int i = 0; i < 120 * 100; i++) img->data[i] = 0.3f + 0.4f * (float)(i % 120) / 120;
  assert_true(check_lungmask_film(img, 64, "flat film") == 1.0);
  uint8_t a[64 * 64], b[64 * 64];
  double box[4];
  int fb = -1;
  assert_int_equal(ps_lung_roi_input_u8(img, PS_ROI_LUNGMASK, 64, a, box, &fb), PS_OK);
  assert_int_equal(fb, 1);
  assert_int_equal(ps_lung_roi_input_u8(img, PS_ROI_FILM, 64, b, NULL, NULL), PS_OK);
  assert_memory_equal(a, b, sizeof a);
  /* refusals */
  uint8_t mask[120 * 100] = {0}, keep[64 * 64];
  double whole[4] = {0, 0, 1, 1}, bad[4] = {0.5, 0, 0.4, 1};
  assert_int_equal(ps_lung_mask_keep(NULL, 120, 100, whole, 0.04, 64, keep), PS_EINVAL);
  assert_int_equal(ps_lung_mask_keep(mask, 120, 100, bad, 0.04, 64, keep), PS_EINVAL);
  assert_int_equal(ps_lung_mask_keep(mask, 120, 100, whole, -0.1, 64, keep), PS_EINVAL);
  assert_int_equal(ps_lung_mask_keep(mask, 120, 100, whole, NAN, 64, keep), PS_EINVAL);
  assert_int_equal(ps_lung_mask_keep(mask, 120, 100, whole, 0.04, 0, keep), PS_EINVAL);
  /* an empty mask keeps nothing, a single pixel keeps a disk of radius 0.04 x 120 = 4.8 px */
  assert_int_equal(ps_lung_mask_keep(mask, 120, 100, whole, 0.04, 64, keep), PS_OK);
  for (int i = 0; i < 64 * 64; i++) assert_int_equal(keep[i], 0);
  mask[50 * 120 + 60] = 1;
  uint8_t keep2[120 * 120];
  /* output 120 x 120: sx = x, and the 100 rows sampled as sy = floor((2j + 1) 100 / 240) */
  assert_int_equal(ps_lung_mask_keep(mask, 120, 100, whole, 0.04, 120, keep2), PS_OK);
  int want = 0, got = 0;
  for (int j = 0; j < 120; j++) {
    int sy = (2 * j + 1) * 100 / 240;
    for (int i = 0; i < 120; i++) {
      int dx = i - 60, dy = sy - 50;
      want += dx * dx + dy * dy <= 4.8 * 4.8;
      got += keep2[j * 120 + i];
      assert_int_equal(keep2[j * 120 + i], dx * dx + dy * dy <= 4.8 * 4.8);
    }
  }
  assert_int_equal(got, want);
  ps_image_free(img);
}

static void test_lungmask_vs_reference(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("torch,torchvision,PIL,numpy,scipy"), "python torch/PIL/scipy missing");
  const int idx[] = {1, 3, 5, 9}; /* JPEG normal, virus, bacteria, NIH PNG */
  const int S = 96, N = 4;
  char *list = ps_test_join(ps_test_tmpdir(), "lungmask-list.tsv");
  FILE *f = fopen(list, "w");
  assert_non_null(f);
  uint8_t *u8 = malloc((size_t)N * S * S);
  float *x = malloc(sizeof(float) * N * 3 * S * S);
  for (int k = 0; k < N; k++) {
    ps_image *img = NULL;
    const char *path = ps_test_src(g_sample[idx[k]]);
    assert_int_equal(ps_image_read(path, NULL, &img), PS_OK);
    double box[4];
    int fb = -1, px[4];
    uint8_t *mask = NULL;
    /* one segmentation: the box and mask ps_lung_roi_input(_u8) use (test_lungmask_pixels checks
     * that they equal these calls on this box and mask) */
    assert_int_equal(ps_lung_roi_mask(img, box, &fb, &mask), PS_OK);
    assert_int_equal(fb, 0);
    assert_int_equal(ps_lung_mask_input_u8(img, box, mask, S, u8 + (size_t)k * S * S), PS_OK);
    assert_int_equal(ps_lung_mask_input(img, box, mask, S, NULL, NULL, x + (size_t)k * 3 * S * S), PS_OK);
    assert_int_equal(ps_lung_box_pixels(box, img->width, img->height, px), PS_OK);
    size_t n = (size_t)img->width * img->height, shape[2] = {(size_t)img->height, (size_t)img->width};
    float *mf = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) mf[i] = mask[i] ? 1.0f : 0.0f;
    char name[64];
    snprintf(name, sizeof name, "lungmask-mask-%d.npy", k);
    char *mp = ps_test_join(ps_test_tmpdir(), name);
    assert_int_equal(ps_test_write_npy_f32(mp, mf, shape, 2), 0);
    fprintf(f, "%s\t%d\t%d\t%d\t%d\t%s\n", path, px[0], px[1], px[2], px[3], mp);
    free(mp);
    free(mf);
    free(mask);
    ps_image_free(img);
  }
  fclose(f);
  char args[4096];
  snprintf(args, sizeof args, "lungmask '%s' %d", list, S);
  size_t shp[4], shx[4];
  double *rx = NULL, *rp = roi_reference(args, "lungmask-pix.npy", 3, shp, "lungmask-x.npy", 4, shx, &rx);
  assert_int_equal(shp[0], N);
  assert_int_equal(shp[1], S);
  assert_int_equal(shx[1], 3);
  double worst = 0;
  size_t filled = 0, diff = 0;
  for (size_t i = 0; i < (size_t)N * S * S; i++) {
    diff += u8[i] != (int)rp[i];
    filled += (int)rp[i] == PS_LUNGMASK_FILL_U8;
  }
  for (size_t i = 0; i < (size_t)N * 3 * S * S; i++) worst = fmax(worst, fabs(x[i] - rx[i]));
  print_message("lungmask vs Pillow + scipy reference: %d films at %d px, %zu of %zu 8-bit pixels differ, %.1f%% at "
                "the fill; max |dx| %.2e\n",
                N, S, diff, (size_t)N * S * S, 100.0 * filled / ((double)N * S * S), worst);
  assert_int_equal(diff, 0);
  assert_true(worst <= 1e-6);
  assert_true(filled > (size_t)N * S * S / 20); /* the reference masks something too */
  free(rp);
  free(rx);
  free(list);
  free(u8);
  free(x);
}

/* ---- model metadata --------------------------------------------------------------------------- */

static int setup_lungs_model(void **state) {
  (void)state;
  char bundled[4096];
  if (ps_model_default_path(bundled, sizeof bundled) != PS_OK) return 0; /* tests skip */
  ps_model *m = NULL;
  if (ps_model_load(bundled, PS_DEVICE_CPU, &m) != PS_OK) return -1;
  ps_model_meta meta = *ps_model_meta_get(m);
  if (meta.roi != PS_ROI_FILM) return -1;
  meta.roi = PS_ROI_LUNGS;
  g_lungs_model = ps_test_join(ps_test_tmpdir(), "lungs-model.safetensors");
  int st = ps_model_set_meta(m, &meta);
  if (!st) st = ps_model_save(m, g_lungs_model, NULL);
  ps_model_free(m);
  if (st) fprintf(stderr, "cannot write %s: %s\n", g_lungs_model, ps_last_error());
  return st ? -1 : 0;
}

static int teardown_lungs_model(void **state) {
  (void)state;
  free(g_lungs_model);
  g_lungs_model = NULL;
  return 0;
}

/* The raw JSON header of a safetensors file (malloc'd). */
static char *st_header(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  uint64_t n = 0;
  assert_int_equal(fread(&n, 8, 1, f), 1);
  assert_true(n < (1u << 26));
  char *h = malloc(n + 1);
  assert_int_equal(fread(h, 1, n, f), n);
  h[n] = 0;
  fclose(f);
  return h;
}

static void test_meta_roundtrip(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(g_lungs_model, "no bundled model");
  ps_model *m = NULL;
  assert_int_equal(ps_model_load(g_lungs_model, PS_DEVICE_CPU, &m), PS_OK);
  assert_int_equal(ps_model_meta_get(m)->roi, PS_ROI_LUNGS);
  char *h = st_header(g_lungs_model);
  assert_non_null(strstr(h, "\"roi\":\"lungs\""));
  free(h);
  /* back to film: saved without the key, as every earlier model */
  ps_model_meta meta = *ps_model_meta_get(m);
  meta.roi = PS_ROI_FILM;
  assert_int_equal(ps_model_set_meta(m, &meta), PS_OK);
  char *film = ps_test_join(ps_test_tmpdir(), "film-again.safetensors");
  assert_int_equal(ps_model_save(m, film, NULL), PS_OK);
  h = st_header(film);
  assert_null(strstr(h, "\"roi\""));
  free(h);
  /* lungmask: "roi":"lungmask" and back */
  meta.roi = PS_ROI_LUNGMASK;
  assert_int_equal(ps_model_set_meta(m, &meta), PS_OK);
  char *lm = ps_test_join(ps_test_tmpdir(), "lungmask-model.safetensors");
  assert_int_equal(ps_model_save(m, lm, NULL), PS_OK);
  h = st_header(lm);
  assert_non_null(strstr(h, "\"roi\":\"lungmask\""));
  free(h);
  {
    ps_model *m2 = NULL;
    assert_int_equal(ps_model_load(lm, PS_DEVICE_CPU, &m2), PS_OK);
    assert_int_equal(ps_model_meta_get(m2)->roi, PS_ROI_LUNGMASK);
    ps_model_free(m2);
  }
  free(lm);
  int roi = -1;
  assert_int_equal(ps_roi_parse("lungmask", &roi), PS_OK);
  assert_int_equal(roi, PS_ROI_LUNGMASK);
  assert_string_equal(ps_roi_name(PS_ROI_LUNGMASK), "lungmask");
  meta.roi = 5;
  assert_int_equal(ps_model_set_meta(m, &meta), PS_EINVAL);
  ps_model_free(m);
  assert_int_equal(ps_model_load(film, PS_DEVICE_CPU, &m), PS_OK);
  assert_int_equal(ps_model_meta_get(m)->roi, PS_ROI_FILM);
  ps_model_free(m);
  /* the bundled model (no key) is a film model */
  char bundled[4096];
  assert_int_equal(ps_model_default_path(bundled, sizeof bundled), PS_OK);
  assert_int_equal(ps_model_load(bundled, PS_DEVICE_CPU, &m), PS_OK);
  assert_int_equal(ps_model_meta_get(m)->roi, PS_ROI_FILM);
  ps_model_free(m);
  free(film);
  /* files written by the python safetensors helper: "film" accepted, anything else refused */
  PS_TEST_SKIP_UNLESS(ps_test_have_python("torch,torchvision,PIL,numpy"), "python torch/torchvision missing");
  const char *vals[] = {"film", "chest", "Lungs", "", "lungmask", "lungs", "LungMask"};
  const int ok[] = {1, 0, 0, 0, 1, 1, 0};
  const int want_roi[] = {PS_ROI_FILM, 0, 0, 0, PS_ROI_LUNGMASK, PS_ROI_LUNGS, 0};
  char *prefix = ps_test_join(ps_test_tmpdir(), "roi");
  assert_int_equal(ps_test_system("'%s' '%s' setmeta '%s' roi '%s' '%s' '%s' '%s' '%s' '%s' '%s' '%s'", PS_PYTHON,
                                  ps_test_src("tests/ref/roi_reference.py"), g_lungs_model, prefix, vals[0], vals[1],
                                  vals[2], vals[3], vals[4], vals[5], vals[6]),
                   0);
  free(prefix);
  for (int i = 0; i < 7; i++) {
    char name[64];
    snprintf(name, sizeof name, "roi-%d.safetensors", i);
    char *p = ps_test_join(ps_test_tmpdir(), name);
    int st = ps_model_load(p, PS_DEVICE_CPU, &m);
    if (ok[i]) {
      assert_int_equal(st, PS_OK);
      assert_int_equal(ps_model_meta_get(m)->roi, want_roi[i]);
      ps_model_free(m);
      m = NULL;
    } else {
      assert_int_equal(st, PS_EFORMAT);
      assert_null(m);
      print_message("roi \"%s\": %s\n", vals[i], ps_last_error());
      assert_non_null(strstr(ps_last_error(), "roi"));
      assert_non_null(strstr(ps_last_error(), p));
    }
    free(p);
  }
}

/* ---- classification -------------------------------------------------------------------------- */

typedef struct {
  int n;
  float probs[N_SAMPLE][PS_MODEL_MAX_CLASSES];
  double roi[N_SAMPLE][4];
  int fallback[N_SAMPLE];
} run_out;

static int collect(const ps_infer_result *r, void *user) {
  run_out *o = user;
  assert_int_equal(r->status, PS_OK);
  memcpy(o->probs[r->index], r->probs, sizeof o->probs[0]);
  memcpy(o->roi[r->index], r->roi, sizeof o->roi[0]);
  o->fallback[r->index] = r->roi_fallback;
  o->n++;
  return 0;
}

static void test_classify_vs_torchvision(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(g_lungs_model, "no bundled model");
  PS_TEST_SKIP_UNLESS(ps_test_have_python("torch,torchvision,PIL,numpy"), "python torch/torchvision missing");
  ps_model *m = NULL, *film = NULL;
  char bundled[4096];
  assert_int_equal(ps_model_load(g_lungs_model, PS_DEVICE_CPU, &m), PS_OK);
  assert_int_equal(ps_model_default_path(bundled, sizeof bundled), PS_OK);
  assert_int_equal(ps_model_load(bundled, PS_DEVICE_CPU, &film), PS_OK);
  const int S = ps_model_meta_get(m)->input_size, K = ps_model_num_classes(m);
  /* the folder pipeline, batch 4 and 2 decoding threads */
  const char *paths[N_JPEG_PNG];
  for (int i = 0; i < N_JPEG_PNG; i++) paths[i] = strdup(ps_test_src(g_sample[i]));
  run_out out;
  memset(&out, 0, sizeof out);
  ps_infer_opts io = {.batch = 4, .threads = 2};
  int nfailed = -1;
  assert_int_equal(ps_infer_run(m, paths, N_JPEG_PNG, &io, collect, &out, &nfailed), PS_OK);
  assert_int_equal(out.n, N_JPEG_PNG);
  assert_int_equal(nfailed, 0);
  /* the pixel boxes for the reference */
  char *list = ps_test_join(ps_test_tmpdir(), "roi-list.tsv");
  FILE *f = fopen(list, "w");
  assert_non_null(f);
  int differs = 0;
  for (int i = 0; i < N_JPEG_PNG; i++) {
    ps_image *img = NULL;
    assert_int_equal(ps_image_read(paths[i], NULL, &img), PS_OK);
    int px[4];
    assert_int_equal(ps_lung_box_pixels(out.roi[i], img->width, img->height, px), PS_OK);
    fprintf(f, "%s\t%d\t%d\t%d\t%d\n", paths[i], px[0], px[1], px[2], px[3]);
    /* one film through ps_infer_image_roi: the same box and probabilities as the pipeline */
    float p[PS_MODEL_MAX_CLASSES], pf[PS_MODEL_MAX_CLASSES];
    double box[4];
    int label = -1, fb = -1;
    assert_int_equal(ps_infer_image_roi(m, img, p, &label, box, &fb), PS_OK);
    assert_memory_equal(box, out.roi[i], sizeof box);
    assert_int_equal(fb, out.fallback[i]);
    for (int k = 0; k < K; k++) assert_true(fabsf(p[k] - out.probs[i][k]) <= 1e-6f);
    /* the same weights on the whole film answer differently on at least one film */
    assert_int_equal(ps_infer_image(film, img, pf, NULL), PS_OK);
    differs += fabsf(pf[1] - p[1]) > 1e-3f;
    ps_image_free(img);
  }
  fclose(f);
  char args[4096];
  snprintf(args, sizeof args, "classify '%s' '%s'", g_lungs_model, list);
  size_t shp[4], shx[4];
  double *refx = NULL, *ref = roi_reference(args, "roi-probs.npy", 2, shp, "roi-pix.npy", 3, shx, &refx);
  assert_int_equal(shp[0], N_JPEG_PNG);
  assert_int_equal(shp[1], K);
  assert_int_equal(shx[1], S);
  double worst = 0;
  uint8_t *u8 = malloc((size_t)S * S);
  for (int i = 0; i < N_JPEG_PNG; i++) {
    for (int k = 0; k < K; k++) worst = fmax(worst, fabs(ref[i * K + k] - out.probs[i][k]));
    /* the 8-bit crop itself: Pillow crop + Resize, exactly */
    ps_image *img = NULL;
    assert_int_equal(ps_image_read(paths[i], NULL, &img), PS_OK);
    assert_int_equal(ps_lung_crop_input_u8(img, out.roi[i], S, u8), PS_OK);
    for (int j = 0; j < S * S; j++) assert_int_equal(u8[j], (int)refx[(size_t)i * S * S + j]);
    ps_image_free(img);
  }
  print_message("lungs model vs Pillow crop + torchvision: %d films, max |dp| %.2e; crops equal; %d of %d films "
                "change P(PNEUMONIA) by > 1e-3 against the whole-film input\n",
                N_JPEG_PNG, worst, differs, N_JPEG_PNG);
  assert_true(worst <= 1e-4);
  assert_true(differs >= 1);
  free(u8);
  free(ref);
  free(refx);
  free(list);
  for (int i = 0; i < N_JPEG_PNG; i++) free((void *)paths[i]);
  ps_model_free(m);
  ps_model_free(film);
}

static void test_classify_cli(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(g_lungs_model, "no bundled model");
  const char *film = ps_test_src(g_sample[4]);
  int rc = -1;
  char *out = ps_test_capture(&rc, "'%s' classify --model '%s' --json '%s' 2>/dev/null", PS_CLI, g_lungs_model, film);
  assert_int_equal(rc, 0);
  print_message("%s", out);
  assert_non_null(strstr(out, "\"roi\":["));
  assert_non_null(strstr(out, "\"roi_fallback\":false"));
  /* the box printed is the one ps_lung_roi gives */
  ps_image *img = NULL;
  double b[4];
  assert_int_equal(ps_image_read(film, NULL, &img), PS_OK);
  assert_int_equal(ps_lung_roi(img, NULL, b, NULL), PS_OK);
  double g[4];
  assert_int_equal(sscanf(strstr(out, "\"roi\":[") + 7, "%lf,%lf,%lf,%lf", &g[0], &g[1], &g[2], &g[3]), 4);
  for (int i = 0; i < 4; i++) assert_true(fabs(g[i] - b[i]) < 1e-6);
  ps_image_free(img);
  free(out);
  out = ps_test_capture(&rc, "'%s' classify --model '%s' --csv '%s' 2>/dev/null", PS_CLI, g_lungs_model, film);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, ",roi_x0,roi_y0,roi_x1,roi_y1,roi_fallback,in_distribution,ood_score,ood_reason,error\n"));
  free(out);
  /* a film model's output is unchanged: no roi */
  char bundled[4096];
  assert_int_equal(ps_model_default_path(bundled, sizeof bundled), PS_OK);
  out = ps_test_capture(&rc, "'%s' classify --model '%s' --json '%s' 2>/dev/null", PS_CLI, bundled, film);
  assert_int_equal(rc, 0);
  assert_null(strstr(out, "roi"));
  free(out);
}

/* ---- Grad-CAM -------------------------------------------------------------------------------- */

static void test_gradcam_lungs(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(g_lungs_model, "no bundled model");
  ps_model *m = NULL, *film_m = NULL;
  char bundled[4096];
  assert_int_equal(ps_model_load(g_lungs_model, PS_DEVICE_CPU, &m), PS_OK);
  assert_int_equal(ps_model_default_path(bundled, sizeof bundled), PS_OK);
  assert_int_equal(ps_model_load(bundled, PS_DEVICE_CPU, &film_m), PS_OK);
  const int which[] = {4, 6, 9};
  for (int t = 0; t < 3; t++) {
    const char *path = ps_test_src(g_sample[which[t]]);
    ps_image *img = NULL, *crop = NULL;
    assert_int_equal(ps_image_read(path, NULL, &img), PS_OK);
    ps_gradcam_result *r = NULL, *rc = NULL;
    ps_gradcam_opts o = ps_gradcam_opts_default();
    assert_int_equal(ps_gradcam_compute(m, img, &o, &r), PS_OK);
    double b[4];
    assert_int_equal(ps_lung_roi(img, NULL, b, NULL), PS_OK);
    assert_memory_equal(r->roi, b, sizeof b); /* the box classify uses */
    int px[4], W = img->width, H = img->height;
    assert_int_equal(ps_lung_box_pixels(b, W, H, px), PS_OK);
    /* the prediction equals classify's */
    float p[PS_MODEL_MAX_CLASSES];
    assert_int_equal(ps_infer_image(m, img, p, NULL), PS_OK);
    assert_true(fabsf(p[1] - r->probs[1]) < 1e-4f);
    /* zero outside the box, exactly; something inside */
    double inside = 0;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        float v = r->cam[(size_t)y * W + x];
        if (x >= px[0] && x < px[2] && y >= px[1] && y < px[3]) inside += v;
        else assert_true(v == 0.0f);
      }
    assert_true(inside > 0);
    /* inside: the film model's CAM of the cropped film, pasted back */
    int cw = px[2] - px[0], ch = px[3] - px[1];
    assert_int_equal(ps_image_create(cw, ch, &crop), PS_OK);
    for (int y = 0; y < ch; y++) memcpy(crop->data + (size_t)y * cw, img->data + (size_t)(px[1] + y) * W + px[0], sizeof(float) * cw);
    ps_gradcam_opts oc = o;
    oc.no_lung = 1;
    assert_int_equal(ps_gradcam_compute(film_m, crop, &oc, &rc), PS_OK);
    double worst = 0;
    for (int y = 0; y < ch; y++)
      for (int x = 0; x < cw; x++)
        worst = fmax(worst, fabs(rc->cam[(size_t)y * cw + x] - r->cam[(size_t)(px[1] + y) * W + px[0] + x]));
    assert_true(worst < 1e-5);
    assert_true(fabsf(rc->probs[1] - r->probs[1]) < 1e-4f);
    /* lung_focus: the film's own mask, in the film's grid */
    double focus = NAN;
    assert_int_equal(ps_gradcam_lung_focus(r->cam, r->lung_mask, W, H, &focus), PS_OK);
    assert_true(fabs(focus - r->lung_focus) < 1e-12);
    /* chance level: the mask's share of the box */
    size_t in_box = 0;
    for (int y = px[1]; y < px[3]; y++)
      for (int x = px[0]; x < px[2]; x++) in_box += r->lung_mask[(size_t)y * W + x] != 0;
    assert_true(fabs(r->lung_focus_uniform - (double)in_box / ((double)cw * ch)) < 1e-12);
    print_message("%-36.36s box x %.3f..%.3f y %.3f..%.3f: CAM zero outside, max |cam - cam(crop)| %.1e, lung_focus "
                  "%.3f (film model on the whole film: ",
                  strrchr(path, '/') + 1, b[0], b[2], b[1], b[3], worst, r->lung_focus);
    ps_gradcam_result *rf = NULL;
    assert_int_equal(ps_gradcam_compute(film_m, img, &o, &rf), PS_OK);
    print_message("%.3f)\n", rf->lung_focus);
    ps_gradcam_result_free(rf);
    ps_gradcam_result_free(r);
    ps_gradcam_result_free(rc);
    ps_image_free(crop);
    ps_image_free(img);
  }
  ps_model_free(m);
  ps_model_free(film_m);
  /* the CLI: JSON names the box, the overlay outlines it (orange) */
  const char *film = ps_test_src(g_sample[4]);
  char *ov = ps_test_join(ps_test_tmpdir(), "roi-overlay.png");
  int rc = -1;
  char *out = ps_test_capture(&rc, "'%s' gradcam --model '%s' --json -o '%s' '%s' 2>/dev/null", PS_CLI, g_lungs_model,
                              ov, film);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "\"roi\": ["));
  assert_non_null(strstr(out, "\"roi_fallback\": false"));
  free(out);
  ps_image *img = NULL;
  assert_int_equal(ps_image_read(film, NULL, &img), PS_OK);
  double b[4];
  int px[4];
  assert_int_equal(ps_lung_roi(img, NULL, b, NULL), PS_OK);
  assert_int_equal(ps_lung_box_pixels(b, img->width, img->height, px), PS_OK);
  int W = img->width, H = img->height;
  ps_image_free(img);
  /* read the overlay back as RGB through Pillow (a reader we did not write) when present */
  if (ps_test_have_python("PIL")) {
    out = ps_test_capture(&rc, "'%s' -c \"from PIL import Image; im=Image.open('%s').convert('RGB'); "
                               "print(im.size[0], im.size[1], *im.getpixel((%d, %d)), *im.getpixel((%d, %d)))\"",
                          PS_PYTHON, ov, (px[0] + px[2]) / 2, px[1], (px[0] + px[2]) / 2, px[3] - 1);
    int w2, h2, c[6];
    assert_int_equal(sscanf(out, "%d %d %d %d %d %d %d %d", &w2, &h2, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5]), 8);
    assert_int_equal(w2, W);
    assert_int_equal(h2, H);
    assert_true(c[0] == 255 && c[1] == 140 && c[2] == 0 && c[3] == 255 && c[4] == 140 && c[5] == 0);
    free(out);
  }
  free(ov);
}

/* ---- training -------------------------------------------------------------------------------- */

static uint32_t cache_method(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  uint32_t hdr[6] = {0};
  assert_int_equal(fread(hdr, 4, 6, f), 6);
  fclose(f);
  return hdr[4]; /* magic (8 bytes), version, size, method */
}

static void test_train_lungs(void **state) {
  (void)state;
  const char *tmp = ps_test_tmpdir();
  char *split = ps_test_join(tmp, "split");
  assert_int_equal(ps_test_system("'%s' split '%s' -o '%s' --seed 7 --task multiclass >/dev/null", PS_CLI,
                                  ps_test_data("kaggle"), split),
                   0);
  char *manifest = ps_test_join(split, "manifest.csv");
  char *out = ps_test_join(tmp, "train-lungs"), *cache = ps_test_join(tmp, "shared.pscache");
  char *cmd = NULL;
  /* through the CLI, as the user would */
  assert_true(asprintf(&cmd, "'%s' train --manifest '%s' -o '%s' --roi lungs --size 64 --epochs 2 --batch 8 --limit 8 "
                             "--threads 2 --device cpu --seed 3 --cache '%s' 2>/dev/null",
                       PS_CLI, manifest, out, cache) > 0);
  assert_int_equal(ps_test_system("%s", cmd), 0);
  free(cmd);
  char *best = ps_test_join(out, "best.safetensors");
  ps_model *m = NULL;
  assert_int_equal(ps_model_load(best, PS_DEVICE_CPU, &m), PS_OK);
  assert_int_equal(ps_model_meta_get(m)->roi, PS_ROI_LUNGS);
  assert_int_equal(ps_model_meta_get(m)->input_size, 64);
  assert_non_null(strstr(ps_model_meta_get(m)->provenance, "roi lungs"));
  assert_int_equal(cache_method(cache), PS_TRAIN_CACHE_LUNG_ROI);
  /* the cache holds exactly the crops classify makes: the first training film's pixels */
  {
    FILE *f = fopen(manifest, "r");
    char line[2048], first[2048] = "";
    assert_non_null(fgets(line, sizeof line, f));
    while (fgets(line, sizeof line, f)) /* the first train-split row (--limit keeps rank 0) */
      if (strstr(line, ",train,")) {
        *strchr(line, ',') = 0;
        snprintf(first, sizeof first, "%s", line);
        break;
      }
    fclose(f);
    assert_true(first[0]);
    uint8_t *pix = NULL;
    int built = -1;
    const char *p1[1] = {first};
    assert_int_equal(ps_train_cache_load_roi(cache, 64, PS_ROI_LUNGS, 1, p1, NULL, 1, NULL, NULL, &pix, &built),
                     PS_OK);
    assert_int_equal(built, 0); /* found in the lungs cache */
    ps_image *img = NULL;
    uint8_t want[64 * 64];
    assert_int_equal(ps_image_read(first, NULL, &img), PS_OK);
    assert_int_equal(ps_lung_roi_input_u8(img, PS_ROI_LUNGS, 64, want, NULL, NULL), PS_OK);
    assert_memory_equal(pix, want, sizeof want);
    free(pix);
    ps_image_free(img);
  }
  /* evaluate crops through the same path: its predictions equal ps_infer_image's */
  char *ev = ps_test_join(tmp, "eval-lungs");
  ps_eval_opts eo;
  memset(&eo, 0, sizeof eo);
  eo.model = best, eo.manifest = manifest, eo.outdir = ev, eo.limit = 4, eo.threads = 2, eo.device = PS_TRAIN_DEVICE_CPU;
  ps_eval_result er;
  assert_int_equal(ps_evaluate_run(&eo, NULL, NULL, &er), PS_OK);
  {
    char *pred = ps_test_join(ev, "predictions.csv");
    FILE *f = fopen(pred, "r");
    assert_non_null(f);
    char line[4096];
    assert_non_null(fgets(line, sizeof line, f));
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
      char *c = strchr(line, ',');
      *c = 0;
      char *last = strrchr(c + 1, ',');
      double p1 = atof(last + 1);
      float p[PS_MODEL_MAX_CLASSES];
      assert_int_equal(ps_infer_file(m, line, NULL, p, NULL), PS_OK);
      assert_true(fabs(p1 - p[1]) < 1e-5);
      rows++;
    }
    fclose(f);
    assert_true(rows >= 2);
    free(pred);
  }
  ps_model_free(m);
  m = NULL;
  /* --roi lungmask through the CLI with the same cache: rebuilt (method 3), the masked crops */
  char *outm = ps_test_join(tmp, "train-lungmask");
  assert_true(asprintf(&cmd, "'%s' train --manifest '%s' -o '%s' --roi lungmask --size 64 --epochs 1 --batch 8 "
                             "--limit 8 --threads 2 --device cpu --seed 3 --cache '%s' 2>/dev/null",
                       PS_CLI, manifest, outm, cache) > 0);
  assert_int_equal(ps_test_system("%s", cmd), 0);
  free(cmd);
  assert_int_equal(cache_method(cache), PS_TRAIN_CACHE_LUNG_MASK);
  char *bestm = ps_test_join(outm, "best.safetensors");
  assert_int_equal(ps_model_load(bestm, PS_DEVICE_CPU, &m), PS_OK);
  assert_int_equal(ps_model_meta_get(m)->roi, PS_ROI_LUNGMASK);
  assert_non_null(strstr(ps_model_meta_get(m)->provenance, "roi lungmask"));
  {
    char *h = st_header(bestm);
    assert_non_null(strstr(h, "\"roi\":\"lungmask\""));
    free(h);
  }
  {
    /* the cache holds ps_lung_roi_input_u8(LUNGMASK) of every film, not the lungs crops */
    FILE *f = fopen(manifest, "r");
    char line[2048];
    const char *tp[8];
    int nt = 0;
    assert_non_null(fgets(line, sizeof line, f));
    while (nt < 2 && fgets(line, sizeof line, f))
      if (strstr(line, ",train,")) *strchr(line, ',') = 0, tp[nt++] = strdup(line);
    fclose(f);
    uint8_t *pix = NULL;
    int built = -1;
    /* the first training film (--limit keeps rank 0) is in the cache as it is */
    assert_int_equal(ps_train_cache_load_roi(cache, 64, PS_ROI_LUNGMASK, 1, tp, NULL, 1, NULL, NULL, &pix, &built),
                     PS_OK);
    assert_int_equal(built, 0);
    free(pix);
    pix = NULL;
    assert_int_equal(ps_train_cache_load_roi(cache, 64, PS_ROI_LUNGMASK, nt, tp, NULL, 1, NULL, NULL, &pix, &built),
                     PS_OK);
    int filled_differs = 0;
    for (int i = 0; i < nt; i++) {
      ps_image *img = NULL;
      uint8_t want[64 * 64], lungs[64 * 64];
      assert_int_equal(ps_image_read(tp[i], NULL, &img), PS_OK);
      assert_int_equal(ps_lung_roi_input_u8(img, PS_ROI_LUNGMASK, 64, want, NULL, NULL), PS_OK);
      assert_int_equal(ps_lung_roi_input_u8(img, PS_ROI_LUNGS, 64, lungs, NULL, NULL), PS_OK);
      assert_memory_equal(pix + (size_t)i * 64 * 64, want, sizeof want);
      filled_differs += memcmp(want, lungs, sizeof want) != 0;
      if (i) {
        ps_image_free(img);
        continue;
      }
      /* Grad-CAM of a lungmask model: classify's prediction, zero outside the box, and the same
       * input when Grad-CAM's own lung options differ (the mask is then segmented separately) */
      ps_gradcam_result *r = NULL, *r2 = NULL;
      ps_gradcam_opts go = ps_gradcam_opts_default();
      assert_int_equal(ps_gradcam_compute(m, img, &go, &r), PS_OK);
      float p[PS_MODEL_MAX_CLASSES];
      double box[4];
      int fb = -1;
      assert_int_equal(ps_infer_image_roi(m, img, p, NULL, box, &fb), PS_OK);
      assert_memory_equal(r->roi, box, sizeof box);
      assert_int_equal(r->roi_fallback, fb);
      assert_true(fabsf(p[1] - r->probs[1]) < 1e-5f);
      int px[4], W = img->width;
      assert_int_equal(ps_lung_box_pixels(box, W, img->height, px), PS_OK);
      for (int y = 0; y < img->height; y++)
        for (int x = 0; x < W; x++)
          if (!(x >= px[0] && x < px[2] && y >= px[1] && y < px[3])) assert_true(r->cam[(size_t)y * W + x] == 0.0f);
      go.lung.work_size = 384;
      assert_int_equal(ps_gradcam_compute(m, img, &go, &r2), PS_OK);
      assert_memory_equal(r2->roi, box, sizeof box);
      assert_true(fabsf(p[1] - r2->probs[1]) < 1e-5f);
      ps_gradcam_result_free(r);
      ps_gradcam_result_free(r2);
      ps_image_free(img);
    }
    assert_int_equal(filled_differs, nt);
    /* the same film asked for as lungs: not in a lungmask cache (rebuilt, method 2) */
    free(pix);
    pix = NULL;
    char *other = ps_test_join(tmp, "lungmask-copy.pscache");
    assert_int_equal(ps_test_system("cp '%s' '%s'", cache, other), 0);
    assert_int_equal(ps_train_cache_load_roi(other, 64, PS_ROI_LUNGS, 1, tp, NULL, 1, NULL, NULL, &pix, &built), PS_OK);
    assert_int_equal(built, 1);
    assert_int_equal(cache_method(other), PS_TRAIN_CACHE_LUNG_ROI);
    free(pix);
    free(other);
    for (int i = 0; i < nt; i++) free((void *)tp[i]);
  }
  ps_model_free(m);
  free(bestm);
  free(outm);
  /* a film run given the lungmask cache does not reuse it (rebuilt: method 1), and back */
  ps_train_opts o;
  memset(&o, 0, sizeof o);
  char *out2 = ps_test_join(tmp, "train-film");
  o.manifest = manifest, o.outdir = out2, o.size = 64, o.epochs = 1, o.batch = 8, o.limit = 8, o.threads = 2;
  o.device = PS_TRAIN_DEVICE_CPU, o.seed = 3, o.cache = cache, o.roi = PS_ROI_FILM;
  ps_train_result r;
  assert_int_equal(ps_train_run(&o, NULL, NULL, &r), PS_OK);
  assert_int_equal(r.cache_built, 1);
  assert_int_equal(cache_method(cache), PS_TRAIN_CACHE_RESIZE_PIL_BILINEAR);
  char *best2 = ps_test_join(out2, "best.safetensors");
  assert_int_equal(ps_model_load(best2, PS_DEVICE_CPU, &m), PS_OK);
  assert_int_equal(ps_model_meta_get(m)->roi, PS_ROI_FILM);
  ps_model_free(m);
  o.outdir = out;
  o.roi = PS_ROI_LUNGS;
  o.resume = 0;
  char *out3 = ps_test_join(tmp, "train-lungs-2");
  o.outdir = out3;
  assert_int_equal(ps_train_run(&o, NULL, NULL, &r), PS_OK);
  assert_int_equal(r.cache_built, 1);
  assert_int_equal(cache_method(cache), PS_TRAIN_CACHE_LUNG_ROI);
  o.outdir = out3; /* same roi, same cache: reused */
  assert_int_equal(ps_train_run(&o, NULL, NULL, &r), PS_OK);
  assert_int_equal(r.cache_built, 0);
  /* resuming a lungs checkpoint as a film run is refused, naming the roi */
  o.outdir = out;
  o.roi = PS_ROI_FILM;
  o.resume = 1;
  o.epochs = 3;
  assert_int_equal(ps_train_run(&o, NULL, NULL, &r), PS_EINVAL);
  print_message("resume with another roi: %s\n", ps_last_error());
  assert_non_null(strstr(ps_last_error(), "roi lungs"));
  free(best2);
  free(out3);
  free(out2);
  free(ev);
  free(best);
  free(out);
  free(cache);
  free(manifest);
  free(split);
}

int main(void) {
  ps_log_set(NULL, NULL);
  if (getenv("PS_TEST_FILTER")) cmocka_set_test_filter(getenv("PS_TEST_FILTER"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_box_phantom),
      cmocka_unit_test(test_box_fallbacks_and_refusals),
      cmocka_unit_test(test_box_sample_films),
      cmocka_unit_test(test_box_kaggle_sweep),
      cmocka_unit_test(test_input_film_path_unchanged),
      cmocka_unit_test(test_lungmask_pixels),
      cmocka_unit_test(test_lungmask_vs_reference),
      cmocka_unit_test(test_meta_roundtrip),
      cmocka_unit_test(test_classify_vs_torchvision),
      cmocka_unit_test(test_classify_cli),
      cmocka_unit_test(test_gradcam_lungs),
      cmocka_unit_test(test_train_lungs),
  };
  return cmocka_run_group_tests(tests, setup_lungs_model, teardown_lungs_model);
}
