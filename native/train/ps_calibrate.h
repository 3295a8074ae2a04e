/* ps_calibrate.h — what a trained model learns about itself from its own split: temperature
 * scaling (calibrated probabilities) and the out-of-distribution detector (ps_model.h), both
 * stored in the model file. `pneumoscope train` does this at the end of every run; the
 * `pneumoscope calibrate` command does it for a model trained before (or elsewhere).
 *
 *   ps_calibrate_opts o = ps_calibrate_opts_default();
 *   o.model = "run/best.safetensors"; o.manifest = "split/manifest.csv"; o.out = "calibrated.safetensors";
 *   ps_calibrate_result r;
 *   if (ps_calibrate_run(&o, NULL, NULL, &r) == PS_OK)
 *     printf("T %.3f, ECE %.4f -> %.4f, OOD threshold %.1f\n", r.temperature, r.ece_before, r.ece_after,
 *            r.ood_threshold);
 *
 * Recipe (all on the manifest's train and val films, never test):
 * - Temperature T minimising the validation NLL of softmax(logits / T) (ps_metrics_fit_temperature);
 *   kept only when it lowers the validation ECE (15 bins), else T = 1. A binary model's decision
 *   threshold t is mapped to the tempered scale, sigmoid(logit(t) / T), so every label stays the
 *   same.
 * - OOD detector: class means and one shared covariance S of the feature rows (channel means of
 *   the chosen layers, ps_model_features_layers) of the training films (untouched by
 *   augmentation), its diagonal raised by shrink * diag(S) (every feature keeps its own scale)
 *   and inverted (Cholesky); the threshold is the
 *   `ood_quantile` quantile of the validation films' scores (0.99: about 1 % of films like the
 *   training films are flagged).
 * - Patient ages, when declared (the films' headers rarely say, and PNG/JPEG never): a DICOM whose
 *   PatientAge is more than a year outside them is flagged out of distribution, as one of another
 *   modality is.
 */
#ifndef PS_CALIBRATE_H
#define PS_CALIBRATE_H

#include <stdint.h>

#include "ps_common.h"
#include "ps_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* all four layers' channel means (960 values): the early layers see what the last one has
 * learnt to ignore (exposure, texture, scanner), which is what tells an adult film from a child's */
#define PS_CALIBRATE_DEFAULT_LAYERS 15u

typedef struct ps_calibrate_opts {
  const char *model;     /* required: the model file to calibrate (never modified) */
  const char *manifest;  /* required: its split manifest (train and val rows are used) */
  const char *out;       /* required: the calibrated model file, written atomically; refused when
                            it exists unless overwrite, and always when it names the input */
  const char *cache;     /* preprocessed-film cache (0: <out folder>/cache-S[-roi].pscache, as train) */
  int overwrite;
  int save_half;         /* 1: weights stored in float16 (as train --half) */
  int threads;           /* 0: ps_default_threads() */
  int limit;             /* > 0: this many evenly spaced films per split (smoke tests) */
  int no_temperature;    /* 1: leave the temperature at 1 */
  double ood_quantile;   /* 0: 0.99 */
  double shrink;         /* 0: 0.01 (< 0: none) */
  unsigned ood_layers;   /* features of the detector: bit l = layer l+1 (0: PS_CALIBRATE_DEFAULT_LAYERS) */
  double patient_ages[2]; /* the training patients' ages in years, stored in the model (ps_model_meta);
                             to = 0: keep the model's own (none: no age check) */
} ps_calibrate_opts;

PS_API ps_calibrate_opts ps_calibrate_opts_default(void);

typedef struct ps_calibrate_result {
  int n_train, n_val;
  double temperature;         /* stored (1 when none) */
  double temperature_fitted;  /* the NLL minimiser, stored or not */
  double ece_before, ece_after; /* validation ECE at T = 1 and at the stored T */
  double threshold;           /* binary: the stored decision threshold (mapped); else 0.5 */
  double ood_threshold;
  double val_flagged, train_flagged; /* fractions flagged out of distribution */
} ps_calibrate_result;

PS_API int ps_calibrate_run(const ps_calibrate_opts *opts, ps_progress_fn progress, void *user,
                            ps_calibrate_result *result);

/* The core, for a model in memory and films already in a uint8 cache ((n, size, size) gray, as
 * ps_train_cache_load_roi returns): sets the model's temperature, threshold and OOD detector.
 * train_idx/val_idx index the cache, train_y/val_y are class indices. */
PS_API int ps_calibrate_model(ps_model *m, const uint8_t *pix, int size, const int *train_idx, const int *train_y,
                              int n_train, const int *val_idx, const int *val_y, int n_val,
                              const ps_calibrate_opts *opts, ps_calibrate_result *result);

#ifdef __cplusplus
}
#endif
#endif
