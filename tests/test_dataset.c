/* test_dataset.c — the dataset module on the real Kermany films in ../shared/data/kaggle.
 * References we did not write: the data's own manifest.csv (classes, subtypes, patient ids, sha256),
 * python's hashlib and csv (tests/ref/dataset_reference.py: an independent leakage audit and a
 * deliberately leaky per-file split), pydicom (DICOM PatientID), coreutils sha256sum. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_dataset.h"
#include "test_util.h"

static ps_dataset *g_ds; /* the kaggle folder, scanned once */

static const char *kaggle(void) { return ps_test_data("kaggle"); }

static int setup(void **state) {
  (void)state;
  ps_scan_opts o = {0};
  o.threads = 2;
  int st = ps_dataset_scan(kaggle(), &o, &g_ds);
  if (st != PS_OK) fprintf(stderr, "scan failed: %s\n", ps_last_error());
  return st == PS_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  ps_dataset_free(g_ds);
  return 0;
}

static int have_python(void) { return ps_test_have_python("csv,hashlib"); }

/* "key value" lines -> value of key (or -1 when absent). */
static long kv(const char *text, const char *key) {
  char pat[128];
  snprintf(pat, sizeof pat, "\n%s ", key);
  const char *p = strstr(text, pat);
  if (!p && !strncmp(text, pat + 1, strlen(pat) - 1)) p = text - 1;
  if (!p) {
    print_error("reference output lacks %s:\n%s\n", key, text);
    return -1;
  }
  return strtol(p + strlen(pat), NULL, 10);
}

static char *read_file(const char *path, size_t *n) {
  size_t len = 0;
  char *b = ps_test_read_file(path, &len);
  if (n) *n = b ? len : 0;
  return b;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* ---- building blocks ---- */

static void test_patient_ids(void **state) {
  (void)state;
  static const char *cases[][2] = {
      {"person123_bacteria_456.jpeg", "person123"},
      {"PNEUMONIA/person1619_virus_2806.jpeg", "person1619"},
      {"IM-0117-0001.jpeg", "IM-0117"},
      {"NORMAL2-IM-0435-0001.jpeg", "NORMAL2-IM-0435"},
      {"NORMAL2-IM-0416-0001-0002.jpeg", "NORMAL2-IM-0416"},
      {"IM-0001-0001-0002.jpeg", "IM-0001"},
  };
  char out[64];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(ps_dataset_patient_id_from_name(cases[i][0], out, sizeof out), 1);
    assert_string_equal(out, cases[i][1]);
  }
  /* unknown names: the stem, reported as a fallback */
  assert_int_equal(ps_dataset_patient_id_from_name("chest_0042.png", out, sizeof out), 0);
  assert_string_equal(out, "chest_0042");
  assert_int_equal(ps_dataset_patient_id_from_name("IM-0117.jpeg", out, sizeof out), 0);
  assert_string_equal(out, "IM-0117");
  assert_int_equal(ps_dataset_patient_id_from_name("person12x_a.jpeg", out, sizeof out), 0);
  assert_int_equal(ps_dataset_patient_id_from_name("person123_bacteria_456.jpeg", out, 4), PS_EINVAL);
  assert_int_equal(ps_dataset_patient_id_from_name("dir/", out, sizeof out), 0);
  assert_string_equal(out, "dir/");
  assert_int_equal(ps_dataset_patient_id_from_name("", out, sizeof out), 0);
  assert_string_equal(out, "unnamed");
  assert_int_equal(ps_dataset_subtype_from_name("person1_Bacteria_2.jpeg"), PS_SUBTYPE_BACTERIA);
  assert_int_equal(ps_dataset_subtype_from_name("x/person1_virus_2.jpeg"), PS_SUBTYPE_VIRUS);
  assert_int_equal(ps_dataset_subtype_from_name("virus_dir/person1.jpeg"), PS_SUBTYPE_UNKNOWN);
}

static void test_sha256(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(have_python(), "python3 not available");
  /* padding edge cases against hashlib: lengths around the 55/56/64-byte block boundaries */
  const char *dir = ps_test_tmpdir();
  static const int lens[] = {0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 70001};
  char files[4096] = "";
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/sha_%d.bin", dir, lens[i]);
    FILE *f = fopen(path, "wb");
    for (int k = 0; k < lens[i]; k++) fputc((k * 131 + 7) & 255, f);
    fclose(f);
    strcat(files, " ");
    strcat(files, path);
  }
  int rc;
  char *ref = ps_test_capture(&rc, "'%s' '%s' sha256%s", PS_PYTHON, ps_test_src("tests/ref/dataset_reference.py"), files);
  assert_int_equal(rc, 0);
  char *line = ref;
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    char path[512], hex[65];
    snprintf(path, sizeof path, "%s/sha_%d.bin", dir, lens[i]);
    assert_int_equal(ps_sha256_file(path, hex), PS_OK);
    if (strncmp(line, hex, 64)) fail_msg("sha256 of %d bytes: %s, hashlib %.64s", lens[i], hex, line);
    line = strchr(line, '\n') + 1;
  }
  free(ref);
  /* one real film against coreutils */
  char *film = ps_test_join(kaggle(), "PNEUMONIA/person1430_bacteria_3695.jpeg"), hex[65];
  char *sum = ps_test_capture(&rc, "sha256sum '%s'", film);
  assert_int_equal(ps_sha256_file(film, hex), PS_OK);
  assert_memory_equal(sum, hex, 64);
  free(sum);
  free(film);
  assert_int_equal(ps_sha256_file("/nonexistent/film.jpeg", hex), PS_EIO);
  assert_non_null(strstr(ps_last_error(), "/nonexistent/film.jpeg"));
}

