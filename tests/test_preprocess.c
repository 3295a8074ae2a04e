/* native/preprocess: resize vs Pillow (8-bit exact, float path), network tensors vs torchvision,
 * augmentation building blocks vs torchvision.transforms.functional, augmentation determinism and
 * statistics, percentile windowing vs numpy. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ps_image_io.h"
#include "ps_preprocess.h"
#include "test_util.h"

#define REF "tests/ref/preprocess_reference.py"

static const char *films[] = {
    "kaggle/PNEUMONIA/person388_virus_777.jpeg",    /* RGB JPEG */
    "kaggle/NORMAL/IM-0117-0001.jpeg",              /* 1422x1152 gray */
    "kaggle/PNEUMONIA/person1473_virus_2551.jpeg",  /* 2088x1840 */
    "kaggle/PNEUMONIA/person58_bacteria_278.jpeg",  /* 1202x704 */
    "png/nih_00000001_000.png",                     /* 512x512 PNG */
};
#define NFILMS (sizeof films / sizeof films[0])

static ps_image *load(const char *rel) {
  ps_image *img = NULL;
  int st = ps_image_read(ps_test_data(rel), NULL, &img);
  if (st != PS_OK) fail_msg("%s: %s", rel, ps_last_error());
  return img;
}

static double *npy(const char *dir, const char *name, size_t *count) {
  char *p = ps_test_join(dir, name);
  size_t shape[4] = {0};
  int nd = 0;
  double *d = ps_test_read_npy(p, shape, &nd);
  if (!d) fail_msg("cannot read %s", p);
  size_t c = 1;
  for (int i = 0; i < nd; i++) c *= shape[i];
  *count = c;
  free(p);
  return d;
}

static char *fresh_dir(const char *tag) { return ps_test_join(ps_test_tmpdir(), tag); }

/* PIL Image.resize(BILINEAR): 8-bit path bit-exact, float path vs mode "F", and float path rounded
 * vs the 8-bit Pillow result within one grey level. Down- and up-sampling, square and not. */
static void test_resize_matches_pillow(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("PIL,numpy"), "Debian python3 with Pillow + numpy not available");
  static const int sizes[][2] = {{224, 224}, {512, 512}, {300, 200}, {97, 333}, {2200, 1900}};
  char *dir = fresh_dir("resize");
  char cmd[4096];
  int len = snprintf(cmd, sizeof cmd, "'%s' '%s' resize '%s' 224x224,512x512,300x200,97x333,2200x1900", PS_PYTHON,
                     ps_test_src(REF), dir);
  for (size_t i = 0; i < NFILMS; i++) len += snprintf(cmd + len, sizeof cmd - len, " '%s'", ps_test_data(films[i]));
  assert_int_equal(ps_test_system("%s", cmd), 0);
  for (size_t i = 0; i < NFILMS; i++) {
    ps_image *img = load(films[i]);
    uint8_t *u8 = malloc((size_t)img->width * img->height);
    ps_image_to_u8(img, u8);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      int w = sizes[s][0], h = sizes[s][1];
      if (w > 1000 && img->width > 1000) continue; /* upsampling only from the small films */
      char name[64];
      size_t n = 0;
      snprintf(name, sizeof name, "%zu_%dx%d_L.npy", i, w, h);
      double *refL = npy(dir, name, &n);
      snprintf(name, sizeof name, "%zu_%dx%d_F.npy", i, w, h);
      double *refF = npy(dir, name, &n);
      assert_int_equal(n, (size_t)w * h);
      uint8_t *o8 = malloc(n);
      assert_int_equal(ps_resize_u8(u8, img->width, img->height, o8, w, h), PS_OK);
      ps_image *r = NULL;
      assert_int_equal(ps_image_resize(img, w, h, &r), PS_OK);
      assert_int_equal(r->width, w);
      assert_int_equal(r->height, h);
      int d8 = 0, dround = 0;
      double dF = 0;
      size_t n8 = 0;
      for (size_t k = 0; k < n; k++) {
        int a = abs((int)o8[k] - (int)refL[k]);
        if (a > d8) d8 = a;
        n8 += a != 0;
        int q = (int)lrintf(r->data[k] * 255.0f);
        if (abs(q - (int)refL[k]) > dround) dround = abs(q - (int)refL[k]);
        double f = fabs(r->data[k] - refF[k]);
        if (!(f <= dF)) dF = f;
      }
      print_message("  %-44s %4dx%-4d -> %4dx%-4d u8 max|d| %d (%zu px)  float vs F %.2g  rounded vs L %d\n",
                    strrchr(films[i], '/') + 1, img->width, img->height, w, h, d8, n8, dF, dround);
      if (d8 != 0) fail_msg("8-bit resize differs from Pillow by %d grey levels", d8);
      if (!(dF <= 1e-6)) fail_msg("float resize differs from Pillow mode F by %g", dF);
      if (dround > 1) fail_msg("float resize rounded differs from Pillow L by %d grey levels", dround);
      free(o8);
      free(refL);
      free(refF);
      ps_image_free(r);
    }
    free(u8);
    ps_image_free(img);
  }
  free(dir);
}

