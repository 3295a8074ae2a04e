/* test_dicom.c — ps_dicom_read / ps_dicom_read_meta / ps_dicom_probe on the real films in
 * ../shared/data/dicom, on variants made at test time with DCMTK's own tools (dcmconv, dcmcjpeg,
 * dcmcjpls, dcmcrle, dcmdjpeg, img2dcm, dcmodify) and pydicom (tests/ref/dicom_reference.py:
 * JPEG 2000, multi-frame, VOI/Modality LUT sequences), and on a catalogue of malformed files.
 *
 * References: pydicom 2.3 (+ Pillow for JPEG Baseline / JPEG 2000) through
 * tests/ref/dicom_reference.py, compared at the 8-bit level (round(v * 255)):
 *   lossless data                : max |diff| <= 1 grey level;
 *   JPEG Baseline decoded by DCMTK's IJG vs Pillow's libjpeg-turbo: max <= 2, mean <= 0.25 (both
 *     use the accurate integer IDCT, measured identical here; the slack covers other libjpeg builds);
 *   lossy re-encodings (dcmcjpeg +eb/+ee, default quality 90) vs the source film: mean <= 1.5,
 *     max <= 24 grey levels (measured 0.75 / 11);
 *   JPEG-LS near-lossless (dcmcjpls +en, NEAR = 2): max |stored value diff| <= 2 (the codec's bound).
 * Lossless variants must decode to exactly the same floats as the uncompressed film.
 * Damaged pixel data (native data shorter than the header declares, libjpeg warnings on a JPEG
 * frame) is refused, and listed by ps_dicom_read_warnings; pydicom refuses the short file too.
 */
#define _GNU_SOURCE
#include "test_util.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_dicom.h"
#include "ps_image_io.h" /* ps_image_warnings_free */

#define CR "CR-MONO1-10-chest.dcm"
#define GCP "gcp_dicom_00000001_000.dcm"
#define NCCID "nccid_1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm"
#define SIIM "siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
#define FAKE1 "torchxrayvision_Fake_MONOHR1.dcm"
#define KAGGLE_GRAY "kaggle/NORMAL/IM-0117-0001.jpeg"
#define KAGGLE_RGB "kaggle/PNEUMONIA/person1108_virus_1833.jpeg"

static const char *const REAL[] = {CR, GCP, NCCID, SIIM, FAKE1};
static const int REAL_IS_JPEG[] = {0, 0, 0, 1, 1};
enum { NREAL = 5 };

static const char *TMP;
static int HAVE_PY;   /* pydicom + numpy + Pillow in PS_PYTHON */
static char *META_TXT; /* pydicom's metadata of the real films */

/* ---- helpers -------------------------------------------------------------------------------- */

static char *real(const char *name) {
  char rel[512];
  snprintf(rel, sizeof rel, "dicom/%s", name);
  return strdup(ps_test_data(rel));
}

static char *tmp(const char *name) { return ps_test_join(TMP, name); }

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

static ps_image *read_ok(const char *path, const ps_read_opts *opts) {
  ps_image *img = NULL;
  int st = ps_dicom_read(path, opts, &img);
  if (st != PS_OK) print_message("ps_dicom_read(%s) -> %s: %s\n", path, ps_strerror(st), ps_last_error());
  assert_int_equal(st, PS_OK);
  assert_non_null(img);
  assert_non_null(img->data);
  return img;
}

static ps_image *read_real(const char *name) {
  char *p = real(name);
  ps_image *img = read_ok(p, NULL);
  free(p);
  return img;
}

/* Compare a display image with a reference (H, W) float array at the 8-bit level. */
static void compare_8bit(const char *what, const ps_image *img, const float *ref, int w, int h, double max_tol,
                         double mean_tol) {
  assert_int_equal(img->width, w);
  assert_int_equal(img->height, h);
  size_t n = (size_t)w * h;
  double maxd = 0, sum = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs(round(img->data[i] * 255.0) - round(ref[i] * 255.0));
    if (d > maxd) maxd = d;
    sum += d;
  }
  print_message("  %-44s 8-bit |diff| max %.0f mean %.4f (tolerance %.0f / %.3f)\n", what, maxd, sum / n, max_tol,
                mean_tol);
  assert_true(maxd <= max_tol);
  assert_true(sum / n <= mean_tol);
}

static void compare_npy(const char *what, const ps_image *img, const char *npy, double max_tol, double mean_tol) {
  size_t shape[4];
  int nd = 0;
  double *ref = ps_test_read_npy(npy, shape, &nd);
  assert_non_null(ref);
  assert_int_equal(nd, 2);
  size_t n = shape[0] * shape[1];
  float *f = malloc(n * sizeof *f);
  for (size_t i = 0; i < n; i++) f[i] = (float)ref[i];
  compare_8bit(what, img, f, (int)shape[1], (int)shape[0], max_tol, mean_tol);
  free(f);
  free(ref);
}

static void assert_same_pixels(const char *what, const ps_image *a, const ps_image *b) {
  assert_int_equal(a->width, b->width);
  assert_int_equal(a->height, b->height);
  size_t n = (size_t)a->width * a->height;
  double maxd = 0;
  for (size_t i = 0; i < n; i++) maxd = fmax(maxd, fabs((double)a->data[i] - b->data[i]));
  print_message("  %-44s exact: max |diff| %g\n", what, maxd);
  assert_true(maxd == 0.0);
}

static int run_quiet(const char *fmt, const char *a, const char *b) {
  return ps_test_system("%s '%s' '%s' >/dev/null 2>&1", fmt, a, b);
}

static void copy_file(const char *src, const char *dst) {
  assert_int_equal(ps_test_system("cp '%s' '%s' && chmod u+w '%s'", src, dst, dst), 0);
}

/* Expect a failure with this status, a message naming the file, and (optionally) a phrase. */
static void expect_fail(const char *path, const ps_read_opts *opts, int status, const char *phrase) {
  ps_image *img = (ps_image *)0x1;
  int st = ps_dicom_read(path, opts, &img);
  const char *msg = ps_last_error();
  print_message("  %-40s -> %s: %s\n", base_name(path), ps_strerror(st), msg);
  assert_int_equal(st, status);
  assert_null(img);
  assert_non_null(strstr(msg, base_name(path)));
  if (phrase) assert_non_null(strstr(msg, phrase));
}

static char *py_ref(void) { return strdup(ps_test_src("tests/ref/dicom_reference.py")); }

/* ---- group setup: references and variants made once ----------------------------------------- */

