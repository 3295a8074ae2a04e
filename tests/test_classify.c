/* test_classify.c — `pneumoscope classify` and ps_infer_run: JSON/CSV checked by
 * tests/ref/model_classify_check.py against torchvision (probabilities) and pydicom (DICOM
 * identifiers); bad films reported while the rest go on; the CUDA refusal; the default model. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_infer.h"
#include "test_util.h"

static char folder[1024], model2[1024], model3[1024];

static void assert_ok(int st, const char *what) {
  if (st != PS_OK) fail_msg("%s: %s: %s", what, ps_strerror(st), ps_last_error());
}

static void copy_prefix(const char *src, const char *dst, long n) {
  FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
  assert_non_null(in);
  assert_non_null(out);
  char buf[4096];
  long left = n;
  size_t got;
  while ((left < 0 || left > 0) && (got = fread(buf, 1, left < 0 || left > 4096 ? 4096 : (size_t)left, in)) > 0) {
    assert_int_equal(fwrite(buf, 1, got, out), got);
    if (left > 0) left -= (long)got;
  }
  fclose(in);
  fclose(out);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* A folder of real films (JPEG incl. an RGB one, PNG, DICOM in a subfolder), a truncated JPEG, a
 * non-film with a film's name, and notes that must be skipped quietly. */
static int setup(void **s) {
  (void)s;
  const char *tmp = ps_test_tmpdir();
  snprintf(folder, sizeof folder, "%s/films", tmp);
  if (ps_test_system("mkdir -p '%s/dicom'", folder)) return -1;
  const char *films[] = {"kaggle/NORMAL/IM-0117-0001.jpeg", "kaggle/NORMAL/IM-0129-0001.jpeg",
                         "kaggle/PNEUMONIA/person1018_virus_1706.jpeg", "kaggle/PNEUMONIA/person1026_bacteria_2957.jpeg",
                         "png/nih_00000001_000.png", "png/nih_00027426_000.png"};
  for (size_t i = 0; i < sizeof films / sizeof *films; i++) {
    const char *b = strrchr(films[i], '/') + 1;
    char *dst = ps_test_join(folder, b);
    copy_prefix(ps_test_data(films[i]), dst, -1);
    free(dst);
  }
  /* An RGB Kermany JPEG (3 components), found from the manifest. */
  int es = -1;
  char *rgb = ps_test_capture(&es, "awk -F, '$7==3 {print $1; exit}' '%s'", ps_test_data("kaggle/manifest.csv"));
  if (rgb && *rgb) {
    rgb[strcspn(rgb, "\n")] = 0;
    char rel[512];
    snprintf(rel, sizeof rel, "kaggle/%s", rgb);
    char *dst = ps_test_join(folder, "rgb_film.jpeg");
    copy_prefix(ps_test_data(rel), dst, -1);
    free(dst);
  }
  free(rgb);
  const char *dcm[] = {"dicom/siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
                       "dicom/gcp_dicom_00000001_000.dcm", "dicom/CR-MONO1-10-chest.dcm"};
  for (size_t i = 0; i < sizeof dcm / sizeof *dcm; i++) {
    char dst[1200];
    snprintf(dst, sizeof dst, "%s/dicom/%s", folder, strrchr(dcm[i], '/') + 1);
    copy_prefix(ps_test_data(dcm[i]), dst, -1);
  }
  char *p = ps_test_join(folder, "bad_truncated.jpeg");
  copy_prefix(ps_test_data("kaggle/NORMAL/IM-0117-0001.jpeg"), p, 3000);
  free(p);
  p = ps_test_join(folder, "bad_notafilm.png");
  write_text(p, "this is not a film at all, just text with a .png name\n");
  free(p);
  p = ps_test_join(folder, "notes.txt");
  write_text(p, "reading notes\n");
  free(p);
  p = ps_test_join(folder, "labels.json");
  write_text(p, "{}\n");
  free(p);
  /* Random-weight models (the bundled one is trained later): binary with threshold 0.45, 3-class. */
  snprintf(model2, sizeof model2, "%s/binary.safetensors", tmp);
  snprintf(model3, sizeof model3, "%s/multi.safetensors", tmp);
  ps_model *m = NULL;
  if (ps_model_create(2, PS_DEVICE_CPU, 11, &m)) return -1;
  ps_model_meta mm = *ps_model_meta_get(m);
  mm.threshold = 0.45;
  if (ps_model_set_meta(m, &mm) || ps_model_save(m, model2, NULL)) return -1;
  ps_model_free(m);
  if (ps_model_create(3, PS_DEVICE_CPU, 12, &m) || ps_model_save(m, model3, NULL)) return -1;
  ps_model_free(m);
  return 0;
}

