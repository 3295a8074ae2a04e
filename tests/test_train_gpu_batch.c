/* The device batch path of training (native/train/train_gpu.h), run on CPU: the same code runs on
 * CUDA. References are the host path's building blocks (ps_augment, ps_resize_box_f32, ps_rotate,
 * ps_preprocess_normalize: Pillow/torchvision-checked in test_preprocess) on real Kermany films. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_image_io.h"
#include "ps_preprocess.h"
#include "ps_torch.h"
#include "test_util.h"
#include "train_gpu.h"

#define S 64
#define NF 12

static uint8_t g_pix[NF * S * S]; /* (NF, S, S): real films as the training cache holds them */
/* CPU here and on CI; PS_TEST_DEVICE=cuda runs the batch checks on a GPU (tests/bench/devbatch_check.sh). */
static ps_device g_dev = PS_DEVICE_CPU;

static const char *films[] = {
    "kaggle/NORMAL/IM-0117-0001.jpeg", "kaggle/PNEUMONIA/person1026_bacteria_2957.jpeg",
    "kaggle/PNEUMONIA/person1026_virus_1718.jpeg"};

static int setup(void **state) {
  (void)state;
  const char *d = getenv("PS_TEST_DEVICE");
  if (d && !strcmp(d, "cuda")) g_dev = PS_DEVICE_CUDA;
  for (int k = 0; k < NF; k++) {
    ps_image *img = NULL;
    if (ps_image_read(ps_test_data(films[k % 3]), NULL, &img) != PS_OK) {
      fprintf(stderr, "read %s: %s\n", films[k % 3], ps_last_error());
      return -1;
    }
    uint8_t *full = malloc((size_t)img->width * img->height);
    ps_image_to_u8(img, full);
    /* three sizes of the same films so the twelve differ */
    int sz = S + 16 * (k / 3);
    uint8_t *mid = malloc((size_t)sz * sz);
    ps_resize_u8(full, img->width, img->height, mid, sz, sz);
    ps_resize_u8(mid, sz, sz, g_pix + (size_t)k * S * S, S, S);
    free(mid), free(full);
    ps_image_free(img);
  }
  return 0;
}

/* The host path of train.c's fill_batch: u8 / 255, ps_augment(seed), normalise. */
static void host_batch(const int *idx, int nb, const ps_augment_opts *aug, const uint64_t *seeds, float *x) {
  static const float mean[3] = PS_IMAGENET_MEAN, stdv[3] = PS_IMAGENET_STD;
  float src[S * S], dst[S * S];
  for (int k = 0; k < nb; k++) {
    const uint8_t *p = g_pix + (size_t)idx[k] * S * S;
    for (int i = 0; i < S * S; i++) src[i] = p[i] * (1.0f / 255.0f);
    const float *g = src;
    if (aug) {
      assert_int_equal(ps_augment(src, S, S, aug, seeds[k], dst, S, S), PS_OK);
      g = dst;
    }
    ps_preprocess_normalize(g, S, S, mean, stdv, x + (size_t)k * 3 * S * S);
  }
}

static float *device_batch(ps_devbatch *db, const int *idx, int nb, const ps_augment_opts *aug, const uint64_t *seeds) {
  ps_tensor *x = NULL;
  int st = ps_devbatch_fill(db, idx, nb, aug, seeds, &x);
  if (st) fprintf(stderr, "%s\n", ps_last_error());
  assert_int_equal(st, PS_OK);
  assert_int_equal(ps_tensor_ndim(x), 4);
  assert_int_equal(ps_tensor_size(x, 0), nb);
  assert_int_equal(ps_tensor_size(x, 1), 3);
  assert_int_equal(ps_tensor_size(x, 2), S);
  assert_int_equal(ps_tensor_size(x, 3), S);
  float *out = malloc(sizeof(float) * 3 * S * S * nb);
  assert_int_equal(ps_tensor_to_f32(x, out, (size_t)3 * S * S * nb), PS_OK);
  ps_tensor_free(x);
  return out;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= m)) m = d; /* NaN propagates */
  }
  return m;
}