static int setup_all(void **state) {
  (void)state;
  TMP = ps_test_tmpdir();
  if (ps_test_system("command -v dcmconv dcmcjpeg dcmcjpls dcmcrle dcmdjpeg dcmodify img2dcm >/dev/null") != 0) {
    fprintf(stderr, "DCMTK tools (apt-get install dcmtk) are needed to make the test variants\n");
    return -1;
  }
  /* A real 3-component Kermany JPEG wrapped by img2dcm (JPEG Baseline, YBR_FULL_422) and
   * decompressed to native RGB by dcmdjpeg: the colour source of the variants below. */
  char *jpg = strdup(ps_test_data(KAGGLE_RGB)), *wrapped = tmp("rgb_jpeg.dcm"), *native = tmp("rgb_native.dcm");
  int bad = run_quiet("img2dcm", jpg, wrapped) != 0 || run_quiet("dcmdjpeg", wrapped, native) != 0;
  free(jpg);
  free(wrapped);
  if (bad) return -1;
  HAVE_PY = ps_test_have_python("pydicom,numpy,PIL");
  if (!HAVE_PY) {
    free(native);
    return 0;
  }
  char *ref = py_ref();
  /* pixels of every real film + pydicom-made variants */
  char cmd[8192];
  int n = snprintf(cmd, sizeof cmd, "'%s' '%s' pixels", PS_PYTHON, ref);
  for (int i = 0; i < NREAL; i++) {
    char *p = real(REAL[i]);
    char name[64];
    snprintf(name, sizeof name, "ref_real_%d.npy", i);
    char *o = tmp(name);
    n += snprintf(cmd + n, sizeof cmd - n, " '%s' '%s'", p, o);
    free(p);
    free(o);
  }
  if (ps_test_system("%s", cmd) != 0) return -1;
  char *cr = real(CR), *nccid = real(NCCID);
  char *n_j2k = tmp("n_j2k.dcm");
  const char *gen[][4] = {{"j2k", nccid, "n_j2k.dcm", ""},
                          {"j2k", cr, "cr_j2k.dcm", ""},
                          {"j2k", native, "rgb_j2k.dcm", ""},
                          {"j2k", nccid, "n_j2k_lossy.dcm", "lossy"},
                          {"j2k", cr, "cr_j2k_lossy.dcm", "lossy"},
                          {"j2k", native, "rgb_j2k_lossy.dcm", "lossy"},
                          {"retag", n_j2k, "htj2k.dcm", "1.2.840.10008.1.2.4.201"},
                          {"retag", n_j2k, "unknown_ts.dcm", "1.2.840.10008.1.2.4.99"},
                          {"retag", n_j2k, "mpeg2_ts.dcm", "1.2.840.10008.1.2.4.100"},
                          {"multiframe", cr, "mf.dcm", ""},
                          {"j2kmf", cr, "mf_j2k.dcm", ""},
                          {"multiframe", nccid, "mf8.dcm", ""},
                          {"voilut", cr, "voilut.dcm", ""},
                          {"bits32", cr, "bits32.dcm", ""},
                          {"bits32", cr, "bits32_signed.dcm", "signed"},
                          {"modlut", cr, "modlut.dcm", ""}};
  for (size_t i = 0; i < sizeof gen / sizeof gen[0]; i++) {
    char *o = tmp(gen[i][2]);
    if (ps_test_system("'%s' '%s' %s '%s' '%s' %s", PS_PYTHON, ref, gen[i][0], gen[i][1], o, gen[i][3]) != 0) return -1;
    free(o);
  }
  free(n_j2k);
  free(native);
  char *meta = tmp("meta.txt");
  n = snprintf(cmd, sizeof cmd, "'%s' '%s' meta", PS_PYTHON, ref);
  for (int i = 0; i < NREAL; i++) {
    char *p = real(REAL[i]);
    n += snprintf(cmd + n, sizeof cmd - n, " '%s'", p);
    free(p);
  }
  int st = 0;
  META_TXT = ps_test_capture(&st, "%s", cmd);
  if (st != 0 || !META_TXT) return -1;
  free(meta);
  free(cr);
  free(nccid);
  free(ref);
  return 0;
}

static int teardown_all(void **state) {
  (void)state;
  free(META_TXT);
  return 0;
}

/* ---- real films vs pydicom ------------------------------------------------------------------ */

static void test_real_films_match_pydicom(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(HAVE_PY, "no pydicom/numpy/Pillow in " PS_PYTHON);
  for (int i = 0; i < NREAL; i++) {
    ps_image *img = read_real(REAL[i]);
    assert_int_equal(img->is_raw, 0);
    assert_int_equal(img->meta.format, PS_FORMAT_DICOM);
    char name[64];
    snprintf(name, sizeof name, "ref_real_%d.npy", i);
    char *npy = tmp(name);
    if (REAL_IS_JPEG[i]) compare_npy(REAL[i], img, npy, 2, 0.25);
    else compare_npy(REAL[i], img, npy, 1, 0.5);
    free(npy);
    ps_image_free(img);
  }
}

/* Value of key in the block of `file` in META_TXT ("key\tvalue..."), malloc'd, NULL if absent. */
static char *meta_get(const char *file, const char *key) {
  char hdr[1024];
  snprintf(hdr, sizeof hdr, "file\t%s\n", file);
  const char *b = strstr(META_TXT, hdr);
  assert_non_null(b);
  const char *end = strstr(b, "\n\n");
  char k[128];
  snprintf(k, sizeof k, "\n%s\t", key);
  const char *v = strstr(b, k);
  if (!v || (end && v > end)) return NULL;
  v += strlen(k);
  size_t len = strcspn(v, "\n");
  return strndup(v, len);
}

/* The reference's PatientAgeYears line (absent: no age) against ours. */
static void check_age_text(const char *what, const char *want, const ps_film_meta *m) {
  print_message("  %-22s pydicom %s ours %s %.17g\n", what, want ? want : "(none)", m->has_patient_age ? "yes" : "none",
                m->patient_age_years);
  assert_int_equal(m->has_patient_age, want != NULL);
  if (want) assert_true(fabs(m->patient_age_years - atof(want)) < 1e-9);
}

static void check_str(const char *file, const char *key, const char *got) {
  char *want = meta_get(file, key);
  print_message("  %-22s pydicom '%s' ours '%s'\n", key, want ? want : "", got);
  assert_string_equal(got, want ? want : "");
  free(want);
}

static void check_int(const char *file, const char *key, int got, int dflt) {
  char *want = meta_get(file, key);
  int w = want ? atoi(want) : dflt;
  free(want);
  assert_int_equal(got, w);
}

static void test_metadata_matches_pydicom(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(HAVE_PY, "no pydicom in " PS_PYTHON);
  for (int i = 0; i < NREAL; i++) {
    char *p = real(REAL[i]);
    ps_film_meta m;
    int st = ps_dicom_read_meta(p, NULL, &m);
    assert_int_equal(st, PS_OK);
    ps_image *img = read_ok(p, NULL);
    print_message("%s\n", REAL[i]);
    check_str(p, "PatientID", m.patient_id);
    check_str(p, "StudyInstanceUID", m.study_uid);
    check_str(p, "SeriesInstanceUID", m.series_uid);
    check_str(p, "SOPInstanceUID", m.sop_uid);
    check_str(p, "Modality", m.modality);
    check_str(p, "ViewPosition", m.view_position);
    check_str(p, "BodyPartExamined", m.body_part);
    check_str(p, "PhotometricInterpretation", m.photometric);
    char *age = meta_get(p, "PatientAgeYears");
    check_age_text("patient age (years)", age, &m);
    free(age);
    check_int(p, "Rows", m.rows, -1);
    check_int(p, "Columns", m.columns, -1);
    check_int(p, "BitsStored", m.bits_stored, -1);
    check_int(p, "SamplesPerPixel", m.components, 1);
    check_int(p, "NumberOfFrames", m.frames, 1);
    char *ts = meta_get(p, "TransferSyntaxUID");
    if (ts) assert_string_equal(m.transfer_syntax, ts);
    else assert_string_equal(m.transfer_syntax, "1.2.840.10008.1.2"); /* ACR-NEMA: read as implicit LE */
    free(ts);
    char *ps = meta_get(p, "PixelSpacing");
    char *ips = meta_get(p, "ImagerPixelSpacing");
    if (ps || ips) {
      double a = 0, b = 0;
      assert_int_equal(sscanf(ps ? ps : ips, "%lf\t%lf", &a, &b), 2);
      assert_true(fabs(m.pixel_spacing[0] - a) < 1e-9 && fabs(m.pixel_spacing[1] - b) < 1e-9);
      assert_int_equal(m.pixel_spacing_is_imager, ps ? 0 : 1);
    } else {
      assert_true(m.pixel_spacing[0] == 0 && m.pixel_spacing[1] == 0);
    }
    free(ps);
    free(ips);
    char *wc = meta_get(p, "WindowCenter"), *ww = meta_get(p, "WindowWidth");
    if (wc && ww) {
      assert_true(fabs(m.window_center - atof(wc)) < 1e-9 && fabs(m.window_width - atof(ww)) < 1e-9);
      assert_true(fabs(img->meta.window_center - atof(wc)) < 1e-9);
    } else {
      assert_true(m.window_width == 0);
    }
    free(wc);
    free(ww);
    /* the full read carries the same header fields */
    assert_string_equal(img->meta.patient_id, m.patient_id);
    assert_string_equal(img->meta.sop_uid, m.sop_uid);
    assert_string_equal(img->meta.transfer_syntax, m.transfer_syntax);
    assert_int_equal(img->meta.rows, img->height);
    assert_int_equal(img->meta.columns, img->width);
    ps_image_free(img);
    free(p);
  }
}

