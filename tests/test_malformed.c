/* test_malformed.c — hospital-folder robustness: every malformed film in the catalogue
 * (tests/malformed/make_catalogue.py, made from the real films) and every fuzzing regression
 * file (tests/malformed/regress/) gets a status from the allowed set and a message naming the
 * file, never a crash or a hang; directories, symlinks, FIFOs and non-UTF-8 names given as films;
 * `pneumoscope info` over a folder of all of them goes on and reports each one. Damaged data a
 * decoder could get past (corrupt JPEG scans, PNG CRC errors, short DICOM pixel data) is refused
 * exactly where ps_image_read_warnings lists a warning, with the decoder's text, and where the
 * catalogue names a reference (Pillow, pydicom) that program refuses the file too. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ps_common.h"
#include "ps_dataset.h"
#include "ps_image.h"
#include "ps_image_io.h"
#include "test_util.h"

static char cat_dir[4096];

typedef struct {
  char name[256];
  char allowed[128];
  char what[512];
  char ref[64]; /* reference verdict ("pillow-refuses", "pydicom-refuses") or "" */
} cat_row;
static cat_row rows[256];
static int nrows;

static const char *status_name(int st) {
  switch (st) {
    case PS_OK: return "OK";
    case PS_EINVAL: return "EINVAL";
    case PS_ENOMEM: return "ENOMEM";
    case PS_EIO: return "EIO";
    case PS_EFORMAT: return "EFORMAT";
    case PS_EUNSUPPORTED: return "EUNSUPPORTED";
    case PS_ELIMIT: return "ELIMIT";
    case PS_ETORCH: return "ETORCH";
    case PS_ECANCELLED: return "ECANCELLED";
    case PS_ENOTFOUND: return "ENOTFOUND";
    case PS_ESTATE: return "ESTATE";
    default: return "?";
  }
}

