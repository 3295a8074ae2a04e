/* Training on real Kermany films (../shared/data/kaggle), kept small for CI (size 64, tens of films):
 * the loss falls, best/last checkpoints round-trip, --resume continues, the cache is reused, a leaky
 * split is refused, cancelling leaves a loadable model and a resumable checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "ps_model.h"
#include "ps_preprocess.h"
#include "ps_image_io.h"
#include "ps_torch.h"
#include "ps_train.h"
#include "test_util.h"

static char *g_manifest; /* patient split of all 651 films, made by `pneumoscope split` */
static char *g_cache;    /* --cache shared by most tests (decoded once); test_resume uses its own */
static char g_log[1 << 16];

static void capture_log(ps_log_level level, const char *msg, void *user) {
  (void)level;
  (void)user;
  size_t n = strlen(g_log);
  snprintf(g_log + n, sizeof g_log - n, "%s\n", msg);
}

static int setup(void **state) {
  (void)state;
  const char *tmp = ps_test_tmpdir();
  char *split = ps_test_join(tmp, "split");
  int rc = ps_test_system("'%s' split '%s' -o '%s' --seed 7 --task multiclass >/dev/null", PS_CLI, ps_test_data("kaggle"), split);
  if (rc != 0) {
    fprintf(stderr, "pneumoscope split failed (%d)\n", rc);
    return -1;
  }
  g_manifest = ps_test_join(split, "manifest.csv");
  g_cache = ps_test_join(tmp, "shared-cache-64.pscache");
  free(split);
  ps_log_set(capture_log, NULL);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  free(g_manifest);
  free(g_cache);
  return 0;
}

static ps_train_opts small_opts(const char *outdir) {
  ps_train_opts o;
  memset(&o, 0, sizeof o);
  o.manifest = g_manifest;
  o.outdir = outdir;
  o.size = 64;
  o.batch = 8;
  o.limit = 32;
  o.threads = 2;
  o.device = PS_TRAIN_DEVICE_CPU;
  o.seed = 3;
  o.cache = g_cache;
  return o;
}

/* history.json "epoch" values in order (read by jansson); returns how many, -1 when unreadable. */
static int read_history_epochs(const char *outdir, int *epochs, double *train_loss, int cap) {
  char *p = ps_test_join(outdir, "history.json");
  json_t *h = json_load_file(p, 0, NULL);
  free(p);
  if (!h) return -1;
  json_t *e;
  size_t k;
  json_array_foreach(json_object_get(h, "epochs"), k, e) {
    if ((int)k >= cap) break;
    epochs[k] = (int)json_integer_value(json_object_get(e, "epoch"));
    json_t *tl = json_object_get(e, "train_loss");
    train_loss[k] = json_is_number(tl) ? json_number_value(tl) : NAN;
  }
  int n = (int)json_array_size(json_object_get(h, "epochs"));
  json_decref(h);
  return n < cap ? n : cap;
}

/* A fixed batch of real films (first of the kaggle folder) at size S, for logits comparisons. */
static float *fixed_input(int S, int n) {
  static const char *films[] = {"kaggle/NORMAL/IM-0117-0001.jpeg", "kaggle/PNEUMONIA/person1026_bacteria_2957.jpeg",
                                "kaggle/PNEUMONIA/person1026_virus_1718.jpeg"};
  float *x = malloc(sizeof(float) * 3 * S * S * n);
  for (int i = 0; i < n; i++) {
    ps_image *img = NULL;
    assert_int_equal(ps_image_read(ps_test_data(films[i % 3]), NULL, &img), PS_OK);
    assert_int_equal(ps_preprocess_tensor(img, S, x + (size_t)i * 3 * S * S), PS_OK);
    ps_image_free(img);
  }
  return x;
}