/* PIL resize with a fractional box (the crop used by the augmentation). */
static void test_resize_box_matches_pillow(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("PIL,numpy"), "Debian python3 with Pillow + numpy not available");
  ps_image *img = load("png/nih_00000001_000.png");
  char *dir = fresh_dir("box");
  char *in = ps_test_join(ps_test_tmpdir(), "box_in.npy");
  size_t shape[2] = {(size_t)img->height, (size_t)img->width};
  assert_int_equal(ps_test_write_npy_f32(in, img->data, shape, 2), 0);
  static const double boxes[][6] = {{40.5, 17.25, 401.0, 480.75, 224, 224}, {0, 0, 512, 512, 640, 100},
                                     {100, 200, 110, 230, 50, 60}};
  for (size_t b = 0; b < sizeof boxes / sizeof boxes[0]; b++) {
    const double *x = boxes[b];
    assert_int_equal(ps_test_system("'%s' '%s' box '%s' '%s' %.17g %.17g %.17g %.17g %d %d", PS_PYTHON,
                                    ps_test_src(REF), in, dir, x[0], x[1], x[2], x[3], (int)x[4], (int)x[5]),
                     0);
    size_t n = 0;
    double *ref = npy(dir, "box.npy", &n);
    int w = (int)x[4], h = (int)x[5];
    assert_int_equal(n, (size_t)w * h);
    float *out = malloc(n * sizeof(float));
    assert_int_equal(ps_resize_box_f32(img->data, img->width, img->height, x[0], x[1], x[2], x[3], out, w, h), PS_OK);
    double md = 0;
    for (size_t k = 0; k < n; k++) md = fmax(md, fabs(out[k] - ref[k]));
    print_message("  box (%g, %g, %g, %g) -> %dx%d: max|d| %.2g\n", x[0], x[1], x[2], x[3], w, h, md);
    assert_true(md <= 1e-6);
    free(out);
    free(ref);
  }
  float o[4];
  assert_int_equal(ps_resize_box_f32(img->data, img->width, img->height, -1, 0, 10, 10, o, 2, 2), PS_EINVAL);
  assert_int_equal(ps_resize_box_f32(img->data, img->width, img->height, 0, 0, 513, 10, o, 2, 2), PS_EINVAL);
  assert_int_equal(ps_resize_box_f32(img->data, img->width, img->height, 5, 0, 5, 10, o, 2, 2), PS_EINVAL);
  ps_image_free(img);
  free(in);
  free(dir);
}

/* ps_preprocess_tensor == torchvision Compose([Resize((s, s)), ToTensor(), Normalize(ImageNet)])
 * on Image.open(film).convert("RGB"); for a DICOM film the reference reads our 8-bit PNG of it. */