/* ---- the real data ---- */

static void test_scan_matches_data_manifest(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(have_python(), "python3 not available");
  assert_int_equal(ps_dataset_size(g_ds), 651);
  size_t n[3] = {0};
  for (size_t i = 0; i < ps_dataset_size(g_ds); i++) {
    const ps_dataset_item *it = ps_dataset_item_at(g_ds, i);
    assert_true(it->subtype >= 0 && it->subtype <= 2);
    n[it->subtype]++;
    assert_int_equal(strlen(it->sha256), 64);
    assert_int_equal(it->split, PS_SPLIT_NONE);
  }
  /* README: 151 normal, 299 bacterial, 201 viral (re-checked below against manifest.csv itself) */
  assert_int_equal(n[0], 151);
  assert_int_equal(n[1], 299);
  assert_int_equal(n[2], 201);
  /* write our (unsplit) manifest and compare every row with the data's manifest.csv */
  char *ours = ps_test_join(ps_test_tmpdir(), "scan_manifest.csv");
  assert_int_equal(ps_dataset_write_manifest(g_ds, ours, 0), PS_OK);
  int rc;
  char *ref = ps_test_capture(&rc, "'%s' '%s' check '%s' '%s'", PS_PYTHON, ps_test_src("tests/ref/dataset_reference.py"),
                              ours, ps_test_data("kaggle/manifest.csv"));
  assert_int_equal(rc, 0);
  assert_int_equal(kv(ref, "films"), kv(ref, "kaggle_films"));
  assert_int_equal(kv(ref, "missing"), 0);
  assert_int_equal(kv(ref, "patient_id_mismatch"), 0);
  assert_int_equal(kv(ref, "subtype_mismatch"), 0);
  assert_int_equal(kv(ref, "label_mismatch"), 0);
  assert_int_equal(kv(ref, "sha256_mismatch"), 0);
  assert_int_equal(kv(ref, "count_all_NORMAL"), (long)n[0]);
  assert_int_equal(kv(ref, "count_all_BACTERIA"), (long)n[1]);
  assert_int_equal(kv(ref, "count_all_VIRUS"), (long)n[2]);
  assert_non_null(strstr(ref, "header path,label,subtype,patient_id,split,sha256\n"));
  free(ref);
  /* a second write without force is refused and leaves the file alone */
  size_t before_n;
  char *before = read_file(ours, &before_n);
  assert_int_equal(ps_dataset_write_manifest(g_ds, ours, 0), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "already exists"));
  size_t after_n;
  char *after = read_file(ours, &after_n);
  assert_int_equal(before_n, after_n);
  assert_memory_equal(before, after, before_n);
  free(before), free(after), free(ours);
}

static void check_split(const char *manifest, int task, const double fr[3]) {
  int rc;
  char *ref = ps_test_capture(&rc, "'%s' '%s' check '%s' '%s'", PS_PYTHON, ps_test_src("tests/ref/dataset_reference.py"),
                              manifest, ps_test_data("kaggle/manifest.csv"));
  assert_int_equal(rc, 0);
  /* independent audit: zero leakage by patient and by bytes */
  assert_int_equal(kv(ref, "patients_across_splits"), 0);
  assert_int_equal(kv(ref, "hashes_across_splits"), 0);
  assert_int_equal(kv(ref, "patient_id_mismatch"), 0);
  /* per-class fractions: within 0.04 of the target (groups are whole patients; the largest holds 4
   * films of ~150-300 per class) */
  static const char *const bin[] = {"NORMAL", "PNEUMONIA"}, *const multi[] = {"NORMAL", "BACTERIA", "VIRUS"};
  static const char *const sp[] = {"train", "val", "test"};
  int K = task == PS_TASK_MULTICLASS ? 3 : 2;
  for (int c = 0; c < K; c++) {
    const char *cls = task == PS_TASK_MULTICLASS ? multi[c] : bin[c];
    char key[64];
    snprintf(key, sizeof key, "count_all_%s", cls);
    long total = kv(ref, key);
    assert_true(total > 0);
    for (int s = 0; s < 3; s++) {
      snprintf(key, sizeof key, "count_%s_%s", sp[s], cls);
      double f = (double)kv(ref, key) / total;
      if (f < fr[s] - 0.04 || f > fr[s] + 0.04)
        fail_msg("%s %s: fraction %.3f, target %.3f (%s)", cls, sp[s], f, fr[s], manifest);
    }
  }
  free(ref);
}

