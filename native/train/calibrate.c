/* Temperature scaling and the out-of-distribution detector of a trained model (ps_calibrate.h). */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_calibrate.h"
#include "ps_internal.h"
#include "ps_lung.h"
#include "ps_metrics.h"
#include "ps_model.h"
#include "ps_preprocess.h"
#include "ps_train.h"
#include "train_internal.h"

#define MAX_D PS_MODEL_OOD_MAX_DIM
#define CAL_BATCH 32
#define CAL_BINS 15

ps_calibrate_opts ps_calibrate_opts_default(void) {
  ps_calibrate_opts o;
  memset(&o, 0, sizeof o);
  o.ood_quantile = 0.99;
  o.shrink = 0.01;
  return o;
}

/* Pooled features (n,512) and logits (n,K) of cached films idx (no augmentation). */
static int cached_features(ps_model *m, const uint8_t *pix, int S, const int *idx, int n, unsigned layers, float *feats,
                           float *logits) {
  const int D = ps_model_layers_dim(layers);
  const ps_model_meta *mm = ps_model_meta_get(m);
  const size_t px = (size_t)S * S;
  const int K = ps_model_num_classes(m);
  float *x = malloc(sizeof(float) * 3 * px * CAL_BATCH), *src = malloc(sizeof(float) * px);
  int st = PS_OK;
  if (!x || !src) st = ps_error(PS_ENOMEM, "calibrate: out of memory");
  for (int b0 = 0; !st && b0 < n; b0 += CAL_BATCH) {
    int nb = n - b0 < CAL_BATCH ? n - b0 : CAL_BATCH;
    for (int k = 0; k < nb; k++)
      ps_train_cached_input(pix + (size_t)idx[b0 + k] * px, S, mm->mean, mm->std, NULL, 0, src, NULL, x + (size_t)k * 3 * px);
    st = ps_model_features_layers(m, x, nb, S, S, layers, feats + (size_t)b0 * D, logits + (size_t)b0 * K);
  }
  free(x);
  free(src);
  return st;
}

/* In-place Cholesky of the symmetric positive definite a (n,n) (lower triangle), then its inverse
 * into inv (full, symmetric). */