static void test_loss_falls_and_outputs(void **state) {
  (void)state;
  char *out = ps_test_join(ps_test_tmpdir(), "loss");
  ps_train_opts o = small_opts(out);
  o.epochs = 5;
  o.patience = -1;
  o.no_augment = 1; /* a fixed training set: the loss of a working optimiser must fall */
  ps_train_result r;
  g_log[0] = 0;
  int st = ps_train_run(&o, NULL, NULL, &r);
  if (st) print_message("%s\n", ps_last_error());
  assert_int_equal(st, PS_OK);
  assert_int_equal(r.epochs_run, 5);
  assert_int_equal(r.n_train, 32);
  int ep[16];
  double tl[16];
  assert_int_equal(read_history_epochs(out, ep, tl, 16), 5);
  for (int i = 0; i < 5; i++) assert_int_equal(ep[i], i + 1);
  double first = (tl[0] + tl[1]) / 2, last = (tl[3] + tl[4]) / 2;
  print_message("train loss epochs 1-2 %.4f, epochs 4-5 %.4f\n", first, last);
  assert_true(isfinite(first) && isfinite(last));
  assert_true(last < 0.8 * first);
  /* outputs exist; the model carries its threshold and provenance */
  assert_true(ps_test_file_size(g_cache) > 0);
  const char *files[] = {"best.safetensors", "last.ckpt", "history.json", "history.csv"};
  for (int i = 0; i < 4; i++) {
    char *p = ps_test_join(out, files[i]);
    assert_true(ps_test_file_size(p) > 0);
    free(p);
  }
  char *best = ps_test_join(out, "best.safetensors");
  ps_model *m = NULL;
  assert_int_equal(ps_model_load(best, PS_DEVICE_CPU, &m), PS_OK);
  const ps_model_meta *meta = ps_model_meta_get(m);
  assert_int_equal(meta->task, PS_TASK_BINARY);
  assert_int_equal(meta->num_classes, 2);
  assert_string_equal(meta->classes[1], "PNEUMONIA");
  assert_int_equal(meta->input_size, 64);
  assert_true(meta->threshold >= 0 && meta->threshold <= 1);
  assert_true(fabs(meta->threshold - r.threshold) < 1e-6);
  assert_non_null(strstr(meta->provenance, "Youden"));
  assert_non_null(strstr(meta->provenance, "manifest.csv"));
  ps_model_free(m);
  free(best);
  free(out);
}

/* One epoch: best == the model at the end of epoch 1 == last.ckpt. Both files, written by different
 * code (safetensors / checkpoint), must give the same logits. */
static void test_checkpoints_round_trip(void **state) {
  (void)state;
  char *out = ps_test_join(ps_test_tmpdir(), "roundtrip");
  ps_train_opts o = small_opts(out);
  o.epochs = 1;
  ps_train_result r;
  assert_int_equal(ps_train_run(&o, NULL, NULL, &r), PS_OK);
  assert_int_equal(r.best_epoch, 1);
  char *best = ps_test_join(out, "best.safetensors"), *last = ps_test_join(out, "last.ckpt");
  ps_model *a = NULL, *b = NULL;
  assert_int_equal(ps_model_load(best, PS_DEVICE_CPU, &a), PS_OK);
  assert_int_equal(ps_train_checkpoint_load(last, PS_TRAIN_DEVICE_CPU, &b), PS_OK);
  const int S = 64, n = 3;
  float *x = fixed_input(S, n);
  float la[6], lb[6];
  assert_int_equal(ps_model_predict(a, x, n, S, S, la, NULL), PS_OK);
  assert_int_equal(ps_model_predict(b, x, n, S, S, lb, NULL), PS_OK);
  for (int i = 0; i < 2 * n; i++) {
    assert_true(isfinite(la[i]));
    assert_float_equal(la[i], lb[i], 1e-4 * (1 + fabsf(la[i])));
  }
  /* a different model gives different logits: the comparison can fail */
  ps_model *c = NULL;
  assert_int_equal(ps_model_create(2, PS_DEVICE_CPU, 99, &c), PS_OK);
  float lc[6];
  assert_int_equal(ps_model_predict(c, x, n, S, S, lc, NULL), PS_OK);
  double diff = 0;
  for (int i = 0; i < 2 * n; i++) diff += fabs(lc[i] - la[i]);
  assert_true(diff > 1e-3);
  ps_model_free(a), ps_model_free(b), ps_model_free(c);
  free(x), free(best), free(last), free(out);
}