static void test_split_real(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(have_python(), "python3 not available");
  const char *dir = ps_test_tmpdir();
  static const double def[3] = {0.70, 0.15, 0.15}, other[3] = {0.6, 0.2, 0.2};
  for (int task = 0; task < 2; task++) {
    ps_split_opts so = {{0}, 42, task};
    assert_int_equal(ps_dataset_split(g_ds, &so), PS_OK);
    ps_leakage_report r;
    char p[512];
    snprintf(p, sizeof p, "%s/leak_%d.json", dir, task);
    assert_int_equal(ps_dataset_write_leakage_json(g_ds, p, &r), PS_OK);
    assert_int_equal(r.films, 651);
    assert_int_equal(r.patients, 539);
    assert_int_equal(r.films_unsplit, 0);
    assert_int_equal(r.patients_across_splits, 0);
    assert_int_equal(r.hashes_across_splits, 0);
    assert_true(r.duplicate_hashes >= 1); /* person1430_bacteria_3695/3696 are byte-identical */
    char *json = read_file(p, NULL);
    assert_non_null(strstr(json, "\"leak_free\": true"));
    free(json);
    snprintf(p, sizeof p, "%s/split_%d.csv", dir, task);
    assert_int_equal(ps_dataset_write_manifest(g_ds, p, 0), PS_OK);
    check_split(p, task, def);
  }
  ps_split_opts so = {{0.6, 0.2, 0.2}, 3, PS_TASK_BINARY};
  assert_int_equal(ps_dataset_split(g_ds, &so), PS_OK);
  char p[512];
  snprintf(p, sizeof p, "%s/split_602020.csv", dir);
  assert_int_equal(ps_dataset_write_manifest(g_ds, p, 0), PS_OK);
  check_split(p, PS_TASK_BINARY, other);
  /* bad fractions */
  ps_split_opts bad = {{0.5, 0.2, 0.2}, 0, 0};
  assert_int_equal(ps_dataset_split(g_ds, &bad), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "sum"));
  ps_split_opts neg = {{1.2, -0.1, -0.1}, 0, 0};
  assert_int_equal(ps_dataset_split(g_ds, &neg), PS_EINVAL);
}

static void test_same_seed_same_bytes(void **state) {
  (void)state;
  const char *dir = ps_test_tmpdir();
  char a[512], b[512], c[512];
  snprintf(a, sizeof a, "%s/seed_a.csv", dir);
  snprintf(b, sizeof b, "%s/seed_b.csv", dir);
  snprintf(c, sizeof c, "%s/seed_c.csv", dir);
  ps_split_opts so = {{0}, 1234, 0};
  assert_int_equal(ps_dataset_split(g_ds, &so), PS_OK);
  assert_int_equal(ps_dataset_write_manifest(g_ds, a, 0), PS_OK);
  /* a fresh scan with another thread count (hashing order differs) and the same seed */
  ps_dataset *ds2 = NULL;
  ps_scan_opts o = {0};
  o.threads = 1;
  assert_int_equal(ps_dataset_scan(kaggle(), &o, &ds2), PS_OK);
  assert_int_equal(ps_dataset_split(ds2, &so), PS_OK);
  assert_int_equal(ps_dataset_write_manifest(ds2, b, 0), PS_OK);
  so.seed = 1235;
  assert_int_equal(ps_dataset_split(ds2, &so), PS_OK);
  assert_int_equal(ps_dataset_write_manifest(ds2, c, 0), PS_OK);
  ps_dataset_free(ds2);
  size_t na, nb, nc;
  char *ta = read_file(a, &na), *tb = read_file(b, &nb), *tc = read_file(c, &nc);
  assert_int_equal(na, nb);
  assert_memory_equal(ta, tb, na);
  assert_true(na != nc || memcmp(ta, tc, na) != 0); /* another seed, another split */
  free(ta), free(tb), free(tc);
  /* the manifest reads back to the same films, splits and hashes */
  ps_dataset *back = NULL;
  assert_int_equal(ps_dataset_read_manifest(a, &back), PS_OK);
  assert_int_equal(ps_dataset_size(back), ps_dataset_size(g_ds));
  so.seed = 1234;
  assert_int_equal(ps_dataset_split(g_ds, &so), PS_OK);
  for (size_t i = 0; i < ps_dataset_size(back); i++) {
    const ps_dataset_item *x = ps_dataset_item_at(back, i), *y = ps_dataset_item_at(g_ds, i);
    assert_string_equal(x->path, y->path);
    assert_string_equal(x->patient_id, y->patient_id);
    assert_string_equal(x->sha256, y->sha256);
    assert_int_equal(x->split, y->split);
    assert_int_equal(x->label, y->label);
    assert_int_equal(x->subtype, y->subtype);
  }
  ps_dataset_free(back);
}

