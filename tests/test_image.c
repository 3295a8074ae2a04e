/* native/image: films decode exactly as Pillow decodes them (real PNGs, a sample of the Kaggle
 * JPEGs incl. the RGB ones, PNG/JPEG variants written at test time), DICOM dispatch, PNG writing,
 * a catalogue of malformed files that must fail with the right status naming the file, and
 * damaged data the decoders could get past (corrupt JPEG scans, PNG CRC errors) refused or
 * listed as warnings, while all 651 Kaggle films decode without one. */
#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_image_io.h"
#include "test_util.h"

#define REF_SCRIPT "tests/ref/image_reference.py"

static int have_pillow(void) { return ps_test_have_python("PIL,numpy"); }

/* Max |img - ref| where ref is Pillow's .npy; fails on a shape mismatch. */
static double diff_npy(const ps_image *img, const char *npy) {
  size_t shape[4] = {0};
  int nd = 0;
  double *ref = ps_test_read_npy(npy, shape, &nd);
  assert_non_null(ref);
  assert_int_equal(nd, 2);
  assert_int_equal(shape[0], img->height);
  assert_int_equal(shape[1], img->width);
  double md = 0;
  size_t n = (size_t)img->width * img->height;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)img->data[i] - ref[i]);
    if (!(d <= md)) md = d; /* NaN propagates as a failure */
  }
  free(ref);
  return md;
}

/* Run the reference decoder on files[0..n) into a fresh folder; returns that folder (malloc'd).
 * draft > 0: Pillow's Image.draft(mode, (draft, draft)) first (reduced-scale JPEG decoding). */
static char *pillow_decode_draft(const char *tag, char **files, int n, int draft) {
  char *dir = ps_test_join(ps_test_tmpdir(), tag);
  size_t cap = 256 + strlen(dir);
  for (int i = 0; i < n; i++) cap += strlen(files[i]) + 4;
  char *cmd = malloc(cap);
  int len = snprintf(cmd, cap, "'%s' '%s' decode", PS_PYTHON, ps_test_src(REF_SCRIPT));
  if (draft > 0) len += snprintf(cmd + len, cap - len, " --draft %d", draft);
  len += snprintf(cmd + len, cap - len, " '%s'", dir);
  for (int i = 0; i < n; i++) len += snprintf(cmd + len, cap - len, " '%s'", files[i]);
  assert_int_equal(ps_test_system("%s", cmd), 0);
  free(cmd);
  return dir;
}

static char *pillow_decode(const char *tag, char **files, int n) { return pillow_decode_draft(tag, files, n, 0); }

static char *npy_path(const char *dir, int i) {
  char name[32];
  snprintf(name, sizeof name, "%d.npy", i);
  return ps_test_join(dir, name);
}

/* Decode files with us and Pillow; every film must agree within tol[i] (or tol_all). read (nullable):
 * our options; read->min_side > 0 compares with Pillow's draft mode at that size. */
static void compare_with_pillow_opts(const char *tag, char **files, int n, const double *tol, double tol_all,
                                     const ps_read_opts *read) {
  char *dir = pillow_decode_draft(tag, files, n, read ? read->min_side : 0);
  for (int i = 0; i < n; i++) {
    ps_image *img = NULL;
    int st = ps_image_read(files[i], read, &img);
    if (st != PS_OK) fail_msg("%s: %s", files[i], ps_last_error());
    char *npy = npy_path(dir, i);
    double md = diff_npy(img, npy);
    double t = tol ? tol[i] : tol_all;
    print_message("  %-60s %-5s %5dx%-5d max|d| = %.3g (%.3f grey levels, tol %.3g)\n", strrchr(files[i], '/') + 1,
                  ps_format_name(img->meta.format), img->width, img->height, md, md * 255, t);
    if (!(md <= t)) fail_msg("%s differs from Pillow by %g (> %g)", files[i], md, t);
    free(npy);
    ps_image_free(img);
  }
  free(dir);
}

static void compare_with_pillow(const char *tag, char **files, int n, const double *tol, double tol_all) {
  compare_with_pillow_opts(tag, files, n, tol, tol_all, NULL);
}

/* Float32 k/255 vs float64 k/255: half an ulp of 1.0 in float32. */
#define EXACT_8BIT 1e-7

static void test_shared_pngs_equal_pillow(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(have_pillow(), "Debian python3 with Pillow + numpy not available");
  DIR *d = opendir(ps_test_data("png"));
  assert_non_null(d);
  char *files[64];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 64)
    if (strstr(e->d_name, ".png")) files[n++] = ps_test_join(ps_test_data("png"), e->d_name);
  closedir(d);
  assert_true(n >= 2);
  compare_with_pillow("shared_png", files, n, NULL, EXACT_8BIT);
  for (int i = 0; i < n; i++) free(files[i]);
}