static int allowed(const char *list, int st) {
  char buf[128];
  snprintf(buf, sizeof buf, "%s", list);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
    if (!strcmp(t, status_name(st))) return 1;
  return 0;
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

static int setup_catalogue(void **state) {
  (void)state;
  snprintf(cat_dir, sizeof cat_dir, "%s/catalogue", ps_test_tmpdir());
  if (ps_test_system("'%s' '%s' '%s' >/dev/null 2>&1", PS_PYTHON, ps_test_src("tests/malformed/make_catalogue.py"),
                     cat_dir) != 0) {
    fprintf(stderr, "make_catalogue.py failed\n");
    return -1;
  }
  char *idx = ps_test_join(cat_dir, "catalogue.tsv");
  FILE *f = fopen(idx, "r");
  free(idx);
  if (!f) return -1;
  char line[1024];
  while (fgets(line, sizeof line, f) && nrows < 256) {
    if (line[0] == '#') continue;
    line[strcspn(line, "\n")] = 0;
    char *a = strchr(line, '\t');
    if (!a) continue;
    *a++ = 0;
    char *w = strchr(a, '\t');
    if (w) *w++ = 0;
    char *r = w ? strchr(w, '\t') : NULL;
    if (r) *r++ = 0;
    cat_row *row = &rows[nrows];
    if (snprintf(row->name, sizeof row->name, "%s", line) >= (int)sizeof row->name ||
        snprintf(row->allowed, sizeof row->allowed, "%s", a) >= (int)sizeof row->allowed ||
        snprintf(row->what, sizeof row->what, "%s", w ? w : "") >= (int)sizeof row->what ||
        snprintf(row->ref, sizeof row->ref, "%s", r ? r : "") >= (int)sizeof row->ref) {
      fprintf(stderr, "catalogue.tsv: a field of %s is longer than test_malformed's row\n", line);
      fclose(f);
      return -1;
    }
    nrows++;
  }
  fclose(f);
  return nrows > 40 ? 0 : -1;
}

/* One read: allowed status, out NULL on failure, message names the file, pixels sane on success. */
static void check_read(const char *path, const char *allow, const char *what, const ps_read_opts *opts) {
  ps_image *img = (ps_image *)(uintptr_t)1;
  ps_clear_error();
  int st = ps_image_read(path, opts, &img);
  if (!allowed(allow, st)) {
    print_error("%s (%s): status %s, allowed %s: %s\n", base_name(path), what, status_name(st), allow,
                ps_last_error());
    fail();
  }
  if (st != PS_OK) {
    assert_null(img);
    const char *e = ps_last_error();
    if (!strstr(e, base_name(path))) {
      print_error("%s: message does not name the file: '%s'\n", base_name(path), e);
      fail();
    }
  } else {
    assert_non_null(img);
    assert_true(img->width > 0 && img->height > 0);
    size_t n = (size_t)img->width * img->height;
    for (size_t i = 0; i < n; i++)
      if (!(img->data[i] >= 0.0f && img->data[i] <= 1.0f)) {
        print_error("%s: pixel %zu = %g outside [0,1]\n", base_name(path), i, img->data[i]);
        fail();
      }
    ps_image_free(img);
  }
}

static void test_catalogue(void **state) {
  (void)state;
  int ok = 0, refused = 0;
  for (int i = 0; i < nrows; i++) {
    char *p = ps_test_join(cat_dir, rows[i].name);
    check_read(p, rows[i].allowed, rows[i].what, NULL);
    ps_image *img = NULL;
    if (ps_image_read(p, NULL, &img) == PS_OK) ok++;
    else refused++;
    ps_image_free(img);
    free(p);
  }
  print_message("catalogue: %d files, %d read, %d refused with a status naming the file\n", nrows, ok, refused);
  assert_true(refused > 40);
}

/* The text a strict read must quote for one listed warning: after the "jpeg: " / "png: " /
 * "dicom: " prefix (and DICOM's "libjpeg: "), up to a "; " remark the strict read leaves out. */
static void warning_core(const char *w, char *out, size_t cap) {
  const char *c = strchr(w, ':');
  c = c ? c + 2 : w;
  if (!strncmp(c, "libjpeg: ", 9)) c += 9;
  snprintf(out, cap, "%s", c);
  char *semi = strstr(out, "; ");
  if (semi) *semi = 0;
}

/* ps_image_read refuses a film exactly when ps_image_read_warnings fails or lists a warning; a
 * refusal for a listed warning is PS_EFORMAT, names the file and quotes the decoder's text. */
static int check_warnings_agree(const char *path) {
  ps_image *strict = NULL, *lenient = NULL;
  int st = ps_image_read(path, NULL, &strict);
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", ps_last_error());
  char **w = NULL;
  int n = 0;
  int lst = ps_image_read_warnings(path, NULL, &lenient, &w, &n);
  int listed = lst == PS_OK && n > 0;
  if (lst != PS_OK) {
    assert_null(lenient);
    assert_null(w);
    assert_int_equal(n, 0);
    if (st != lst) {
      print_error("%s: ps_image_read -> %s, ps_image_read_warnings -> %s (%s)\n", base_name(path), status_name(st),
                  status_name(lst), ps_last_error());
      fail();
    }
  } else if (!listed) {
    if (st != PS_OK) {
      print_error("%s: refused (%s) but ps_image_read_warnings lists nothing\n", base_name(path), msg);
      fail();
    }
    assert_int_equal(strict->width, lenient->width);
    assert_int_equal(strict->height, lenient->height);
    assert_memory_equal(strict->data, lenient->data, sizeof(float) * (size_t)strict->width * strict->height);
  } else {
    char core[1024];
    warning_core(w[0], core, sizeof core);
    if (st != PS_EFORMAT || !strstr(msg, base_name(path)) || !strstr(msg, core)) {
      print_error("%s: listed '%s' but ps_image_read -> %s '%s' (want EFORMAT quoting '%s')\n", base_name(path), w[0],
                  status_name(st), msg, core);
      fail();
    }
    assert_non_null(lenient);
    for (size_t i = 0; i < (size_t)lenient->width * lenient->height; i++)
      if (!(lenient->data[i] >= 0.0f && lenient->data[i] <= 1.0f)) {
        print_error("%s: pixel %zu = %g outside [0,1] in the listed read\n", base_name(path), i, lenient->data[i]);
        fail();
      }
  }
  ps_image_warnings_free(w, n);
  ps_image_free(strict);
  ps_image_free(lenient);
  return listed;
}

/* fn(path, user) for every film under tests/malformed/regress/{image,dicom}; returns how many. */
static int for_each_regression_film(void (*fn)(const char *path, void *user), void *user) {
  const char *film_dirs[] = {"tests/malformed/regress/image", "tests/malformed/regress/dicom"};
  int n = 0;
  for (size_t d = 0; d < 2; d++) {
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", ps_test_src(film_dirs[d]));
    DIR *dh = opendir(dirbuf);
    if (!dh && errno == ENOENT) continue; /* no regression file for this harness yet */
    assert_non_null(dh);
    struct dirent *e;
    while ((e = readdir(dh))) {
      if (e->d_name[0] == '.') continue;
      char *p = ps_test_join(dirbuf, e->d_name);
      fn(p, user);
      free(p);
      n++;
    }
    closedir(dh);
  }
  assert_true(n > 0);
  return n;
}

static void agree_fn(const char *path, void *user) { *(int *)user += check_warnings_agree(path); }

static void regression_fn(const char *path, void *user) {
  (void)user;
  check_read(path, "OK,EFORMAT,EUNSUPPORTED,ELIMIT", "fuzz regression", NULL);
}

static void test_warnings_agree(void **state) {
  (void)state;
  int listed = 0;
  for (int i = 0; i < nrows; i++) {
    char *p = ps_test_join(cat_dir, rows[i].name);
    listed += check_warnings_agree(p);
    free(p);
  }
  for_each_regression_film(agree_fn, &listed);
  print_message("warnings: %d catalogue/regression files refused for damaged data a decoder got past, each listed "
                "by ps_image_read_warnings with the same text\n",
                listed);
  /* the corrupt JPEG scans, PNG CRC / benign errors, short DICOM pixel data, damaged JPEG DICOM */
  assert_true(listed >= 12);
}

/* Programs we did not write on the same files: where the catalogue names one, it refuses the file
 * too (Pillow on a stray marker in a JPEG scan and on a CRC error before the image data, pydicom
 * on short pixel data). Pillow reads the other corrupt scans libjpeg-turbo warns about, and
 * pydicom a damaged JPEG frame: those rows name no reference. */
static void test_references_refuse(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("PIL,pydicom,numpy"), "Debian python3 with Pillow + pydicom not available");
  int status = -1;
  char *out = ps_test_capture(&status, "'%s' '%s' --references '%s' 2>/dev/null", PS_PYTHON,
                              ps_test_src("tests/malformed/make_catalogue.py"), cat_dir);
  assert_non_null(out);
  assert_int_equal(status, 0);
  int want = 0, seen = 0;
  for (int i = 0; i < nrows; i++) {
    if (!rows[i].ref[0]) continue;
    want++;
    char key[300];
    snprintf(key, sizeof key, "%s\t%s\trefused: ", rows[i].name, rows[i].ref);
    char *hit = strstr(out, key);
    if (!hit || (hit != out && hit[-1] != '\n')) {
      print_error("%s: %s, but it did not: %s\n", rows[i].name, rows[i].ref, out);
      fail();
    }
    char *eol = strchr(hit, '\n');
    print_message("  %-28s %-16s %.*s\n", rows[i].name, rows[i].ref, (int)(eol ? eol - hit - strlen(key) : 80),
                  hit + strlen(key));
    /* and we refuse it */
    char *p = ps_test_join(cat_dir, rows[i].name);
    ps_image *img = NULL;
    assert_int_not_equal(ps_image_read(p, NULL, &img), PS_OK);
    free(p);
    seen++;
  }
  print_message("references: %d catalogue files refused by the reference and by us\n", seen);
  assert_true(want >= 5);
  assert_int_equal(seen, want);
  free(out);
}