static long mtime_ns(const char *p) {
  struct stat sb;
  if (stat(p, &sb) != 0) return -1;
  return (long)sb.st_mtim.tv_sec * 1000000000L + sb.st_mtim.tv_nsec;
}

/* 2 epochs, then --resume to 4: history holds epochs 1..4 (not a restart), the cache is not rebuilt. */
static void test_resume_and_cache_reuse(void **state) {
  (void)state;
  char *out = ps_test_join(ps_test_tmpdir(), "resume");
  ps_train_opts o = small_opts(out);
  o.cache = NULL; /* the default: OUTDIR/cache-64.pscache */
  o.limit = 24;
  o.epochs = 2;
  o.patience = -1;
  ps_train_result r;
  assert_int_equal(ps_train_run(&o, NULL, NULL, &r), PS_OK);
  assert_int_equal(r.cache_built, 1);
  char *cache = ps_test_join(out, "cache-64.pscache");
  long t0 = mtime_ns(cache);
  assert_true(t0 > 0);
  o.epochs = 4;
  o.resume = 1;
  g_log[0] = 0;
  assert_int_equal(ps_train_run(&o, NULL, NULL, &r), PS_OK);
  assert_int_equal(r.cache_built, 0);
  assert_non_null(strstr(g_log, "cache reused"));
  assert_null(strstr(g_log, "building cache"));
  assert_non_null(strstr(g_log, "resumed from"));
  assert_true(mtime_ns(cache) == t0);
  int ep[16];
  double tl[16];
  assert_int_equal(read_history_epochs(out, ep, tl, 16), 4);
  for (int i = 0; i < 4; i++) assert_int_equal(ep[i], i + 1);
  assert_int_equal(r.epochs_run, 4);
  /* a resume with a different size is refused, naming the mismatch */
  o.size = 96;
  o.epochs = 5;
  assert_int_equal(ps_train_run(&o, NULL, NULL, &r), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "size"));
  /* and so is one with other training options (here the crop): both recipes are named */
  o.size = 64;
  o.crop_min = 0.9;
  assert_int_equal(ps_train_run(&o, NULL, NULL, &r), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "crop 0.8-1"));
  assert_non_null(strstr(ps_last_error(), "crop 0.9-1"));
  assert_int_equal(read_history_epochs(out, ep, tl, 16), 4); /* nothing was run */
  /* a checkpoint from before the options were kept (version 1: no options block) still resumes,
   * with a warning that they were not checked */
  char *last = ps_test_join(out, "last.ckpt");
  size_t len = 0;
  unsigned char *ck = (unsigned char *)ps_test_read_file(last, &len);
  assert_non_null(ck);
  uint32_t ver, rlen;
  memcpy(&ver, ck + 8, 4);
  assert_int_equal(ver, 2);
  memcpy(&rlen, ck + 44, 4); /* magic 8, version 4, eight int32 */
  assert_true(rlen > 0 && 48 + rlen < len);
  ver = 1;
  memcpy(ck + 8, &ver, 4);
  memmove(ck + 44, ck + 48 + rlen, len - 48 - rlen);
  FILE *f = fopen(last, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(ck, 1, len - 4 - rlen, f), len - 4 - rlen);
  fclose(f);
  g_log[0] = 0;
  assert_int_equal(ps_train_run(&o, NULL, NULL, &r), PS_OK);
  assert_non_null(strstr(g_log, "predates checkpoints that keep their options"));
  assert_int_equal(read_history_epochs(out, ep, tl, 16), 5);
  free(ck), free(last), free(cache), free(out);
}

/* The manifest the tests train on is leakage-free (audited by `pneumoscope split --audit-only`), and a
 * manifest with one patient in two splits is refused. */