static const int g_idx[8] = {3, 0, 11, 5, 5, 7, 1, 9}; /* a batch with a repeated film */

static void seeds_for(uint64_t run_seed, uint64_t *seeds, int n) {
  ps_rng r;
  ps_rng_seed(&r, run_seed);
  for (int k = 0; k < n; k++) seeds[k] = ps_rng_next(&r);
}

/* The batch g_idx built on the host (*ref) and by the device path (*got); returns max |got - ref|. */
static double both_batches(const ps_augment_opts *aug, const uint64_t *seeds, float **ref, float **got) {
  ps_devbatch *db = NULL;
  assert_int_equal(ps_devbatch_create(&db, g_pix, NF, S, g_dev), PS_OK);
  *ref = malloc(sizeof(float) * 3 * S * S * 8);
  host_batch(g_idx, 8, aug, seeds, *ref);
  *got = device_batch(db, g_idx, 8, aug, seeds);
  ps_devbatch_free(db);
  return max_abs_diff(*ref, *got, (size_t)3 * S * S * 8);
}

/* No augmentation: index_select + /255 + normalise equals the host batch exactly. */
static void test_no_augment_equals_host(void **state) {
  (void)state;
  float *ref = NULL, *got = NULL;
  double d = both_batches(NULL, NULL, &ref, &got);
  print_message("no augmentation: max |device - host| = %.3g\n", d);
  assert_true(d <= 1e-5);
  free(ref), free(got);
}

/* With crop + brightness/contrast (the training recipes, and the default crop), the same seeds give
 * the host batch to float rounding: the crop box drawn identically, PIL's upscaling bilinear =
 * grid_sample(border), and the jitter order and factors identical. */
static void check_aug_equals_host(const ps_augment_opts *aug, const char *what, uint64_t run_seed) {
  uint64_t seeds[8];
  seeds_for(run_seed, seeds, 8);
  float *ref = NULL, *got = NULL;
  double d = both_batches(aug, seeds, &ref, &got);
  /* the draws really differ per film: crops and factors */
  int crops = 0, bright = 0;
  for (int k = 0; k < 8; k++) {
    ps_devbatch_draw dr;
    assert_int_equal(ps_devbatch_draw_params(aug, seeds[k], S, &dr), PS_OK);
    crops += dr.crop_w != S || dr.crop_h != S;
    bright += fabsf(dr.a_mul - 1.0f) > 1e-3f || fabsf(dr.b_mul - 1.0f) > 1e-3f;
  }
  /* per-film means (brightness statistics) agree too */
  double worst_mean = 0;
  for (int k = 0; k < 8; k++) {
    double a = 0, b = 0;
    for (int i = 0; i < S * S; i++) a += ref[(size_t)k * 3 * S * S + i], b += got[(size_t)k * 3 * S * S + i];
    worst_mean = fmax(worst_mean, fabs(a - b) / (S * S));
  }
  print_message("%s: %d/8 cropped, %d/8 jittered, max |device - host| = %.3g, worst per-film mean diff %.3g\n", what,
                crops, bright, d, worst_mean);
  if (aug->crop_scale_max > 0) assert_true(crops >= 6);
  assert_true(bright >= 6);
  assert_true(d <= 1e-4); /* normalised units (x 1/0.225): 2e-5 in [0, 1] pixel units */
  assert_true(worst_mean <= 1e-5);
  free(ref), free(got);
}