static void test_audit_detects_leaky_split(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(have_python(), "python3 not available");
  char *leaky = ps_test_join(ps_test_tmpdir(), "leaky.csv");
  int rc;
  char *ref = ps_test_capture(&rc, "'%s' '%s' leaky '%s' '%s' 7", PS_PYTHON, ps_test_src("tests/ref/dataset_reference.py"),
                              kaggle(), leaky);
  assert_int_equal(rc, 0);
  long pat = kv(ref, "patients_across_splits"), films = kv(ref, "films_of_leaky_patients"),
       hashes = kv(ref, "hashes_across_splits");
  assert_true(pat > 10);  /* a per-file split of 651 films from 539 patients leaks many */
  assert_true(hashes >= 1);
  ps_dataset *ds = NULL;
  assert_int_equal(ps_dataset_read_manifest(leaky, &ds), PS_OK);
  ps_leakage_report r;
  assert_int_equal(ps_dataset_audit(ds, &r), PS_OK);
  assert_int_equal((long)r.patients_across_splits, pat);
  assert_int_equal((long)r.films_of_leaky_patients, films);
  assert_int_equal((long)r.hashes_across_splits, hashes);
  assert_int_equal((long)r.patients, kv(ref, "patients"));
  /* splitting it again with the union-find removes both kinds of leakage */
  assert_int_equal(ps_dataset_split(ds, NULL), PS_OK);
  assert_int_equal(ps_dataset_audit(ds, &r), PS_OK);
  assert_int_equal(r.patients_across_splits, 0);
  assert_int_equal(r.hashes_across_splits, 0);
  ps_dataset_free(ds);
  /* the CLI: exit 3 and a leakage.json that lists the leaking patients */
  char *out = ps_test_join(ps_test_tmpdir(), "audit_out");
  char *text = ps_test_capture(&rc, "'%s' split --audit-only '%s' -o '%s' 2>&1", PS_CLI, leaky, out);
  assert_int_equal(rc, 3);
  char want[128];
  snprintf(want, sizeof want, "leakage: %ld patients in more than one split", pat);
  if (!strstr(text, want)) fail_msg("audit summary lacks '%s':\n%s", want, text);
  free(text);
  char *lj = ps_test_join(out, "leakage.json");
  char *json = read_file(lj, NULL);
  assert_non_null(json);
  assert_non_null(strstr(json, "\"leak_free\": false"));
  assert_non_null(strstr(json, "\"patient_id\": \"person"));
  free(json), free(lj), free(out), free(ref), free(leaky);
}

static void test_kaggle_layout_and_original_split_audit(void **state) {
  (void)state;
  /* chest_xray/{train,val,test}/{NORMAL,PNEUMONIA} built from symlinks to real films; one patient
   * (person1430, with byte-identical films) straddles train and test as in a careless split */
  const char *tmp = ps_test_tmpdir();
  char *root = ps_test_join(tmp, "chest_xray");
  static const char *const files[][2] = {
      {"train/NORMAL", "NORMAL/IM-0117-0001.jpeg"},
      {"train/NORMAL", "NORMAL/IM-0129-0001.jpeg"},
      {"train/PNEUMONIA", "PNEUMONIA/person1430_bacteria_3695.jpeg"},
      {"test/PNEUMONIA", "PNEUMONIA/person1430_bacteria_3696.jpeg"},
      {"val/NORMAL", "NORMAL/IM-0145-0001.jpeg"},
      {"test/NORMAL", "NORMAL/IM-0147-0001.jpeg"},
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    assert_int_equal(ps_test_system("mkdir -p '%s/%s' && ln -s '%s/%s' '%s/%s/'", root, files[i][0], kaggle(), files[i][1], root,
                                    files[i][0]),
                     0);
  }
  char *readme = ps_test_join(root, "README.txt");
  write_text(readme, "not a film\n");
  free(readme);
  ps_dataset *ds = NULL;
  assert_int_equal(ps_dataset_scan(root, NULL, &ds), PS_OK);
  assert_int_equal(ps_dataset_size(ds), 6);
  int seen_test = 0;
  for (size_t i = 0; i < 6; i++) {
    const ps_dataset_item *it = ps_dataset_item_at(ds, i);
    if (strstr(it->rel_path, "person1430_bacteria_3696")) {
      assert_int_equal(it->source_split, PS_SPLIT_TEST);
      assert_int_equal(it->subtype, PS_SUBTYPE_BACTERIA);
      assert_string_equal(it->patient_id, "person1430");
      seen_test = 1;
    }
  }
  assert_true(seen_test);
  ps_dataset_free(ds);
  int rc;
  char *text = ps_test_capture(&rc, "'%s' split --audit-only '%s' 2>&1", PS_CLI, root);
  assert_int_equal(rc, 3);
  if (!strstr(text, "leakage: 1 patients in more than one split (2 films), 1 identical films across splits"))
    fail_msg("unexpected audit of the folder split:\n%s", text);
  free(text);
  /* pooled and split again: no leakage */
  char *out = ps_test_join(tmp, "kaggle_layout_out");
  text = ps_test_capture(&rc, "'%s' split '%s' -o '%s' --seed 5 2>&1", PS_CLI, root, out);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(text, "leakage: 0 patients in more than one split (0 films), 0 identical films across splits"));
  assert_non_null(strstr(text, "own train/val/test folders: 1 patients in more than one split, 1 identical films"));
  free(text), free(out), free(root);
}

