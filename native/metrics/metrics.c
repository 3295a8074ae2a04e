/* metrics.c — scikit-learn-compatible classification metrics (see ps_metrics.h). */
#include "ps_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- binary ranking curves (sklearn _binary_clf_curve) ---------------------------------------- */

typedef struct {
  float s;
  int y;
} scored;

static int cmp_desc(const void *a, const void *b) {
  float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
  return (x < y) - (x > y);
}

/* Distinct thresholds in decreasing order with cumulative fps/tps (caller frees *thr *fps *tps). */
static int clf_curve(const int *y, const float *score, size_t n, size_t *m, double **thr, double **fps,
                     double **tps) {
  *thr = *fps = *tps = NULL;
  *m = 0;
  if (!y || !score) return ps_error(PS_EINVAL, "metrics: NULL labels or scores");
  scored *v = malloc((n ? n : 1) * sizeof *v);
  double *t = malloc((n ? n : 1) * sizeof *t), *f = malloc((n ? n : 1) * sizeof *f),
         *p = malloc((n ? n : 1) * sizeof *p);
  if (!v || !t || !f || !p) {
    free(v), free(t), free(f), free(p);
    return ps_error(PS_ENOMEM, "metrics: out of memory for %zu scores", n);
  }
  for (size_t i = 0; i < n; i++) {
    if (isnan(score[i]) || (y[i] != 0 && y[i] != 1)) {
      free(v), free(t), free(f), free(p);
      return ps_error(PS_EINVAL, "metrics: item %zu has %s", i, isnan(score[i]) ? "a NaN score" : "a label not 0/1");
    }
    v[i].s = score[i];
    v[i].y = y[i];
  }
  qsort(v, n, sizeof *v, cmp_desc);
  double tp = 0, fp = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i].y) tp += 1;
    else fp += 1;
    if (i + 1 == n || v[i + 1].s != v[i].s) {
      t[k] = v[i].s;
      f[k] = fp;
      p[k] = tp;
      k++;
    }
  }
  free(v);
  *m = k;
  *thr = t;
  *fps = f;
  *tps = p;
  return PS_OK;
}

int ps_metrics_roc_auc(const int *y, const float *score, size_t n, double *auc) {
  if (!auc) return ps_error(PS_EINVAL, "metrics: NULL output");
  *auc = NAN;
  size_t m;
  double *t, *f, *p;
  int st = clf_curve(y, score, n, &m, &t, &f, &p);
  if (st) return st;
  double P = m ? p[m - 1] : 0, N = m ? f[m - 1] : 0;
  if (P > 0 && N > 0) {
    /* trapezoid over (fpr, tpr) from (0, 0): ties between classes count one half */
    double area = 0, px = 0, py = 0;
    for (size_t i = 0; i < m; i++) {
      area += (f[i] - px) * (p[i] + py) * 0.5;
      px = f[i];
      py = p[i];
    }
    *auc = area / (P * N);
  }
  free(t), free(f), free(p);
  return PS_OK;
}

int ps_metrics_average_precision(const int *y, const float *score, size_t n, double *ap) {
  if (!ap) return ps_error(PS_EINVAL, "metrics: NULL output");
  *ap = NAN;
  size_t m;
  double *t, *f, *p;
  int st = clf_curve(y, score, n, &m, &t, &f, &p);
  if (st) return st;
  double P = m ? p[m - 1] : 0;
  if (P > 0) {
    double sum = 0, prev_r = 0;
    for (size_t i = 0; i < m; i++) {
      double r = p[i] / P, prec = p[i] / (p[i] + f[i]);
      sum += (r - prev_r) * prec;
      prev_r = r;
    }
    *ap = sum;
  }
  free(t), free(f), free(p);
  return PS_OK;
}

int ps_metrics_f1_at(const int *y, const float *score, size_t n, double threshold, double *f1) {
  if (!y || !score || !f1) return ps_error(PS_EINVAL, "metrics: NULL argument");
  double tp = 0, fp = 0, fn = 0;
  for (size_t i = 0; i < n; i++) {
    int pred = score[i] >= threshold;
    if (pred && y[i]) tp++;
    else if (pred) fp++;
    else if (y[i]) fn++;
  }
  *f1 = (2 * tp + fp + fn) > 0 ? 2 * tp / (2 * tp + fp + fn) : 0;
  return PS_OK;
}