static void test_tensor_matches_torchvision(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("torch,torchvision,PIL,numpy"), "Debian python3 with torchvision missing");
  const char *files[NFILMS + 1];
  ps_image *imgs[NFILMS + 1];
  for (size_t i = 0; i < NFILMS; i++) {
    files[i] = strdup(ps_test_data(films[i]));
    imgs[i] = load(films[i]);
  }
  size_t nf = NFILMS;
  if (strstr(ps_build_features(), "dicom")) {
    ps_image *d = load("dicom/CR-MONO1-10-chest.dcm");
    char *png = ps_test_join(ps_test_tmpdir(), "cr_mono1.png");
    assert_int_equal(ps_image_write_png(d, png), PS_OK);
    files[nf] = png;
    imgs[nf++] = d;
  }
  static const int sizes[] = {224, 320};
  const float stdv[3] = PS_IMAGENET_STD;
  double tol = 1.0 / 255 / stdv[2] + 1e-5;
  for (size_t s = 0; s < 2; s++) {
    int S = sizes[s];
    char tag[32];
    snprintf(tag, sizeof tag, "tensor%d", S);
    char *dir = fresh_dir(tag);
    char cmd[4096];
    int len = snprintf(cmd, sizeof cmd, "'%s' '%s' tensor '%s' %d", PS_PYTHON, ps_test_src(REF), dir, S);
    for (size_t i = 0; i < nf; i++) len += snprintf(cmd + len, sizeof cmd - len, " '%s'", files[i]);
    assert_int_equal(ps_test_system("%s", cmd), 0);
    float *x = malloc(3 * (size_t)S * S * sizeof(float));
    for (size_t i = 0; i < nf; i++) {
      assert_int_equal(ps_preprocess_tensor(imgs[i], S, x), PS_OK);
      char name[32];
      snprintf(name, sizeof name, "%zu.npy", i);
      size_t n = 0;
      double *ref = npy(dir, name, &n);
      assert_int_equal(n, 3 * (size_t)S * S);
      double md = 0;
      for (size_t k = 0; k < n; k++) md = fmax(md, fabs(x[k] - ref[k]));
      print_message("  %-44s %dx%d -> (3,%d,%d) max|d| %.3g (tol %.3g)\n", strrchr(files[i], '/') + 1,
                    imgs[i]->width, imgs[i]->height, S, S, md, tol);
      if (!(md <= tol)) fail_msg("%s: tensor differs from torchvision by %g", files[i], md);
      /* in fact the 8-bit pipeline is exact: only float32 rounding remains */
      if (!(md <= 1e-5)) fail_msg("%s: tensor not exact (%g)", files[i], md);
      free(ref);
    }
    free(x);
    free(dir);
  }
  for (size_t i = 0; i < nf; i++) {
    free((void *)files[i]);
    ps_image_free(imgs[i]);
  }
  float y[12];
  assert_int_equal(ps_preprocess_tensor(NULL, 2, y), PS_EINVAL);
}