/* 25 Kaggle JPEGs: every 3-component (RGB) one plus an even spread over the manifest. */
static void test_kaggle_jpegs_equal_pillow(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(have_pillow(), "Debian python3 with Pillow + numpy not available");
  FILE *f = fopen(ps_test_data("kaggle/manifest.csv"), "r");
  assert_non_null(f);
  char line[1024];
  char *rgb[32], *gray[1024];
  int nrgb = 0, ngray = 0;
  assert_non_null(fgets(line, sizeof line, f)); /* header */
  while (fgets(line, sizeof line, f)) {
    char *fields[8];
    int nf = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, ",", &save); tok && nf < 8; tok = strtok_r(NULL, ",", &save)) fields[nf++] = tok;
    assert_true(nf >= 7);
    char rel[512];
    snprintf(rel, sizeof rel, "kaggle/%s", fields[0]);
    if (atoi(fields[6]) == 3 && nrgb < 32) rgb[nrgb++] = strdup(ps_test_data(rel));
    else if (ngray < 1024) gray[ngray++] = strdup(ps_test_data(rel));
  }
  fclose(f);
  assert_true(nrgb >= 1);
  assert_true(ngray >= 20);
  char *files[25];
  int n = 0;
  for (int i = 0; i < nrgb && n < 25; i++) files[n++] = rgb[i];
  int want = 25 - n;
  for (int k = 0; k < want; k++) files[n++] = gray[(size_t)k * ngray / want];
  compare_with_pillow("kaggle", files, n, NULL, EXACT_8BIT);
  /* Reduced-scale decoding (classify --fast-decode: min_side = 2x a 224 px input) equals Pillow's
   * draft mode exactly: the same 1/2, 1/4 or 1/8 IDCT scale and the same pixels, at a fraction of
   * the full size, while the film's own size stays in the metadata. */
  ps_read_opts fast = {.min_side = 448};
  compare_with_pillow_opts("kaggle_draft", files, n, NULL, EXACT_8BIT, &fast);
  int reduced = 0;
  for (int i = 0; i < n; i++) {
    ps_image *full = NULL, *img = NULL;
    assert_int_equal(ps_image_read(files[i], NULL, &full), PS_OK);
    assert_int_equal(ps_image_read(files[i], &fast, &img), PS_OK);
    assert_true(img->width >= 448 && img->height >= 448);
    assert_int_equal(img->meta.columns, full->width);
    assert_int_equal(img->meta.rows, full->height);
    if (img->width < full->width) {
      reduced++;
      assert_true(img->width * 2 <= full->width + 1);
    }
    ps_image_free(full);
    ps_image_free(img);
  }
  print_message("  reduced-scale decoding: %d of %d films decoded at 1/2 or less\n", reduced, n);
  assert_true(reduced >= n / 2);
  for (int i = 0; i < nrgb; i++) free(rgb[i]);
  for (int i = 0; i < ngray; i++) free(gray[i]);
}

static void test_png_jpeg_variants_equal_pillow(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(have_pillow(), "Debian python3 with Pillow + numpy not available");
  char *dir = ps_test_join(ps_test_tmpdir(), "variants");
  int st = 0;
  char *out = ps_test_capture(&st, "'%s' '%s' variants '%s' '%s'", PS_PYTHON, ps_test_src(REF_SCRIPT),
                              ps_test_data("png/nih_00000001_000.png"), dir);
  assert_int_equal(st, 0);
  char *files[64];
  double tol[64];
  int n = 0;
  char *save = NULL;
  for (char *tok = strtok_r(out, "\n", &save); tok && n < 64; tok = strtok_r(NULL, "\n", &save)) {
    files[n] = ps_test_join(dir, tok);
    /* 16-bit RGB: Pillow keeps only the high byte of each sample before its 8-bit luminance;
     * we weigh the full 16-bit samples, so the two differ by at most 1.5 grey levels
     * (truncation < 1 level + Pillow's rounding 0.5). */
    tol[n] = strstr(tok, "rgb16") ? 1.5 / 255 : EXACT_8BIT;
    n++;
  }
  assert_true(n >= 18);
  compare_with_pillow("variants_ref", files, n, tol, 0);
  /* what the header said */
  struct {
    const char *name;
    int components, bits;
    ps_format format;
  } expect[] = {
      {"gray8.png", 1, 8, PS_FORMAT_PNG},     {"rgb8.png", 3, 8, PS_FORMAT_PNG},
      {"rgba8.png", 4, 8, PS_FORMAT_PNG},     {"gray_alpha8.png", 2, 8, PS_FORMAT_PNG},
      {"palette.png", 1, 8, PS_FORMAT_PNG},   {"gray1.png", 1, 1, PS_FORMAT_PNG},
      {"gray16.png", 1, 16, PS_FORMAT_PNG},   {"gray2.png", 1, 2, PS_FORMAT_PNG},
      {"gray4.png", 1, 4, PS_FORMAT_PNG},     {"rgb16.png", 3, 16, PS_FORMAT_PNG},
      {"gray.jpeg", 1, 8, PS_FORMAT_JPEG},    {"rgb420.jpeg", 3, 8, PS_FORMAT_JPEG},
      {"cmyk.jpeg", 4, 8, PS_FORMAT_JPEG},
  };
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
    char *p = ps_test_join(dir, expect[i].name);
    ps_image *img = NULL;
    assert_int_equal(ps_image_read(p, NULL, &img), PS_OK);
    assert_int_equal(img->meta.format, expect[i].format);
    assert_int_equal(img->meta.components, expect[i].components);
    assert_int_equal(img->meta.bits_stored, expect[i].bits);
    assert_int_equal(img->meta.rows, 240);
    assert_int_equal(img->meta.columns, 300);
    assert_int_equal(ps_image_sniff(p), expect[i].format);
    ps_image_free(img);
    free(p);
  }
  for (int i = 0; i < n; i++) free(files[i]);
  free(out);
  free(dir);
}

