/* pneumoscope info / convert: JSON lines that python's json module parses and whose sizes agree
 * with Pillow and pydicom, exit codes, going on past bad films, convert output vs Pillow, and
 * never overwriting an input or someone else's file. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_image_io.h"
#include "test_util.h"

#define sample_films ps_test_sample_films
#define NSAMPLE ((size_t)PS_TEST_N_SAMPLE)

static int have_dicom(void) { return strstr(ps_build_features(), "dicom") != NULL; }

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

static char *read_text(const char *path) {
  size_t n;
  char *b = ps_test_read_file(path, &n);
  return b ? b : strdup("");
}

/* Every sample film: one JSON line each; python parses them and checks them against Pillow
 * (PNG/JPEG size, components) and pydicom (DICOM rows/columns). */
static void test_info_sample_films(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("PIL,numpy"), "Debian python3 with Pillow not available");
  size_t nf = have_dicom() ? NSAMPLE : NSAMPLE - 5;
  char cmd[8192];
  char *out = ps_test_join(ps_test_tmpdir(), "info.jsonl");
  int len = snprintf(cmd, sizeof cmd, "'%s' info", PS_CLI);
  for (size_t i = 0; i < nf; i++) len += snprintf(cmd + len, sizeof cmd - len, " '%s'", ps_test_src(sample_films[i]));
  snprintf(cmd + len, sizeof cmd - len, " > '%s'", out);
  assert_int_equal(ps_test_system("%s", cmd), 0);
  char *text = read_text(out);
  assert_int_equal(count_lines(text), (int)nf);
  free(text);
  int st = 0;
  char *res = ps_test_capture(
      &st,
      "'%s' - '%s' <<'EOF'\n"
      "import json, sys\n"
      "from PIL import Image\n"
      "try:\n"
      "    import pydicom\n"
      "except ImportError:\n"
      "    pydicom = None\n"
      "n = 0\n"
      "for line in open(sys.argv[1]):\n"
      "    d = json.loads(line)\n"
      "    for k in ('file', 'format', 'width', 'height', 'rows', 'columns', 'components', 'bits_stored'):\n"
      "        assert k in d, (k, d)\n"
      "    if d['format'] in ('png', 'jpeg'):\n"
      "        im = Image.open(d['file'])\n"
      "        assert im.format.lower() == d['format'], (im.format, d)\n"
      "        assert im.size == (d['width'], d['height']) == (d['columns'], d['rows']), (im.size, d)\n"
      "        assert len(im.getbands()) == d['components'] or im.mode in ('P', '1', 'I'), (im.mode, d)\n"
      "    else:\n"
      "        assert d['format'] == 'dicom', d\n"
      "        if pydicom:\n"
      "            ds = pydicom.dcmread(d['file'], force=True)\n"
      "            assert (ds.Rows, ds.Columns) == (d['rows'], d['columns']), d\n"
      "            assert ds.BitsStored == d['bits_stored'], d\n"
      "            assert ds.PhotometricInterpretation == d['photometric'], d\n"
      "    n += 1\n"
      "print(n)\n"
      "EOF",
      PS_PYTHON, out);
  print_message("  python checked %s", res);
  assert_int_equal(st, 0);
  assert_int_equal(atoi(res), (int)nf);
  free(res);
  free(out);
}