static void test_metadata_charset(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(HAVE_PY, "no pydicom in " PS_PYTHON);
  /* Latin-1 PatientID with SpecificCharacterSet ISO_IR 100: UTF-8 out, as pydicom decodes it */
  char *nccid = real(NCCID), *l1 = tmp("latin1.dcm"), *l2 = tmp("bad_bytes.dcm"), *ref = py_ref();
  copy_file(nccid, l1);
  assert_int_equal(ps_test_system("dcmodify -nb -i 'SpecificCharacterSet=ISO_IR 100' -m \"PatientID=$(printf 'M\\374ller^J\\366rg')\" '%s' >/dev/null 2>&1", l1), 0);
  int st = 0;
  char *txt = ps_test_capture(&st, "'%s' '%s' meta '%s'", PS_PYTHON, ref, l1);
  assert_int_equal(st, 0);
  char *want = strstr(txt, "PatientID\t");
  assert_non_null(want);
  want += strlen("PatientID\t");
  want[strcspn(want, "\n")] = '\0';
  ps_film_meta m;
  assert_int_equal(ps_dicom_read_meta(l1, NULL, &m), PS_OK);
  print_message("  Latin-1 PatientID: pydicom '%s' ours '%s'\n", want, m.patient_id);
  assert_string_equal(m.patient_id, want);
  assert_true(strlen(want) > 11); /* really multi-byte UTF-8, not the Latin-1 bytes */
  free(txt);
  /* bytes that are not valid in the declared (default) character set: '?' for each, so the
   * string stays valid UTF-8 for JNI / JSON */
  copy_file(nccid, l2);
  assert_int_equal(ps_test_system("dcmodify -nb -m \"PatientID=$(printf 'M\\374ller\\001')\" '%s' >/dev/null 2>&1", l2), 0);
  assert_int_equal(ps_dicom_read_meta(l2, NULL, &m), PS_OK);
  print_message("  invalid bytes PatientID: '%s'\n", m.patient_id);
  assert_string_equal(m.patient_id, "M?ller?");
  free(nccid);
  free(l1);
  free(l2);
  free(ref);
}

/* The patient's age from PatientAge in its standard and anonymised spellings, and from the
 * birth and examination dates when PatientAge is absent or unreadable: as pydicom's values with
 * Python's calendar give it (dicom_reference.py age_years). */
static void test_patient_age(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(HAVE_PY, "no pydicom in " PS_PYTHON);
  static const char *const edits[] = {
      "-m PatientAge=004Y",
      "-m PatientAge=018M",
      "-m PatientAge=010W",
      "-m PatientAge=200D",
      "-m PatientAge=7",                                      /* a bare number: years */
      "-m PatientAge=999Y",                                   /* beyond 150 years: no age */
      "-m PatientAge=B12",                                    /* not an age */
      "-e PatientAge -i PatientBirthDate=20150301 -i StudyDate=20200229",  /* from the dates */
      "-e PatientAge -i PatientBirthDate=20150301 -i StudyDate=19010101",  /* exam before birth */
      "-e PatientAge -i PatientBirthDate=20150230 -i StudyDate=20200101",  /* no such day */
      "-e PatientAge -i PatientBirthDate=20160229 -i SeriesDate=20200301", /* no StudyDate */
  };
  char *nccid = real(NCCID), *ref = py_ref();
  int with_age = 0;
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    char name[32];
    snprintf(name, sizeof name, "age%zu.dcm", i);
    char *p = tmp(name);
    copy_file(nccid, p);
    assert_int_equal(ps_test_system("dcmodify -nb %s '%s' >/dev/null 2>&1", edits[i], p), 0);
    int st = 0;
    char *txt = ps_test_capture(&st, "'%s' '%s' meta '%s'", PS_PYTHON, ref, p);
    assert_int_equal(st, 0);
    char *want = strstr(txt, "PatientAgeYears\t");
    if (want) {
      want += strlen("PatientAgeYears\t");
      want[strcspn(want, "\n")] = '\0';
    }
    ps_film_meta m;
    assert_int_equal(ps_dicom_read_meta(p, NULL, &m), PS_OK);
    check_age_text(edits[i], want, &m);
    with_age += m.has_patient_age;
    free(txt);
    free(p);
  }
  assert_int_equal(with_age, 7); /* the edits above: 4 units, a bare number and two pairs of dates */
  free(nccid);
  free(ref);
}

/* ---- transfer-syntax variants made with DCMTK's tools --------------------------------------- */

typedef struct {
  const char *tool;  /* command taking IN OUT */
  const char *ts;    /* expected transfer syntax UID of the result */
  int lossless;
} variant;

static const variant VARIANTS[] = {
    {"dcmconv +ti", "1.2.840.10008.1.2", 1},        {"dcmconv +te", "1.2.840.10008.1.2.1", 1},
    {"dcmconv +tb", "1.2.840.10008.1.2.2", 1},      {"dcmconv +td", "1.2.840.10008.1.2.1.99", 1},
    {"dcmcjpeg +e1", "1.2.840.10008.1.2.4.70", 1},  {"dcmcjpeg +el", "1.2.840.10008.1.2.4.57", 1},
    {"dcmcjpls", "1.2.840.10008.1.2.4.80", 1},      {"dcmcrle", "1.2.840.10008.1.2.5", 1},
    {"dcmcjpeg +eb", "1.2.840.10008.1.2.4.50", 0},  {"dcmcjpeg +ee", "1.2.840.10008.1.2.4.51", 0},
};

static void check_variants(const char *src, const char *tag, int colour) {
  ps_image *ref = read_ok(src, NULL);
  for (size_t v = 0; v < sizeof VARIANTS / sizeof VARIANTS[0]; v++) {
    char name[128];
    snprintf(name, sizeof name, "%s_v%zu.dcm", tag, v);
    char *out = tmp(name);
    assert_int_equal(run_quiet(VARIANTS[v].tool, src, out), 0);
    ps_image *img = read_ok(out, NULL);
    char what[160];
    snprintf(what, sizeof what, "%s %s (%s)", tag, VARIANTS[v].tool, VARIANTS[v].ts);
    assert_string_equal(img->meta.transfer_syntax, VARIANTS[v].ts);
    if (VARIANTS[v].lossless) assert_same_pixels(what, img, ref);
    else compare_8bit(what, img, ref->data, ref->width, ref->height, 24, 1.5);
    if (colour) assert_int_equal(img->meta.components, 3);
    ps_image_free(img);
    free(out);
  }
  ps_image_free(ref);
}

static void test_variants_8bit(void **state) {
  (void)state;
  char *src = real(NCCID);
  check_variants(src, "nccid", 0);
  free(src);
}

static void test_variants_16bit_acr_nema(void **state) {
  (void)state;
  char *src = real(CR); /* no preamble, no meta header: the tools read it the same way we do */
  check_variants(src, "cr", 0);
  free(src);
}

static void test_variants_rgb(void **state) {
  (void)state;
  /* A real 3-component Kermany JPEG wrapped by img2dcm (JPEG Baseline, YBR_FULL_422),
   * decompressed to native RGB by dcmdjpeg, then re-encoded. */
  char *wrapped = tmp("rgb_jpeg.dcm"), *native = tmp("rgb_native.dcm"); /* made in setup_all */
  ps_image *a = read_ok(wrapped, NULL);
  assert_string_equal(a->meta.photometric, "YBR_FULL_422");
  assert_int_equal(a->meta.components, 3);
  ps_image *b = read_ok(native, NULL);
  assert_string_equal(b->meta.photometric, "RGB");
  assert_same_pixels("rgb: img2dcm JPEG vs dcmdjpeg native", a, b); /* same IJG decoder */
  check_variants(native, "rgb", 1);
  char *ybr = tmp("rgb_ybr.dcm");
  assert_int_equal(run_quiet("dcmdjpeg +cn", wrapped, ybr), 0); /* keep YCbCr: native YBR_FULL */
  ps_image *c = read_ok(ybr, NULL);
  assert_string_equal(c->meta.photometric, "YBR_FULL");
  compare_8bit("rgb: native YBR_FULL vs RGB", c, b->data, b->width, b->height, 1, 0.5);
  if (HAVE_PY) {
    char *ref = py_ref(), *npy = tmp("ref_rgb_jpeg.npy"), *npy2 = tmp("ref_rgb_ybr.npy");
    assert_int_equal(ps_test_system("'%s' '%s' pixels '%s' '%s' '%s' '%s'", PS_PYTHON, ref, wrapped, npy, ybr, npy2), 0);
    compare_npy("rgb: img2dcm JPEG vs pydicom+Pillow", a, npy, 2, 0.25);
    compare_npy("rgb: native YBR_FULL vs pydicom", c, npy2, 1, 0.5);
    free(ref);
    free(npy);
    free(npy2);
  }
  ps_image_free(a);
  ps_image_free(b);
  ps_image_free(c);
  free(wrapped);
  free(native);
  free(ybr);
}