static int have_py(void) {
  static int cached = -1;
  if (cached < 0) cached = ps_test_have_python("torch,torchvision,numpy,PIL,pydicom");
  return cached;
}

static void run_and_check(const char *model, int csv) {
  PS_TEST_SKIP_UNLESS(have_py(), PS_PYTHON " lacks torch/torchvision/pydicom");
  char json[1200], csvp[1200], err[1200];
  snprintf(json, sizeof json, "%s/out_%d.json", ps_test_tmpdir(), csv);
  snprintf(csvp, sizeof csvp, "%s/out_%d.csv", ps_test_tmpdir(), csv);
  snprintf(err, sizeof err, "%s/err_%d.txt", ps_test_tmpdir(), csv);
  /* Bad films make the exit status 1, and the other films are still classified. */
  int rc = ps_test_system("'%s' classify --model '%s' --json --batch 3 --threads 2 '%s' > '%s' 2> '%s'", PS_CLI, model,
                          folder, json, err);
  assert_int_equal(rc, 1);
  int es = -1;
  char *e = ps_test_capture(&es, "cat '%s'", err);
  print_message("stderr: %s", e);
  assert_non_null(strstr(e, "bad_truncated.jpeg"));
  assert_non_null(strstr(e, "bad_notafilm.png"));
  assert_non_null(strstr(e, "2 of 12 films failed"));
  assert_null(strstr(e, "notes.txt"));
  free(e);
  if (csv) {
    rc = ps_test_system("'%s' classify --model '%s' --csv --batch 5 '%s' > '%s' 2>/dev/null", PS_CLI, model, folder, csvp);
    assert_int_equal(rc, 1);
  }
  rc = ps_test_system("'%s' '%s' '%s' '%s' '%s' %s", PS_PYTHON, ps_test_src("tests/ref/model_classify_check.py"), model,
                      folder, json, csv ? csvp : "");
  assert_int_equal(rc, 0);
}

static void test_binary_json_csv(void **s) {
  (void)s;
  run_and_check(model2, 1);
}

static void test_multiclass_json(void **s) {
  (void)s;
  run_and_check(model3, 0);
}

/* classify --shard K/N: the shards in order are the one run, byte for byte (CSV: one header;
 * JSON: the arrays joined, checked by Python's json), whatever the environment names the shard
 * by (explicit, RANK/WORLD_SIZE, a SLURM job array counted from 1); bad shards are usage errors. */