static void test_leaky_split_refused(void **state) {
  (void)state;
  assert_int_equal(ps_test_system("'%s' split --audit-only '%s' >/dev/null", PS_CLI, g_manifest), 0);
  /* move one film of a patient with several films to another split */
  char *leaky = ps_test_join(ps_test_tmpdir(), "leaky.csv");
  FILE *in = fopen(g_manifest, "r"), *outf = fopen(leaky, "w");
  assert_non_null(in);
  assert_non_null(outf);
  char line[4096], first_patient_line[4096] = "";
  int done = 0;
  while (fgets(line, sizeof line, in)) {
    /* person1026 has two films (bacteria_2957 and virus_1718) */
    if (!done && strstr(line, "person1026_virus_1718.jpeg")) {
      char *p = strstr(line, ",train,");
      if (!p) p = strstr(line, ",val,");
      if (!p) p = strstr(line, ",test,");
      assert_non_null(p);
      const char *other = strncmp(p, ",train,", 7) == 0 ? ",test," : ",train,";
      char rest[4096];
      snprintf(rest, sizeof rest, "%s", strchr(p + 1, ',') + 1);
      snprintf(p, sizeof line - (p - line), "%s%s", other, rest);
      done = 1;
    }
    fputs(line, outf);
  }
  (void)first_patient_line;
  fclose(in), fclose(outf);
  assert_true(done);
  /* the split itself agrees that it leaks */
  assert_int_equal(ps_test_system("'%s' split --audit-only '%s' >/dev/null 2>&1", PS_CLI, leaky), 3);
  char *out = ps_test_join(ps_test_tmpdir(), "leaky");
  ps_train_opts o = small_opts(out);
  o.manifest = leaky;
  o.epochs = 1;
  assert_int_equal(ps_train_run(&o, NULL, NULL, NULL), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "leaks"));
  free(leaky), free(out);
}

/* Cancels at the first progress call whose text starts with prefix ("epoch 2/" = a batch of epoch 2). */
static int cancel_at(double fraction, const char *what, void *user) {
  (void)fraction;
  const char *prefix = user;
  return what && strncmp(what, prefix, strlen(prefix)) == 0;
}

/* Cancel inside epoch 1: PS_ECANCELLED, best.safetensors loadable. Cancel inside epoch 2:
 * last.ckpt holds epoch 1 and --resume continues with epoch 2 (history 1, 2, 3). */
static void test_cancel(void **state) {
  (void)state;
  char *cache = strdup(g_cache); /* --cache: shared by both runs */
  char *out1 = ps_test_join(ps_test_tmpdir(), "cancel1"), *out2 = ps_test_join(ps_test_tmpdir(), "cancel2");
  ps_train_opts o = small_opts(out1);
  o.cache = cache;
  o.epochs = 3;
  o.patience = -1;
  ps_train_result r;
  assert_int_equal(ps_train_run(&o, cancel_at, "epoch 1/", &r), PS_ECANCELLED);
  assert_non_null(strstr(ps_last_error(), "cancel"));
  assert_true(ps_test_file_size(cache) > 0);
  assert_int_equal(r.cache_built, 0); /* built by an earlier test */
  char *best1 = ps_test_join(out1, "best.safetensors"), *last1 = ps_test_join(out1, "last.ckpt");
  ps_model *m = NULL;
  assert_int_equal(ps_model_load(best1, PS_DEVICE_CPU, &m), PS_OK);
  ps_model_free(m);
  m = NULL;
  assert_true(ps_test_file_size(last1) < 0); /* no epoch finished: nothing to resume */
  char *default_cache = ps_test_join(out1, "cache-64.pscache");
  assert_true(ps_test_file_size(default_cache) < 0); /* --cache named: nothing written in OUTDIR */

  o.outdir = out2;
  assert_int_equal(ps_train_run(&o, cancel_at, "epoch 2/", &r), PS_ECANCELLED);
  assert_int_equal(r.cache_built, 0);
  char *best2 = ps_test_join(out2, "best.safetensors");
  assert_int_equal(ps_model_load(best2, PS_DEVICE_CPU, &m), PS_OK);
  ps_model_free(m);
  int ep[16];
  double tl[16];
  assert_int_equal(read_history_epochs(out2, ep, tl, 16), 1);
  o.resume = 1;
  assert_int_equal(ps_train_run(&o, NULL, NULL, &r), PS_OK);
  assert_int_equal(read_history_epochs(out2, ep, tl, 16), 3);
  for (int i = 0; i < 3; i++) assert_int_equal(ep[i], i + 1);
  free(cache), free(out1), free(out2), free(best1), free(last1), free(best2), free(default_cache);
}