/* adjust_brightness / adjust_contrast / rotate vs torchvision.transforms.functional on a tensor. */
static void test_functional_matches_torchvision(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("torch,torchvision,numpy"), "Debian python3 with torchvision missing");
  ps_image *film = load("kaggle/PNEUMONIA/person58_bacteria_278.jpeg");
  ps_image *img = NULL;
  assert_int_equal(ps_image_resize(film, 160, 120, &img), PS_OK);
  ps_image_free(film);
  size_t n = 160 * 120;
  char *in = ps_test_join(ps_test_tmpdir(), "functional_in.npy");
  size_t shape[2] = {120, 160};
  assert_int_equal(ps_test_write_npy_f32(in, img->data, shape, 2), 0);
  char *dir = fresh_dir("functional");
  int st = 0;
  char *params = ps_test_capture(&st, "'%s' '%s' functional '%s' '%s'", PS_PYTHON, ps_test_src(REF), in, dir);
  assert_int_equal(st, 0);
  float *buf = malloc(n * sizeof(float));
  int checked = 0;
  char *save = NULL;
  for (char *line = strtok_r(params, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char kind[16];
    int k = 0;
    double v = 0, fill = 0;
    int got = sscanf(line, "%15s %d %lf %lf", kind, &k, &v, &fill);
    assert_true(got >= 3);
    char name[64];
    snprintf(name, sizeof name, "%s_%d.npy", kind, k);
    size_t m = 0;
    double *ref = npy(dir, name, &m);
    assert_int_equal(m, n);
    double tol;
    if (!strcmp(kind, "bright")) {
      memcpy(buf, img->data, n * sizeof(float));
      ps_adjust_brightness(buf, n, (float)v);
      tol = 1e-6;
    } else if (!strcmp(kind, "contrast")) {
      memcpy(buf, img->data, n * sizeof(float));
      ps_adjust_contrast(buf, n, (float)v);
      tol = 1e-5; /* torch's float32 mean vs our double-accumulated mean */
    } else {
      ps_rotate(img->data, 160, 120, v, (float)fill, buf);
      tol = 1e-4; /* torch computes the sampling grid in float32 */
    }
    double md = 0;
    for (size_t i = 0; i < n; i++) md = fmax(md, fabs(buf[i] - ref[i]));
    print_message("  %-8s %-6g fill %-4g max|d| %.2g (tol %g)\n", kind, v, fill, md, tol);
    if (!(md <= tol)) fail_msg("%s %g differs from torchvision by %g", kind, v, md);
    free(ref);
    checked++;
  }
  assert_int_equal(checked, 18);
  free(buf);
  free(params);
  free(in);
  free(dir);
  ps_image_free(img);
}

/* Same seed -> identical output; other seeds -> other outputs; fixed draw order. */
static void test_augment_deterministic(void **state) {
  (void)state;
  ps_image *film = load("png/nih_00000001_000.png");
  ps_augment_opts o = ps_augment_opts_default();
  o.hflip = 1;
  const int S = 224;
  size_t n = (size_t)S * S;
  float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
  int differing = 0;
  for (uint64_t seed = 0; seed < 20; seed++) {
    assert_int_equal(ps_augment(film->data, 512, 512, &o, seed, a, S, S), PS_OK);
    assert_int_equal(ps_augment(film->data, 512, 512, &o, seed, b, S, S), PS_OK);
    assert_memory_equal(a, b, n * sizeof(float));
    assert_int_equal(ps_augment(film->data, 512, 512, &o, seed + 1000, c, S, S), PS_OK);
    differing += memcmp(a, c, n * sizeof(float)) != 0;
    for (size_t i = 0; i < n; i++) assert_true(a[i] >= 0.0f && a[i] <= 1.0f);
  }
  assert_int_equal(differing, 20);
  /* the generator itself: same seed, same stream; a known-answer check on splitmix64 seeding
   * would only test our own constants, so check distribution properties instead */
  ps_rng r1, r2;
  ps_rng_seed(&r1, 42);
  ps_rng_seed(&r2, 42);
  double sum = 0;
  int hist[10] = {0};
  for (int i = 0; i < 100000; i++) {
    double u = ps_rng_uniform(&r1);
    assert_true(u == ps_rng_uniform(&r2));
    assert_true(u >= 0 && u < 1);
    sum += u;
    hist[(int)(u * 10)]++;
    int k = ps_rng_int(&r1, 7);
    assert_true(k >= 0 && k < 7);
    (void)ps_rng_int(&r2, 7);
  }
  assert_true(fabs(sum / 100000 - 0.5) < 0.005);
  for (int i = 0; i < 10; i++) assert_true(hist[i] > 9500 && hist[i] < 10500);
  free(a);
  free(b);
  free(c);
  ps_image_free(film);
}