static void test_class_folders_and_labels_csv(void **state) {
  (void)state;
  const char *tmp = ps_test_tmpdir();
  char *root = ps_test_join(tmp, "classfolders");
  assert_int_equal(ps_test_system("mkdir -p '%s/Bacteria' '%s/virus' '%s/normal' '%s/unlabelled' && "
                                  "ln -s '%s/PNEUMONIA/person1026_bacteria_2957.jpeg' '%s/Bacteria/a.jpeg' && "
                                  "ln -s '%s/PNEUMONIA/person1026_virus_1718.jpeg' '%s/virus/b.JPG' && "
                                  "ln -s '%s/NORMAL/IM-0117-0001.jpeg' '%s/normal/' && "
                                  "ln -s '%s/NORMAL/IM-0129-0001.jpeg' '%s/unlabelled/'",
                                  root, root, root, root, kaggle(), root, kaggle(), root, kaggle(), root, kaggle(), root),
                   0);
  ps_dataset *ds = NULL;
  ps_scan_opts o = {0};
  o.no_hash = 1;
  assert_int_equal(ps_dataset_scan(root, &o, &ds), PS_OK);
  assert_int_equal(ps_dataset_size(ds), 3); /* the unlabelled film is skipped */
  /* byte-wise path order: Bacteria/ < normal/ < virus/ */
  assert_int_equal(ps_dataset_item_at(ds, 0)->subtype, PS_SUBTYPE_BACTERIA);
  assert_int_equal(ps_dataset_item_at(ds, 1)->label, PS_LABEL_NORMAL);
  assert_int_equal(ps_dataset_item_at(ds, 2)->subtype, PS_SUBTYPE_VIRUS);
  assert_string_equal(ps_dataset_item_at(ds, 1)->patient_id, "IM-0117");
  assert_string_equal(ps_dataset_item_at(ds, 0)->sha256, "");
  ps_dataset_free(ds);
  /* a labels CSV (quoted fields, CRLF) labels the unlabelled film and names patients */
  char *csv = ps_test_join(tmp, "labels.csv");
  write_text(csv, "file,label,subtype,patient_id\r\n\"unlabelled/IM-0129-0001.jpeg\",PNEUMONIA,VIRUS,\"p, 7\"\r\na.jpeg,pneumonia,,\r\n");
  o.labels_csv = csv;
  assert_int_equal(ps_dataset_scan(root, &o, &ds), PS_OK);
  assert_int_equal(ps_dataset_size(ds), 4);
  const ps_dataset_item *u = ps_dataset_item_at(ds, 2); /* Bacteria < normal < unlabelled < virus */
  assert_string_equal(u->rel_path, "unlabelled/IM-0129-0001.jpeg");
  assert_int_equal(u->label, PS_LABEL_PNEUMONIA);
  assert_int_equal(u->subtype, PS_SUBTYPE_VIRUS);
  assert_string_equal(u->patient_id, "p, 7");
  /* "a.jpeg": PNEUMONIA from the CSV, subtype unknown in the CSV and in the name -> unknown */
  assert_int_equal(ps_dataset_item_at(ds, 0)->subtype, PS_SUBTYPE_UNKNOWN);
  ps_split_opts so = {{0}, 1, PS_TASK_MULTICLASS};
  assert_int_equal(ps_dataset_split(ds, &so), PS_EINVAL); /* multiclass needs every subtype */
  assert_non_null(strstr(ps_last_error(), "a.jpeg"));
  ps_dataset_free(ds);
  /* bad labels CSVs: clear errors with line numbers */
  write_text(csv, "file,label\na.jpeg,PNEUMONIA\nb.JPG,MAYBE\n");
  assert_int_equal(ps_dataset_scan(root, &o, &ds), PS_EFORMAT);
  assert_non_null(strstr(ps_last_error(), "line 3"));
  write_text(csv, "name,diagnosis\na.jpeg,PNEUMONIA\n");
  assert_int_equal(ps_dataset_scan(root, &o, &ds), PS_EFORMAT);
  assert_non_null(strstr(ps_last_error(), "line 1"));
  free(csv), free(root);
}