static void test_img2dcm_gray_and_dcmdjpeg(void **state) {
  (void)state;
  /* dcmdjpeg of the real JPEG Baseline film decodes with the same IJG code as our reader. */
  char *siim = real(SIIM), *dj = tmp("siim_dj.dcm");
  assert_int_equal(run_quiet("dcmdjpeg", siim, dj), 0);
  ps_image *a = read_ok(siim, NULL), *b = read_ok(dj, NULL);
  assert_string_equal(b->meta.transfer_syntax, "1.2.840.10008.1.2.1");
  assert_same_pixels("siim JPEG Baseline vs dcmdjpeg native", a, b);
  ps_image_free(a);
  ps_image_free(b);
  /* A grey Kermany JPEG wrapped by img2dcm vs pydicom (Pillow) on the same file. */
  char *jpg = strdup(ps_test_data(KAGGLE_GRAY)), *wrapped = tmp("gray_jpeg.dcm");
  assert_int_equal(run_quiet("img2dcm", jpg, wrapped), 0);
  ps_image *c = read_ok(wrapped, NULL);
  assert_string_equal(c->meta.photometric, "MONOCHROME2");
  assert_string_equal(c->meta.transfer_syntax, "1.2.840.10008.1.2.4.50");
  if (HAVE_PY) {
    char *ref = py_ref(), *npy = tmp("ref_gray_jpeg.npy");
    assert_int_equal(ps_test_system("'%s' '%s' pixels '%s' '%s'", PS_PYTHON, ref, wrapped, npy), 0);
    compare_npy("kaggle grey JPEG via img2dcm vs pydicom+Pillow", c, npy, 2, 0.25);
    free(ref);
    free(npy);
  }
  ps_image_free(c);
  free(jpg);
  free(wrapped);
  free(siim);
  free(dj);
}

static void test_jpegls_near_lossless(void **state) {
  (void)state;
  const char *srcs[] = {CR, NCCID};
  ps_read_opts raw = ps_read_opts_default();
  raw.raw = 1;
  for (int s = 0; s < 2; s++) {
    char *src = real(srcs[s]);
    char name[64];
    snprintf(name, sizeof name, "nearls_%d.dcm", s);
    char *out = tmp(name);
    assert_int_equal(run_quiet("dcmcjpls +en", src, out), 0); /* near-lossless, NEAR = 2 */
    ps_image *a = read_ok(src, &raw), *b = read_ok(out, &raw);
    assert_string_equal(b->meta.transfer_syntax, "1.2.840.10008.1.2.4.81");
    assert_int_equal(b->is_raw, 1);
    double maxd = 0;
    size_t n = (size_t)a->width * a->height;
    for (size_t i = 0; i < n; i++) maxd = fmax(maxd, fabs((double)a->data[i] - b->data[i]));
    print_message("  %s JPEG-LS near-lossless: max |stored diff| %g (bound 2)\n", srcs[s], maxd);
    assert_true(maxd <= 2.0);
    assert_true(maxd > 0.0); /* really lossy: the comparison sees the codec */
    ps_image_free(a);
    ps_image_free(b);
    free(src);
    free(out);
  }
}

static void test_jpeg2000(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(HAVE_PY, "the J2K variants are made with Pillow/pydicom");
  /* made in setup_all by Pillow (OpenJPEG encoder) + pydicom encapsulate */
  struct {
    const char *src, *j2k, *ts;
    int lossy;
  } v[] = {{NCCID, "n_j2k.dcm", "1.2.840.10008.1.2.4.90", 0},
           {CR, "cr_j2k.dcm", "1.2.840.10008.1.2.4.90", 0},
           {NULL, "rgb_j2k.dcm", "1.2.840.10008.1.2.4.90", 0}, /* YBR_RCT */
           {NCCID, "n_j2k_lossy.dcm", "1.2.840.10008.1.2.4.91", 1},
           {CR, "cr_j2k_lossy.dcm", "1.2.840.10008.1.2.4.91", 1},
           {NULL, "rgb_j2k_lossy.dcm", "1.2.840.10008.1.2.4.91", 1}}; /* YBR_ICT */
  char *ref = py_ref();
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    char *src = v[i].src ? real(v[i].src) : tmp("rgb_native.dcm"), *path = tmp(v[i].j2k);
    if (!ps_dicom_have_jpeg2000()) {
      expect_fail(path, NULL, PS_EUNSUPPORTED, "JPEG 2000");
    } else {
      ps_image *a = read_ok(src, NULL), *b = read_ok(path, NULL);
      assert_string_equal(b->meta.transfer_syntax, v[i].ts);
      if (v[i].lossy) compare_8bit(v[i].j2k, b, a->data, a->width, a->height, 24, 1.5);
      else assert_same_pixels(v[i].j2k, a, b);
      char npy[4200];
      snprintf(npy, sizeof npy, "%s.npy", path);
      assert_int_equal(ps_test_system("'%s' '%s' pixels '%s' '%s'", PS_PYTHON, ref, path, npy), 0);
      compare_npy("  vs pydicom+Pillow(OpenJPEG)", b, npy, 1, 0.5);
      ps_image_free(a);
      ps_image_free(b);
    }
    free(src);
    free(path);
  }
  free(ref);
  /* transfer syntaxes without a decoder here: a clear "not supported" */
  char *p = tmp("htj2k.dcm");
  expect_fail(p, NULL, PS_EUNSUPPORTED, "High-Throughput JPEG 2000 transfer syntax 1.2.840.10008.1.2.4.201");
  free(p);
  p = tmp("unknown_ts.dcm");
  expect_fail(p, NULL, PS_EUNSUPPORTED, "1.2.840.10008.1.2.4.99");
  free(p);
  p = tmp("mpeg2_ts.dcm");
  expect_fail(p, NULL, PS_EUNSUPPORTED, "1.2.840.10008.1.2.4.100");
  free(p);
}

static void test_multiframe(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(HAVE_PY, "the multi-frame file is made with pydicom");
  const char *srcs[] = {CR, NCCID};
  const char *mf[] = {"mf.dcm", "mf8.dcm"};
  for (int s = 0; s < 2; s++) {
    char *src = real(srcs[s]), *path = tmp(mf[s]);
    ps_image *a = read_ok(src, NULL), *b = read_ok(path, NULL);
    assert_int_equal(b->meta.frames, 3);
    assert_same_pixels("multi-frame native: frame 0", a, b);
    /* encapsulated multi-frame: frame 0 must come from the first fragment(s) only */
    const char *tools[] = {"dcmcrle", "dcmcjpeg +e1", "dcmcjpls"};
    for (int t = 0; t < 3; t++) {
      char name[64];
      snprintf(name, sizeof name, "mf%d_%d.dcm", s, t);
      char *out = tmp(name);
      assert_int_equal(run_quiet(tools[t], path, out), 0);
      ps_image *c = read_ok(out, NULL);
      assert_int_equal(c->meta.frames, 3);
      char what[96];
      snprintf(what, sizeof what, "multi-frame %s: frame 0", tools[t]);
      assert_same_pixels(what, a, c);
      ps_image_free(c);
      free(out);
    }
    ps_image_free(a);
    ps_image_free(b);
    free(src);
    free(path);
  }
  /* JPEG 2000, 3 frames of 2 fragments each, no offset table: frame 0 ends at the first EOC */
  if (ps_dicom_have_jpeg2000()) {
    char *src = real(CR), *path = tmp("mf_j2k.dcm");
    ps_image *a = read_ok(src, NULL), *b = read_ok(path, NULL);
    assert_int_equal(b->meta.frames, 3);
    assert_same_pixels("multi-frame JPEG 2000 (2 fragments/frame): frame 0", a, b);
    ps_image_free(a);
    ps_image_free(b);
    free(src);
    free(path);
  }
}

