/* ps_infer.h — classify many films: decoding on worker threads overlapped with batched forward
 * passes of a ps_model, results delivered in input order. What `pneumoscope classify` and the
 * Fiji "Classify" command call.
 *
 *   static int on_result(const ps_infer_result *r, void *user) {
 *     if (r->status != PS_OK) fprintf(stderr, "%s: %s\n", r->file, r->error);
 *     else printf("%s %s %.3f\n", r->file, r->label_name, r->probs[r->label]);
 *     return 0;                                   // non-zero cancels (PS_ECANCELLED)
 *   }
 *   const char *paths[] = {"films/", "one.dcm"};
 *   ps_infer_opts o = {0};                        // default batch, ps_default_threads() decoders
 *   int nfailed = 0;
 *   int st = ps_infer_run(model, paths, 2, &o, on_result, NULL, &nfailed);
 *
 * Folders are walked recursively in sorted order. Files that are clearly not films by their
 * extension (.txt .csv .json .md .xml .html .py .sh .npy .safetensors ...) and hidden files are
 * skipped quietly; every other file is read by content (PNG, JPEG, DICOM), and one that cannot be
 * read is reported as a failed result while the run goes on.
 */
#ifndef PS_INFER_H
#define PS_INFER_H

#include "ps_common.h"
#include "ps_image.h"
#include "ps_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Zero-initialised is valid. */
typedef struct ps_infer_opts {
  int batch;          /* films per forward pass (0: 16 on CPU, 32 on CUDA; smaller holds less
                         memory, about 8 MB of activations per film) */
  int threads;        /* decoding worker threads (0: ps_default_threads()) */
  ps_read_opts read;  /* limits for untrusted films (zero: defaults) */
  int shard_count;    /* > 0: classify only shard shard_index (0-based) of shard_count contiguous */
  int shard_index;    /* blocks of whole batches of the expanded list (ps_infer_shard_range over
                         ceil(films / batch) batches); results keep their index in the whole list,
                         so the shards in order are the one-run output, probabilities equal to the
                         bit when every shard uses the same batch size as the one run */
  int fast_decode;    /* 1: JPEG films decoded at the smallest reduced IDCT scale that leaves at least
                         2x the model's input size (3x for a lung-ROI model, which crops) before the
                         exact resize (read.min_side); 0: full size, Pillow-exact */
} ps_infer_opts;

typedef struct ps_infer_result {
  int index;                          /* position in the expanded file list */
  const char *file;                   /* path as found (borrowed, valid during the callback) */
  int status;                         /* PS_OK, or why this film failed */
  const char *error;                  /* ps_last_error() text of the failure, "" when OK */
  int label;                          /* class index (ps_model_label), -1 on failure */
  const char *label_name;             /* model class name, "" on failure */
  int num_classes;                    /* K */
  float probs[PS_MODEL_MAX_CLASSES];  /* softmax probabilities (K) */
  const ps_film_meta *meta;           /* what the reader found (DICOM identifiers); NULL on failure */
  double roi[4];                      /* box of the film the model saw: x0, y0, x1, y1 as fractions of
                                         width / height; {0, 0, 1, 1} for film models (and failures) */
  int roi_fallback;                   /* lungs model: 1 when no plausible lung box was found and the
                                         whole film was used (ps_lung_roi) */
  int in_distribution;                /* 1: like the films the model was trained on; 0: flagged out of
                                         distribution (ood_reason says why; label and probabilities are
                                         still given); -1: unknown (a model without a detector and no
                                         header reason to flag the film) or failure */
  float ood_score;                    /* the model's OOD score (ps_model_ood_score), NAN when unknown */
  const char *ood_reason;             /* "" when in distribution or unknown, else e.g. "DICOM modality CT
                                         is not a radiograph" or "features unlike the training films
                                         (score 812 > 95.3)" (borrowed, valid during the callback) */
} ps_infer_result;

/* Called once per file, in input order, on the thread that called ps_infer_run.
 * Return non-zero to stop the run (PS_ECANCELLED). */