/* A valid film under tight limits: refused with ELIMIT before decoding. */
static void test_limits(void **state) {
  (void)state;
  const char *films[] = {"png/nih_00000001_000.png", "dicom/gcp_dicom_00000001_000.dcm"};
  for (size_t i = 0; i < 2; i++) {
    ps_read_opts o = ps_read_opts_default();
    o.max_pixels = 1000;
    check_read(ps_test_data(films[i]), "ELIMIT", "max_pixels 1000", &o);
    o = ps_read_opts_default();
    o.max_bytes = 100;
    check_read(ps_test_data(films[i]), "ELIMIT", "max_bytes 100", &o);
  }
}

/* Fuzzing regressions: films must fail cleanly or read; CSVs must fail naming the file or give
 * items that keep the ps_dataset_item contract (non-empty patient id, a path). */
static void test_regressions(void **state) {
  (void)state;
  int n = 0;
  n += for_each_regression_film(regression_fn, NULL);
  char csvdir[4096];
  snprintf(csvdir, sizeof csvdir, "%s", ps_test_src("tests/malformed/regress/csv"));
  DIR *dh = opendir(csvdir);
  assert_non_null(dh);
  struct dirent *e;
  while ((e = readdir(dh))) {
    if (e->d_name[0] == '.') continue;
    char *p = ps_test_join(csvdir, e->d_name);
    ps_dataset *ds = NULL;
    ps_clear_error();
    int st = ps_dataset_read_manifest(p, &ds);
    if (st != PS_OK) {
      assert_null(ds);
      if (!strstr(ps_last_error(), e->d_name)) {
        print_error("%s: message does not name the file: '%s'\n", e->d_name, ps_last_error());
        fail();
      }
    } else {
      for (size_t i = 0; i < ps_dataset_size(ds); i++) {
        const ps_dataset_item *it = ps_dataset_item_at(ds, i);
        if (!it->path || !it->patient_id || !it->patient_id[0]) {
          print_error("%s: row %zu (path '%s') accepted with an empty patient id (ps_dataset.h: never NULL or \"\")\n",
                      e->d_name, i, it->path ? it->path : "(null)");
          fail();
        }
      }
      ps_dataset_free(ds);
    }
    free(p);
    n++;
  }
  closedir(dh);
  print_message("regressions: %d files\n", n);
  assert_true(n > 0);
}