static void test_dicom_labels_csv(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(strstr(ps_build_features(), "dicom") != NULL, "built without DICOM (no PatientID from headers)");
  PS_TEST_SKIP_UNLESS(ps_test_have_python("pydicom"), "pydicom not available");
  const char *tmp = ps_test_tmpdir();
  char *root = ps_test_join(tmp, "dicomfolder");
  static const char *const names[] = {"CR-MONO1-10-chest.dcm", "gcp_dicom_00000001_000.dcm",
                                      "siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
                                      "torchxrayvision_Fake_MONOHR1.dcm"};
  char files[4096] = "";
  /* symlinked folders are not followed: link the films one by one */
  assert_int_equal(ps_test_system("mkdir -p '%s/dicom'", root), 0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(ps_test_system("ln -s '%s/dicom/%s' '%s/dicom/'", ps_test_data(""), names[i], root), 0);
    strcat(files, " '");
    strcat(files, ps_test_data("dicom/"));
    strcat(files, names[i]);
    strcat(files, "'");
  }
  int rc;
  char *ref = ps_test_capture(&rc, "'%s' '%s' dicom_pid%s", PS_PYTHON, ps_test_src("tests/ref/dataset_reference.py"), files);
  assert_int_equal(rc, 0);
  char pid[4][128], sop[4][128];
  const char *line = ref;
  for (int i = 0; i < 4; i++) {
    assert_int_equal(sscanf(line, "%127s %127s", pid[i], sop[i]), 2);
    line = strchr(line, '\n') + 1;
  }
  /* the labels CSV names one film by its SOPInstanceUID (column SOPInstanceUID), the others by path */
  assert_string_not_equal(sop[1], "-");
  char csvtext[2048] = "SOPInstanceUID,label\n";
  for (int i = 0; i < 4; i++) {
    char row[512];
    if (i == 1) snprintf(row, sizeof row, "%s,PNEUMONIA\n", sop[1]);
    else snprintf(row, sizeof row, "dicom/%s,%s\n", names[i], i % 2 ? "PNEUMONIA" : "NORMAL");
    strcat(csvtext, row);
  }
  char *csv = ps_test_join(tmp, "dicom_labels.csv");
  write_text(csv, csvtext);
  ps_scan_opts o = {0};
  o.labels_csv = csv;
  ps_dataset *ds = NULL;
  assert_int_equal(ps_dataset_scan(root, &o, &ds), PS_OK);
  assert_int_equal(ps_dataset_size(ds), 4);
  for (int i = 0; i < 4; i++) { /* items are in path order = names[] order */
    const ps_dataset_item *it = ps_dataset_item_at(ds, i);
    char want[128];
    if (!strcmp(pid[i], "-")) /* no PatientID in the header: the file stem */
      ps_dataset_patient_id_from_name(names[i], want, sizeof want);
    else
      snprintf(want, sizeof want, "%s", pid[i]);
    assert_string_equal(it->patient_id, want);
    assert_int_equal(it->label, i % 2);
  }
  /* siim and its MONOCHROME1 copy share a PatientID: one group, one split */
  assert_int_equal(ps_dataset_split(ds, NULL), PS_OK);
  assert_int_equal(ps_dataset_item_at(ds, 2)->group, ps_dataset_item_at(ds, 3)->group);
  assert_int_equal(ps_dataset_item_at(ds, 2)->split, ps_dataset_item_at(ds, 3)->split);
  ps_dataset_free(ds);
  free(ref), free(csv), free(root);
}