/* ---- VOI / modality / MONOCHROME1 ------------------------------------------------------------ */

static void test_monochrome1_bright_anatomy(void **state) {
  (void)state;
  /* Same pixels, photometric flipped: MONOCHROME1 must display as the inverse. */
  ps_image *m1 = read_real(FAKE1), *m2 = read_real(SIIM);
  assert_string_equal(m1->meta.photometric, "MONOCHROME1");
  size_t n = (size_t)m1->width * m1->height;
  assert_int_equal(m1->width, m2->width);
  double maxd = 0;
  for (size_t i = 0; i < n; i++) maxd = fmax(maxd, fabs((1.0 - m2->data[i]) - m1->data[i]));
  print_message("  Fake_MONOHR1 vs 1 - siim: max |diff| %g (tolerance 1/255)\n", maxd);
  assert_true(maxd <= 1.0 / 255 + 1e-6);
  ps_image_free(m1);
  ps_image_free(m2);

  /* Classic Fuji CR: mediastinum and spine (central band) brighter than the lung fields. */
  ps_read_opts raw = ps_read_opts_default();
  raw.raw = 1;
  char *cr = real(CR);
  ps_image *d = read_ok(cr, NULL), *r = read_ok(cr, &raw);
  for (int pass = 0; pass < 2; pass++) {
    const ps_image *im = pass ? r : d;
    int w = im->width, h = im->height;
    double c = 0, l = 0;
    long nc = 0, nl = 0;
    for (int y = (int)(0.3 * h); y < (int)(0.6 * h); y++)
      for (int x = 0; x < w; x++) {
        double v = im->data[(size_t)y * w + x];
        if (x >= (int)(0.45 * w) && x < (int)(0.55 * w)) c += v, nc++;
        else if ((x >= (int)(0.15 * w) && x < (int)(0.3 * w)) || (x >= (int)(0.7 * w) && x < (int)(0.85 * w)))
          l += v, nl++;
      }
    c /= nc;
    l /= nl;
    print_message("  CR-MONO1 %s: central band mean %.3f, lung fields mean %.3f\n", pass ? "raw" : "display", c, l);
    if (!pass) assert_true(c > l + 0.15);   /* bright mediastinum once displayed */
    else assert_true(c < l);                /* stored MONOCHROME1 values: bone is low */
  }
  ps_image_free(d);
  ps_image_free(r);
  free(cr);
}

static void test_raw_mode(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(HAVE_PY, "no pydicom in " PS_PYTHON);
  ps_read_opts raw = ps_read_opts_default();
  raw.raw = 1;
  char *cr = real(CR), *ref = py_ref(), *npy = tmp("ref_cr_modality.npy");
  assert_int_equal(ps_test_system("'%s' '%s' modality '%s' '%s'", PS_PYTHON, ref, cr, npy), 0);
  ps_image *img = read_ok(cr, &raw);
  assert_int_equal(img->is_raw, 1);
  assert_true(img->meta.window_center == 550 && img->meta.window_width == 1024);
  size_t shape[4];
  int nd;
  double *m = ps_test_read_npy(npy, shape, &nd);
  assert_non_null(m);
  assert_int_equal(shape[0] * shape[1], (size_t)img->width * img->height);
  double maxd = 0, vmax = 0;
  for (size_t i = 0; i < shape[0] * shape[1]; i++) {
    maxd = fmax(maxd, fabs(m[i] - img->data[i]));
    vmax = fmax(vmax, img->data[i]);
  }
  print_message("  CR raw vs pydicom apply_modality_lut: max |diff| %g (values up to %g)\n", maxd, vmax);
  assert_true(maxd == 0);
  assert_true(vmax > 1.5); /* modality values, not [0, 1] */
  free(m);
  ps_image_free(img);
  free(cr);
  free(ref);
  free(npy);
}

static void test_voi_variants_match_pydicom(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(HAVE_PY, "no pydicom in " PS_PYTHON);
  /* Header edits of the 10-bit CR film (dcmodify on temp copies) and LUT sequences (pydicom). */
  struct {
    const char *name, *edit;
  } v[] = {
      {"nowin.dcm", "-e WindowCenter -e WindowWidth"}, /* percentile window (histogram path) */
      {"rescale.dcm", "-i RescaleSlope=2 -i RescaleIntercept=-100 -m WindowCenter=1000 -m WindowWidth=2048"},
      {"rescale_nowin.dcm", "-i RescaleSlope=0.5 -i RescaleIntercept=10 -e WindowCenter -e WindowWidth"},
      {"negative_slope_nowin.dcm", "-i RescaleSlope=-1 -i RescaleIntercept=1023 -e WindowCenter -e WindowWidth"},
      {"sigmoid.dcm", "-i VOILUTFunction=SIGMOID"},
      {"linear_exact.dcm", "-i VOILUTFunction=LINEAR_EXACT"},
      {"two_windows.dcm", "-m WindowCenter=600\\\\300 -m WindowWidth=800\\\\400"},
      /* the same 10 stored bits read as two's complement: sign extension from bit 9 */
      {"signed.dcm", "-m PixelRepresentation=1 -m WindowCenter=0 -m WindowWidth=600"},
      {"signed_rescale_nowin.dcm", "-m PixelRepresentation=1 -e WindowCenter -e WindowWidth -i RescaleIntercept=-1024 -i RescaleSlope=1"},
      {"voilut.dcm", NULL},
      {"modlut.dcm", NULL}, /* no window either: percentile of the LUT output (selection path) */
      {"bits32.dcm", NULL},        /* BitsAllocated 32 unsigned, percentile (selection path) */
      {"bits32_signed.dcm", NULL}, /* BitsAllocated 32 signed */
  };
  char *cr = real(CR), *ref = py_ref();
  char cmd[8192];
  int n = snprintf(cmd, sizeof cmd, "'%s' '%s' pixels", PS_PYTHON, ref);
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    char *p = tmp(v[i].name);
    if (v[i].edit) {
      copy_file(cr, p);
      assert_int_equal(ps_test_system("dcmodify -nb %s '%s' >/dev/null 2>&1", v[i].edit, p), 0);
    }
    n += snprintf(cmd + n, sizeof cmd - n, " '%s' '%s.npy'", p, p);
    free(p);
  }
  assert_int_equal(ps_test_system("%s", cmd), 0);
  double prev_mean = -1;
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    char *p = tmp(v[i].name);
    char npy[4200];
    snprintf(npy, sizeof npy, "%s.npy", p);
    ps_image *img = read_ok(p, NULL);
    compare_npy(v[i].name, img, npy, 1, 0.5);
    double mean = 0;
    for (int k = 0; k < img->width * img->height; k++) mean += img->data[k];
    mean /= img->width * img->height;
    if (v[i].edit) assert_true(mean != prev_mean); /* each dcmodify edit really changes the display */
    prev_mean = mean;
    if (i == 0) assert_true(img->meta.window_width > 0 && img->meta.window_width < 1024);
    ps_image_free(img);
    free(p);
  }
  free(cr);
  free(ref);
}

/* ---- malformed catalogue --------------------------------------------------------------------- */