static void test_augment_equals_host(void **state) {
  (void)state;
  ps_augment_opts bin = ps_augment_opts_default(); /* train.c's binary recipe */
  bin.crop_scale_min = 0.8, bin.crop_scale_max = 1.0, bin.crop_ratio_min = 0.9, bin.crop_ratio_max = 1.1;
  bin.brightness = 0.2, bin.contrast = 0.2, bin.hflip = 0, bin.rotate_deg = 0;
  check_aug_equals_host(&bin, "binary recipe (crop 0.8-1, ratio 0.9-1.1, jitter 0.2)", 11);
  ps_augment_opts multi = bin; /* multiclass recipe: jitter only */
  multi.crop_scale_min = 0, multi.crop_scale_max = 0;
  check_aug_equals_host(&multi, "multiclass recipe (jitter only)", 12);
  ps_augment_opts def = ps_augment_opts_default(); /* default crop 0.7-1, 3/4-4/3, rotation off */
  def.rotate_deg = 0;
  check_aug_equals_host(&def, "default crop 0.7-1 ratio 3/4-4/3 + jitter", 13);
  ps_augment_opts flip = bin; /* flip folded into theta */
  flip.hflip = 1;
  check_aug_equals_host(&flip, "binary recipe + hflip", 14);
}

/* ps_op_affine_sample: identity theta reproduces the input; a crop-box theta equals
 * ps_resize_box_f32 of that box (PIL resize with box=). */
static void test_affine_sample_op(void **state) {
  (void)state;
  float src[S * S];
  for (int i = 0; i < S * S; i++) src[i] = g_pix[(size_t)S * S + i] / 255.0f;
  int64_t xs[4] = {1, 1, S, S}, ts[3] = {1, 2, 3};
  ps_tensor *x = NULL, *th = NULL, *y = NULL;
  assert_int_equal(ps_tensor_from_f32(&x, src, xs, 4, g_dev), PS_OK);
  float id[6] = {1, 0, 0, 0, 1, 0};
  assert_int_equal(ps_tensor_from_f32(&th, id, ts, 3, g_dev), PS_OK);
  float out[S * S], ref[S * S];
  for (int pad = 0; pad < 2; pad++) {
    assert_int_equal(ps_op_affine_sample(&y, x, th, S, S, (ps_pad_mode)pad), PS_OK);
    assert_int_equal(ps_tensor_to_f32(y, out, S * S), PS_OK);
    ps_tensor_free(y), y = NULL;
    double d = max_abs_diff(out, src, S * S);
    print_message("identity theta (pad %d): max diff %.3g\n", pad, d);
    assert_true(d <= 1e-5);
  }
  ps_tensor_free(th), th = NULL;
  /* crop boxes, including ones touching the film's edges */
  static const int boxes[][4] = {{5, 9, 50, 47}, {0, 0, 58, 61}, {10, 3, 54, 61}, {0, 20, 37, 44}};
  for (int b = 0; b < 4; b++) {
    int bx = boxes[b][0], by = boxes[b][1], bw = boxes[b][2], bh = boxes[b][3];
    float t[6] = {(float)bw / S, 0, (float)(2.0 * bx + bw) / S - 1.0f, 0, (float)bh / S, (float)(2.0 * by + bh) / S - 1.0f};
    assert_int_equal(ps_tensor_from_f32(&th, t, ts, 3, g_dev), PS_OK);
    assert_int_equal(ps_op_affine_sample(&y, x, th, S, S, PS_PAD_BORDER), PS_OK);
    assert_int_equal(ps_tensor_to_f32(y, out, S * S), PS_OK);
    assert_int_equal(ps_resize_box_f32(src, S, S, bx, by, bx + bw, by + bh, ref, S, S), PS_OK);
    double d = max_abs_diff(out, ref, S * S);
    print_message("crop box (%d,%d %dx%d): max |grid_sample - ps_resize_box_f32| = %.3g\n", bx, by, bw, bh, d);
    assert_true(d <= 2e-5);
    ps_tensor_free(th), ps_tensor_free(y), th = y = NULL;
  }
  /* a wrong theta shape is refused with a message, not a crash */
  int64_t bad[3] = {1, 3, 3};
  float nine[9] = {0};
  assert_int_equal(ps_tensor_from_f32(&th, nine, bad, 3, g_dev), PS_OK);
  assert_int_equal(ps_op_affine_sample(&y, x, th, S, S, PS_PAD_ZEROS), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "theta"));
  assert_null(y);
  ps_tensor_free(th), ps_tensor_free(x);
}