/* train --finetune: a trained model of the same classes keeps its fc (with a learning rate of 1e-9
 * the fine-tuned fc equals the bundled one to 1e-6, read back by torch), --init draws a new fc, and
 * a model of other classes is refused naming both class lists. */
static void test_finetune_keeps_fc(void **state) {
  (void)state;
  char bundled[4096];
  assert_int_equal(ps_model_resolve("binary", bundled, sizeof bundled), PS_OK);
  const char *modes[] = {"finetune", "init"};
  for (int k = 0; k < 2; k++) {
    char name[32];
    snprintf(name, sizeof name, "ft-%s", modes[k]);
    char *out = ps_test_join(ps_test_tmpdir(), name);
    ps_train_opts o = small_opts(out);
    o.epochs = 1;
    o.limit = 16;
    o.lr = 1e-9;
    o.init = bundled;
    o.init_keep_fc = k == 0;
    assert_int_equal(ps_train_run(&o, NULL, NULL, NULL), PS_OK);
    char *best = ps_test_join(out, "best.safetensors");
    int rc = ps_test_system("'%s' -c 'import sys; sys.path.insert(0, sys.argv[1]); import safetensors_io as s; "
                            "a = s.load(sys.argv[2])[0][\"fc.weight\"].float(); b = s.load(sys.argv[3])[0][\"fc.weight\"].float(); "
                            "d = (a - b).abs().max().item(); print(\"max |fc - bundled fc| = %%.3g\" %% d); "
                            "sys.exit(0 if (d <= 1e-6) == (sys.argv[4] == \"1\") else 1)' '%s' '%s' '%s' %d",
                            PS_PYTHON, ps_test_src("tests/ref"), best, bundled, k == 0);
    assert_int_equal(rc, 0);
    free(best);
    free(out);
  }
  char *out = ps_test_join(ps_test_tmpdir(), "ft-wrong");
  ps_train_opts o = small_opts(out);
  char tri[4096];
  assert_int_equal(ps_model_resolve("3class", tri, sizeof tri), PS_OK);
  o.init = tri;
  o.init_keep_fc = 1;
  assert_int_equal(ps_train_run(&o, NULL, NULL, NULL), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "NORMAL,BACTERIA,VIRUS"));
  assert_non_null(strstr(ps_last_error(), "NORMAL,PNEUMONIA"));
  free(out);
}

/* max |t - dir/npy| (float tensor on the CPU vs a .npy of the same size) */
static double tensor_vs_npy(const ps_tensor *t, const char *dir, const char *npy) {
  char *p = ps_test_join(dir, npy);
  size_t sh[4];
  int nd = 0;
  double *ref = ps_test_read_npy(p, sh, &nd);
  assert_non_null(ref);
  size_t n = (size_t)ps_tensor_numel(t);
  float *got = malloc(sizeof(float) * n);
  assert_int_equal(ps_tensor_to_data(t, PS_DTYPE_F32, got, n), PS_OK);
  double worst = 0;
  for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(got[i] - ref[i]));
  free(got), free(ref), free(p);
  return worst;
}

/* ps_train_step over two micro-batches (3 and 2 films, gradients accumulated, BatchNorm per
 * micro-batch) = torch's Adam step with the same accumulation (tests/ref/model_reference.py accum):
 * the reference for --accumulate and for data-parallel ranks. One micro-batch of all 5 differs. */