int ps_metrics_youden_threshold(const int *y, const float *score, size_t n, double *threshold, double *j) {
  if (!threshold) return ps_error(PS_EINVAL, "metrics: NULL output");
  size_t m;
  double *t, *f, *p;
  int st = clf_curve(y, score, n, &m, &t, &f, &p);
  if (st) return st;
  double P = m ? p[m - 1] : 0, N = m ? f[m - 1] : 0;
  if (P == 0 || N == 0) {
    free(t), free(f), free(p);
    return ps_error(PS_EINVAL, "metrics: Youden threshold needs both classes in the labels (%g positive, %g negative)",
                    P, N);
  }
  double best = -INFINITY, best_t = t[0];
  for (size_t i = 0; i < m; i++) { /* thresholds decrease: >= keeps the lowest among ties */
    double jj = p[i] / P - f[i] / N;
    if (jj >= best) {
      best = jj;
      best_t = t[i];
    }
  }
  *threshold = best_t;
  if (j) *j = best;
  free(t), free(f), free(p);
  return PS_OK;
}

static int curve_alloc(size_t n, ps_curve **out) {
  ps_curve *c = calloc(1, sizeof *c);
  if (!c) return ps_error(PS_ENOMEM, "metrics: out of memory");
  c->n = n;
  c->x = malloc(n * sizeof(double));
  c->y = malloc(n * sizeof(double));
  c->thr = malloc(n * sizeof(double));
  if (!c->x || !c->y || !c->thr) {
    ps_curve_free(c);
    return ps_error(PS_ENOMEM, "metrics: out of memory for a curve of %zu points", n);
  }
  *out = c;
  return PS_OK;
}

void ps_curve_free(ps_curve *c) {
  if (!c) return;
  free(c->x);
  free(c->y);
  free(c->thr);
  free(c);
}

int ps_metrics_roc_curve(const int *y, const float *score, size_t n, ps_curve **out) {
  if (!out) return ps_error(PS_EINVAL, "metrics: NULL output");
  *out = NULL;
  size_t m;
  double *t, *f, *p;
  int st = clf_curve(y, score, n, &m, &t, &f, &p);
  if (st) return st;
  double P = m ? p[m - 1] : 0, N = m ? f[m - 1] : 0;
  ps_curve *c = NULL;
  st = curve_alloc(m + 1, &c);
  if (st == PS_OK) {
    c->x[0] = 0;
    c->y[0] = 0;
    c->thr[0] = INFINITY;
    for (size_t i = 0; i < m; i++) {
      c->x[i + 1] = N > 0 ? f[i] / N : NAN; /* sklearn: nan (with a warning) when a class is absent */
      c->y[i + 1] = P > 0 ? p[i] / P : NAN;
      c->thr[i + 1] = t[i];
    }
    *out = c;
  }
  free(t), free(f), free(p);
  return st;
}

int ps_metrics_pr_curve(const int *y, const float *score, size_t n, ps_curve **out) {
  if (!out) return ps_error(PS_EINVAL, "metrics: NULL output");
  *out = NULL;
  size_t m;
  double *t, *f, *p;
  int st = clf_curve(y, score, n, &m, &t, &f, &p);
  if (st) return st;
  double P = m ? p[m - 1] : 0;
  ps_curve *c = NULL;
  st = curve_alloc(m + 1, &c);
  if (st == PS_OK) {
    for (size_t i = 0; i < m; i++) { /* reversed: thresholds increasing, recall decreasing */
      size_t s = m - 1 - i;
      double ps_ = p[s] + f[s];
      c->y[i] = ps_ > 0 ? p[s] / ps_ : 0;
      c->x[i] = P > 0 ? p[s] / P : 1; /* sklearn: recall 1 everywhere when no positive */
      c->thr[i] = t[s];
    }
    c->x[m] = 0;
    c->y[m] = 1;
    c->thr[m] = NAN;
    *out = c;
  }
  free(t), free(f), free(p);
  return st;
}