static void test_manifest_reader_errors(void **state) {
  (void)state;
  const char *tmp = ps_test_tmpdir();
  char *m = ps_test_join(tmp, "bad.csv");
  ps_dataset *ds = NULL;
  static const char *const bad[][2] = {
      {"path,label,split\na.jpeg,NORMAL,train\nb.jpeg,NORMAL\n", "line 3"},
      {"path,label,split\na.jpeg,NORMAL,train\nb.jpeg,SICK,val\n", "line 3"},
      {"path,label,split\na.jpeg,NORMAL,train\n\"b.jpeg,NORMAL,val\n", "unterminated"},
      {"path,label,split\na.jpeg,NORMAL,holdout\n", "line 2"},
      {"path,label,sha256\na.jpeg,NORMAL,xyz\n", "sha256"},
      {"path,split\na.jpeg,train\n", "label"},
      {"", "empty"},
      {"path,label\na.jpeg,NORMAL\nb\"x.jpeg,NORMAL\n", "line 3"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_text(m, bad[i][0]);
    int st = ps_dataset_read_manifest(m, &ds);
    if (st != PS_EFORMAT || !strstr(ps_last_error(), bad[i][1]) || !strstr(ps_last_error(), "bad.csv"))
      fail_msg("case %zu: status %d, message '%s' (want EFORMAT and '%s')", i, st, ps_last_error(), bad[i][1]);
    assert_null(ds);
  }
  assert_int_equal(ps_dataset_read_manifest("/nonexistent/manifest.csv", &ds), PS_ENOTFOUND);
  /* quoting, CRLF, BOM, blank lines, any column order, relative paths resolved to the manifest folder */
  write_text(m, "\xEF\xBB\xBFsplit,sha256,label,path,patient_id,extra\r\n"
                "test,,PNEUMONIA,\"dir, with comma/person5_virus_9.jpeg\",\"pat \"\"x\"\"\",1\r\n\r\n"
                "train,,NORMAL,/abs/IM-0001-0001.jpeg,,2\r\n");
  assert_int_equal(ps_dataset_read_manifest(m, &ds), PS_OK);
  assert_int_equal(ps_dataset_size(ds), 2);
  const ps_dataset_item *a = ps_dataset_item_at(ds, 0), *b = ps_dataset_item_at(ds, 1);
  assert_string_equal(a->patient_id, "pat \"x\"");
  assert_int_equal(a->subtype, PS_SUBTYPE_VIRUS);
  assert_int_equal(a->split, PS_SPLIT_TEST);
  char want[PATH_MAX + 64], real[PATH_MAX];
  assert_non_null(realpath(tmp, real));
  snprintf(want, sizeof want, "%s/dir, with comma/person5_virus_9.jpeg", real);
  assert_string_equal(a->path, want);
  assert_string_equal(b->path, "/abs/IM-0001-0001.jpeg");
  assert_string_equal(b->patient_id, "IM-0001");
  /* and it round-trips through the writer with quoting intact */
  char *m2 = ps_test_join(tmp, "roundtrip.csv");
  assert_int_equal(ps_dataset_write_manifest(ds, m2, 0), PS_OK);
  ps_dataset *ds2 = NULL;
  assert_int_equal(ps_dataset_read_manifest(m2, &ds2), PS_OK);
  assert_string_equal(ps_dataset_item_at(ds2, 0)->patient_id, "pat \"x\"");
  assert_string_equal(ps_dataset_item_at(ds2, 0)->path, want);
  ps_dataset_free(ds2);
  ps_dataset_free(ds);
  free(m), free(m2);
}

/* Truncations and byte flips of a valid manifest: every read returns a status, never crashes
 * (run under PS_SANITIZE for memory errors), and failures name the file. */
static void test_manifest_reader_garbage(void **state) {
  (void)state;
  const char *tmp = ps_test_tmpdir();
  const char *good = "path,label,subtype,patient_id,split,sha256\n"
                     "/x/person1_bacteria_1.jpeg,PNEUMONIA,BACTERIA,person1,train,"
                     "05bc425eda168493cbe38eea4c079edbbfad1e17e3477892740b1fce97b69957\n"
                     "\"/x/a,b.jpeg\",NORMAL,NORMAL,\"p\"\"q\",test,\n";
  size_t n = strlen(good);
  char *m = ps_test_join(tmp, "garbage.csv");
  uint64_t s = 7;
  int ok = 0, failed = 0;
  for (int round = 0; round < 400; round++) {
    char buf[512];
    memcpy(buf, good, n);
    size_t len = n;
    if (round < (int)n) {
      len = (size_t)round; /* every truncation */
    } else {
      for (int k = 0; k < 3; k++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        buf[(s >> 33) % n] = (char)(s >> 13);
      }
    }
    FILE *f = fopen(m, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    ps_dataset *ds = NULL;
    int st = ps_dataset_read_manifest(m, &ds);
    if (st == PS_OK) {
      ok++;
      for (size_t i = 0; i < ps_dataset_size(ds); i++) assert_true(ps_dataset_item_at(ds, i)->patient_id[0] != '\0');
      ps_dataset_free(ds);
    } else {
      failed++;
      assert_null(ds);
      assert_non_null(strstr(ps_last_error(), "garbage.csv"));
    }
  }
  assert_true(ok > 0 && failed > 0);
  free(m);
}

/* hash every source film (hashlib, independent of our sha256) */
static char *hash_sources(void) {
  int rc;
  char *out = ps_test_capture(&rc, "cd '%s' && '%s' '%s' sha256 NORMAL/* PNEUMONIA/*", kaggle(), PS_PYTHON,
                              ps_test_src("tests/ref/dataset_reference.py"));
  assert_int_equal(rc, 0);
  return out;
}

static void test_cli_materialize_and_refusals(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(have_python(), "python3 not available");
  const char *tmp = ps_test_tmpdir();
  char *before = hash_sources();
  int rc;
  char *ls_before = ps_test_capture(&rc, "ls -l --time-style=full-iso -R '%s'", kaggle());
  char *out = ps_test_join(tmp, "cli_out");
  char *text = ps_test_capture(&rc, "'%s' split '%s' -o '%s' --seed 11 --task multiclass --materialize 2>&1", PS_CLI, kaggle(), out);
  if (rc != 0) fail_msg("split failed:\n%s", text);
  assert_non_null(strstr(text, "materialized 651 symlinks"));
  free(text);
  /* every link lies in the folder of its split and class (from the manifest) and points at the film */
  char *manifest = ps_test_join(out, "manifest.csv");
  ps_dataset *ds = NULL;
  assert_int_equal(ps_dataset_read_manifest(manifest, &ds), PS_OK);
  assert_int_equal(ps_dataset_size(ds), 651);
  for (size_t i = 0; i < ps_dataset_size(ds); i++) {
    const ps_dataset_item *it = ps_dataset_item_at(ds, i);
    char link[PATH_MAX], target[PATH_MAX];
    snprintf(link, sizeof link, "%s/multiclass/%s/%s/%s", out, ps_dataset_split_name(it->split),
             ps_dataset_subtype_name(it->subtype), strrchr(it->path, '/') + 1);
    struct stat ls;
    if (lstat(link, &ls) != 0 || !S_ISLNK(ls.st_mode)) fail_msg("%s is not a symlink", link);
    ssize_t n = readlink(link, target, sizeof target - 1);
    assert_true(n > 0);
    target[n] = 0;
    assert_string_equal(target, it->path);
  }
  ps_dataset_free(ds);
  char *count = ps_test_capture(&rc, "find '%s/multiclass' -type l | wc -l", out);
  assert_int_equal(atoi(count), 651);
  free(count);
  /* again into the same folder (ours): replaces only our links; same count, nothing stale */
  text = ps_test_capture(&rc, "'%s' split '%s' -o '%s' --seed 12 --task multiclass --materialize --force 2>&1", PS_CLI,
                         kaggle(), out);
  assert_int_equal(rc, 0);
  free(text);
  count = ps_test_capture(&rc, "find '%s/multiclass' -type l | wc -l", out);
  assert_int_equal(atoi(count), 651);
  free(count);
  /* refusals */
  size_t mn;
  char *mbefore = read_file(manifest, &mn);
  text = ps_test_capture(&rc, "'%s' split '%s' -o '%s' --seed 13 2>&1", PS_CLI, kaggle(), out);
  assert_int_equal(rc, 1);
  assert_non_null(strstr(text, "already exists"));
  free(text);
  size_t mn2;
  char *mafter = read_file(manifest, &mn2);
  assert_int_equal(mn, mn2);
  assert_memory_equal(mbefore, mafter, mn);
  free(mbefore), free(mafter);
  text = ps_test_capture(&rc, "'%s' split '%s' -o '%s/NORMAL/out' 2>&1", PS_CLI, kaggle(), kaggle());
  assert_int_equal(rc, 1);
  assert_non_null(strstr(text, "inside the source"));
  free(text);
  char *user = ps_test_join(tmp, "userdir");
  assert_int_equal(ps_test_system("mkdir -p '%s' && echo mine > '%s/notes.txt'", user, user), 0);
  char *out2 = ps_test_join(tmp, "cli_out2");
  text = ps_test_capture(&rc, "'%s' split '%s' -o '%s' --materialize '%s' 2>&1", PS_CLI, kaggle(), out2, user);
  assert_int_equal(rc, 1);
  assert_non_null(strstr(text, "not empty"));
  free(text);
  char *notes = ps_test_join(user, "notes.txt");
  char *nt = read_file(notes, NULL);
  assert_string_equal(nt, "mine\n");
  free(nt), free(notes);
  /* the library refuses a target inside a class folder of the source too */
  ps_dataset *ds3 = NULL;
  assert_int_equal(ps_dataset_read_manifest(manifest, &ds3), PS_OK);
  char inside[PATH_MAX];
  snprintf(inside, sizeof inside, "%s/PNEUMONIA/x", kaggle());
  assert_int_equal(ps_dataset_materialize(ds3, inside, PS_TASK_BINARY, NULL), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "inside the source class folder"));
  ps_dataset_free(ds3);
  /* the source is untouched: same bytes, same listing (names, sizes, times) */
  char *after = hash_sources();
  assert_string_equal(before, after);
  char *ls_after = ps_test_capture(&rc, "ls -l --time-style=full-iso -R '%s'", kaggle());
  assert_string_equal(ls_before, ls_after);
  free(before), free(after), free(ls_before), free(ls_after), free(manifest), free(out), free(out2), free(user);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_patient_ids),
      cmocka_unit_test(test_sha256),
      cmocka_unit_test(test_scan_matches_data_manifest),
      cmocka_unit_test(test_split_real),
      cmocka_unit_test(test_same_seed_same_bytes),
      cmocka_unit_test(test_audit_detects_leaky_split),
      cmocka_unit_test(test_kaggle_layout_and_original_split_audit),
      cmocka_unit_test(test_class_folders_and_labels_csv),
      cmocka_unit_test(test_dicom_labels_csv),
      cmocka_unit_test(test_manifest_reader_errors),
      cmocka_unit_test(test_manifest_reader_garbage),
      cmocka_unit_test(test_cli_materialize_and_refusals),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