/* Rotation (not in the training recipes): the rotation is folded into the same resampling, so it
 * agrees with ps_rotate (torchvision F.rotate) wherever the source point lies inside the film, and
 * the outputs stay finite and inside the normalised range everywhere. */
static void test_rotation(void **state) {
  (void)state;
  ps_augment_opts rot;
  memset(&rot, 0, sizeof rot);
  rot.rotate_deg = 5;
  uint64_t seeds[8];
  seeds_for(21, seeds, 8);
  ps_devbatch *db = NULL;
  assert_int_equal(ps_devbatch_create(&db, g_pix, NF, S, g_dev), PS_OK);
  float *ref = malloc(sizeof(float) * 3 * S * S * 8);
  host_batch(g_idx, 8, &rot, seeds, ref);
  float *got = device_batch(db, g_idx, 8, &rot, seeds);
  double inner = 0;
  int rotated = 0;
  for (int k = 0; k < 8; k++) {
    ps_devbatch_draw dr;
    assert_int_equal(ps_devbatch_draw_params(&rot, seeds[k], S, &dr), PS_OK);
    rotated += fabs(dr.angle) > 0.5;
    for (int i = 0; i < S; i++)
      for (int j = 0; j < S; j++) {
        double dx = j - (S - 1) * 0.5, dy = i - (S - 1) * 0.5;
        if (dx * dx + dy * dy > (S * 0.5 - 2) * (S * 0.5 - 2)) continue; /* rotates in from inside */
        size_t o = (size_t)k * 3 * S * S + (size_t)i * S + j;
        inner = fmax(inner, fabs((double)ref[o] - got[o]));
      }
  }
  /* the whole augmentation with rotation: finite and in range */
  ps_augment_opts all = ps_augment_opts_default();
  float *full = device_batch(db, g_idx, 8, &all, seeds);
  static const float mean[3] = PS_IMAGENET_MEAN, stdv[3] = PS_IMAGENET_STD;
  int bad = 0;
  for (int k = 0; k < 8; k++)
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < S * S; i++) {
        float v = full[((size_t)k * 3 + c) * S * S + i];
        if (!isfinite(v) || v < (0 - mean[c]) / stdv[c] - 1e-5f || v > (1 - mean[c]) / stdv[c] + 1e-5f) bad++;
      }
  print_message("rotation +-5 deg (%d/8 by > 0.5 deg): inner-disk max |device - ps_rotate| = %.3g; "
                "full default augmentation: %d values outside the normalised range or non-finite\n",
                rotated, inner, bad);
  assert_true(rotated >= 4);
  assert_true(inner <= 1e-4);
  assert_int_equal(bad, 0);
  free(ref), free(got), free(full);
  ps_devbatch_free(db);
}

static void test_bad_input(void **state) {
  (void)state;
  ps_devbatch *db = NULL;
  assert_int_equal(ps_devbatch_create(&db, NULL, 3, S, g_dev), PS_EINVAL);
  assert_null(db);
  assert_int_equal(ps_devbatch_create(&db, g_pix, NF, S, g_dev), PS_OK);
  int idx[2] = {0, NF};
  ps_tensor *x = NULL;
  assert_int_equal(ps_devbatch_fill(db, idx, 2, NULL, NULL, &x), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "outside"));
  assert_null(x);
  ps_augment_opts bad = ps_augment_opts_default();
  bad.crop_scale_min = 0.9, bad.crop_scale_max = 0.5;
  uint64_t seeds[2] = {1, 2};
  idx[1] = 1;
  assert_int_equal(ps_devbatch_fill(db, idx, 2, &bad, seeds, &x), PS_EINVAL);
  assert_null(x);
  ps_devbatch_free(db);
  ps_devbatch_free(NULL);
}