/* Everything off: the augmentation is the plain resize. Each option alone does what it says. */
static void test_augment_options(void **state) {
  (void)state;
  ps_image *film = load("kaggle/PNEUMONIA/person58_bacteria_278.jpeg");
  int W = film->width, H = film->height;
  const int S = 128;
  size_t n = (size_t)S * S;
  float *plain = malloc(n * sizeof(float)), *o = malloc(n * sizeof(float)), *m = malloc(n * sizeof(float));
  assert_int_equal(ps_resize_box_f32(film->data, W, H, 0, 0, W, H, plain, S, S), PS_OK);
  ps_augment_opts off;
  memset(&off, 0, sizeof off);
  assert_int_equal(ps_augment(film->data, W, H, &off, 7, o, S, S), PS_OK);
  assert_memory_equal(o, plain, n * sizeof(float));
  assert_int_equal(ps_augment(film->data, W, H, NULL, 7, o, S, S), PS_OK);
  assert_memory_equal(o, plain, n * sizeof(float));

  /* flip alone: either the plain resize or its mirror, both seen about half the time */
  ps_augment_opts fl = off;
  fl.hflip = 1;
  memcpy(m, plain, n * sizeof(float));
  ps_hflip(m, S, S);
  int flipped = 0;
  for (uint64_t s = 0; s < 200; s++) {
    assert_int_equal(ps_augment(film->data, W, H, &fl, s, o, S, S), PS_OK);
    int is_plain = !memcmp(o, plain, n * sizeof(float)), is_mirror = !memcmp(o, m, n * sizeof(float));
    assert_true(is_plain || is_mirror);
    flipped += is_mirror;
  }
  print_message("  hflip: %d of 200 flipped\n", flipped);
  assert_true(flipped > 70 && flipped < 130);

  /* brightness alone on a film scaled to [0, 0.5] (no clipping): mean ratio in [0.7, 1.3],
   * spread over the range, and every pixel scaled by the same factor */
  float *half = malloc((size_t)W * H * sizeof(float));
  for (size_t i = 0; i < (size_t)W * H; i++) half[i] = film->data[i] * 0.5f;
  float *hplain = malloc(n * sizeof(float));
  assert_int_equal(ps_resize_box_f32(half, W, H, 0, 0, W, H, hplain, S, S), PS_OK);
  double mean0 = 0;
  for (size_t i = 0; i < n; i++) mean0 += hplain[i];
  mean0 /= n;
  ps_augment_opts br = off;
  br.brightness = 0.3;
  double rmin = 10, rmax = 0;
  for (uint64_t s = 0; s < 200; s++) {
    assert_int_equal(ps_augment(half, W, H, &br, s, o, S, S), PS_OK);
    double mean = 0;
    for (size_t i = 0; i < n; i++) mean += o[i];
    mean /= n;
    double ratio = mean / mean0;
    rmin = fmin(rmin, ratio);
    rmax = fmax(rmax, ratio);
    size_t probe = n / 2 + S / 3;
    assert_true(fabs(o[probe] - hplain[probe] * ratio) < 1e-4);
  }
  print_message("  brightness 0.3: mean ratio in [%.3f, %.3f]\n", rmin, rmax);
  assert_true(rmin >= 0.7 - 1e-6 && rmax <= 1.3 + 1e-6);
  assert_true(rmin < 0.78 && rmax > 1.22);

  /* contrast alone (no clipping on the film squeezed into [0.25, 0.75]): mean preserved,
   * spread scaled by the factor, in [0.8, 1.2] */
  for (size_t i = 0; i < (size_t)W * H; i++) half[i] = film->data[i] * 0.5f + 0.25f;
  assert_int_equal(ps_resize_box_f32(half, W, H, 0, 0, W, H, hplain, S, S), PS_OK);
  mean0 = 0;
  for (size_t i = 0; i < n; i++) mean0 += hplain[i];
  mean0 /= n;
  ps_augment_opts ct = off;
  ct.contrast = 0.2;
  double sd0 = 0;
  for (size_t i = 0; i < n; i++) sd0 += (hplain[i] - mean0) * (hplain[i] - mean0);
  sd0 = sqrt(sd0 / n);
  for (uint64_t s = 0; s < 50; s++) {
    assert_int_equal(ps_augment(half, W, H, &ct, s, o, S, S), PS_OK);
    double mean = 0, sd = 0;
    for (size_t i = 0; i < n; i++) mean += o[i];
    mean /= n;
    for (size_t i = 0; i < n; i++) sd += (o[i] - mean) * (o[i] - mean);
    sd = sqrt(sd / n);
    assert_true(fabs(mean - mean0) < 1e-4);
    assert_true(sd / sd0 >= 0.8 - 1e-4 && sd / sd0 <= 1.2 + 1e-4);
  }

  /* crop alone: output size as asked, boxes inside the film with area and ratio in range */
  ps_rng r;
  ps_rng_seed(&r, 3);
  double amin = 1, amax = 0;
  for (int t = 0; t < 2000; t++) {
    int x, y, cw, ch;
    ps_random_crop_box(&r, W, H, 0.3, 0.9, 0.75, 4.0 / 3.0, &x, &y, &cw, &ch);
    assert_true(x >= 0 && y >= 0 && cw >= 1 && ch >= 1 && x + cw <= W && y + ch <= H);
    double area = (double)cw * ch / ((double)W * H);
    double ratio = (double)cw / ch;
    amin = fmin(amin, area);
    amax = fmax(amax, area);
    /* rounding w and h to whole pixels moves area and ratio by a hair */
    assert_true(area > 0.3 * 0.99 && area < 0.9 * 1.01);
    assert_true(ratio > 0.75 * 0.99 && ratio < 4.0 / 3.0 * 1.01);
  }
  print_message("  crop area fraction over 2000 draws: [%.3f, %.3f]\n", amin, amax);
  /* this film is 1202x704: a box no wider than 4/3 of its height covers at most
   * (4/3 * 704) * 704 / (1202 * 704) = 0.781 of it, whatever the scale range says */
  assert_true(amin < 0.35 && amax > 0.75 && amax <= 4.0 / 3.0 * 704 / 1202 + 1e-3);
  /* impossible ratio range for the film: falls back to the central crop */
  int x, y, cw, ch;
  ps_random_crop_box(&r, 100, 10, 0.9, 1.0, 1.0, 1.0, &x, &y, &cw, &ch);
  assert_int_equal(cw, 10);
  assert_int_equal(ch, 10);
  assert_int_equal(x, 45);
  assert_int_equal(y, 0);
  ps_augment_opts cr = off;
  cr.crop_scale_min = 0.5;
  cr.crop_scale_max = 1.0;
  float *rect = malloc(64 * 96 * sizeof(float));
  assert_int_equal(ps_augment(film->data, W, H, &cr, 11, rect, 96, 64), PS_OK);
  for (int i = 0; i < 64 * 96; i++) assert_true(rect[i] >= 0 && rect[i] <= 1);
  /* bad options */
  cr.crop_scale_min = 0;
  assert_int_equal(ps_augment(film->data, W, H, &cr, 11, rect, 96, 64), PS_EINVAL);
  cr = off;
  cr.rotate_deg = -1;
  assert_int_equal(ps_augment(film->data, W, H, &cr, 11, rect, 96, 64), PS_EINVAL);
  assert_int_equal(ps_augment(film->data, W, H, &off, 11, rect, 0, 64), PS_EINVAL);

  /* a rotation keeps the centre pixel's neighbourhood and fills the corners */
  ps_augment_opts ro = off;
  ro.rotate_deg = 10;
  ro.fill = 0.25f;
  int corner_filled = 0;
  for (uint64_t s = 0; s < 20; s++) {
    assert_int_equal(ps_augment(film->data, W, H, &ro, s, o, S, S), PS_OK);
    corner_filled += fabsf(o[0] - 0.25f) < 1e-6f;
  }
  assert_true(corner_filled >= 15); /* angles within 1 degree of 0 leave the corner unfilled */

  free(rect);
  free(half);
  free(hplain);
  free(plain);
  free(o);
  free(m);
  ps_image_free(film);
}