int ps_metrics_one_vs_rest(const int *labels, const float *probs, size_t n, int k_classes, int k, int *y_k,
                           float *score_k) {
  if (!labels || !probs || !y_k || !score_k || k < 0 || k >= k_classes)
    return ps_error(PS_EINVAL, "metrics: bad one-vs-rest arguments (class %d of %d)", k, k_classes);
  for (size_t i = 0; i < n; i++) {
    y_k[i] = labels[i] == k;
    score_k[i] = probs[i * (size_t)k_classes + k];
  }
  return PS_OK;
}

/* ---- everything at once ------------------------------------------------------------------------ */

int ps_metrics_compute(const int *labels, const float *probs, size_t n, int k, double threshold, ps_metrics *out) {
  if (!out) return ps_error(PS_EINVAL, "metrics: NULL output");
  memset(out, 0, sizeof *out);
  if (k < 2 || k > PS_METRICS_MAX_CLASSES)
    return ps_error(PS_EINVAL, "metrics: %d classes (need 2..%d)", k, PS_METRICS_MAX_CLASSES);
  if (n > 0 && (!labels || !probs)) return ps_error(PS_EINVAL, "metrics: NULL labels or probabilities");
  for (size_t i = 0; i < n; i++) {
    if (labels[i] < 0 || labels[i] >= k)
      return ps_error(PS_EINVAL, "metrics: label %d of item %zu is outside [0, %d)", labels[i], i, k);
    for (int c = 0; c < k; c++)
      if (isnan(probs[i * k + c])) return ps_error(PS_EINVAL, "metrics: NaN probability at item %zu class %d", i, c);
  }
  out->num_classes = k;
  out->n = n;
  out->threshold = threshold;
  size_t correct = 0;
  for (size_t i = 0; i < n; i++) {
    const float *row = probs + i * k;
    int pred = 0;
    if (k == 2) {
      pred = row[1] >= threshold;
    } else {
      for (int c = 1; c < k; c++)
        if (row[c] > row[pred]) pred = c;
    }
    out->confusion[labels[i] * k + pred]++;
    out->support[labels[i]]++;
    correct += pred == labels[i];
  }
  out->accuracy = n ? (double)correct / n : 0;
  for (int c = 0; c < k; c++) {
    double tp = out->confusion[c * k + c], pred_c = 0, true_c = out->support[c];
    for (int r = 0; r < k; r++) pred_c += out->confusion[r * k + c];
    out->precision[c] = pred_c > 0 ? tp / pred_c : 0;
    out->recall[c] = true_c > 0 ? tp / true_c : 0;
    double pr = out->precision[c] + out->recall[c];
    /* sklearn computes F1 from counts: 2tp / (2tp + fp + fn) */
    out->f1[c] = (pred_c + true_c) > 0 && pr > 0 ? 2 * tp / (pred_c + true_c) : 0;
    out->macro_precision += out->precision[c] / k;
    out->macro_recall += out->recall[c] / k;
    out->macro_f1 += out->f1[c] / k;
    if (n) {
      out->weighted_precision += out->precision[c] * true_c / n;
      out->weighted_recall += out->recall[c] * true_c / n;
      out->weighted_f1 += out->f1[c] * true_c / n;
    }
  }
  if (k == 2) {
    out->sensitivity = out->support[1] ? out->recall[1] : NAN;
    out->specificity = out->support[0] ? out->recall[0] : NAN;
  } else {
    out->sensitivity = out->specificity = NAN;
  }
  out->roc_auc = out->average_precision = NAN;
  if (n == 0) return PS_OK;
  int *yk = malloc(n * sizeof *yk);
  float *sk = malloc(n * sizeof *sk);
  if (!yk || !sk) {
    free(yk), free(sk);
    return ps_error(PS_ENOMEM, "metrics: out of memory");
  }
  int st = PS_OK;
  if (k == 2) {
    ps_metrics_one_vs_rest(labels, probs, n, k, 1, yk, sk);
    if ((st = ps_metrics_roc_auc(yk, sk, n, &out->roc_auc)) == PS_OK)
      st = ps_metrics_average_precision(yk, sk, n, &out->average_precision);
  } else {
    double auc_sum = 0, ap_sum = 0;
    for (int c = 0; c < k && st == PS_OK; c++) {
      double a, p;
      ps_metrics_one_vs_rest(labels, probs, n, k, c, yk, sk);
      if ((st = ps_metrics_roc_auc(yk, sk, n, &a)) == PS_OK) st = ps_metrics_average_precision(yk, sk, n, &p);
      auc_sum += a; /* NAN propagates: undefined when a class has no positive or no negative */
      ap_sum += p;
    }
    out->roc_auc = auc_sum / k;
    out->average_precision = ap_sum / k;
  }
  free(yk), free(sk);
  return st;
}