static void write_bytes(const char *path, const unsigned char *b, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

static void truncate_copy(const char *src, const char *dst, long size) {
  assert_int_equal(ps_test_system("head -c %ld '%s' > '%s'", size, src, dst), 0);
}

/* The SIIM film (JPEG Baseline, one fragment) with 256 bytes of its scan replaced by noise without
 * 0xFF, in place: every DICOM length is still right, only the JPEG data is damaged (a bad sector).
 * DCMTK's IJG decoder warns "Corrupt JPEG data: ..." to its logger and goes on. */
static void make_damaged_siim(const char *dst) {
  char *src = real(SIIM);
  size_t len;
  unsigned char *b = (unsigned char *)ps_test_read_file(src, &len);
  assert_non_null(b);
  long n = (long)len;
  long pix = -1, soi = -1, sos = -1, eoi = -1;
  for (long i = n - 4; i >= 0 && pix < 0; i--)
    if (!memcmp(b + i, "\xe0\x7f\x10\x00", 4)) pix = i;
  assert_true(pix > 0);
  for (long i = pix; i + 3 < n && soi < 0; i++)
    if (b[i] == 0xff && b[i + 1] == 0xd8 && b[i + 2] == 0xff) soi = i;
  for (long i = soi; i + 1 < n && sos < 0; i++)
    if (b[i] == 0xff && b[i + 1] == 0xda) sos = i;
  for (long i = n - 2; i > sos && eoi < 0; i--)
    if (b[i] == 0xff && b[i + 1] == 0xd9) eoi = i;
  assert_true(soi > 0 && sos > soi && eoi > sos + 1024);
  uint32_t x = 777;
  for (long i = (sos + eoi) / 2, e = i + 256; i < e; i++) {
    x = x * 1664525u + 1013904223u;
    b[i] = (unsigned char)((x >> 24) % 255u);
  }
  write_bytes(dst, b, (size_t)n);
  free(b);
  free(src);
}

/* ps_dicom_read_warnings on path: PS_OK with nwant warnings (-1: at least one), each containing
 * phrase; returns the image. */
static ps_image *read_warnings(const char *path, int nwant, const char *phrase) {
  ps_image *img = NULL;
  char **w = NULL;
  int n = -1;
  int st = ps_dicom_read_warnings(path, NULL, &img, &w, &n);
  if (st != PS_OK) print_message("ps_dicom_read_warnings(%s) -> %s: %s\n", path, ps_strerror(st), ps_last_error());
  assert_int_equal(st, PS_OK);
  assert_non_null(img);
  print_message("  %-40s -> listed %d warning(s): %s\n", base_name(path), n, n > 0 ? w[0] : "");
  if (nwant >= 0) assert_int_equal(n, nwant);
  else assert_true(n >= 1);
  for (int i = 0; i < n; i++) assert_non_null(strstr(w[i], phrase));
  ps_image_warnings_free(w, n);
  return img;
}

static void test_malformed(void **state) {
  (void)state;
  char *nccid = real(NCCID), *siim = real(SIIM), *cr = real(CR);
  char *p;

  p = tmp("missing_file.dcm");
  expect_fail(p, NULL, PS_ENOTFOUND, NULL);
  free(p);

  p = tmp("zero_bytes.dcm");
  write_bytes(p, (const unsigned char *)"", 0);
  expect_fail(p, NULL, PS_EFORMAT, "empty");
  free(p);

  /* random bytes (fixed LCG), and random bytes carrying the DICM magic */
  unsigned char rnd[4096];
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof rnd; i++) x = x * 1664525u + 1013904223u, rnd[i] = (unsigned char)(x >> 24);
  p = tmp("random_bytes.dcm");
  write_bytes(p, rnd, sizeof rnd);
  expect_fail(p, NULL, PS_EFORMAT, "not a DICOM file");
  free(p);
  memcpy(rnd + 128, "DICM", 4);
  p = tmp("random_with_magic.dcm");
  write_bytes(p, rnd, sizeof rnd);
  expect_fail(p, NULL, PS_EFORMAT, NULL);
  free(p);

  /* a PNG is not DICOM */
  p = strdup(ps_test_data("png/nih_00000001_000.png"));
  expect_fail(p, NULL, PS_EFORMAT, "not a DICOM file");
  free(p);

  /* truncated at several offsets: preamble, meta header, data set, pixel data */
  const char *tsrc[] = {nccid, siim, cr};
  for (int s = 0; s < 3; s++) {
    long size = ps_test_file_size(tsrc[s]);
    long cuts[] = {64, 131, 140, 300, 1000, size / 2, size - 100, size - 1};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
      char name[64];
      snprintf(name, sizeof name, "truncated_%d_at_%ld.dcm", s, cuts[c]);
      p = tmp(name);
      truncate_copy(tsrc[s], p, cuts[c]);
      expect_fail(p, NULL, PS_EFORMAT, NULL);
      free(p);
    }
  }

  /* header lies, made with dcmodify on temp copies */
  struct {
    const char *name, *src, *edit;
    int status;
    const char *phrase;
  } lies[] = {
      {"rows_zero.dcm", nccid, "-m Rows=0", PS_EFORMAT, "empty image"},
      {"absurd_dims.dcm", nccid, "-m Rows=65535 -m Columns=65535", PS_ELIMIT, "max_pixels"},
      {"absurd_frames.dcm", nccid, "-i NumberOfFrames=100000", PS_ELIMIT, "max_pixels"},
      {"frames_lie.dcm", nccid, "-i NumberOfFrames=2", PS_EFORMAT, "shorter than the 2097152 bytes its header declares"},
      {"no_pixel_data.dcm", nccid, "-e PixelData", PS_EFORMAT, "no pixel data"},
      {"short_pixel_data.dcm", nccid, "-m Rows=1100", PS_EFORMAT, "pixel data is"},
      {"short_pixel_data_16.dcm", cr, "-m Columns=500", PS_EFORMAT, "pixel data is"},
      {"bits_allocated_12.dcm", nccid, "-m BitsAllocated=12", PS_EUNSUPPORTED, "BitsAllocated"},
      {"bits_stored_too_big.dcm", nccid, "-m BitsStored=12", PS_EFORMAT, "BitsStored"},
      {"palette.dcm", nccid, "-m PhotometricInterpretation=PALETTE\\ COLOR", PS_EUNSUPPORTED, "PALETTE"},
      {"spp_mismatch.dcm", nccid, "-m SamplesPerPixel=3", PS_EFORMAT, "SamplesPerPixel"},
      {"spp_4.dcm", nccid, "-m SamplesPerPixel=4", PS_EUNSUPPORTED, "SamplesPerPixel"},
      {"no_rows.dcm", cr, "-e Rows", PS_EFORMAT, "Rows"},
      {"jpeg_missing_pixels.dcm", siim, "-e PixelData", PS_EFORMAT, "no pixel data"},
      {"jpeg_absurd_dims.dcm", siim, "-m Rows=60000 -m Columns=60000", PS_ELIMIT, "max_pixels"},
  };
  for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
    p = tmp(lies[i].name);
    copy_file(lies[i].src, p);
    assert_int_equal(ps_test_system("dcmodify -nb %s '%s' >/dev/null 2>&1", lies[i].edit, p), 0);
    expect_fail(p, NULL, lies[i].status, lies[i].phrase);
    free(p);
  }

  /* Compressed frames whose own header disagrees with Rows/Columns (the codecs would pad). */
  {
    struct {
      const char *name, *tool, *edit;
    } c[] = {{"jpeg_rows_lie.dcm", NULL, "-m Rows=2048"},
             {"jpeg_cols_lie.dcm", NULL, "-m Columns=1000"},
             {"jpegls_rows_lie.dcm", "dcmcjpls", "-m Rows=1000"},
             {"rle_rows_lie.dcm", "dcmcrle", "-m Rows=1100"},
             {"jpegll_cols_lie.dcm", "dcmcjpeg +e1", "-m Columns=1100"}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
      p = tmp(c[i].name);
      if (c[i].tool) assert_int_equal(run_quiet(c[i].tool, nccid, p), 0);
      else copy_file(siim, p);
      assert_int_equal(ps_test_system("dcmodify -nb %s '%s' >/dev/null 2>&1", c[i].edit, p), 0);
      expect_fail(p, NULL, PS_EFORMAT, NULL);
      free(p);
    }
  }
  /* limits from the options */
  ps_read_opts o = ps_read_opts_default();
  o.max_pixels = 1000;
  expect_fail(nccid, &o, PS_ELIMIT, "max_pixels");
  o = ps_read_opts_default();
  o.max_bytes = 1000;
  expect_fail(nccid, &o, PS_ELIMIT, "max_bytes");
  o.max_bytes = ps_test_file_size(nccid); /* exactly the size is allowed */
  ps_image *ok = read_ok(nccid, &o);
  ps_image_free(ok);
  o = ps_read_opts_default();
  o.max_pixels = 1024 * 1024;
  ok = read_ok(nccid, &o);
  ps_image_free(ok);
  ps_film_meta m;
  o.max_bytes = 10;
  assert_int_equal(ps_dicom_read_meta(nccid, &o, &m), PS_ELIMIT);

  /* a Deflated data set is measured inflated: the file fits max_bytes, its content does not */
  p = tmp("deflated_budget.dcm");
  assert_int_equal(run_quiet("dcmconv +td", nccid, p), 0);
  o = ps_read_opts_default();
  o.max_bytes = ps_test_file_size(p) + 1000; /* the file is ~650 kB, it inflates to ~1 MB */
  assert_true(o.max_bytes < ps_test_file_size(nccid));
  expect_fail(p, &o, PS_ELIMIT, "inflates");
  o.max_bytes = 2 * ps_test_file_size(nccid);
  ok = read_ok(p, &o);
  ps_image_free(ok);
  free(p);

  /* a folder, NULL arguments */
  expect_fail(TMP, NULL, PS_EIO, NULL);
  assert_int_equal(ps_dicom_read(nccid, NULL, NULL), PS_EINVAL);
  ps_image *img = NULL;
  assert_int_equal(ps_dicom_read(NULL, NULL, &img), PS_EINVAL);
  assert_null(img);

  free(nccid);
  free(siim);
  free(cr);
}