static void test_accumulated_step_matches_torch(void **state) {
  (void)state;
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/accum", ps_test_tmpdir());
  assert_int_equal(ps_test_system("'%s' '%s' accum '%s' 5", PS_PYTHON, ps_test_src("tests/ref/model_reference.py"), dir), 0);
  char *mp = ps_test_join(dir, "model.safetensors"), *xp = ps_test_join(dir, "input.npy");
  size_t sh[4];
  int nd = 0;
  double *xd = ps_test_read_npy(xp, sh, &nd);
  assert_non_null(xd);
  const size_t per = 3 * 64 * 64;
  float *x = malloc(sizeof(float) * 5 * per);
  for (size_t i = 0; i < 5 * per; i++) x[i] = (float)xd[i];
  int64_t lab[5] = {0, 1, 1, 0, 1};
  for (int split = 0; split < 2; split++) { /* 0: micro-batches 3 + 2 (the reference); 1: one of 5 */
    ps_model *m = NULL;
    assert_int_equal(ps_model_load(mp, PS_DEVICE_CPU, &m), PS_OK);
    assert_int_equal(ps_model_set_train(m, 1), PS_OK);
    ps_tensor *params[64];
    int np = ps_model_num_params(m);
    for (int i = 0; i < np; i++) params[i] = ps_model_param(m, i, NULL);
    ps_adam *adam = NULL;
    ps_adam_opts ao = {0};
    ao.lr = 1e-2;
    assert_int_equal(ps_adam_create(&adam, params, np, &ao), PS_OK);
    int n[2] = {split ? 5 : 3, 2}, nmicro = split ? 1 : 2;
    ps_tensor *xt[2] = {0}, *yt[2] = {0};
    for (int j = 0, off = 0; j < nmicro; off += n[j], j++) {
      int64_t xs[4] = {n[j], 3, 64, 64}, ys[1] = {n[j]};
      assert_int_equal(ps_tensor_from_f32(&xt[j], x + (size_t)off * per, xs, 4, PS_DEVICE_CPU), PS_OK);
      assert_int_equal(ps_tensor_from_data(&yt[j], lab + off, PS_DTYPE_I64, ys, 1, PS_DEVICE_CPU), PS_OK);
    }
    double loss = NAN;
    assert_int_equal(ps_train_step(m, adam, xt, yt, n, nmicro, &loss), PS_OK);
    double dfc = tensor_vs_npy(ps_model_fc_weight(m), dir, "fc.npy");
    double dconv = tensor_vs_npy(ps_model_find(m, "conv1.weight"), dir, "conv1.npy");
    double dbn = tensor_vs_npy(ps_model_find(m, "layer4.1.bn2.weight"), dir, "l4bn2.npy");
    char *lp = ps_test_join(dir, "loss.npy");
    double *lref = ps_test_read_npy(lp, sh, &nd);
    print_message("%s: loss %.7f (torch, 3 + 2: %.7f), max |param - torch| fc %.2g conv1 %.2g layer4.1.bn2 %.2g\n",
                  split ? "one micro-batch of 5" : "micro-batches 3 + 2", loss, lref[0], dfc, dconv, dbn);
    if (!split) {
      assert_true(fabs(loss - lref[0]) < 1e-5);
      assert_true(dfc < 1e-5 && dconv < 1e-5 && dbn < 1e-5);
    } else {
      assert_true(dfc > 1e-4 || dconv > 1e-4 || dbn > 1e-4); /* BatchNorm over 5 films is another step */
    }
    free(lp), free(lref);
    for (int j = 0; j < nmicro; j++) ps_tensor_free(xt[j]), ps_tensor_free(yt[j]);
    ps_adam_free(adam);
    ps_model_free(m);
  }
  int n1[1] = {0};
  assert_int_equal(ps_train_step(NULL, NULL, NULL, NULL, n1, 1, NULL), PS_EINVAL);
  free(x), free(xd), free(mp), free(xp);
}

/* --crop: the random resized crop is on by default for binary (0.8-1) and off at 1; the run's loss
 * follows it (the same options twice give the same loss, so the difference is the crop's), and the
 * model's recipe says which. */