/* Run ps_image_read(path) in a child with a deadline: a FIFO or device must not block forever. */
static int read_in_child(const char *path, int seconds, int *status_out) {
  int pfd[2];
  if (pipe(pfd) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    alarm((unsigned)seconds);
    ps_image *img = NULL;
    int st = ps_image_read(path, NULL, &img);
    ps_image_free(img);
    if (write(pfd[1], &st, sizeof st) != (ssize_t)sizeof st) _exit(3);
    _exit(0);
  }
  close(pfd[1]);
  int st = 1, ws = 0;
  ssize_t r = read(pfd[0], &st, sizeof st);
  close(pfd[0]);
  waitpid(pid, &ws, 0);
  if (WIFSIGNALED(ws)) return WTERMSIG(ws) == SIGALRM ? -2 : -3;
  if (r != (ssize_t)sizeof st) return -1;
  *status_out = st;
  return 0;
}

static void test_filesystem_specials(void **state) {
  (void)state;
  const char *tmp = ps_test_tmpdir();
  char good[4096], p[4096];
  assert_true(snprintf(good, sizeof good, "%s/dcm_small_ok.dcm", cat_dir) < (int)sizeof good);

  /* a folder given as a film */
  snprintf(p, sizeof p, "%s/folder.png", tmp);
  assert_int_equal(mkdir(p, 0700), 0);
  check_read(p, "EIO", "a directory", NULL);
  /* symlink to a real film: read; to a folder, dangling: refused */
  snprintf(p, sizeof p, "%s/link_to_film.dcm", tmp);
  assert_int_equal(symlink(good, p), 0);
  check_read(p, "OK", "symlink to a film", NULL);
  snprintf(p, sizeof p, "%s/link_to_folder.png", tmp);
  char tgt[4096];
  snprintf(tgt, sizeof tgt, "%s/folder.png", tmp);
  assert_int_equal(symlink(tgt, p), 0);
  check_read(p, "EIO", "symlink to a folder", NULL);
  snprintf(p, sizeof p, "%s/dangling.jpeg", tmp);
  assert_int_equal(symlink("/nonexistent/pneumoscope/film.jpeg", p), 0);
  check_read(p, "EIO,ENOTFOUND", "dangling symlink", NULL);
  snprintf(p, sizeof p, "%s/missing.png", tmp);
  check_read(p, "EIO,ENOTFOUND", "missing file", NULL);
  /* non-UTF-8 names (Latin-1 bytes from an old Windows share) */
  char name[64];
  snprintf(name, sizeof name, "%s", "r\xf6ntgen_\xe9t\xe9.png");
  snprintf(p, sizeof p, "%s/%s", tmp, name);
  assert_int_equal(ps_test_system("cp '%s' '%s'", ps_test_data("png/nih_00000001_000.png"), p), 0);
  check_read(p, "OK", "non-UTF-8 name, real PNG", NULL);
  snprintf(p, sizeof p, "%s/%s", tmp, "bad_\xff\xfe.dcm");
  char src[4096];
  assert_true(snprintf(src, sizeof src, "%s/dcm_short_pixels.dcm", cat_dir) < (int)sizeof src);
  assert_int_equal(ps_test_system("cp '%s' '%s'", src, p), 0);
  check_read(p, "EFORMAT", "non-UTF-8 name, short pixel data", NULL);
  /* NULL / empty arguments */
  ps_image *img = NULL;
  assert_int_equal(ps_image_read(NULL, NULL, &img), PS_EINVAL);
  assert_int_equal(ps_image_read("", NULL, &img), PS_EINVAL);
  assert_int_equal(ps_image_read(good, NULL, NULL), PS_EINVAL);

  /* A FIFO named like a film (a half-configured DICOM receiver leaves these): must not block. */
  const char *fifo_names[] = {"pipe.png", "pipe.dcm"};
  for (size_t i = 0; i < 2; i++) {
    snprintf(p, sizeof p, "%s/%s", tmp, fifo_names[i]);
    assert_int_equal(mkfifo(p, 0600), 0);
    int st = 0;
    int r = read_in_child(p, 5, &st);
    if (r == -2) {
      print_error("%s: ps_image_read blocked for 5 s on a FIFO (open without O_NONBLOCK)\n", fifo_names[i]);
      fail();
    }
    assert_int_equal(r, 0);
    assert_int_equal(st, PS_EIO);
  }
}