/* Content decides, not the name: a JPEG called .png, a PNG called .dcm. */
static void test_sniffing_ignores_extension(void **state) {
  (void)state;
  const char *dir = ps_test_tmpdir();
  char *a = ps_test_join(dir, "really_a_jpeg.png"), *b = ps_test_join(dir, "really_a_png.dcm");
  assert_int_equal(ps_test_system("cp '%s' '%s' && cp '%s' '%s'",
                                  ps_test_data("kaggle/PNEUMONIA/person1108_virus_1833.jpeg"), a,
                                  ps_test_data("png/nih_00000001_000.png"), b),
                   0);
  ps_image *x = NULL, *y = NULL;
  assert_int_equal(ps_image_read(a, NULL, &x), PS_OK);
  assert_int_equal(x->meta.format, PS_FORMAT_JPEG);
  assert_int_equal(x->width, 869);
  assert_int_equal(x->height, 563);
  assert_int_equal(ps_image_read(b, NULL, &y), PS_OK);
  assert_int_equal(y->meta.format, PS_FORMAT_PNG);
  ps_image_free(x);
  ps_image_free(y);
  free(a);
  free(b);
}

/* ps_image_read_memory gives the same pixels as reading the file. */
static void test_read_memory_matches_file(void **state) {
  (void)state;
  const char *p = ps_test_data("kaggle/PNEUMONIA/person1108_virus_1833.jpeg");
  size_t n;
  uint8_t *buf = (uint8_t *)ps_test_read_file(p, &n);
  assert_non_null(buf);
  assert_true(n > 0);
  ps_image *a = NULL, *b = NULL;
  assert_int_equal(ps_image_read(p, NULL, &a), PS_OK);
  assert_int_equal(ps_image_read_memory(buf, (size_t)n, "film.jpeg", NULL, &b), PS_OK);
  assert_memory_equal(a->data, b->data, (size_t)a->width * a->height * sizeof(float));
  ps_image_free(b);
  assert_int_equal(ps_image_read_memory(buf, 0, "empty.jpeg", NULL, &b), PS_EFORMAT);
  assert_null(b);
  assert_non_null(strstr(ps_last_error(), "empty.jpeg"));
  ps_image_free(a);
  free(buf);
}

/* Every DICOM film goes through ps_dicom_read when the build has it (same pixels), and is refused
 * with PS_EUNSUPPORTED otherwise. */
static void test_dicom_dispatch(void **state) {
  (void)state;
  const char *names[] = {"CR-MONO1-10-chest.dcm", "gcp_dicom_00000001_000.dcm",
                         "nccid_1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm",
                         "siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
                         "torchxrayvision_Fake_MONOHR1.dcm"};
  int have_dicom = strstr(ps_build_features(), "dicom") != NULL;
  print_message("  build features: %s\n", ps_build_features());
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char rel[256];
    snprintf(rel, sizeof rel, "dicom/%s", names[i]);
    const char *p = ps_test_data(rel);
    assert_int_equal(ps_image_sniff(p), PS_FORMAT_DICOM);
    ps_image *img = NULL;
    int st = ps_image_read(p, NULL, &img);
    if (!have_dicom) {
      assert_int_equal(st, PS_EUNSUPPORTED);
      assert_non_null(strstr(ps_last_error(), p));
      continue;
    }
    if (st != PS_OK) fail_msg("%s: %s", p, ps_last_error());
    assert_int_equal(img->meta.format, PS_FORMAT_DICOM);
    assert_true(img->width > 100 && img->height > 100);
    float mn = 1, mx = 0;
    for (int k = 0; k < img->width * img->height; k++) {
      mn = fminf(mn, img->data[k]);
      mx = fmaxf(mx, img->data[k]);
    }
    assert_true(mn >= 0.0f && mx <= 1.0f && mx - mn > 0.5f); /* display-ready, real contrast */
    ps_image_free(img);
  }
  /* the NIH PNG and its DICOM twin hold the same pixels */
  if (have_dicom) {
    ps_image *png = NULL, *dcm = NULL;
    assert_int_equal(ps_image_read(ps_test_data("png/nih_00000001_000.png"), NULL, &png), PS_OK);
    assert_int_equal(ps_image_read(ps_test_data("dicom/gcp_dicom_00000001_000.dcm"), NULL, &dcm), PS_OK);
    print_message("  PNG twin %dx%d, DICOM %dx%d\n", png->width, png->height, dcm->width, dcm->height);
    ps_image_free(png);
    ps_image_free(dcm);
  }
}

/* ---- writing ------------------------------------------------------------------------------ */