/* Percentiles within one histogram bin of numpy's; the window maps them to 0 and 1. */
static void test_percentile_window(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("PIL,numpy"), "Debian python3 with Pillow + numpy not available");
  ps_image *img = load("kaggle/NORMAL/IM-0117-0001.jpeg");
  double lo = 0, hi = 0;
  assert_int_equal(ps_image_percentiles(img, 1.0, 99.0, &lo, &hi), PS_OK);
  int st = 0;
  char *o = ps_test_capture(&st,
                            "'%s' -c \"import numpy as np; from PIL import Image; "
                            "a = np.asarray(Image.open('%s').convert('L'), dtype=np.float32) / np.float32(255); "
                            "print(repr(float(np.percentile(a, 1))), repr(float(np.percentile(a, 99))))\"",
                            PS_PYTHON, ps_test_data("kaggle/NORMAL/IM-0117-0001.jpeg"));
  assert_int_equal(st, 0);
  double rlo = 0, rhi = 0;
  assert_int_equal(sscanf(o, "%lf %lf", &rlo, &rhi), 2);
  free(o);
  float mn = 1, mx = 0;
  for (int i = 0; i < img->width * img->height; i++) mn = fminf(mn, img->data[i]), mx = fmaxf(mx, img->data[i]);
  double bin = (mx - mn) / 4096.0;
  print_message("  p1 %.5f (numpy %.5f), p99 %.5f (numpy %.5f), bin %.5f\n", lo, rlo, hi, rhi, bin);
  /* 8-bit data: numpy interpolates between grey levels, so allow one grey level too */
  assert_true(fabs(lo - rlo) <= bin + 1.0 / 255);
  assert_true(fabs(hi - rhi) <= bin + 1.0 / 255);
  assert_int_equal(ps_image_window(img, lo, hi), PS_OK);
  size_t below = 0, above = 0, n = (size_t)img->width * img->height;
  for (size_t i = 0; i < n; i++) {
    assert_true(img->data[i] >= 0 && img->data[i] <= 1);
    below += img->data[i] == 0.0f;
    above += img->data[i] == 1.0f;
  }
  print_message("  after the window: %.2f%% at 0, %.2f%% at 1\n", 100.0 * below / n, 100.0 * above / n);
  assert_true(below >= n / 100); /* at least the 1% below p1 (this film has many black pixels) */
  assert_true(above >= n / 200 && above <= n / 50);
  assert_int_equal(ps_image_window(img, 0.5, 0.5), PS_EINVAL);
  assert_int_equal(ps_image_percentiles(img, 50, 10, &lo, &hi), PS_EINVAL);
  ps_image_free(img);
}