/* The env switch, and `pneumoscope train` on ~12 real films with PS_TRAIN_DEVICE_BATCHES=1: the device
 * path is taken (logged) and its loss is finite; without augmentation its batches are the host
 * path's exactly, so the same run on the host path gives the same loss. (With augmentation the
 * batches agree to ~3e-6, which Adam's sign-like first step turns into ~1e-3 in the epoch loss: that
 * comparison is made on the batches above, not here.) */
static double train_loss_of(const char *dir) {
  char *p = ps_test_join(dir, "history.json");
  FILE *f = fopen(p, "rb");
  free(p);
  if (!f) return NAN;
  static char buf[1 << 14];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *s = strstr(buf, "\"train_loss\": ");
  return s ? atof(s + 14) : NAN;
}

static void test_train_cli(void **state) {
  (void)state;
  setenv("PS_TRAIN_DEVICE_BATCHES", "1", 1);
  assert_true(ps_devbatch_wanted(PS_DEVICE_CPU));
  setenv("PS_TRAIN_DEVICE_BATCHES", "0", 1);
  assert_false(ps_devbatch_wanted(PS_DEVICE_CUDA));
  unsetenv("PS_TRAIN_DEVICE_BATCHES");
  assert_false(ps_devbatch_wanted(PS_DEVICE_CPU));
  assert_true(ps_devbatch_wanted(PS_DEVICE_CUDA));

  const char *tmp = ps_test_tmpdir();
  char *split = ps_test_join(tmp, "split"), *dev = ps_test_join(tmp, "dev"), *host = ps_test_join(tmp, "host");
  char *cache = ps_test_join(tmp, "cache-64.pscache");
  assert_int_equal(ps_test_system("'%s' split '%s' -o '%s' --seed 7 >/dev/null", PS_CLI, ps_test_data("kaggle"), split), 0);
  char *manifest = ps_test_join(split, "manifest.csv");
  const char *common = "--size 64 --epochs 1 --batch 8 --limit 6 --threads 2 --device cpu --seed 5";
  int ex = -1;
  char *log = ps_test_capture(&ex, "PS_TRAIN_DEVICE_BATCHES=1 '%s' train --manifest '%s' -o '%s' --cache '%s' %s 2>&1",
                              PS_CLI, manifest, dev, cache, common);
  if (ex != 0) fprintf(stderr, "%s\n", log ? log : "");
  assert_int_equal(ex, 0);
  assert_non_null(strstr(log, "batches built on the"));
  free(log);
  double la = train_loss_of(dev);
  char *dev_na = ps_test_join(tmp, "dev-noaug"), *host_na = ps_test_join(tmp, "host-noaug");
  log = ps_test_capture(&ex, "PS_TRAIN_DEVICE_BATCHES=1 '%s' train --no-augment --manifest '%s' -o '%s' --cache '%s' %s 2>&1",
                        PS_CLI, manifest, dev_na, cache, common);
  assert_int_equal(ex, 0);
  assert_non_null(strstr(log, "batches built on the"));
  free(log);
  log = ps_test_capture(&ex, "PS_TRAIN_DEVICE_BATCHES=0 '%s' train --no-augment --manifest '%s' -o '%s' --cache '%s' %s 2>&1",
                        PS_CLI, manifest, host_na, cache, common);
  assert_int_equal(ex, 0);
  assert_null(strstr(log, "batches built on the"));
  free(log);
  double ld = train_loss_of(dev_na), lh = train_loss_of(host_na);
  print_message("1 epoch on ~12 films, size 64: augmented device-path train_loss %.6f; no augmentation: device path "
                "%.6f, host path %.6f\n", la, ld, lh);
  assert_true(isfinite(la) && la > 0);
  assert_true(isfinite(ld) && isfinite(lh));
  assert_true(fabs(ld - lh) <= 1e-5);
  free(dev_na), free(host_na);
  free(split), free(dev), free(host), free(cache), free(manifest);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_augment_equals_host), cmocka_unit_test(test_augment_equals_host),
      cmocka_unit_test(test_affine_sample_op),       cmocka_unit_test(test_rotation),
      cmocka_unit_test(test_bad_input),              cmocka_unit_test(test_train_cli),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