static void test_probe(void **state) {
  (void)state;
  for (int i = 0; i < NREAL; i++) {
    char *p = real(REAL[i]);
    assert_int_equal(ps_dicom_probe(p), 1); /* CR-MONO1: no preamble, still DICOM */
    free(p);
  }
  assert_int_equal(ps_dicom_probe(ps_test_data("png/nih_00000001_000.png")), 0);
  assert_int_equal(ps_dicom_probe(ps_test_data(KAGGLE_GRAY)), 0);
  assert_int_equal(ps_dicom_probe(ps_test_data("dicom/dcmdump.txt")), 0);
  char *p = tmp("probe_missing.dcm");
  assert_int_equal(ps_dicom_probe(p), 0);
  free(p);
  assert_int_equal(ps_dicom_probe(NULL), 0);
}

static void test_silent(void **state) {
  (void)state;
  /* The library prints nothing, even where DCMTK's own tools complain (dcmdump on the same
   * truncated / inconsistent files writes errors and warnings to stderr). */
  char *nccid = real(NCCID), *siim = real(SIIM);
  char *t1 = tmp("silent_truncated.dcm"), *t2 = tmp("silent_truncated_jpeg.dcm"), *t3 = tmp("silent_rows.dcm");
  char *t4 = tmp("silent_damaged_jpeg.dcm");
  make_damaged_siim(t4); /* dcmdjpeg prints libjpeg's "W: Corrupt JPEG data" for it; we must not */
  truncate_copy(nccid, t1, ps_test_file_size(nccid) / 2);
  truncate_copy(siim, t2, ps_test_file_size(siim) - 5000);
  copy_file(siim, t3);
  assert_int_equal(ps_test_system("dcmodify -nb -m Rows=2048 '%s' >/dev/null 2>&1", t3), 0);
  /* the files do make DCMTK talk when its logger is not silenced */
  int st = 0;
  char *talk = ps_test_capture(&st, "dcmdump '%s' 2>&1 >/dev/null", t1);
  assert_non_null(talk);
  print_message("  dcmdump on the truncated file says: %.100s\n", talk);
  assert_true(strlen(talk) > 0);
  free(talk);
  char *log = tmp("silent.log");
  fflush(stdout);
  fflush(stderr);
  int out_fd = dup(1), err_fd = dup(2);
  FILE *lf = fopen(log, "w");
  assert_non_null(lf);
  dup2(fileno(lf), 1);
  dup2(fileno(lf), 2);
  const char *files[] = {t1, t2, t3, t4, nccid, siim};
  int statuses[6];
  for (int i = 0; i < 6; i++) {
    ps_image *img = NULL;
    statuses[i] = ps_dicom_read(files[i], NULL, &img);
    ps_image_free(img);
    ps_film_meta m;
    (void)ps_dicom_read_meta(files[i], NULL, &m);
    char **w = NULL;
    int nw = 0;
    img = NULL;
    if (ps_dicom_read_warnings(files[i], NULL, &img, &w, &nw) == PS_OK) ps_image_warnings_free(w, nw);
    ps_image_free(img);
  }
  fflush(stdout);
  fflush(stderr);
  dup2(out_fd, 1);
  dup2(err_fd, 2);
  close(out_fd);
  close(err_fd);
  fclose(lf);
  for (int i = 0; i < 4; i++) assert_int_not_equal(statuses[i], PS_OK);
  assert_int_equal(statuses[4], PS_OK);
  assert_int_equal(statuses[5], PS_OK);
  long printed = ps_test_file_size(log);
  print_message("  bytes printed by the library: %ld\n", printed);
  assert_int_equal(printed, 0);
  free(nccid);
  free(siim);
  free(t1);
  free(t2);
  free(t3);
  free(t4);
  free(log);
}

/* ---- mutated films: never a crash, always a status with the file name -------------------------- */

static void test_mutations(void **state) {
  (void)state;
  /* Deterministic byte mutations (flips, 0x00/0xFF runs, fake markers, cuts) biased to the first
   * 2 KiB where the headers are, over several encodings. A crash fails the whole test binary;
   * the deeper search is tests/fuzz/fuzz_dicom.c under libFuzzer + sanitizers. */
  char *srcs[6];
  srcs[0] = real(CR);
  srcs[1] = real(SIIM);
  srcs[2] = tmp("cr_v7.dcm"); /* dcmcrle of CR, made by test_variants_16bit_acr_nema */
  srcs[3] = tmp("cr_v4.dcm"); /* dcmcjpeg +e1 */
  srcs[4] = tmp("cr_v6.dcm"); /* dcmcjpls */
  srcs[5] = tmp(HAVE_PY && ps_dicom_have_jpeg2000() ? "cr_j2k.dcm" : "cr_v3.dcm");
  uint32_t x = 20240229;
#define RND() (x = x * 1664525u + 1013904223u, x >> 8)
  int counts[4] = {0, 0, 0, 0};
  for (int f = 0; f < 6; f++) {
    FILE *in = fopen(srcs[f], "rb");
    if (!in) { /* the variant test did not run first (e.g. a filtered run): make it here */
      if (f >= 2 && f <= 4) {
        char *cr = real(CR);
        const char *tool = f == 2 ? "dcmcrle" : f == 3 ? "dcmcjpeg +e1" : "dcmcjpls";
        assert_int_equal(run_quiet(tool, cr, srcs[f]), 0);
        free(cr);
      } else {
        char *cr = real(CR);
        assert_int_equal(run_quiet("dcmconv +td", cr, srcs[f]), 0);
        free(cr);
      }
      in = fopen(srcs[f], "rb");
    }
    assert_non_null(in);
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *orig = malloc(size), *buf = malloc(size);
    assert_int_equal(fread(orig, 1, size, in), (size_t)size);
    fclose(in);
    for (int i = 0; i < 40; i++) {
      memcpy(buf, orig, size);
      long len = size;
      int k = 1 + RND() % 8;
      for (int j = 0; j < k; j++) {
        long pos = (RND() % 4) ? (long)(RND() % (size < 2048 ? size : 2048)) : (long)(RND() % size);
        switch (RND() % 4) {
          case 0: buf[pos] ^= (unsigned char)(1u << (RND() % 8)); break;
          case 1: buf[pos] = (unsigned char)RND(); break;
          case 2: buf[pos] = (RND() % 2) ? 0xFF : 0x00; break;
          default: buf[pos] = 0xFF; if (pos + 1 < size) buf[pos + 1] = 0xFF; break;
        }
      }
      if (RND() % 8 == 0) len = (long)(RND() % size);
      char name[64];
      snprintf(name, sizeof name, "mutant_%d_%d.dcm", f, i);
      char *p = tmp(name);
      write_bytes(p, buf, (size_t)len);
      ps_image *img = NULL;
      ps_read_opts o = ps_read_opts_default();
      o.raw = i & 1;
      int st = ps_dicom_read(p, &o, &img);
      if (st == PS_OK) {
        counts[0]++;
        assert_non_null(img);
        size_t n = (size_t)img->width * img->height;
        for (size_t q = 0; q < n; q++) {
          assert_true(isfinite(img->data[q]));
          if (!o.raw) assert_true(img->data[q] >= 0.0f && img->data[q] <= 1.0f);
        }
        ps_image_free(img);
      } else {
        assert_null(img);
        assert_true(st == PS_EFORMAT || st == PS_EUNSUPPORTED || st == PS_ELIMIT);
        assert_non_null(strstr(ps_last_error(), name));
        counts[st == PS_EFORMAT ? 1 : st == PS_EUNSUPPORTED ? 2 : 3]++;
      }
      ps_film_meta m;
      st = ps_dicom_read_meta(p, NULL, &m);
      if (st != PS_OK) assert_non_null(strstr(ps_last_error(), name));
      free(p);
    }
    free(orig);
    free(buf);
  }
#undef RND
  print_message("  240 mutants: %d decoded, %d malformed, %d unsupported, %d over a limit\n", counts[0], counts[1],
                counts[2], counts[3]);
  assert_true(counts[1] > 0); /* the mutations do reach the error paths */
  for (int f = 0; f < 6; f++) free(srcs[f]);
}