/* Resize/augment argument checks. */
static void test_bad_arguments(void **state) {
  (void)state;
  ps_image *img = NULL, *out = (ps_image *)0x1;
  assert_int_equal(ps_image_create(4, 4, &img), PS_OK);
  assert_int_equal(ps_image_resize(img, 0, 4, &out), PS_EINVAL);
  assert_null(out);
  assert_int_equal(ps_image_resize(NULL, 4, 4, &out), PS_EINVAL);
  assert_int_equal(ps_image_resize(img, 4, 4, NULL), PS_EINVAL);
  assert_int_equal(ps_image_resize(img, 4, 4, &out), PS_OK); /* same size: a copy */
  assert_ptr_not_equal(out->data, img->data);
  ps_image_free(out);
  uint8_t a[16] = {0}, b[4];
  assert_int_equal(ps_resize_u8(a, 4, 4, b, 0, 2), PS_EINVAL);
  assert_int_equal(ps_resize_u8(NULL, 4, 4, b, 2, 2), PS_EINVAL);
  float t[3 * 4];
  assert_int_equal(ps_preprocess_tensor(img, 0, t), PS_EINVAL);
  ps_image_free(img);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resize_matches_pillow),
      cmocka_unit_test(test_resize_box_matches_pillow),
      cmocka_unit_test(test_tensor_matches_torchvision),
      cmocka_unit_test(test_functional_matches_torchvision),
      cmocka_unit_test(test_augment_deterministic),
      cmocka_unit_test(test_augment_options),
      cmocka_unit_test(test_percentile_window),
      cmocka_unit_test(test_bad_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