static void test_write_png_round_trip(void **state) {
  (void)state;
  char *dir = ps_test_join(ps_test_tmpdir(), "write");
  assert_int_equal(mkdir(dir, 0755), 0);
  ps_image *img = NULL;
  assert_int_equal(ps_image_create(37, 23, &img), PS_OK);
  for (int i = 0; i < 37 * 23; i++) img->data[i] = (float)(i % 300) / 280.0f - 0.03f; /* spans < 0 and > 1 */
  img->data[5] = NAN;
  img->data[6] = 0.5f / 255.0f + 1e-4f; /* rounds up to 1 */
  img->data[7] = 0.5f / 255.0f - 1e-4f; /* rounds down to 0 */
  char *p = ps_test_join(dir, "out.png");
  assert_int_equal(ps_image_write_png(img, p), PS_OK);
  ps_image *back = NULL;
  assert_int_equal(ps_image_read(p, NULL, &back), PS_OK);
  assert_int_equal(back->width, 37);
  assert_int_equal(back->height, 23);
  for (int i = 0; i < 37 * 23; i++) {
    float v = img->data[i];
    int want = i == 5 ? 0 : (int)lrintf(fminf(fmaxf(v, 0.0f), 1.0f) * 255.0f);
    int got = (int)lrintf(back->data[i] * 255.0f);
    if (got != want) fail_msg("pixel %d: wrote %g, read back %d, want %d", i, v, got, want);
  }
  assert_int_equal((int)lrintf(back->data[6] * 255), 1);
  assert_int_equal((int)lrintf(back->data[7] * 255), 0);
  ps_image_free(back);
  /* Pillow reads the same bytes */
  if (have_pillow()) {
    char *dref = pillow_decode("write_ref", &p, 1);
    ps_image *again = NULL;
    assert_int_equal(ps_image_read(p, NULL, &again), PS_OK);
    char *npy = npy_path(dref, 0);
    assert_true(diff_npy(again, npy) <= EXACT_8BIT);
    ps_image_free(again);
    free(npy);
    free(dref);
  }
  /* our own output may be replaced (atomically: no temporary files stay behind) */
  img->data[0] = 1.0f;
  assert_int_equal(ps_image_write_png(img, p), PS_OK);
  assert_int_equal(ps_image_read(p, NULL, &back), PS_OK);
  assert_true(back->data[0] == 1.0f);
  ps_image_free(back);
  assert_int_equal(ps_test_count_entries(dir), 1);
  /* someone else's file (a real film, a text file) is never overwritten */
  char *film = ps_test_join(dir, "film.png");
  assert_int_equal(ps_test_system("cp '%s' '%s'", ps_test_data("png/nih_00000001_000.png"), film), 0);
  long before = ps_test_file_size(film);
  assert_int_equal(ps_image_write_png(img, film), PS_EIO);
  assert_non_null(strstr(ps_last_error(), film));
  assert_non_null(strstr(ps_last_error(), "refusing to overwrite"));
  assert_int_equal(ps_test_system("cmp -s '%s' '%s'", film, ps_test_data("png/nih_00000001_000.png")), 0);
  assert_int_equal(ps_test_file_size(film), before);
  /* a directory, a folder that does not exist */
  assert_int_equal(ps_image_write_png(img, dir), PS_EIO);
  assert_non_null(strstr(ps_last_error(), "directory"));
  char *nodir = ps_test_join(dir, "no/such/folder/x.png");
  assert_int_equal(ps_image_write_png(img, nodir), PS_EIO);
  assert_non_null(strstr(ps_last_error(), nodir));
  assert_int_equal(ps_test_count_entries(dir), 2);
  /* RGB */
  uint8_t rgb[4 * 3 * 3];
  for (int i = 0; i < 36; i++) rgb[i] = (uint8_t)(i * 7);
  char *prgb = ps_test_join(dir, "rgb.png");
  assert_int_equal(ps_image_write_png_rgb(rgb, 4, 3, prgb), PS_OK);
  if (have_pillow()) {
    int st = 0;
    char *o = ps_test_capture(&st, "'%s' -c \"from PIL import Image; im = Image.open('%s'); "
                                   "print(im.mode, im.size, list(im.tobytes()))\"",
                              PS_PYTHON, prgb);
    assert_int_equal(st, 0);
    char want[1024];
    int len = snprintf(want, sizeof want, "RGB (4, 3) [");
    for (int i = 0; i < 36; i++) len += snprintf(want + len, sizeof want - len, "%s%d", i ? ", " : "", rgb[i]);
    snprintf(want + len, sizeof want - len, "]\n");
    assert_string_equal(o, want);
    free(o);
  }
  assert_int_equal(ps_image_write_png_rgb(rgb, 0, 3, prgb), PS_EINVAL);
  assert_int_equal(ps_image_write_png(NULL, prgb), PS_EINVAL);
  ps_image_free(img);
  free(p);
  free(film);
  free(nodir);
  free(prgb);
  free(dir);
}

/* ---- malformed catalogue ------------------------------------------------------------------ */

static uint8_t *slurp(const char *path, size_t *n) {
  uint8_t *b = (uint8_t *)ps_test_read_file(path, n);
  assert_non_null(b);
  assert_true(*n > 0);
  return b;
}