static int spd_inverse(double *a, int n, double *inv) {
  for (int j = 0; j < n; j++) {
    double d = a[(size_t)j * n + j];
    for (int k = 0; k < j; k++) d -= a[(size_t)j * n + k] * a[(size_t)j * n + k];
    if (!(d > 0)) return ps_error(PS_ESTATE, "calibrate: feature covariance is not positive definite (column %d)", j);
    d = sqrt(d);
    a[(size_t)j * n + j] = d;
    for (int i = j + 1; i < n; i++) {
      double s = a[(size_t)i * n + j];
      for (int k = 0; k < j; k++) s -= a[(size_t)i * n + k] * a[(size_t)j * n + k];
      a[(size_t)i * n + j] = s / d;
    }
  }
  /* inv = L^-T L^-1: solve L y = e_c, then L^T z = y, column by column */
  double *y = malloc(sizeof(double) * n);
  if (!y) return ps_error(PS_ENOMEM, "calibrate: out of memory");
  for (int c = 0; c < n; c++) {
    for (int i = 0; i < n; i++) {
      double s = i == c ? 1.0 : 0.0;
      for (int k = 0; k < i; k++) s -= a[(size_t)i * n + k] * y[k];
      y[i] = s / a[(size_t)i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) {
      double s = y[i];
      for (int k = i + 1; k < n; k++) s -= a[(size_t)k * n + i] * inv[(size_t)k * n + c];
      inv[(size_t)i * n + c] = s / a[(size_t)i * n + i];
    }
  }
  free(y);
  return PS_OK;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* Class means and shared precision of feats (n,512) with labels y; shrink as ps_calibrate_opts. */
static int fit_gaussian(const float *feats, const int *y, int n, int K, int NF, double shrink, float *means,
                        float *prec) {
  double *mu = calloc((size_t)K * NF, sizeof(double)), *cov = calloc((size_t)NF * NF, sizeof(double));
  double *inv = malloc(sizeof(double) * NF * NF), d[MAX_D];
  int count[PS_MODEL_MAX_CLASSES] = {0}, st = PS_OK;
  if (!mu || !cov || !inv) {
    st = ps_error(PS_ENOMEM, "calibrate: out of memory");
    goto done;
  }
  for (int i = 0; i < n; i++) {
    count[y[i]]++;
    for (int c = 0; c < NF; c++) mu[(size_t)y[i] * NF + c] += feats[(size_t)i * NF + c];
  }
  for (int k = 0; k < K; k++) {
    if (count[k] < 1) {
      st = ps_error(PS_EINVAL, "calibrate: no training film of class %d: cannot fit the OOD detector", k);
      goto done;
    }
    for (int c = 0; c < NF; c++) mu[(size_t)k * NF + c] /= count[k];
  }
  for (int i = 0; i < n; i++) {
    for (int c = 0; c < NF; c++) d[c] = feats[(size_t)i * NF + c] - mu[(size_t)y[i] * NF + c];
    for (int r = 0; r < NF; r++) {
      double *row = cov + (size_t)r * NF;
      const double dr = d[r];
      for (int c = 0; c <= r; c++) row[c] += dr * d[c];
    }
  }
  double tr = 0;
  for (int r = 0; r < NF; r++) {
    for (int c = 0; c <= r; c++) cov[(size_t)r * NF + c] = cov[(size_t)c * NF + r] = cov[(size_t)r * NF + c] / n;
    tr += cov[(size_t)r * NF + r];
  }
  /* shrink each feature towards its own variance scale: layers differ in scale by orders of magnitude */
  for (int r = 0; r < NF; r++) cov[(size_t)r * NF + r] += (shrink > 0 ? shrink : 0) * cov[(size_t)r * NF + r] + 1e-9 * (tr / NF + 1e-12);
  if ((st = spd_inverse(cov, NF, inv))) goto done;
  for (size_t i = 0; i < (size_t)K * NF; i++) means[i] = (float)mu[i];
  for (int r = 0; r < NF; r++) /* symmetrise the float copy */
    for (int c = 0; c < NF; c++)
      prec[(size_t)r * NF + c] = (float)(0.5 * (inv[(size_t)r * NF + c] + inv[(size_t)c * NF + r]));
done:
  free(mu);
  free(cov);
  free(inv);
  return st;
}

int ps_calibrate_model(ps_model *m, const uint8_t *pix, int size, const int *train_idx, const int *train_y, int n_train,
                       const int *val_idx, const int *val_y, int n_val, const ps_calibrate_opts *opts,
                       ps_calibrate_result *res) {
  if (!m || !pix || !train_idx || !train_y || !val_idx || !val_y || !res)
    return ps_error(PS_EINVAL, "calibrate: NULL argument");
  if (n_train < 2 || n_val < 2) return ps_error(PS_EINVAL, "calibrate: need >= 2 training and validation films");
  ps_calibrate_opts o = opts ? *opts : ps_calibrate_opts_default();
  double q = o.ood_quantile > 0 ? o.ood_quantile : 0.99, shrink = o.shrink != 0 ? o.shrink : 0.01;
  if (!(q > 0.5 && q <= 1)) return ps_error(PS_EINVAL, "calibrate: OOD quantile %g outside (0.5, 1]", q);
  const int K = ps_model_num_classes(m);
  const unsigned layers = o.ood_layers ? o.ood_layers : PS_CALIBRATE_DEFAULT_LAYERS;
  if (layers > 15u) return ps_error(PS_EINVAL, "calibrate: OOD layers mask %u (1..15)", layers);
  const int NF = ps_model_layers_dim(layers);
  ps_model_meta meta = *ps_model_meta_get(m);
  float *ft = malloc(sizeof(float) * NF * (size_t)n_train), *fv = malloc(sizeof(float) * NF * (size_t)n_val);
  float *lt = malloc(sizeof(float) * K * (size_t)n_train), *lv = malloc(sizeof(float) * K * (size_t)n_val);
  float *pv = malloc(sizeof(float) * K * (size_t)n_val), *means = malloc(sizeof(float) * K * NF);
  float *prec = malloc(sizeof(float) * NF * NF), *sv = malloc(sizeof(float) * (size_t)n_val);
  float *stv = malloc(sizeof(float) * (size_t)n_train);
  int st = PS_OK;
  memset(res, 0, sizeof *res);
  res->n_train = n_train, res->n_val = n_val;
  if (!ft || !fv || !lt || !lv || !pv || !means || !prec || !sv || !stv) {
    st = ps_error(PS_ENOMEM, "calibrate: out of memory");
    goto done;
  }
  if ((st = cached_features(m, pix, size, train_idx, n_train, layers, ft, lt)) ||
      (st = cached_features(m, pix, size, val_idx, n_val, layers, fv, lv)))
    goto done;
  /* temperature: fitted on validation, kept only when it lowers the validation ECE */
  double T_old = meta.temperature > 0 ? meta.temperature : 1.0, T = 1.0;
  ps_model_softmax(lv, n_val, K, 1.0, pv);
  if ((st = ps_metrics_ece(val_y, pv, (size_t)n_val, K, CAL_BINS, &res->ece_before))) goto done;
  res->ece_after = res->ece_before;
  res->temperature_fitted = 1.0;
  if (!o.no_temperature) {
    double Tf, ece;
    if ((st = ps_metrics_fit_temperature(val_y, lv, (size_t)n_val, K, &Tf))) goto done;
    ps_model_softmax(lv, n_val, K, Tf, pv);
    if ((st = ps_metrics_ece(val_y, pv, (size_t)n_val, K, CAL_BINS, &ece))) goto done;
    res->temperature_fitted = Tf;
    if (ece < res->ece_before) T = Tf, res->ece_after = ece;
  }
  if (K == 2) { /* the same decisions on the new scale: P' = sigmoid(z / T) where P = sigmoid(z / T_old) */
    double t = meta.threshold;
    if (t > 0 && t < 1) {
      double z = log(t / (1 - t)) * T_old;
      meta.threshold = 1.0 / (1.0 + exp(-z / T));
    }
  }
  meta.temperature = T;
  if (o.patient_ages[1] > 0) meta.patient_ages[0] = o.patient_ages[0], meta.patient_ages[1] = o.patient_ages[1];
  res->temperature = T, res->threshold = meta.threshold;
  if ((st = ps_model_set_meta(m, &meta))) goto done;
  /* OOD detector: Gaussian fit on training films, threshold from validation films */
  if ((st = fit_gaussian(ft, train_y, n_train, K, NF, shrink, means, prec))) goto done;
  double big = 1e30; /* placeholder threshold to score with the new means/precision */
  if ((st = ps_model_set_ood(m, layers, means, prec, big))) goto done;
  if ((st = ps_model_ood_score(m, fv, n_val, sv)) || (st = ps_model_ood_score(m, ft, n_train, stv))) goto done;
  qsort(sv, (size_t)n_val, sizeof *sv, cmp_float);
  double pos = q * (n_val - 1); /* numpy's default (linear) quantile */
  int lo = (int)floor(pos), hi = lo + 1 < n_val ? lo + 1 : lo;
  double thr = sv[lo] + (pos - lo) * (sv[hi] - sv[lo]);
  if (!(thr > 0)) thr = 1e-6;
  if ((st = ps_model_set_ood(m, layers, means, prec, thr))) goto done;
  int fl = 0;
  for (int i = 0; i < n_val; i++) fl += sv[i] > thr;
  res->val_flagged = (double)fl / n_val;
  fl = 0;
  for (int i = 0; i < n_train; i++) fl += stv[i] > thr;
  res->train_flagged = (double)fl / n_train;
  res->ood_threshold = thr;
done:
  free(ft), free(fv), free(lt), free(lv), free(pv), free(means), free(prec), free(sv), free(stv);
  return st;
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

int ps_calibrate_run(const ps_calibrate_opts *opts, ps_progress_fn progress, void *user, ps_calibrate_result *result) {
  if (!opts || !opts->model || !opts->manifest || !opts->out || !result)
    return ps_error(PS_EINVAL, "calibrate: model, manifest and out are required");
  struct stat a, b;
  if (stat(opts->model, &a) == 0 && stat(opts->out, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    return ps_error(PS_EINVAL, "calibrate: %s is the input model: write the calibrated model to another file",
                    opts->out);
  if (!opts->overwrite && file_exists(opts->out))
    return ps_error(PS_EINVAL, "calibrate: %s exists (choose another name or overwrite it on purpose)", opts->out);
  { /* the output's folder, as train makes its run folder */
    char *dir = strdup(opts->out), *slash = dir ? strrchr(dir, '/') : NULL;
    int mk = PS_OK;
    if (slash && slash != dir) *slash = 0, mk = ps_mkdir_p("calibrate", dir);
    free(dir);
    if (mk) return mk;
  }
  ps_model *m = NULL;
  ps_train_films films;
  memset(&films, 0, sizeof films);
  ps_train_cache_view cv;
  memset(&cv, 0, sizeof cv);
  int *tidx = NULL, *ty = NULL, *vidx = NULL, *vy = NULL, nt = 0, nv = 0, nc = 0, built = 0;
  const char **paths = NULL, **shas = NULL;
  char *cache = NULL;
  int st = ps_model_load(opts->model, PS_DEVICE_CPU, &m);
  if (st) return st;
  const ps_model_meta *mm = ps_model_meta_get(m);
  if ((st = ps_train_films_read(opts->manifest, mm->task, opts->limit, 1, &films))) goto done;
  if (films.count[0] < 2 || films.count[1] < 2) {
    st = ps_error(PS_EINVAL, "calibrate: %s has %d training and %d validation films for the %s task (need >= 2 each)",
                  opts->manifest, films.count[0], films.count[1], ps_train_task_name(mm->task));
    goto done;
  }
  tidx = malloc(sizeof(int) * films.n), ty = malloc(sizeof(int) * films.n);
  vidx = malloc(sizeof(int) * films.n), vy = malloc(sizeof(int) * films.n);
  paths = malloc(sizeof(char *) * films.n), shas = malloc(sizeof(char *) * films.n);
  if (!tidx || !ty || !vidx || !vy || !paths || !shas) {
    st = ps_error(PS_ENOMEM, "calibrate: out of memory");
    goto done;
  }
  for (int i = 0; i < films.n; i++) { /* the cache train builds: train + val rows in manifest order */
    if (films.split[i] > 1) continue;
    paths[nc] = films.paths[i], shas[nc] = films.sha256[i];
    if (films.split[i] == 0) tidx[nt] = nc, ty[nt++] = films.cls[i];
    else vidx[nv] = nc, vy[nv++] = films.cls[i];
    nc++;
  }
  if (opts->cache && *opts->cache) {
    cache = strdup(opts->cache);
  } else {
    char name[64], *dir = strdup(opts->out), *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) *slash = 0;
    ps_train_cache_name(mm->input_size, mm->roi, name, sizeof name);
    cache = dir ? ps__path_join(slash ? dir : ".", name) : NULL;
    free(dir);
  }
  if (!cache) {
    st = ps_error(PS_ENOMEM, "calibrate: out of memory");
    goto done;
  }
  if ((st = ps_train_cache_open(cache, mm->input_size, mm->roi, nc, paths, shas, opts->threads, progress, user, &cv,
                                    &built)))
    goto done;
  if (opts->threads > 0) ps_torch_set_threads(opts->threads);
  if ((st = ps_calibrate_model(m, cv.pixels, mm->input_size, tidx, ty, nt, vidx, vy, nv, opts, result))) goto done;
  ps_model_save_opts so = {opts->save_half ? PS_DTYPE_F16 : PS_DTYPE_F32};
  st = ps_model_save(m, opts->out, &so);
done:
  ps_model_free(m);
  ps_train_films_free(&films);
  ps_train_cache_release(&cv);
  free(tidx), free(ty), free(vidx), free(vy);
  free(paths), free(shas);
  free(cache);
  return st;
}