/* ---- calibration -------------------------------------------------------------------------------- */

#define CALIB_MAX_BINS 1000000

/* Shared argument check; what = "ECE", "reliability" or "temperature" (for the message). */
static int calib_check(const int *labels, const float *v, size_t n, int k, const char *what) {
  if (!labels || !v) return ps_error(PS_EINVAL, "metrics: %s: NULL labels or %s", what, strcmp(what, "temperature") ? "probabilities" : "logits");
  if (n == 0) return ps_error(PS_EINVAL, "metrics: %s: no films (n = 0)", what);
  if (k < 2) return ps_error(PS_EINVAL, "metrics: %s: %d classes (need >= 2)", what, k);
  for (size_t i = 0; i < n; i++)
    if (labels[i] < 0 || labels[i] >= k)
      return ps_error(PS_EINVAL, "metrics: %s: label %d of item %zu is outside [0, %d)", what, labels[i], i, k);
  return PS_OK;
}

/* Per bin: films, summed top-label confidence, films whose argmax is the label. Bin b holds
 * b/B <= confidence < (b+1)/B, a confidence of 1 the last bin (for float32 confidences and
 * B = 15 this equals sklearn calibration_curve's right-closed edges: no float32 is a multiple of
 * 1/15 inside (0, 1)). Argmax ties go to the lowest class index (numpy.argmax). */
static int calib_bins(const int *labels, const float *probs, size_t n, int k, int bins, const char *what,
                      int64_t *count, double *conf_sum, int64_t *correct) {
  int st = calib_check(labels, probs, n, k, what);
  if (st) return st;
  if (bins < 1 || bins > CALIB_MAX_BINS) return ps_error(PS_EINVAL, "metrics: %s: %d bins (need 1..%d)", what, bins, CALIB_MAX_BINS);
  for (int b = 0; b < bins; b++) count[b] = 0, conf_sum[b] = 0, correct[b] = 0;
  for (size_t i = 0; i < n; i++) {
    const float *row = probs + i * (size_t)k;
    int pred = 0;
    for (int c = 0; c < k; c++) {
      if (!(row[c] >= 0.0f && row[c] <= 1.0f))
        return ps_error(PS_EINVAL, "metrics: %s: probability %g at item %zu class %d is not in [0, 1]", what, row[c], i, c);
      if (row[c] > row[pred]) pred = c;
    }
    double conf = row[pred];
    int b = (int)(conf * bins);
    if (b >= bins) b = bins - 1;
    count[b]++;
    conf_sum[b] += conf;
    correct[b] += pred == labels[i];
  }
  return PS_OK;
}