static void test_shards(void **s) {
  (void)s;
  const char *tmp = ps_test_tmpdir();
  int es = -1;
  char *one = ps_test_capture(&es, "'%s' classify --model '%s' --csv --batch 2 '%s' 2>/dev/null", PS_CLI, model2, folder);
  assert_int_equal(es, 1); /* the folder holds a truncated JPEG: an error row */
  assert_int_equal(ps_test_system("rm -f '%s'/shard*", tmp), 0);
  for (int k = 1; k <= 3; k++) {
    int rc = ps_test_system("'%s' classify --model '%s' --csv --batch 2 --shard %d/3 '%s' > '%s/shard%d.csv' 2>/dev/null",
                            PS_CLI, model2, k, folder, tmp, k);
    assert_true(rc == 0 || rc == 1);
    rc = ps_test_system("'%s' classify --model '%s' --json --batch 2 --shard %d/3 '%s' > '%s/shard%d.json' 2>/dev/null",
                        PS_CLI, model2, k, folder, tmp, k);
    assert_true(rc == 0 || rc == 1);
  }
  char *joined = ps_test_capture(&es, "cd '%s' && head -1 shard1.csv && tail -q -n +2 shard1.csv shard2.csv shard3.csv", tmp);
  assert_int_equal(es, 0);
  assert_string_equal(joined, one);
  int rows = 0;
  for (char *c = one; *c; c++) rows += *c == '\n';
  print_message("3 shards = one run: %d CSV rows, byte for byte\n", rows - 1);
  free(joined);
  /* every shard non-empty here, and the same films as the one run's JSON, once each */
  assert_int_equal(ps_test_system("'%s' classify --model '%s' --json --batch 2 '%s' > '%s/one.json' 2>/dev/null", PS_CLI,
                                  model2, folder, tmp),
                   1);
  assert_int_equal(ps_test_system("cd '%s' && '%s' -c 'import json; s = [json.load(open(\"shard%%d.json\" %% k)) for k in (1, 2, "
                                  "3)]; assert all(s), s; assert sum(s, []) == json.load(open(\"one.json\"))'",
                                  tmp, PS_PYTHON),
                   0);
  /* the shard from the environment */
  char *auto1 = ps_test_capture(&es, "RANK=1 WORLD_SIZE=3 '%s' classify --model '%s' --csv --batch 2 --shard auto '%s' 2>/dev/null",
                                PS_CLI, model2, folder);
  char *want = ps_test_capture(&es, "cat '%s/shard2.csv'", tmp);
  assert_string_equal(auto1, want);
  free(auto1);
  free(want);
  auto1 = ps_test_capture(&es, "env -u RANK -u WORLD_SIZE SLURM_ARRAY_TASK_ID=3 SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_MIN=1 "
                          "'%s' classify --model '%s' --csv --batch 2 --shard auto '%s' 2>/dev/null",
                          PS_CLI, model2, folder);
  want = ps_test_capture(&es, "cat '%s/shard3.csv'", tmp);
  assert_string_equal(auto1, want);
  free(auto1);
  free(want);
  ps_test_expect(1, "RANK/WORLD_SIZE", "env -u RANK -u WORLD_SIZE -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_COUNT "
                 "'%s' classify --model '%s' --shard auto '%s' 2>&1", PS_CLI, model2, folder);
  const char *bad[] = {"0/3", "4/3", "1/0", "x", "1/3x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ps_test_expect(2, "--shard", "'%s' classify --model '%s' --shard '%s' '%s' 2>&1", PS_CLI, model2, bad[i], folder);
  free(one);
}

static void test_table_and_errors(void **s) {
  (void)s;
  int es = -1;
  char *film = ps_test_join(folder, "IM-0117-0001.jpeg");
  char *out = ps_test_capture(&es, "'%s' classify --model '%s' '%s' 2>&1", PS_CLI, model2, film);
  print_message("%s", out);
  assert_int_equal(es, 0);
  assert_non_null(strstr(out, "P(PNEUMONIA)"));
  assert_non_null(strstr(out, "IM-0117-0001.jpeg"));
  /* the table says which model decided and at which threshold (the metadata's, not 0.5) */
  char line[256];
  snprintf(line, sizeof line, "binary.safetensors: PNEUMONIA when P(PNEUMONIA) >= 0.45, else NORMAL");
  assert_non_null(strstr(out, line));
  free(out);
  /* Without --model or $PNEUMOSCOPE_MODEL, from any working folder: the bundled model. */
  ps_test_expect(0, "sample_data/models/pneumoscope-binary.safetensors: PNEUMONIA when", "cd / && env -u PNEUMOSCOPE_MODEL '%s' classify '%s' 2>&1", PS_CLI, film);
  /* CUDA on a machine without it: a clear error, exit 1. */
  if (!ps_torch_cuda_available()) {
    ps_test_expect(1, "CUDA requested but not available", "'%s' classify --model '%s' --device cuda '%s' 2>&1", PS_CLI, model2, film);
  } else {
    out = ps_test_capture(&es, "'%s' classify --model '%s' --device cuda --json '%s' 2>&1", PS_CLI, model2, film);
    assert_int_equal(es, 0);
    free(out);
  }
  /* Default model: $PNEUMOSCOPE_MODEL is used, and a missing one is a clear error. */
  ps_test_expect(0, "\"VIRUS\"", "PNEUMOSCOPE_MODEL='%s' '%s' classify --json '%s' 2>&1", model3, PS_CLI, film);
  ps_test_expect(1, "PNEUMOSCOPE_MODEL", "PNEUMOSCOPE_MODEL=/nonexistent/model.safetensors '%s' classify '%s' 2>&1", PS_CLI, film);
  /* A model file that is not a model: clear error naming it. */
  ps_test_expect(1, "IM-0117-0001.jpeg", "'%s' classify --model '%s' '%s' 2>&1", PS_CLI, film, film);
  /* Usage errors are status 2. */
  assert_int_equal(ps_test_system("'%s' classify --batch 0 x 2>/dev/null", PS_CLI), 2);
  assert_int_equal(ps_test_system("'%s' classify --device tpu x 2>/dev/null", PS_CLI), 2);
  assert_int_equal(ps_test_system("'%s' classify 2>/dev/null", PS_CLI), 2);
  free(film);
}

typedef struct seen {
  int n, last, failed, cancel_after;
} seen;

static int on_result(const ps_infer_result *r, void *user) {
  seen *s = user;
  assert_true(r->index == s->last + 1);
  s->last = r->index;
  s->n++;
  if (r->status != PS_OK) {
    s->failed++;
    assert_non_null(strstr(r->error, r->file));
    assert_null(r->meta);
  } else {
    assert_non_null(r->meta);
    assert_true(r->label >= 0 && r->label < r->num_classes);
  }
  return s->cancel_after && s->n >= s->cancel_after;
}

static void test_api(void **s) {
  (void)s;
  char **files = NULL;
  int nf = 0;
  const char *paths[] = {folder, "/nonexistent/film.dcm"};
  assert_ok(ps_infer_collect(paths, 2, &files, &nf), "collect");
  assert_int_equal(nf, 13); /* 12 in the folder (notes.txt, labels.json skipped) + the missing one */
  for (int i = 1; i < nf - 1; i++) assert_true(strcmp(files[i - 1], files[i]) < 0 || strstr(files[i], "/dicom/"));
  ps_infer_list_free(files, nf);
  assert_int_equal(ps_infer_skip_name("a/b/notes.TXT"), 1);
  assert_int_equal(ps_infer_skip_name("a/.DS_Store"), 1);
  assert_int_equal(ps_infer_skip_name("a/b/film.dcm"), 0);
  assert_int_equal(ps_infer_skip_name("a/b/IM0001"), 0);

  ps_model *m = NULL;
  assert_ok(ps_model_load(model2, PS_DEVICE_CPU, &m), "load");
  seen sn = {0, -1, 0, 0};
  int nfailed = -1;
  ps_infer_opts o = {0};
  o.batch = 4;
  o.threads = 3;
  assert_ok(ps_infer_run(m, paths, 2, &o, on_result, &sn, &nfailed), "run");
  assert_int_equal(sn.n, 13);
  assert_int_equal(nfailed, 3);
  assert_int_equal(sn.failed, 3);
  /* Same films one at a time give the same probabilities as batched (batch 1 vs 4). */
  float p1[2];
  int lab;
  char *film = ps_test_join(folder, "nih_00000001_000.png");
  assert_ok(ps_infer_file(m, film, NULL, p1, &lab), "infer_file");
  assert_true(p1[0] + p1[1] > 0.99999f && p1[0] + p1[1] < 1.00001f);
  /* Cancel from the callback. */
  seen sc = {0, -1, 0, 5};
  assert_int_equal(ps_infer_run(m, paths, 2, &o, on_result, &sc, &nfailed), PS_ECANCELLED);
  assert_int_equal(sc.n, 5);
  assert_int_equal(ps_infer_run(m, paths, 2, NULL, NULL, NULL, NULL), PS_EINVAL);
  free(film);
  ps_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_api),
      cmocka_unit_test(test_table_and_errors),
      cmocka_unit_test(test_shards),
      cmocka_unit_test(test_binary_json_csv),
      cmocka_unit_test(test_multiclass_json),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