/* Bad films in the middle: info reports each on stderr, still prints the good ones, exits 1. */
static void test_info_continues_past_bad_films(void **state) {
  (void)state;
  const char *dir = ps_test_tmpdir();
  char *text = ps_test_join(dir, "notes.jpeg"), *missing = ps_test_join(dir, "missing.png");
  char *folder = ps_test_join(dir, "folder.dcm"), *trunc = ps_test_join(dir, "trunc.png");
  char *err = ps_test_join(dir, "info_err.txt");
  assert_int_equal(ps_test_system("echo hello > '%s' && mkdir '%s' && head -c 5000 '%s' > '%s'", text, folder,
                                  ps_test_src("sample_data/films/png/nih_00000001_000.png"), trunc),
                   0);
  const char *good1 = ps_test_src(sample_films[0]);
  char *g1 = strdup(good1);
  const char *good2 = ps_test_src(sample_films[9]);
  int st = 0;
  char *out = ps_test_capture(&st, "'%s' info '%s' '%s' '%s' '%s' '%s' '%s' 2> '%s'", PS_CLI, g1, text, missing,
                              folder, trunc, good2, err);
  assert_int_equal(st, 1);
  assert_int_equal(count_lines(out), 2);
  assert_non_null(strstr(out, "NORMAL2-IM-0746-0001.jpeg"));
  assert_non_null(strstr(out, "nih_00000001_000.png"));
  char *e = read_text(err);
  print_message("  stderr:\n%s", e);
  assert_int_equal(count_lines(e), 4);
  const char *bad[] = {text, missing, folder, trunc};
  for (int i = 0; i < 4; i++) assert_non_null(strstr(e, bad[i]));
  assert_non_null(strstr(e, "not a PNG, JPEG or DICOM film"));
  assert_non_null(strstr(e, "directory"));
  assert_non_null(strstr(e, "truncated"));
  free(e);
  free(out);
  /* usage */
  assert_int_equal(ps_test_system("'%s' info > /dev/null 2>&1", PS_CLI), 2);
  assert_int_equal(ps_test_system("'%s' info --bogus '%s' > /dev/null 2>&1", PS_CLI, g1), 2);
  assert_int_equal(ps_test_system("'%s' info --help > /dev/null", PS_CLI), 0);
  /* one bad film alone: exit 1, nothing on stdout */
  out = ps_test_capture(&st, "'%s' info '%s' 2>/dev/null", PS_CLI, text);
  assert_int_equal(st, 1);
  assert_string_equal(out, "");
  free(out);
  free(g1);
  free(text);
  free(missing);
  free(folder);
  free(trunc);
  free(err);
}

/* convert: JPEG -> PNG equals Pillow's convert("L"); --size N within one grey level of Pillow's
 * resize; DICOM -> PNG holds round(v * 255) of the library's film. */
static void test_convert_output(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("PIL,numpy"), "Debian python3 with Pillow not available");
  char *dir = ps_test_join(ps_test_tmpdir(), "convert");
  assert_int_equal(mkdir(dir, 0755), 0);
  char *in = strdup(ps_test_src("sample_data/films/kaggle/PNEUMONIA/person388_virus_777.jpeg")); /* RGB */
  char *o1 = ps_test_join(dir, "full.png"), *o2 = ps_test_join(dir, "small.png");
  assert_int_equal(ps_test_system("'%s' convert '%s' '%s'", PS_CLI, in, o1), 0);
  assert_int_equal(ps_test_system("'%s' convert '%s' '%s' --size 224", PS_CLI, in, o2), 0);
  int st = 0;
  char *res = ps_test_capture(&st,
                              "'%s' -c \"import numpy as np; from PIL import Image; "
                              "L = Image.open('%s').convert('L'); a = Image.open('%s'); b = Image.open('%s'); "
                              "assert a.mode == 'L' and b.mode == 'L' and b.size == (224, 224); "
                              "r = np.asarray(L.resize((224, 224), Image.BILINEAR), dtype=int); "
                              "print(int(np.abs(np.asarray(a, dtype=int) - np.asarray(L, dtype=int)).max()), "
                              "int(np.abs(np.asarray(b, dtype=int) - r).max()))\"",
                              PS_PYTHON, in, o1, o2);
  assert_int_equal(st, 0);
  int dfull = -1, dsmall = -1;
  assert_int_equal(sscanf(res, "%d %d", &dfull, &dsmall), 2);
  print_message("  convert vs Pillow: full max|d| %d, --size 224 max|d| %d grey levels\n", dfull, dsmall);
  assert_int_equal(dfull, 0);
  assert_true(dsmall <= 1);
  free(res);
  if (have_dicom()) {
    const char *dcm = ps_test_src("sample_data/films/dicom/CR-MONO1-10-chest.dcm");
    char *d = strdup(dcm);
    char *o3 = ps_test_join(dir, "cr.png");
    assert_int_equal(ps_test_system("'%s' convert '%s' '%s'", PS_CLI, d, o3), 0);
    ps_image *film = NULL, *png = NULL;
    assert_int_equal(ps_image_read(d, NULL, &film), PS_OK);
    assert_int_equal(ps_image_read(o3, NULL, &png), PS_OK);
    assert_int_equal(png->width, film->width);
    assert_int_equal(png->height, film->height);
    for (int i = 0; i < film->width * film->height; i++) {
      float v = film->data[i] < 0 ? 0 : film->data[i] > 1 ? 1 : film->data[i];
      assert_int_equal((int)(v * 255.0f + 0.5f), (int)(png->data[i] * 255.0f + 0.5f));
    }
    ps_image_free(film);
    ps_image_free(png);
    free(o3);
    free(d);
  }
  assert_int_equal(ps_test_count_entries(dir), have_dicom() ? 3 : 2); /* no temporary files left */
  free(in);
  free(o1);
  free(o2);
  free(dir);
}

