/* ps_metrics.h — classification metrics for binary and 3-class chest-film models (scikit-learn
 * definitions, checked against scikit-learn 1.2 in tests/test_metrics.c).
 *
 *   // labels (N) in [0, K), probs (N, K) rows = softmax outputs
 *   ps_metrics m;
 *   if (ps_metrics_compute(labels, probs, n, 2, 0.5, &m) == PS_OK)
 *     printf("acc %.3f auc %.3f sens %.3f spec %.3f\n", m.accuracy, m.roc_auc, m.sensitivity, m.specificity);
 *
 *   double thr, j;                         // choose the threshold on validation, apply it on test
 *   ps_metrics_youden_threshold(val_y, val_p1, n_val, &thr, &j);
 *   ps_metrics_compute(test_y, test_probs, n_test, 2, thr, &m);
 *
 * Conventions
 * - K = 2 (binary): class 1 (PNEUMONIA) is the positive class, its score is probs[i*2+1]; the
 *   prediction is 1 when probs[i*2+1] >= threshold. K > 2: the prediction is the argmax (the lowest
 *   class index wins ties, as numpy.argmax); threshold is ignored.
 * - Precision/recall/F1 per class with zero_division = 0: a class never predicted has precision 0,
 *   a class absent from the labels has recall 0, F1 is 0 when precision + recall = 0 (sklearn's
 *   zero_division=0, also its default "warn" value). Macro and weighted averages run over all K
 *   classes, i.e. sklearn's precision_recall_fscore_support(labels=range(K), zero_division=0); weighted
 *   uses the label counts (support) as weights and is 0 when N = 0.
 * - ROC AUC: binary = sklearn roc_auc_score(y, p1) (ties count one half); K > 2 = one-vs-rest macro
 *   over classes = roc_auc_score(y, probs, multi_class="ovr", average="macro"). NAN when a needed
 *   class has no positive or no negative film (sklearn raises there).
 * - Average precision: sklearn average_precision_score = sum_n (R_n - R_{n-1}) P_n over distinct
 *   score thresholds (step function, not trapezoid). K > 2: macro over one-vs-rest classes
 *   (average_precision_score(label_binarize(y), probs, average="macro")). NAN when a needed class has
 *   no positive film.
 * - Curves are sklearn's roc_curve(drop_intermediate=False) and precision_recall_curve.
 */
#ifndef PS_METRICS_H
#define PS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "ps_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PS_METRICS_MAX_CLASSES 8

typedef struct ps_metrics {
  int num_classes;  /* K */
  size_t n;         /* N */
  double threshold; /* binary decision threshold used (K = 2) */
  int64_t confusion[PS_METRICS_MAX_CLASSES * PS_METRICS_MAX_CLASSES]; /* (K, K) row = true, col = predicted */
  double accuracy;
  double precision[PS_METRICS_MAX_CLASSES]; /* (K) */
  double recall[PS_METRICS_MAX_CLASSES];    /* (K) */
  double f1[PS_METRICS_MAX_CLASSES];        /* (K) */
  int64_t support[PS_METRICS_MAX_CLASSES];  /* (K) films per true class */
  double macro_precision, macro_recall, macro_f1;
  double weighted_precision, weighted_recall, weighted_f1;
  double sensitivity, specificity; /* K = 2: recall of class 1, recall of class 0; NAN for K > 2 */
  double roc_auc;                  /* see top; NAN when undefined */
  double average_precision;        /* see top; NAN when undefined */
} ps_metrics;

/* All metrics from labels (N) in [0, K) and probs (N, K). K in [2, PS_METRICS_MAX_CLASSES].
 * PS_EINVAL for a label out of range, a NaN score, or bad sizes. N = 0 is allowed (all zeros / NAN). */
PS_API int ps_metrics_compute(const int *labels, const float *probs, size_t n, int k, double threshold,
                              ps_metrics *out);

/* Binary building blocks: y (N) in {0, 1} (1 = positive), score (N) higher = more positive. */
PS_API int ps_metrics_roc_auc(const int *y, const float *score, size_t n, double *auc);
PS_API int ps_metrics_average_precision(const int *y, const float *score, size_t n, double *ap);
/* F1 of the positive class when predicting positive for score >= threshold (0 when undefined). */
PS_API int ps_metrics_f1_at(const int *y, const float *score, size_t n, double threshold, double *f1);
/* Youden's J = TPR - FPR = sensitivity + specificity - 1, maximised over the distinct scores used as
 * thresholds (predict positive when score >= threshold). Ties in J go to the LOWEST such threshold
 * (the highest sensitivity: a screening tool prefers missing fewer pneumonias). PS_EINVAL when y
 * holds only one class. *j may be NULL. */
PS_API int ps_metrics_youden_threshold(const int *y, const float *score, size_t n, double *threshold,
                                       double *j);

/* A curve of n points. ROC: x = FPR, y = TPR, thr = threshold (first point thr = +inf, at (0, 0)).
 * PR: x = recall (decreasing), y = precision, n - 1 thresholds increasing, last point (recall 0,
 * precision 1) has thr = NAN. Free with ps_curve_free. */
typedef struct ps_curve {
  size_t n;
  double *x;   /* (n) */
  double *y;   /* (n) */
  double *thr; /* (n) */
} ps_curve;
PS_API int ps_metrics_roc_curve(const int *y, const float *score, size_t n, ps_curve **out);
PS_API int ps_metrics_pr_curve(const int *y, const float *score, size_t n, ps_curve **out);
PS_API void ps_curve_free(ps_curve *c);

/* One-vs-rest helper: y_k[i] = (labels[i] == k), score_k[i] = probs[i*K + k]. Buffers (N) owned by caller. */
PS_API int ps_metrics_one_vs_rest(const int *labels, const float *probs, size_t n, int k_classes, int k,
                                  int *y_k, float *score_k);

/* ---- calibration ---- */

/* Expected calibration error of the top-label confidence (Guo et al. 2017): films binned by
 * max_k probs[i,k] into `bins` equal-width bins on [0, 1] (15 is the usual choice; a confidence of
 * exactly 1 falls in the last bin), ECE = sum_b (n_b / n) |accuracy_b - confidence_b|, where
 * accuracy counts argmax == label. labels (N), probs (N,K). */
PS_API int ps_metrics_ece(const int *labels, const float *probs, size_t n, int k, int bins, double *ece);
/* The reliability diagram's data: per bin count (int64), mean confidence and accuracy (NAN for an
 * empty bin); arrays of `bins` entries owned by the caller. */
PS_API int ps_metrics_reliability(const int *labels, const float *probs, size_t n, int k, int bins, int64_t *count,
                                  double *confidence, double *accuracy);
/* Temperature scaling: T > 0 minimising the mean negative log-likelihood of softmax(logits / T)
 * over the films (labels (N), logits (N,K)); searched on log T in [0.05, 20]. */
PS_API int ps_metrics_fit_temperature(const int *labels, const float *logits, size_t n, int k, double *temperature);

#ifdef __cplusplus
}
#endif
#endif