/* `pneumoscope info` over every catalogue file, special files and a good film: it reports each
 * good film on stdout, names every bad one on stderr, goes on, exits 1 (not a signal). */
static void test_batch_info(void **state) {
  (void)state;
  char *errf = ps_test_join(ps_test_tmpdir(), "info.err");
  int status = -1;
  char *out = ps_test_capture(&status, "cd '%s' && '%s' info * '%s' 2>'%s'", cat_dir, PS_CLI,
                              ps_test_data("png/nih_00000001_000.png"), errf);
  assert_non_null(out);
  assert_int_equal(status, 1);
  /* stdout: every film the decoder gets through, damaged or not (with its warnings listed);
   * stderr: every film ps_image_read refuses (unreadable or damaged) */
  int expect_ok = 1, expect_bad = 0, damaged = 0;
  for (int i = 0; i < nrows; i++) {
    char *p = ps_test_join(cat_dir, rows[i].name);
    ps_image *img = NULL;
    char **w = NULL;
    int nw = 0;
    if (ps_image_read_warnings(p, NULL, &img, &w, &nw) == PS_OK) expect_ok++;
    if (nw) {
      char key[600];
      assert_true(snprintf(key, sizeof key, "\"file\":\"%s\"", rows[i].name) < (int)sizeof key);
      char *at = strstr(out, key), *eol = at ? strchr(at, '\n') : NULL;
      if (!at || !eol) fail_msg("info: no stdout line for the damaged film %s", rows[i].name);
      *eol = 0;
      if (!strstr(at, "\"warnings\":[\"")) fail_msg("info: %s listed without its warnings: %s", rows[i].name, at);
      *eol = '\n';
      damaged++;
    }
    ps_image_warnings_free(w, nw);
    ps_image_free(img);
    img = NULL;
    if (ps_image_read(p, NULL, &img) != PS_OK) expect_bad++;
    ps_image_free(img);
    free(p);
  }
  assert_true(damaged >= 10); /* corrupt JPEG scans, PNG CRC errors, short DICOM pixel data */
  expect_bad++; /* catalogue.tsv itself is not a film */
  int lines = 0;
  for (char *s = out; *s; s++) lines += *s == '\n';
  assert_int_equal(lines, expect_ok);
  FILE *f = fopen(errf, "r");
  assert_non_null(f);
  char line[2048];
  int errs = 0;
  while (fgets(line, sizeof line, f)) errs++;
  rewind(f);
  for (int i = 0; i < nrows; i++) {
    char *p = ps_test_join(cat_dir, rows[i].name);
    ps_image *img = NULL;
    int bad = ps_image_read(p, NULL, &img) != PS_OK;
    ps_image_free(img);
    free(p);
    if (!bad) continue;
    int found = 0;
    rewind(f);
    while (fgets(line, sizeof line, f))
      if (strstr(line, rows[i].name)) found = 1;
    if (!found) {
      print_error("info: no stderr line names %s\n", rows[i].name);
      fail();
    }
  }
  fclose(f);
  print_message("info batch: %d films reported, %d errors on stderr (expected %d)\n", lines, errs, expect_bad);
  assert_true(errs >= expect_bad);
  free(out);
  free(errf);
}