/* convert never overwrites its input (same path, another name for the same file) or a file it
 * did not write; it may replace its own earlier output; bad films and bad usage fail cleanly. */
static void test_convert_refuses_and_fails_cleanly(void **state) {
  (void)state;
  char *dir = ps_test_join(ps_test_tmpdir(), "convert_safety");
  assert_int_equal(mkdir(dir, 0755), 0);
  char *film = ps_test_join(dir, "film.png"), *link = ps_test_join(dir, "hardlink.png");
  char *other = ps_test_join(dir, "someone_elses.png"), *out = ps_test_join(dir, "out.png");
  char *err = ps_test_join(dir, "..err.txt");
  const char *orig = ps_test_src("sample_data/films/png/nih_00000001_000.png");
  char *o = strdup(orig);
  assert_int_equal(ps_test_system("cp '%s' '%s' && ln '%s' '%s' && cp '%s' '%s'", o, film, film, link, o, other), 0);
  /* same path */
  assert_int_equal(ps_test_system("'%s' convert '%s' '%s' 2> '%s'", PS_CLI, film, film, err), 1);
  char *e = read_text(err);
  assert_non_null(strstr(e, "refusing to overwrite the input"));
  assert_int_equal(count_lines(e), 1);
  free(e);
  /* another name for the same file */
  assert_int_equal(ps_test_system("'%s' convert '%s' '%s' 2>/dev/null", PS_CLI, film, link), 1);
  /* a file we did not write */
  assert_int_equal(ps_test_system("'%s' convert '%s' '%s' 2> '%s'", PS_CLI, film, other, err), 1);
  e = read_text(err);
  assert_non_null(strstr(e, "refusing to overwrite"));
  assert_non_null(strstr(e, other));
  free(e);
  assert_int_equal(ps_test_system("cmp -s '%s' '%s' && cmp -s '%s' '%s'", film, o, other, o), 0);
  /* our own earlier output may be replaced */
  assert_int_equal(ps_test_system("'%s' convert '%s' '%s'", PS_CLI, film, out), 0);
  assert_int_equal(ps_test_system("'%s' convert '%s' '%s' --size=64", PS_CLI, film, out), 0);
  ps_image *img = NULL;
  assert_int_equal(ps_image_read(out, NULL, &img), PS_OK);
  assert_int_equal(img->width, 64);
  ps_image_free(img);
  /* a bad film: exit 1, one line naming it, no output file */
  char *bad = ps_test_join(dir, "bad.jpeg"), *bad_out = ps_test_join(dir, "bad_out.png");
  assert_int_equal(ps_test_system("head -c 3000 '%s' > '%s'",
                                  ps_test_src("sample_data/films/kaggle/NORMAL/NORMAL2-IM-0746-0001.jpeg"), bad),
                   0);
  assert_int_equal(ps_test_system("'%s' convert '%s' '%s' 2> '%s'", PS_CLI, bad, bad_out, err), 1);
  e = read_text(err);
  print_message("  %s", e);
  assert_int_equal(count_lines(e), 1);
  assert_non_null(strstr(e, bad));
  free(e);
  assert_true(access(bad_out, F_OK) != 0);
  /* usage errors */
  assert_int_equal(ps_test_system("'%s' convert '%s' 2>/dev/null", PS_CLI, film), 2);
  assert_int_equal(ps_test_system("'%s' convert '%s' '%s' --size 0 2>/dev/null", PS_CLI, film, bad_out), 2);
  assert_int_equal(ps_test_system("'%s' convert '%s' '%s' --size abc 2>/dev/null", PS_CLI, film, bad_out), 2);
  assert_int_equal(ps_test_system("'%s' convert '%s' '%s' extra 2>/dev/null", PS_CLI, film, bad_out), 2);
  assert_int_equal(ps_test_system("'%s' convert --help > /dev/null", PS_CLI), 0);
  /* film.png, hardlink.png, someone_elses.png, out.png, ..err.txt, bad.jpeg: nothing else */
  assert_int_equal(ps_test_count_entries(dir), 6);
  free(o);
  free(film);
  free(link);
  free(other);
  free(out);
  free(err);
  free(bad);
  free(bad_out);
  free(dir);
}

