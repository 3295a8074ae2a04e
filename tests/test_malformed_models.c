/* test_malformed_models.c — a corrupt or truncated .safetensors is refused by ps_model_load with
 * a status and a message naming the file, never a crash; a failed load leaves *out NULL. The
 * valid file is a real ResNet18 written by ps_model_save; every corruption is made from it. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_common.h"
#include "ps_model.h"
#include "test_util.h"

static char good[4096];
static unsigned char *gbytes;
static size_t gsize;
static uint64_t hlen;

static int setup(void **state) {
  (void)state;
  ps_model *m = NULL;
  snprintf(good, sizeof good, "%s/good.safetensors", ps_test_tmpdir());
  if (ps_model_create(2, PS_DEVICE_CPU, 7, &m) != PS_OK) return -1;
  int st = ps_model_save(m, good, NULL);
  ps_model_free(m);
  if (st != PS_OK) return -1;
  FILE *f = fopen(good, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  gsize = (size_t)ftell(f);
  rewind(f);
  gbytes = malloc(gsize);
  if (fread(gbytes, 1, gsize, f) != gsize) return -1;
  fclose(f);
  memcpy(&hlen, gbytes, 8); /* little-endian host */
  return 0;
}

static int teardown(void **state) {
  (void)state;
  free(gbytes);
  return 0;
}

static const char *write_variant(const char *name, const void *a, size_t na, const void *b, size_t nb) {
  static char p[4096];
  snprintf(p, sizeof p, "%s/%s", ps_test_tmpdir(), name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  if (na) assert_int_equal(fwrite(a, 1, na, f), na);
  if (nb) assert_int_equal(fwrite(b, 1, nb, f), nb);
  fclose(f);
  return p;
}

static void expect_refused(const char *path, const char *what) {
  ps_model *m = (ps_model *)(uintptr_t)1;
  ps_clear_error();
  int st = ps_model_load(path, PS_DEVICE_CPU, &m);
  if (st == PS_OK) {
    print_error("%s (%s) was accepted\n", path, what);
    ps_model_free(m);
    fail();
  }
  assert_null(m);
  const char *base = strrchr(path, '/') + 1;
  if (!strstr(ps_last_error(), base)) {
    print_error("%s (%s): message does not name the file: '%s'\n", base, what, ps_last_error());
    fail();
  }
  if (st != PS_EFORMAT && st != PS_EIO && st != PS_ENOTFOUND && st != PS_ELIMIT && st != PS_EUNSUPPORTED) {
    print_error("%s (%s): status %d (%s)\n", base, what, st, ps_strerror(st));
    fail();
  }
}

static void test_control_loads(void **state) {
  (void)state;
  ps_model *m = NULL;
  assert_int_equal(ps_model_load(good, PS_DEVICE_CPU, &m), PS_OK);
  ps_model_free(m);
}

/* Truncated at many points: the header, inside the JSON, inside every region of the data. */
static void test_truncated(void **state) {
  (void)state;
  size_t cuts[] = {0, 1, 7, 8, 9, 8 + hlen / 2, 8 + hlen - 1, 8 + hlen, 8 + hlen + 1,
                   8 + hlen + 4096, gsize / 3, gsize / 2, gsize - 4096, gsize - 5, gsize - 1};
  char name[64];
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    snprintf(name, sizeof name, "trunc_%zu.safetensors", cuts[i]);
    expect_refused(write_variant(name, gbytes, cuts[i], NULL, 0), "truncated");
  }
}