int ps_metrics_reliability(const int *labels, const float *probs, size_t n, int k, int bins, int64_t *count,
                           double *confidence, double *accuracy) {
  if (!count || !confidence || !accuracy) return ps_error(PS_EINVAL, "metrics: reliability: NULL output");
  if (bins < 1 || bins > CALIB_MAX_BINS) return ps_error(PS_EINVAL, "metrics: reliability: %d bins (need 1..%d)", bins, CALIB_MAX_BINS);
  int64_t *correct = malloc((size_t)bins * sizeof *correct);
  if (!correct) return ps_error(PS_ENOMEM, "metrics: out of memory for %d bins", bins);
  int st = calib_bins(labels, probs, n, k, bins, "reliability", count, confidence, correct);
  for (int b = 0; b < bins; b++) {
    if (st == PS_OK && count[b] > 0) {
      accuracy[b] = (double)correct[b] / count[b];
      confidence[b] /= count[b];
    } else {
      if (st) count[b] = 0;
      accuracy[b] = confidence[b] = NAN;
    }
  }
  free(correct);
  return st;
}

int ps_metrics_ece(const int *labels, const float *probs, size_t n, int k, int bins, double *ece) {
  if (!ece) return ps_error(PS_EINVAL, "metrics: ECE: NULL output");
  *ece = NAN;
  if (bins < 1 || bins > CALIB_MAX_BINS) return ps_error(PS_EINVAL, "metrics: ECE: %d bins (need 1..%d)", bins, CALIB_MAX_BINS);
  int64_t *count = malloc((size_t)bins * sizeof *count), *correct = malloc((size_t)bins * sizeof *correct);
  double *conf_sum = malloc((size_t)bins * sizeof *conf_sum);
  int st;
  if (!count || !correct || !conf_sum) {
    st = ps_error(PS_ENOMEM, "metrics: out of memory for %d bins", bins);
    goto fail;
  }
  if ((st = calib_bins(labels, probs, n, k, bins, "ECE", count, conf_sum, correct))) goto fail;
  /* sum_b (n_b / n) |acc_b - conf_b| = sum_b |correct_b - conf_sum_b| / n */
  double sum = 0;
  for (int b = 0; b < bins; b++) sum += fabs((double)correct[b] - conf_sum[b]);
  *ece = sum / n;
fail:
  free(count), free(correct), free(conf_sum);
  return st;
}

/* Mean NLL of softmax(z / T) with T = exp(u); log-sum-exp in double. */
static double nll_at(const int *labels, const float *z, size_t n, int k, double u) {
  double inv_t = exp(-u), sum = 0;
  for (size_t i = 0; i < n; i++) {
    const float *row = z + i * (size_t)k;
    double m = row[0];
    for (int c = 1; c < k; c++)
      if (row[c] > m) m = row[c];
    double s = 0;
    for (int c = 0; c < k; c++) s += exp((row[c] - m) * inv_t);
    sum += log(s) - (row[labels[i]] - m) * inv_t;
  }
  return sum / n;
}

int ps_metrics_fit_temperature(const int *labels, const float *logits, size_t n, int k, double *temperature) {
  if (!temperature) return ps_error(PS_EINVAL, "metrics: temperature: NULL output");
  *temperature = 1;
  int st = calib_check(labels, logits, n, k, "temperature");
  if (st) return st;
  for (size_t i = 0; i < n * (size_t)k; i++)
    if (!isfinite(logits[i]))
      return ps_error(PS_EINVAL, "metrics: temperature: logit %g at item %zu class %zu is not finite", logits[i], i / k, i % k);
  /* NLL is convex in 1/T, so unimodal in u = log T: golden-section search on [log 0.05, log 20] */
  const double g = 0.6180339887498949;
  double a = log(0.05), b = log(20.0);
  double c = b - g * (b - a), d = a + g * (b - a);
  double fc = nll_at(labels, logits, n, k, c), fd = nll_at(labels, logits, n, k, d);
  while (b - a > 1e-10) {
    if (fc <= fd) {
      b = d, d = c, fd = fc;
      c = b - g * (b - a);
      fc = nll_at(labels, logits, n, k, c);
    } else {
      a = c, c = d, fc = fd;
      d = a + g * (b - a);
      fd = nll_at(labels, logits, n, k, d);
    }
  }
  double u = 0.5 * (a + b);
  /* no temperature does better than none (e.g. constant logits: the NLL does not depend on T): 1 */
  *temperature = nll_at(labels, logits, n, k, u) < nll_at(labels, logits, n, k, 0) ? exp(u) : 1.0;
  return PS_OK;
}