/* `pneumoscope version` names the vector ISA the engine may use (cpuid + xgetbv) and the kernel set
 * chosen at run time (oneDNN's, or OpenBLAS's): the ISA list equals the kernel's /proc/cpuinfo
 * flags, and oneDNN's kernels match that list. */
static void test_version_isa(void **state) {
  (void)state;
  int es = -1;
  char *out = ps_test_capture(&es, "'%s' version", PS_CLI);
  assert_int_equal(es, 0);
  print_message("%s", out);
  char *line = strstr(out, "cpu classification:");
  if (!line) fail_msg("no 'cpu classification:' line in `pneumoscope version`");
  char *cpu = strstr(line, "; CPU: "), *eol = strchr(line, '\n');
  assert_non_null(cpu);
  if (eol) *eol = 0;
  if (strstr(line, "OpenBLAS")) assert_null(strstr(line, "kernels for ?"));
  /* oneDNN's kernels follow the CPU's features, whatever its model: AVX-512 kernels where the CPU
   * and OS have AVX-512 (bf16 ones with AVX512_BF16), AVX2 ones where they stop at AVX2 */
  const char *k = strstr(line, "kernels for ");
  if (strstr(line, "oneDNN")) {
    assert_non_null(k);
    k += strlen("kernels for ");
    const char *isa = cpu + 7;
    if (strstr(isa, "avx512_bf16")) assert_true(!strncmp(k, "avx512_core_bf16", 16) || !strncmp(k, "avx512_core_amx", 15));
    else if (strstr(isa, "avx512f")) assert_true(!strncmp(k, "avx512_core", 11));
    else if (strstr(isa, "avx2")) assert_true(!strncmp(k, "avx2", 4));
  }
  assert_int_equal(ps_test_system("'%s' -c 'import sys; f = set(open(\"/proc/cpuinfo\").read().split(\"flags\")[1]"
                                  ".split(\"\\n\")[0].split()) & {\"avx2\", \"fma\", \"avx512f\", \"avx512_bf16\", "
                                  "\"amx_tile\", \"amx_bf16\"}; ours = set(sys.argv[1].split()) - {\"no\", \"AVX2\"}; "
                                  "sys.exit(0 if f == ours else print(\"cpuinfo\", sorted(f), \"ours\", sorted(ours)) or 1)' '%s'",
                                  PS_PYTHON, cpu + 7),
                   0);
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_info_sample_films),
      cmocka_unit_test(test_version_isa),
      cmocka_unit_test(test_info_continues_past_bad_films),
      cmocka_unit_test(test_convert_output),
      cmocka_unit_test(test_convert_refuses_and_fails_cleanly),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