/* Header lies: length beyond the file / huge / zero, JSON damaged, offsets, dtype, shapes. */
static void test_header_lies(void **state) {
  (void)state;
  unsigned char *b = malloc(gsize);
  uint64_t lens[] = {0, 1, 2, (uint64_t)gsize, (uint64_t)gsize * 4, (uint64_t)200 * 1000 * 1000,
                     UINT64_MAX, UINT64_MAX - 7, hlen + 1, hlen - 1};
  char name[64];
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    memcpy(b, gbytes, gsize);
    memcpy(b, &lens[i], 8);
    snprintf(name, sizeof name, "hlen_%zu.safetensors", i);
    expect_refused(write_variant(name, b, gsize, NULL, 0), "header length lie");
  }
  /* one-token edits inside the JSON header (first occurrence) */
  struct {
    const char *from, *to, *what;
  } edits[] = {
      {"\"F32\"", "\"F64\"", "dtype F64"},
      {"\"F32\"", "\"Q32\"", "unknown dtype"},
      {"\"data_offsets\":[0,", "\"data_offsets\":[9,", "offsets overlap / size mismatch"},
      {"\"shape\":[64,3,7,7]", "\"shape\":[64,3,7,8]", "shape lies about the bytes"},
      {"\"shape\":[64,3,7,7]", "\"shape\":[64,3,-7,7]", "negative dimension"},
      {"\"shape\":[64,3,7,7]", "\"shape\":[4294967296,4294967296,4294967296,4]", "overflowing shape"},
      {"conv1.weight", "conv9.weight", "unknown tensor / missing conv1"},
      {"fc.bias", "fc.bias\\u0000", "escaped NUL in a name"},
      {"{", "[", "header is not an object"},
      {"\"dtype\"", "\"dtype\" ", NULL},
      {"\"__metadata__\":{", "\"__metadata__\":{\"classes\":\"\",", "empty class list"},
      {"\"__metadata__\":{", "\"__metadata__\":{\"input_size\":\"-5\",", "negative input size"},
      {"\"__metadata__\":{", "\"__metadata__\":{\"threshold\":\"nan\",", "NaN threshold"},
      {"\"__metadata__\":{", "\"__metadata__\":{\"task\":\"regression\",", "unknown task"},
  };
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    char *h = malloc(hlen + 1);
    memcpy(h, gbytes + 8, hlen);
    h[hlen] = 0;
    char *at = strstr(h, edits[i].from);
    if (!at) {
      print_message("edit %zu: '%s' not in this header (skipped)\n", i, edits[i].from);
      free(h);
      continue;
    }
    size_t nf = strlen(edits[i].from), nt = strlen(edits[i].to);
    size_t nh = hlen - nf + nt;
    char *h2 = malloc(nh);
    memcpy(h2, h, (size_t)(at - h));
    memcpy(h2 + (at - h), edits[i].to, nt);
    memcpy(h2 + (at - h) + nt, at + nf, hlen - (size_t)(at - h) - nf);
    unsigned char *f = malloc(8 + nh + gsize);
    uint64_t l = nh;
    memcpy(f, &l, 8);
    memcpy(f + 8, h2, nh);
    memcpy(f + 8 + nh, gbytes + 8 + hlen, gsize - 8 - hlen);
    snprintf(name, sizeof name, "edit_%zu.safetensors", i);
    const char *p = write_variant(name, f, 8 + nh + gsize - 8 - hlen, NULL, 0);
    if (edits[i].what) {
      expect_refused(p, edits[i].what);
    } else { /* harmless whitespace: must still load */
      ps_model *m = NULL;
      assert_int_equal(ps_model_load(p, PS_DEVICE_CPU, &m), PS_OK);
      ps_model_free(m);
    }
    free(f);
    free(h2);
    free(h);
  }
  /* not a model at all: a film, a directory, a missing file */
  expect_refused(ps_test_data("png/nih_00000001_000.png"), "a PNG");
  expect_refused(ps_test_tmpdir(), "a directory");
  char p[4096];
  snprintf(p, sizeof p, "%s/missing.safetensors", ps_test_tmpdir());
  expect_refused(p, "missing");
  free(b);
}

/* Fuzzing regressions for the safetensors parser, loaded as models. */
static void test_regressions(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", ps_test_src("tests/malformed/regress/safetensors"));
  DIR *d = opendir(dir);
  if (!d) {
    print_message("no safetensors regressions yet (%s)\n", dir);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char *p = ps_test_join(dir, e->d_name);
    expect_refused(p, "fuzz regression");
    free(p);
  }
  closedir(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_control_loads),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_header_lies),
      cmocka_unit_test(test_regressions),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