/* ---- damaged pixel data: refused, or listed by ps_dicom_read_warnings --------------------------- */

static void test_damaged_pixel_data(void **state) {
  (void)state;
  char *nccid = real(NCCID), *siim = real(SIIM);
  ps_image *clean = read_ok(nccid, NULL), *clean_jpeg = read_ok(siim, NULL);

  /* NumberOfFrames 2 over the pixel data of one frame: frame 0 is whole, the file is still short
   * of what its header declares (pydicom refuses it as well) */
  char *p = tmp("damaged_frames.dcm");
  copy_file(nccid, p);
  assert_int_equal(ps_test_system("dcmodify -nb -i NumberOfFrames=2 '%s' >/dev/null 2>&1", p), 0);
  expect_fail(p, NULL, PS_EFORMAT, "pixel data is 1048576 bytes, shorter than the 2097152 bytes");
  ps_image *img = read_warnings(p, 1, "shorter than the 2097152 bytes its header declares (2 frames x 1024 rows");
  assert_same_pixels("listed read, frame 0 whole", clean, img);
  assert_int_equal(img->meta.frames, 2);
  ps_image_free(img);
  if (HAVE_PY) {
    int st = ps_test_system("'%s' -c 'import sys, pydicom; pydicom.dcmread(sys.argv[1]).pixel_array' '%s' >/dev/null 2>&1",
                            PS_PYTHON, p);
    print_message("  %-40s -> pydicom %s\n", "  ... the same file", st ? "refuses it too" : "reads it");
    assert_int_not_equal(st, 0);
  }
  free(p);

  /* Rows 1100 over 1024 rows of pixel data: frame 0 itself is short; listed, the missing rows
   * read as 0 (the 8-bit film maps its stored values v to v / 255: the rows present are exact) */
  p = tmp("damaged_rows.dcm");
  copy_file(nccid, p);
  assert_int_equal(ps_test_system("dcmodify -nb -m Rows=1100 '%s' >/dev/null 2>&1", p), 0);
  expect_fail(p, NULL, PS_EFORMAT, "shorter than");
  img = read_warnings(p, 1, "the missing samples of frame 0 read as 0");
  assert_int_equal(img->height, 1100);
  assert_memory_equal(img->data, clean->data, sizeof(float) * 1024 * 1024);
  for (size_t i = (size_t)1024 * 1024; i < (size_t)1100 * 1024; i++) assert_true(img->data[i] == 0.0f);
  ps_image_free(img);
  free(p);

  /* JPEG Baseline film with a damaged scan: DCMTK's decoder only logs libjpeg's warnings */
  p = tmp("damaged_jpeg.dcm");
  make_damaged_siim(p);
  expect_fail(p, NULL, PS_EFORMAT, "libjpeg: Corrupt JPEG data");
  img = read_warnings(p, -1, "libjpeg: Corrupt JPEG data");
  assert_int_equal(img->width, clean_jpeg->width);
  ps_image_free(img);

  /* a clean film lists nothing and reads the same pixels */
  img = read_warnings(siim, 0, "");
  assert_same_pixels("clean JPEG film, listed read", clean_jpeg, img);
  ps_image_free(img);
  char **w = (char **)0x1;
  int n = -1;
  img = (ps_image *)0x1;
  assert_int_equal(ps_dicom_read_warnings(p, NULL, &img, NULL, &n), PS_EINVAL);
  assert_null(img);
  assert_int_equal(ps_dicom_read_warnings(p, NULL, NULL, &w, &n), PS_EINVAL);
  assert_null(w);
  assert_int_equal(n, 0);
  free(p);
  ps_image_free(clean);
  ps_image_free(clean_jpeg);
  free(nccid);
  free(siim);
}

/* ---- threads --------------------------------------------------------------------------------- */

typedef struct {
  const char *path;
  const ps_image *expect; /* NULL: a damaged film, refused every time */
  int ok;
} job;

static void *worker(void *arg) {
  job *j = arg;
  j->ok = 1;
  for (int k = 0; k < 4; k++) {
    ps_image *img = NULL;
    int st = ps_dicom_read(j->path, NULL, &img);
    if (!j->expect) { /* libjpeg's warnings are collected per thread: never lost, never another's */
      if (st != PS_EFORMAT || img || !strstr(ps_last_error(), "Corrupt JPEG data")) j->ok = 0;
      continue;
    }
    if (st != PS_OK) {
      j->ok = 0;
      return NULL;
    }
    size_t n = (size_t)img->width * img->height;
    if (img->width != j->expect->width || memcmp(img->data, j->expect->data, n * sizeof(float)) != 0) j->ok = 0;
    ps_image_free(img);
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  char *a = real(SIIM), *b = real(CR), *d = tmp("threads_damaged_jpeg.dcm");
  make_damaged_siim(d);
  ps_image *ea = read_ok(a, NULL), *eb = read_ok(b, NULL);
  job jobs[6] = {{a, ea, 0}, {b, eb, 0}, {d, NULL, 0}, {a, ea, 0}, {b, eb, 0}, {d, NULL, 0}};
  pthread_t t[6];
  for (int i = 0; i < 6; i++) assert_int_equal(pthread_create(&t[i], NULL, worker, &jobs[i]), 0);
  for (int i = 0; i < 6; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 6; i++) assert_true(jobs[i].ok);
  free(d);
  ps_image_free(ea);
  ps_image_free(eb);
  free(a);
  free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_real_films_match_pydicom),
      cmocka_unit_test(test_metadata_matches_pydicom),
      cmocka_unit_test(test_metadata_charset),
      cmocka_unit_test(test_patient_age),
      cmocka_unit_test(test_variants_8bit),
      cmocka_unit_test(test_variants_16bit_acr_nema),
      cmocka_unit_test(test_variants_rgb),
      cmocka_unit_test(test_img2dcm_gray_and_dcmdjpeg),
      cmocka_unit_test(test_jpegls_near_lossless),
      cmocka_unit_test(test_jpeg2000),
      cmocka_unit_test(test_multiframe),
      cmocka_unit_test(test_monochrome1_bright_anatomy),
      cmocka_unit_test(test_raw_mode),
      cmocka_unit_test(test_voi_variants_match_pydicom),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_damaged_pixel_data),
      cmocka_unit_test(test_probe),
      cmocka_unit_test(test_silent),
      cmocka_unit_test(test_mutations),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