static char *spit(const char *name, const uint8_t *b, size_t n) {
  char *p = ps_test_join(ps_test_tmpdir(), name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  if (n) assert_int_equal(fwrite(b, 1, n, f), n);
  fclose(f);
  return p;
}

/* The read fails with want, names the file, returns no image. */
static void expect_fail(const char *path, const ps_read_opts *opts, int want, const char *what) {
  ps_image *img = (ps_image *)0x1;
  int st = ps_image_read(path, opts, &img);
  print_message("  %-40s -> %-14s %s\n", what, ps_strerror(st), ps_last_error());
  if (st != want) fail_msg("%s: status %d (%s), want %d: %s", what, st, ps_strerror(st), want, ps_last_error());
  assert_null(img);
  if (!strstr(ps_last_error(), path)) fail_msg("%s: message does not name %s: %s", what, path, ps_last_error());
}

static uint32_t crc32_png(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void test_malformed_png(void **state) {
  (void)state;
  size_t n = 0;
  uint8_t *png = slurp(ps_test_data("png/nih_00000001_000.png"), &n);
  char name[64];
  /* zero bytes */
  char *p = spit("zero.png", png, 0);
  expect_fail(p, NULL, PS_EFORMAT, "zero bytes");
  free(p);
  /* truncated at several offsets: in the signature, the IHDR, the first IDAT, mid-data, before IEND */
  size_t cuts[] = {4, 8, 20, 33, 60, 1000, n / 2, n - 20, n - 12, n - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    snprintf(name, sizeof name, "trunc_%zu.png", cuts[i]);
    p = spit(name, png, cuts[i]);
    snprintf(name, sizeof name, "PNG truncated at %zu/%zu", cuts[i], n);
    /* the first 4 bytes are not even a whole PNG signature: not a film at all */
    expect_fail(p, NULL, PS_EFORMAT, name);
    free(p);
  }
  /* wrong magic */
  uint8_t *bad = malloc(n);
  memcpy(bad, png, n);
  bad[1] = 'Q';
  p = spit("wrong_magic.png", bad, n);
  expect_fail(p, NULL, PS_EFORMAT, "wrong magic");
  assert_non_null(strstr(ps_last_error(), "not a PNG, JPEG or DICOM"));
  free(p);
  /* IHDR CRC broken */
  memcpy(bad, png, n);
  bad[29] ^= 0xff;
  p = spit("bad_crc.png", bad, n);
  expect_fail(p, NULL, PS_EFORMAT, "IHDR CRC wrong");
  free(p);
  /* absurd IHDR dimensions with a valid CRC: refused by max_pixels before allocating */
  memcpy(bad, png, n);
  put_be32(bad + 16, 0x7fffffffu);
  put_be32(bad + 20, 0x7fffffffu);
  put_be32(bad + 29, crc32_png(bad + 12, 17));
  p = spit("absurd_ihdr.png", bad, n);
  expect_fail(p, NULL, PS_ELIMIT, "IHDR 2^31-1 x 2^31-1");
  free(p);
  /* zero width with a valid CRC */
  memcpy(bad, png, n);
  put_be32(bad + 16, 0);
  put_be32(bad + 29, crc32_png(bad + 12, 17));
  p = spit("zero_width.png", bad, n);
  expect_fail(p, NULL, PS_EFORMAT, "IHDR width 0");
  free(p);
  /* decompression bomb: 60000 x 60000 claimed (3.6 gigapixels), the real 512x512 data */
  memcpy(bad, png, n);
  put_be32(bad + 16, 60000);
  put_be32(bad + 20, 60000);
  put_be32(bad + 29, crc32_png(bad + 12, 17));
  p = spit("bomb.png", bad, n);
  expect_fail(p, NULL, PS_ELIMIT, "decompression bomb (default limit)");
  /* the genuine film under a small pixel limit */
  ps_read_opts o = ps_read_opts_default();
  o.max_pixels = 512 * 512 - 1;
  free(p);
  p = strdup(ps_test_data("png/nih_00000001_000.png"));
  expect_fail(p, &o, PS_ELIMIT, "max_pixels 512*512-1");
  o.max_pixels = 512 * 512;
  ps_image *img = NULL;
  assert_int_equal(ps_image_read(p, &o, &img), PS_OK);
  ps_image_free(img);
  /* max_bytes is checked on the file size */
  o = ps_read_opts_default();
  o.max_bytes = (int64_t)n - 1;
  expect_fail(p, &o, PS_ELIMIT, "max_bytes size-1");
  free(p);
  /* corrupt compressed data (flip bytes in the middle of IDAT) */
  memcpy(bad, png, n);
  for (size_t i = n / 2; i < n / 2 + 64; i++) bad[i] ^= 0x5a;
  p = spit("corrupt_idat.png", bad, n);
  expect_fail(p, NULL, PS_EFORMAT, "corrupt IDAT");
  free(p);
  free(bad);
  free(png);
}

static void test_malformed_jpeg(void **state) {
  (void)state;
  size_t n = 0;
  uint8_t *jpg = slurp(ps_test_data("kaggle/PNEUMONIA/person1108_virus_1833.jpeg"), &n);
  char name[64];
  size_t cuts[] = {2, 3, 10, 100, 600, n / 4, n / 2, n - 100, n - 2, n - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    snprintf(name, sizeof name, "trunc_%zu.jpeg", cuts[i]);
    char *p = spit(name, jpg, cuts[i]);
    snprintf(name, sizeof name, "JPEG truncated at %zu/%zu", cuts[i], n);
    expect_fail(p, NULL, PS_EFORMAT, name);
    free(p);
  }
  uint8_t *bad = malloc(n);
  /* SOI present, then garbage */
  memcpy(bad, jpg, n);
  memset(bad + 3, 0x11, 200);
  char *p = spit("garbage_header.jpeg", bad, n);
  expect_fail(p, NULL, PS_EFORMAT, "garbage after SOI");
  free(p);
  /* wrong magic */
  memcpy(bad, jpg, n);
  bad[0] = 0x00;
  p = spit("wrong_magic.jpeg", bad, n);
  expect_fail(p, NULL, PS_EFORMAT, "wrong magic");
  free(p);
  /* limits */
  ps_read_opts o = ps_read_opts_default();
  o.max_pixels = 869 * 563 - 1;
  p = strdup(ps_test_data("kaggle/PNEUMONIA/person1108_virus_1833.jpeg"));
  expect_fail(p, &o, PS_ELIMIT, "max_pixels");
  free(p);
  /* a SOF claiming 60000 x 60000 (3.6 gigapixels, under libjpeg's own 65500 cap) */
  memcpy(bad, jpg, n);
  int patched = 0;
  for (size_t i = 2; i + 9 < n; i++)
    if (bad[i] == 0xff && (bad[i + 1] == 0xc0 || bad[i + 1] == 0xc2)) {
      bad[i + 5] = bad[i + 7] = 0xea;
      bad[i + 6] = bad[i + 8] = 0x60;
      patched = 1;
      break;
    }
  assert_true(patched);
  p = spit("huge_sof.jpeg", bad, n);
  expect_fail(p, NULL, PS_ELIMIT, "SOF 60000x60000");
  free(p);
  /* valid JPEG kinds TurboJPEG cannot decode: 12-bit samples, lossless (SOF3) */
  size_t sof = 0;
  for (size_t i = 2; i + 9 < n && !sof; i++)
    if (jpg[i] == 0xff && (jpg[i + 1] == 0xc0 || jpg[i + 1] == 0xc2)) sof = i;
  assert_true(sof > 0);
  memcpy(bad, jpg, n);
  bad[sof + 4] = 12;
  bad[sof + 1] = 0xc1; /* extended sequential, 12-bit */
  p = spit("twelve_bit.jpeg", bad, n);
  expect_fail(p, NULL, PS_EUNSUPPORTED, "12-bit JPEG");
  free(p);
  memcpy(bad, jpg, n);
  bad[sof + 1] = 0xc3;
  p = spit("lossless.jpeg", bad, n);
  expect_fail(p, NULL, PS_EUNSUPPORTED, "lossless JPEG (SOF3)");
  free(p);
  free(bad);
  free(jpg);
}

/* ---- decoder warnings: damaged data is refused, or listed by ps_image_read_warnings ---------- */

/* Pillow (a decoder we did not write) on one file: 1 when Image.open(f).load() raises. */
static int pillow_refuses(const char *path) {
  int st = ps_test_system("'%s' -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).load()' '%s' 2>/dev/null",
                          PS_PYTHON, path);
  return st != 0;
}

/* The strict read refuses path with PS_EFORMAT, naming the file and every phrase (NULL-ended). */
static void expect_damaged(const char *path, const char *what, const char *const *phrases) {
  expect_fail(path, NULL, PS_EFORMAT, what);
  for (const char *const *p = phrases; *p; p++)
    if (!strstr(ps_last_error(), *p)) fail_msg("%s: message lacks '%s': %s", what, *p, ps_last_error());
}

/* ps_image_read_warnings reads path with exactly one warning starting with prefix; returns the image. */
static ps_image *read_one_warning(const char *path, const char *what, const char *prefix) {
  ps_image *img = NULL;
  char **w = NULL;
  int n = -1;
  int st = ps_image_read_warnings(path, NULL, &img, &w, &n);
  if (st != PS_OK) fail_msg("%s: ps_image_read_warnings: %s", what, ps_last_error());
  print_message("  %-40s -> listed %d warning(s): %s\n", what, n, n > 0 ? w[0] : "");
  assert_non_null(img);
  assert_int_equal(n, 1);
  assert_non_null(w);
  if (strncmp(w[0], prefix, strlen(prefix)) != 0) fail_msg("%s: warning '%s' does not start with '%s'", what, w[0], prefix);
  ps_image_warnings_free(w, n);
  return img;
}

/* Start and end of a JPEG's entropy-coded data: after the first SOS segment, up to the final EOI. */
static void jpeg_scan(const uint8_t *j, size_t n, size_t *a, size_t *b) {
  size_t i = 2;
  *a = 0;
  while (i + 4 <= n && j[i] == 0xff) {
    size_t len = (size_t)j[i + 2] << 8 | j[i + 3];
    if (j[i + 1] == 0xda) {
      *a = i + 2 + len;
      break;
    }
    i += 2 + len;
  }
  assert_true(*a > 0);
  assert_true(j[n - 2] == 0xff && j[n - 1] == 0xd9);
  *b = n - 2;
}

/* Real Kaggle films (one gray, one 3-component) with damaged entropy-coded data. libjpeg-turbo
 * warns and fills the damage with guesses: refused, and listed by ps_image_read_warnings. Pillow
 * ignores those warnings; where a stray marker makes the damage fatal it refuses too. */
static void test_damaged_jpeg(void **state) {
  (void)state;
  const char *films[] = {"kaggle/NORMAL/IM-0117-0001.jpeg", "kaggle/PNEUMONIA/person1108_virus_1833.jpeg"};
  for (int f = 0; f < 2; f++) {
    size_t n = 0, a = 0, b = 0;
    uint8_t *jpg = slurp(ps_test_data(films[f]), &n);
    jpeg_scan(jpg, n, &a, &b);
    size_t mid = (a + b) / 2;
    ps_image *clean = NULL;
    char **w = (char **)0x1;
    int nw = -1;
    assert_int_equal(ps_image_read_warnings(ps_test_data(films[f]), NULL, &clean, &w, &nw), PS_OK);
    assert_int_equal(nw, 0);
    assert_null(w);
    uint8_t *bad = malloc(n + 16);
    char name[64];
    const char *phrases[4] = {"damaged data", "libjpeg-turbo", NULL, NULL};

    /* 256 bytes of noise without 0xFF in the middle of the scan (same length) */
    memcpy(bad, jpg, n);
    uint32_t x = 12345u + (uint32_t)f;
    for (size_t i = mid; i < mid + 256; i++) {
      x = x * 1664525u + 1013904223u;
      bad[i] = (uint8_t)((x >> 24) % 255u);
    }
    snprintf(name, sizeof name, "scan_noise_%d.jpeg", f);
    char *p = spit(name, bad, n);
    phrases[2] = "Corrupt JPEG data";
    expect_damaged(p, "256 noise bytes in the scan", phrases);
    ps_image *img = read_one_warning(p, "  ... collecting warnings", "jpeg: Corrupt JPEG data");
    assert_int_equal(img->width, clean->width);
    assert_int_equal(img->height, clean->height);
    ps_image_free(img);
    free(p);

    /* 10 extraneous bytes before the EOI marker */
    memcpy(bad, jpg, n - 2);
    memset(bad + n - 2, 0, 10);
    bad[n + 8] = 0xff, bad[n + 9] = 0xd9;
    snprintf(name, sizeof name, "extraneous_%d.jpeg", f);
    p = spit(name, bad, n + 10);
    phrases[2] = "extraneous bytes before marker 0xd9";
    expect_damaged(p, "10 bytes before EOI", phrases);
    img = read_one_warning(p, "  ... collecting warnings", "jpeg: Corrupt JPEG data");
    /* every row was decoded before the stray bytes: the pixels are the clean film's */
    for (size_t i = 0; i < (size_t)clean->width * clean->height; i++)
      if (img->data[i] != clean->data[i]) fail_msg("extraneous bytes changed pixel %zu", i);
    ps_image_free(img);
    free(p);

    /* 3 stray bytes between two header segments (before the SOS): a warning while reading the
     * header; the scan itself is intact, so the listed read gives the clean pixels */
    size_t sos = a;
    while (!(jpg[sos] == 0xff && jpg[sos + 1] == 0xda)) sos--;
    memcpy(bad, jpg, sos);
    memset(bad + sos, 0x00, 3);
    memcpy(bad + sos + 3, jpg + sos, n - sos);
    snprintf(name, sizeof name, "header_stray_%d.jpeg", f);
    p = spit(name, bad, n + 3);
    phrases[2] = "3 extraneous bytes before marker 0xda";
    expect_damaged(p, "3 stray bytes before SOS", phrases);
    img = read_one_warning(p, "  ... collecting warnings", "jpeg: Corrupt JPEG data: 3 extraneous bytes");
    assert_memory_equal(img->data, clean->data, sizeof(float) * (size_t)clean->width * clean->height);
    ps_image_free(img);
    free(p);

    /* the scan cut in the middle, EOI appended: premature end of data segment */
    memcpy(bad, jpg, mid);
    bad[mid] = 0xff, bad[mid + 1] = 0xd9;
    snprintf(name, sizeof name, "scan_cut_%d.jpeg", f);
    p = spit(name, bad, mid + 2);
    phrases[2] = "premature end of data segment";
    expect_damaged(p, "scan cut, EOI appended", phrases);
    ps_image_free(read_one_warning(p, "  ... collecting warnings", "jpeg: Corrupt JPEG data"));
    free(p);

    /* a stray SOF7 marker in the scan: fatal after the warning; Pillow refuses it too */
    memcpy(bad, jpg, n);
    bad[mid] = 0xff, bad[mid + 1] = 0xc7;
    snprintf(name, sizeof name, "scan_marker_%d.jpeg", f);
    p = spit(name, bad, n);
    phrases[2] = NULL;
    expect_damaged(p, "stray SOF7 marker in the scan", phrases);
    img = (ps_image *)0x1;
    w = (char **)0x1;
    assert_int_equal(ps_image_read_warnings(p, NULL, &img, &w, &nw), PS_EFORMAT);
    print_message("  %-40s -> %s\n", "  ... collecting warnings", ps_last_error());
    assert_null(img);
    assert_null(w);
    assert_int_equal(nw, 0);
    assert_non_null(strstr(ps_last_error(), "after the warning"));
    if (have_pillow()) {
      int refused = pillow_refuses(p);
      print_message("  %-40s -> Pillow %s\n", "  ... the same file", refused ? "refuses it too" : "reads it");
      assert_true(refused);
    }
    free(p);
    free(bad);
    free(jpg);
    ps_image_free(clean);
  }
}

/* One PNG chunk: offset of its length field in png (n bytes), or 0 when absent. */
static size_t png_find_chunk(const uint8_t *png, size_t n, const char *type) {
  for (size_t i = 8; i + 12 <= n;) {
    size_t len = (size_t)png[i] << 24 | (size_t)png[i + 1] << 16 | (size_t)png[i + 2] << 8 | png[i + 3];
    if (!memcmp(png + i + 4, type, 4)) return i;
    i += 12 + len;
  }
  return 0;
}

static size_t png_chunk_len(const uint8_t *png, size_t at) {
  return (size_t)png[at] << 24 | (size_t)png[at + 1] << 16 | (size_t)png[at + 2] << 8 | png[at + 3];
}

/* The NIH film with a CRC off by one bit in a chunk (its data intact): refused, whichever chunk
 * (libpng itself only warns for ancillary chunks and drops them). Listed by
 * ps_image_read_warnings, which then gives the clean pixels. A duplicate ancillary chunk is a
 * complaint about metadata only: still read. */
static void test_damaged_png(void **state) {
  (void)state;
  size_t n = 0;
  const char *film = ps_test_data("png/nih_00000001_000.png");
  uint8_t *png = slurp(film, &n);
  ps_image *clean = NULL;
  assert_int_equal(ps_image_read(film, NULL, &clean), PS_OK);
  uint8_t *bad = malloc(n + 64);
  const char *chunks[] = {"gAMA", "tEXt", "IDAT"};
  for (int c = 0; c < 3; c++) {
    size_t at = png_find_chunk(png, n, chunks[c]);
    assert_true(at > 0);
    memcpy(bad, png, n);
    bad[at + 8 + png_chunk_len(png, at) + 3] ^= 1;
    char name[64], what[64], crc[32];
    snprintf(name, sizeof name, "crc_%s.png", chunks[c]);
    snprintf(what, sizeof what, "%s CRC off by one bit", chunks[c]);
    snprintf(crc, sizeof crc, "%s: CRC error", chunks[c]);
    char *p = spit(name, bad, n);
    const char *phrases[] = {"damaged data", "libpng", crc, NULL};
    expect_damaged(p, what, phrases);
    char prefix[40];
    snprintf(prefix, sizeof prefix, "png: %s", crc);
    ps_image *img = read_one_warning(p, "  ... collecting warnings", prefix);
    for (size_t i = 0; i < (size_t)clean->width * clean->height; i++)
      if (img->data[i] != clean->data[i]) fail_msg("%s: pixel %zu differs from the clean film", what, i);
    ps_image_free(img);
    if (c == 0 && have_pillow()) { /* Pillow checks the CRCs of the chunks before the image data */
      int refused = pillow_refuses(p);
      print_message("  %-40s -> Pillow %s\n", "  ... the same file", refused ? "refuses it too" : "reads it");
      assert_true(refused);
    }
    free(p);
  }
  /* a duplicate gAMA (libpng: "gAMA: duplicate"): metadata only, read with no warning */
  size_t at = png_find_chunk(png, n, "gAMA");
  size_t clen = 12 + png_chunk_len(png, at);
  memcpy(bad, png, at + clen);
  memcpy(bad + at + clen, png + at, n - at);
  char *p = spit("dup_gama.png", bad, n + clen);
  ps_image *img = NULL;
  char **w = NULL;
  int nw = -1;
  assert_int_equal(ps_image_read(p, NULL, &img), PS_OK);
  ps_image_free(img);
  assert_int_equal(ps_image_read_warnings(p, NULL, &img, &w, &nw), PS_OK);
  assert_int_equal(nw, 0);
  ps_image_free(img);
  free(p);
  /* argument checks */
  img = (ps_image *)0x1;
  assert_int_equal(ps_image_read_warnings(film, NULL, &img, NULL, &nw), PS_EINVAL);
  assert_null(img);
  assert_int_equal(ps_image_read_warnings(film, NULL, &img, &w, NULL), PS_EINVAL);
  assert_int_equal(ps_image_read_warnings(film, NULL, NULL, &w, &nw), PS_EINVAL);
  assert_null(w);
  ps_image_warnings_free(NULL, 0);
  free(bad);
  free(png);
  ps_image_free(clean);
}

/* Every Kaggle film (all 651 in the manifest) decodes with no decoder warning: refusing damaged
 * data must not refuse real films. */
static void test_kaggle_all_clean(void **state) {
  (void)state;
  FILE *f = fopen(ps_test_data("kaggle/manifest.csv"), "r");
  assert_non_null(f);
  char line[1024];
  assert_non_null(fgets(line, sizeof line, f)); /* header */
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    char *comma = strchr(line, ',');
    assert_non_null(comma);
    *comma = 0;
    char rel[sizeof line + 8];
    snprintf(rel, sizeof rel, "kaggle/%s", line);
    ps_image *img = NULL;
    char **w = NULL;
    int nw = 0;
    int st = ps_image_read_warnings(ps_test_data(rel), NULL, &img, &w, &nw);
    if (st != PS_OK) fail_msg("%s: %s", rel, ps_last_error());
    if (nw) fail_msg("%s: decoder warning: %s", rel, w[0]);
    ps_image_free(img);
    n++;
  }
  fclose(f);
  print_message("  %d Kaggle films, none with a decoder warning\n", n);
  assert_int_equal(n, 651);
}

static void test_not_films(void **state) {
  (void)state;
  const char *dir = ps_test_tmpdir();
  char *d = ps_test_join(dir, "a_folder.png");
  assert_int_equal(mkdir(d, 0755), 0);
  expect_fail(d, NULL, PS_EIO, "a directory");
  assert_non_null(strstr(ps_last_error(), "directory"));
  char *missing = ps_test_join(dir, "missing.jpeg");
  expect_fail(missing, NULL, PS_EIO, "missing file");
  assert_non_null(strstr(ps_last_error(), "no such file"));
  const uint8_t gif[] = "GIF89a\x01\x00\x01\x00\x00\x00\x00;";
  char *g = spit("film.gif", gif, sizeof gif);
  expect_fail(g, NULL, PS_EFORMAT, "a GIF");
  char *t = ps_test_join(dir, "notes.dcm");
  assert_int_equal(ps_test_system("echo 'just text, not a film' > '%s'", t), 0);
  expect_fail(t, NULL, PS_EFORMAT, "text named .dcm");
  if (geteuid() != 0) {
    char *u = ps_test_join(dir, "unreadable.png");
    assert_int_equal(ps_test_system("cp '%s' '%s' && chmod 000 '%s'", ps_test_data("png/nih_00000001_000.png"), u, u),
                     0);
    expect_fail(u, NULL, PS_EIO, "unreadable file");
    free(u);
  } else {
    print_message("  (running as root: the unreadable-file case cannot be made here)\n");
  }
  ps_image *img = (ps_image *)0x1;
  assert_int_equal(ps_image_read(NULL, NULL, &img), PS_EINVAL);
  assert_null(img);
  assert_int_equal(ps_image_read("", NULL, &img), PS_EINVAL);
  assert_int_equal(ps_image_read("x", NULL, NULL), PS_EINVAL);
  assert_int_equal(ps_image_sniff(d), PS_FORMAT_UNKNOWN);
  assert_int_equal(ps_image_sniff(missing), PS_FORMAT_UNKNOWN);
  free(d);
  free(missing);
  free(g);
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shared_pngs_equal_pillow),
      cmocka_unit_test(test_kaggle_jpegs_equal_pillow),
      cmocka_unit_test(test_png_jpeg_variants_equal_pillow),
      cmocka_unit_test(test_sniffing_ignores_extension),
      cmocka_unit_test(test_read_memory_matches_file),
      cmocka_unit_test(test_dicom_dispatch),
      cmocka_unit_test(test_write_png_round_trip),
      cmocka_unit_test(test_malformed_png),
      cmocka_unit_test(test_malformed_jpeg),
      cmocka_unit_test(test_damaged_jpeg),
      cmocka_unit_test(test_damaged_png),
      cmocka_unit_test(test_kaggle_all_clean),
      cmocka_unit_test(test_not_films),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