/* `pneumoscope classify` over a folder of real films and damaged ones (a corrupt JPEG scan, a PNG
 * CRC error, short DICOM pixel data, a damaged JPEG DICOM frame): every damaged film gets an error
 * row quoting the decoder, the real films are still classified, the exit status is 1. */
static void test_batch_classify(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(strstr(ps_build_features(), "torch") != NULL, "built without libtorch: no classify");
  char *dir = ps_test_join(ps_test_tmpdir(), "classify_folder");
  assert_int_equal(mkdir(dir, 0700), 0);
  const char *good[] = {"kaggle/NORMAL/IM-0117-0001.jpeg", "kaggle/PNEUMONIA/person1108_virus_1833.jpeg"};
  for (int i = 0; i < 2; i++) assert_int_equal(ps_test_system("cp '%s' '%s'", ps_test_data(good[i]), dir), 0);
  const char *bad[] = {"jpeg_scan_noise.jpeg", "png_ancillary_crc.png", "dcm_short_frames.dcm", "dcm_jpeg_scan_noise.dcm"};
  const char *quote[] = {"libjpeg-turbo: Corrupt JPEG data", "libpng: gAMA: CRC error", "shorter than", "libjpeg: Corrupt JPEG data"};
  for (int i = 0; i < 4; i++) assert_int_equal(ps_test_system("cp '%s/%s' '%s'", cat_dir, bad[i], dir), 0);
  int status = -1;
  char *out = ps_test_capture(&status, "'%s' classify --device cpu --csv '%s' 2>/dev/null", PS_CLI, dir);
  assert_non_null(out);
  print_message("%s", out);
  assert_int_equal(status, 1);
  int rows_seen = 0;
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
    if (!strncmp(line, "file,", 5)) continue;
    rows_seen++;
    for (int i = 0; i < 2; i++)
      if (strstr(line, strrchr(good[i], '/') + 1))
        assert_true(strstr(line, ",NORMAL,") != NULL || strstr(line, ",PNEUMONIA,") != NULL);
    for (int i = 0; i < 4; i++)
      if (strstr(line, bad[i])) {
        const char *err = strrchr(line, ',');
        if (!strstr(line, quote[i]) || strstr(line, ",NORMAL,") || strstr(line, ",PNEUMONIA,")) {
          print_error("%s: want an error row quoting '%s', got: %s (%s)\n", bad[i], quote[i], line, err ? err : "");
          fail();
        }
      }
  }
  assert_int_equal(rows_seen, 6);
  free(out);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_catalogue),
      cmocka_unit_test(test_warnings_agree),
      cmocka_unit_test(test_references_refuse),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_regressions),
      cmocka_unit_test(test_filesystem_specials),
      cmocka_unit_test(test_batch_info),
      cmocka_unit_test(test_batch_classify),
  };
  return cmocka_run_group_tests(tests, setup_catalogue, NULL);
}
