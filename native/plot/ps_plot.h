/* ps_plot.h — PNG figures for evaluation and training: confusion matrix, ROC and PR curves,
 * reliability diagram, training curves (cairo; built only when pkg-config finds cairo, else every
 * call returns PS_EUNSUPPORTED "built without cairo").
 *
 *   ps_curve *roc = NULL;                                 // from ps_metrics.h
 *   ps_metrics_roc_curve(y, p1, n, &roc);
 *   ps_plot_curve c = {"PNEUMONIA", roc->x, roc->y, roc->n, auc};
 *   ps_plot_opts o = {0};                                 // 800 x 600, default title, no overwrite
 *   o.title = "ROC — test split";
 *   if (ps_plot_roc(&c, 1, &o, "out/roc.png") != PS_OK) fprintf(stderr, "%s\n", ps_last_error());
 *
 *   const char *names[] = {"NORMAL", "PNEUMONIA"};
 *   ps_plot_confusion(m.confusion, 2, names, &o, "out/confusion.png");   // m: ps_metrics
 *
 *   int64_t cnt[15]; double conf[15], acc[15], ece;                       // ps_metrics.h calibration
 *   ps_metrics_reliability(y, probs, n, 2, 15, cnt, conf, acc);
 *   ps_metrics_ece(y, probs, n, 2, 15, &ece);
 *   ps_plot_reliability(cnt, conf, acc, 15, ece, NULL, "out/reliability.png");
 *
 * Every file is written atomically (temp file + rename in the same folder). An existing file is
 * refused (PS_EINVAL) unless opts->overwrite. Text is UTF-8 (DejaVu Sans through fontconfig).
 */
#ifndef PS_PLOT_H
#define PS_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "ps_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ps_plot_opts {
  int width, height;  /* pixels; 0: 800 x 600 (confusion 640 x 600, reliability 640 x 720, training
                         1200 x 500); 200..8000 */
  const char *title;  /* NULL: "ROC curve", "Precision-recall curve", "Confusion matrix",
                         "Reliability diagram", "Training" */
  int overwrite;      /* 1: replace an existing file (atomically); 0: refuse */
} ps_plot_opts;

/* One curve: n points (x, y) in [0, 1] as ps_metrics_roc_curve / ps_metrics_pr_curve give them. */
typedef struct ps_plot_curve {
  const char *label;    /* legend text ("PNEUMONIA", "BACTERIA vs rest"); NULL: "curve k" */
  const double *x, *y;  /* (n) ROC: x = FPR, y = TPR; PR: x = recall, y = precision */
  size_t n;
  double score;         /* shown in the legend as "(AUC 0.953)" / "(AP 0.912)"; NAN hides it */
} ps_plot_curve;

/* Confusion matrix: cm (K, K) rows = true class, columns = predicted class (ps_metrics.confusion),
 * cells shaded by the row fraction and annotated with the count and the row percentage. K in 2..8. */
PS_API int ps_plot_confusion(const int64_t *cm, int k, const char *const *class_names, const ps_plot_opts *opts,
                             const char *path);
/* ROC curves (up to 8) with the chance diagonal; legend "label (AUC x.xxx)". */
PS_API int ps_plot_roc(const ps_plot_curve *curves, int n_curves, const ps_plot_opts *opts, const char *path);
/* Precision-recall curves (up to 8) drawn as steps (sklearn's step function); legend "label (AP x.xxx)".
 * prevalence > 0 draws the no-skill line at that precision (fraction of positives); NAN/0 hides it. */
PS_API int ps_plot_pr(const ps_plot_curve *curves, int n_curves, double prevalence, const ps_plot_opts *opts,
                      const char *path);

/* Reliability diagram from ps_metrics_reliability's data: `bins` (1..100) equal-width confidence
 * bins on [0, 1]; for each bin with count > 0 a bar up to its accuracy (in [0, 1]), a red line at
 * its mean confidence and a translucent red box between the two (the gap), the dashed diagonal of
 * perfect calibration, and under it a histogram of the films per bin. Empty bins (count 0; their
 * NAN confidence and accuracy are ignored) draw nothing. The line under the title gives
 * "ECE x.xxxx (B bins), N films"; ece NAN leaves the ECE out. */
PS_API int ps_plot_reliability(const int64_t *count, const double *confidence, const double *accuracy, int bins,
                               double ece, const ps_plot_opts *opts, const char *path);

/* Training history: one value per epoch; NAN entries (e.g. no validation that epoch) are skipped. */
typedef struct ps_plot_history {
  size_t epochs;
  const double *train_loss;  /* (epochs) */
  const double *val_loss;    /* (epochs) or NULL */
  const double *metric;      /* (epochs) validation metric (accuracy, AUC ...) in [0, 1], or NULL */
  const double *train_metric; /* (epochs) the same metric on the training split, or NULL */
  const char *metric_name;   /* e.g. "AUC", "accuracy"; NULL: "metric" */
} ps_plot_history;
/* Two panels: loss (train, val) vs epoch, and the metric vs epoch. */
PS_API int ps_plot_training(const ps_plot_history *h, const ps_plot_opts *opts, const char *path);

/* 1 when built with cairo. */
PS_API int ps_plot_available(void);

#ifdef __cplusplus
}
#endif
#endif