static void test_crop_option(void **state) {
  (void)state;
  const double crops[] = {0, 1, 1};
  const char *says[] = {"augmented (crop 0.8-1, jitter)", "augmented (jitter only)", "augmented (jitter only)"};
  double loss[3];
  for (int k = 0; k < 3; k++) {
    char name[32];
    snprintf(name, sizeof name, "crop-%d", k);
    char *out = ps_test_join(ps_test_tmpdir(), name);
    ps_train_opts o = small_opts(out);
    o.epochs = 1;
    o.limit = 16;
    o.crop_min = crops[k];
    assert_int_equal(ps_train_run(&o, NULL, NULL, NULL), PS_OK);
    int ep[2];
    assert_int_equal(read_history_epochs(out, ep, &loss[k], 1), 1);
    char *best = ps_test_join(out, "best.safetensors");
    ps_model *m = NULL;
    assert_int_equal(ps_model_load(best, PS_DEVICE_CPU, &m), PS_OK);
    assert_non_null(strstr(ps_model_meta_get(m)->provenance, says[k]));
    ps_model_free(m);
    free(best), free(out);
  }
  print_message("epoch-1 train loss: crop 0.8-1 %.6f, no crop %.6f and %.6f\n", loss[0], loss[1], loss[2]);
  assert_true(fabs(loss[1] - loss[2]) < 1e-6);
  assert_true(fabs(loss[0] - loss[1]) > 1e-4);
  ps_train_opts o = small_opts("unused");
  o.crop_min = 1.5;
  assert_int_equal(ps_train_run(&o, NULL, NULL, NULL), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "crop scale 1.5"));
  o.crop_min = NAN;
  assert_int_equal(ps_train_run(&o, NULL, NULL, NULL), PS_EINVAL);
}

static void test_bad_input(void **state) {
  (void)state;
  ps_train_opts o;
  memset(&o, 0, sizeof o);
  assert_int_equal(ps_train_run(&o, NULL, NULL, NULL), PS_EINVAL);
  char *out = ps_test_join(ps_test_tmpdir(), "bad");
  o = small_opts(out);
  o.manifest = ps_test_data("kaggle/NORMAL/IM-0117-0001.jpeg"); /* not a manifest */
  int st = ps_train_run(&o, NULL, NULL, NULL);
  assert_true(st != PS_OK);
  assert_true(strlen(ps_last_error()) > 0);
  o = small_opts(out);
  o.batch = 1;
  assert_int_equal(ps_train_run(&o, NULL, NULL, NULL), PS_EINVAL);
  /* the age range: one rule (ps_model_check_ages) for train, stored metadata and the parser */
  o = small_opts(out);
  o.patient_ages[0] = 5, o.patient_ages[1] = 1;
  assert_int_equal(ps_train_run(&o, NULL, NULL, NULL), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "train: patient ages 5-1"));
  const double ok[][2] = {{1, 5}, {0, 0}, {0, 150}, {3, 3}}, bad[][2] = {{5, 1}, {-1, 5}, {1, 151}, {NAN, 5}, {1, NAN}};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) assert_int_equal(ps_model_check_ages(ok[i], "t"), PS_OK);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) assert_int_equal(ps_model_check_ages(bad[i], "t"), PS_EINVAL);
  double ages[2];
  assert_int_equal(ps_model_parse_ages("0-0", ages), PS_EINVAL); /* "unknown" is not a range to type */
  assert_int_equal(ps_model_parse_ages("0.5-12", ages), PS_OK);
  assert_true(ages[0] == 0.5 && ages[1] == 12);
  /* a corrupt checkpoint is refused with a message, not a crash */
  assert_int_equal(ps_test_system("mkdir -p '%s' && printf 'PSCKPT\\0\\0garbage' > '%s/last.ckpt'", out, out), 0);
  o = small_opts(out);
  o.resume = 1;
  o.epochs = 1;
  st = ps_train_run(&o, NULL, NULL, NULL);
  assert_int_equal(st, PS_EFORMAT);
  assert_non_null(strstr(ps_last_error(), "last.ckpt"));
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_crop_option),
      cmocka_unit_test(test_accumulated_step_matches_torch),
      cmocka_unit_test(test_finetune_keeps_fc),
      cmocka_unit_test(test_loss_falls_and_outputs),
      cmocka_unit_test(test_checkpoints_round_trip),
      cmocka_unit_test(test_resume_and_cache_reuse),
      cmocka_unit_test(test_leaky_split_refused),
      cmocka_unit_test(test_cancel),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