typedef int (*ps_infer_fn)(const ps_infer_result *r, void *user);

/* Expand paths (files and folders, recursively, sorted; non-film extensions and hidden files
 * skipped) into a malloc'd array of malloc'd strings; free with ps_infer_list_free. A path that
 * does not exist is kept in the list (it will be reported as a failed film). */
PS_API int ps_infer_collect(const char *const *paths, int n, char ***files, int *nfiles);
PS_API void ps_infer_list_free(char **files, int nfiles);
/* Shard k (0-based) of n over a list of total films: the contiguous block [*lo, *hi) with
 * lo = floor(total * k / n), so blocks differ in size by at most one and shards 0..n-1 in order
 * hold every film exactly once. PS_EINVAL when k is not in [0, n). */
PS_API int ps_infer_shard_range(int total, int k, int n, int *lo, int *hi);
/* Shard from the environment of a job array or a distributed launch: SLURM_ARRAY_TASK_ID /
 * SLURM_ARRAY_TASK_COUNT (ids counted from SLURM_ARRAY_TASK_MIN, default 0), else RANK /
 * WORLD_SIZE (torchrun, srun with those set). *k is 0-based. PS_ENOTFOUND when neither is set,
 * PS_EINVAL (naming the variables) when they are inconsistent. */
PS_API int ps_infer_shard_from_env(int *k, int *n);
/* 1 when the file name is skipped as clearly not a film (.txt, .csv, .json, hidden ...). */
PS_API int ps_infer_skip_name(const char *path);

/* Classify every film under paths with m (eval-mode BN, no autograd; model input size and
 * mean/std from its metadata). nfailed (nullable) gets the number of films that failed.
 * Returns PS_OK when the run completed (even with failed films), PS_ECANCELLED when fn asked to
 * stop, another status when the run itself could not go on (no memory, forward failed). */
PS_API int ps_infer_run(ps_model *m, const char *const *paths, int n, const ps_infer_opts *opts,
                        ps_infer_fn fn, void *user, int *nfailed);

/* Classify one film file: ps_image_read + ps_infer_image. */
PS_API int ps_infer_file(ps_model *m, const char *path, const ps_read_opts *read, float *probs /* (K) */,
                         int *label);
/* Classify a film already in memory (display-ready, not raw): the model's input size, mean/std and
 * roi through ps_lung_roi_input (for a film model exactly ps_preprocess_tensor_ex; for a lungs model
 * the padded lung box cropped first), ps_model_predict, ps_model_label (label nullable) — the one
 * path shared by `classify`, single films and the Fiji plugin's pixel-only images. */
PS_API int ps_infer_image(ps_model *m, const ps_image *img, float *probs /* (K) */, int *label);
/* The same, also returning the box the model saw and whether the lung finder fell back to the whole
 * film (as ps_infer_result.roi / roi_fallback; both nullable). */
PS_API int ps_infer_image_roi(ps_model *m, const ps_image *img, float *probs /* (K) */, int *label,
                              double roi[4], int *roi_fallback);
/* Out-of-distribution verdict of one classified film, as ps_infer_result reports it: the model's
 * detector (score > threshold) and the film's header (a DICOM whose Modality is not a radiograph:
 * anything but CR, DX, RG, DR, PX or empty; or whose patient age is more than a year outside the
 * model's patient_ages, ps_model.h). in_dist 1/0/-1, reason (cap bytes, "" when none).
 * meta and score (NAN) may be absent. */
PS_API int ps_infer_ood_verdict(const ps_model *m, const ps_film_meta *meta, float score, int *in_dist,
                                char *reason, size_t cap);
/* ps_infer_image_roi plus the OOD verdict (in_dist, score, reason nullable; reason cap bytes). */
PS_API int ps_infer_image_ood(ps_model *m, const ps_image *img, float *probs /* (K) */, int *label, double roi[4],
                              int *roi_fallback, int *in_dist, float *score, char *reason, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
