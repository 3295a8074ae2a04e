/* test_malformed_models.c — a corrupt or truncated .safetensors is refused by ps_model_load with
 * a status and a message naming the file, never a crash; a failed load leaves *out NULL. The
 * valid file is a real ResNet18 written by ps_model_save; every corruption is made from it. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_common.h"
#include "ps_image_io.h"
#include "ps_infer.h"
#include <pthread.h>
#include <time.h>
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
  if (!(gbytes = (unsigned char *)ps_test_read_file(good, &gsize))) return -1;
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

/* `pneumoscope classify` over a folder holding the whole malformed-film catalogue plus real films:
 * goes on past every bad film, names each on stderr, classifies each good one, exits 1 (no signal). */
static void test_classify_batch(void **state) {
  (void)state;
  int status = -1;
  char *help = ps_test_capture(&status, "'%s' help 2>&1", PS_CLI);
  int have = help && strstr(help, "classify") != NULL;
  free(help);
  PS_TEST_SKIP_UNLESS(have, "no classify command in this build");
  PS_TEST_SKIP_UNLESS(ps_test_have_python("numpy,PIL,pydicom"), "python3 with numpy, Pillow, pydicom");
  char cat[4096];
  snprintf(cat, sizeof cat, "%s/catalogue", ps_test_tmpdir());
  assert_int_equal(ps_test_system("'%s' '%s' '%s' >/dev/null 2>&1", PS_PYTHON,
                                  ps_test_src("tests/malformed/make_catalogue.py"), cat), 0);
  /* folder and symlink oddities inside the batch folder, and two real films */
  assert_int_equal(ps_test_system("cd '%s' && mkdir sub.dcm && ln -s /nonexistent/x.png dangling.png && "
                                  "cp '%s' real.png && cp '%s' real.dcm && mkfifo pipe.dcm",
                                  cat, ps_test_data("png/nih_00000001_000.png"),
                                  ps_test_data("dicom/gcp_dicom_00000001_000.dcm")), 0);
  char *errf = ps_test_join(ps_test_tmpdir(), "classify.err");
  char *out = ps_test_capture(&status, "timeout 170 '%s' classify --model '%s' --csv --threads 2 --batch 4 '%s' 2>'%s'",
                              PS_CLI, good, cat, errf);
  assert_non_null(out);
  if (status != 1) print_error("classify exit status %d (want 1: some films failed, no crash/hang)\n", status);
  assert_int_equal(status, 1);
  char *err = ps_test_capture(&status, "cat '%s'", errf);
  assert_non_null(err);
  /* every catalogue file: readable -> a CSV row naming it; refused -> a stderr line naming it */
  char idx[sizeof cat + 16];
  snprintf(idx, sizeof idx, "%s/catalogue.tsv", cat);
  FILE *f = fopen(idx, "r");
  assert_non_null(f);
  char line[2048];
  int good_n = 0, bad_n = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    line[strcspn(line, "\t")] = 0;
    char path[sizeof cat + sizeof line];
    snprintf(path, sizeof path, "%s/%s", cat, line);
    ps_image *img = NULL;
    int st = ps_image_read(path, NULL, &img);
    ps_image_free(img);
    const char *where = st == PS_OK ? out : err;
    if (!strstr(where, line)) {
      print_error("classify: %s (%s) not named on %s\n", line, ps_strerror(st), st == PS_OK ? "stdout" : "stderr");
      fail();
    }
    if (st == PS_OK) good_n++;
    else bad_n++;
  }
  fclose(f);
  assert_non_null(strstr(out, "real.png"));
  assert_non_null(strstr(out, "real.dcm"));
  assert_non_null(strstr(err, "pipe.dcm"));
  assert_non_null(strstr(err, "dangling.png"));
  print_message("classify batch: %d catalogue films classified, %d refused and named, plus real/special files\n",
                good_n, bad_n);
  free(out);
  free(err);
  free(errf);
}

/* ps_infer_run over a long run of bad films between good ones (batch 4, 2 decoders): every film
 * delivered once, in order, no deadlock (bug R4: failed films did not advance the decode window).
 * Runs on a thread watched with a 120 s deadline so a regression fails instead of hanging ctest
 * (not in a forked child: libtorch's OpenMP pool does not survive fork). */
enum { NBAD = 40 };
typedef struct {
  const char *paths[NBAD + 3];
  ps_model *m;
  int n, ok, order_ok, nfailed, st, finished;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} bad_run;
static int count_result(const ps_infer_result *r, void *user) {
  bad_run *s = user;
  if (r->index != s->n) s->order_ok = 0;
  s->n++;
  s->ok += r->status == PS_OK;
  return 0;
}
static void *bad_run_thread(void *arg) {
  bad_run *s = arg;
  ps_infer_opts o = {0};
  o.batch = 4;
  o.threads = 2;
  int st = ps_infer_run(s->m, s->paths, NBAD + 3, &o, count_result, s, &s->nfailed);
  pthread_mutex_lock(&s->mu);
  s->st = st;
  s->finished = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}
static void test_infer_bad_run(void **state) {
  (void)state;
  static bad_run s; /* static: a deadlocked thread may still point at it after a failure */
  memset(&s, 0, sizeof s);
  pthread_mutex_init(&s.mu, NULL);
  pthread_cond_init(&s.cv, NULL);
  s.order_ok = 1;
  s.nfailed = -1;
  static char *own[NBAD];
  s.paths[0] = strdup(ps_test_data("png/nih_00000001_000.png"));
  for (int i = 0; i < NBAD; i++) {
    char name[64];
    snprintf(name, sizeof name, "bad_%02d.png", i);
    own[i] = ps_test_join(ps_test_tmpdir(), name);
    FILE *f = fopen(own[i], "wb");
    assert_non_null(f);
    fputs(i % 2 ? "" : "\x89PNG\r\n", f);
    fclose(f);
    s.paths[1 + i] = own[i];
  }
  s.paths[NBAD + 1] = strdup(ps_test_data("dicom/gcp_dicom_00000001_000.dcm"));
  s.paths[NBAD + 2] = strdup(ps_test_data("png/nih_00027426_000.png"));
  assert_int_equal(ps_model_load(good, PS_DEVICE_CPU, &s.m), PS_OK);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, bad_run_thread, &s), 0);
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 120;
  pthread_mutex_lock(&s.mu);
  while (!s.finished)
    if (pthread_cond_timedwait(&s.cv, &s.mu, &dl) != 0) break;
  int finished = s.finished;
  pthread_mutex_unlock(&s.mu);
  if (!finished) {
    print_error("ps_infer_run: still running after 120 s over %d bad films (deadlock)\n", NBAD);
    fail();
  }
  pthread_join(th, NULL);
  print_message("ps_infer_run: %d results (%d ok, %d failed), in order: %d\n", s.n, s.ok, s.nfailed, s.order_ok);
  assert_int_equal(s.st, PS_OK);
  assert_int_equal(s.n, NBAD + 3);
  assert_int_equal(s.ok, 3);
  assert_int_equal(s.nfailed, NBAD);
  assert_true(s.order_ok);
  ps_model_free(s.m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_control_loads),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_header_lies),
      cmocka_unit_test(test_regressions),
      cmocka_unit_test(test_infer_bad_run),
      cmocka_unit_test(test_classify_batch),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
