/* ps_train.h — train a ResNet18 on a split manifest, the preprocessed-film cache, evaluation.
 *
 *   ps_train_opts o = ps_train_opts_default();      // or zero-initialised: every 0 = default
 *   o.manifest = "split/manifest.csv";              // path,label,subtype,patient_id,split,sha256
 *   o.outdir = "runs/binary";                       // best.safetensors, last.ckpt, history.json/.csv
 *   o.task = PS_TASK_BINARY;  o.size = 128;
 *   ps_train_result r;
 *   int st = ps_train_run(&o, my_progress, my_user, &r);   // progress may return 1 to cancel
 *   if (st != PS_OK && st != PS_ECANCELLED) fprintf(stderr, "%s\n", ps_last_error());
 *
 *   ps_eval_opts e = {0};
 *   e.model = "runs/binary/best.safetensors"; e.manifest = "split/manifest.csv"; e.outdir = "eval";
 *   st = ps_evaluate_run(&e, NULL, NULL, NULL);   // metrics.json, predictions.csv, PNG plots
 *   // or in N jobs, each e.shard_count = N, e.shard_index = k, e.outdir = "eval-k"; then
 *   // ps_evaluate_merge(dirs, N, "eval", NULL, NULL) writes what the one run writes
 *
 * Recipe (all overridable): ResNet18 from scratch (or --init weights), Adam, batch 32.
 *   binary:     classes NORMAL, PNEUMONIA; max 30 epochs, patience 5 on val AUC (max);
 *               class-balanced sampling (with replacement, weights 1/class count);
 *               augmentation: random resized crop (scale 0.8-1, ratio 0.9-1.1) + brightness/contrast 0.2.
 *   multiclass: classes NORMAL, BACTERIA, VIRUS; max 50 epochs, patience 10 on val macro-F1;
 *               no balancing; augmentation: brightness/contrast jitter only.
 *   Mixed precision (bf16 autocast) on CUDA, fp32 on CPU.
 *
 * The split must be leakage-free (no patient, no identical file in two splits): a leaky manifest
 * is refused with PS_EINVAL naming the first leaking patient.
 *
 * Decision threshold: after training, the best model's P(PNEUMONIA) on the validation split
 * gives Youden's J = max(TPR - FPR) over the ROC thresholds (scikit-learn's roc_curve); that
 * threshold is stored in the model metadata and used by classify/evaluate. For 3 classes: argmax.
 *
 * Preprocessed-film cache (versioned binary file, native endian is little endian):
 *   offset 0   char[8]  "PSCACHE\0"
 *          8   uint32   version (PS_TRAIN_CACHE_VERSION)
 *         12   uint32   size S (films stored S x S)
 *         16   uint32   resize method id (1: film quantised to 8 bits, round(v * 255), then
 *                       PIL's 8-bit antialiased bilinear to (S,S): ps_resize_u8 — the pixels
 *                       ps_preprocess_tensor / classify and torchvision's Resize see;
 *                       2: the same after cropping the film to ps_lung_roi's padded lung box —
 *                       what a `--roi lungs` model sees: ps_lung_roi_input_u8). The id records
 *                       the roi, so a film cache is never reused by a lungs run, nor the reverse)
 *         20   uint32   N entries
 *         24   N x 64   lowercase hex sha256 of each source file (the key, with S and method)
 *              N x S*S  uint8 pixels, row-major (H, W), in entry order
 *   Written to a temporary name and renamed (atomic). Reused when S, method and version match and
 *   every film's sha256 is in it; otherwise rebuilt (films already present are not decoded again).
 *   Built with worker threads (opts.threads, 0: ps_default_threads()). Lives in OUTDIR
 *   (cache-S.pscache, cache-S-lungs.pscache / cache-S-lungmask.pscache for --roi lungs / lungmask) unless opts.cache names another path;
 *   nothing is written anywhere else.
 */
#ifndef PS_TRAIN_H
#define PS_TRAIN_H

#include <stdint.h>

#include "ps_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PS_TRAIN_CACHE_VERSION 1u
#define PS_TRAIN_CACHE_RESIZE_PIL_BILINEAR 1u
#define PS_TRAIN_CACHE_LUNG_ROI 2u
#define PS_TRAIN_CACHE_LUNG_MASK 3u /* the lung box, outside the dilated lung mask gray (ps_lung_mask_input_u8) */

typedef enum { PS_MONITOR_DEFAULT = 0, PS_MONITOR_AUC, PS_MONITOR_F1, PS_MONITOR_LOSS, PS_MONITOR_ACC } ps_monitor;
typedef enum { PS_TRAIN_DEVICE_AUTO = 0, PS_TRAIN_DEVICE_CPU, PS_TRAIN_DEVICE_CUDA } ps_train_device;

#define PS_TRAIN_MAX_ACCUMULATE 64 /* micro-batches per optimizer step at most */

/* Data-parallel training: where this process stands in its group (ps_train_dist_from_env reads
 * it from torchrun's or SLURM's environment). world_size <= 1: one process. */
typedef struct ps_train_dist {
  int world_size;          /* ranks in the group */
  int rank;                /* 0 .. world_size-1; rank 0 decides and writes every file */
  int local_rank;          /* rank on this node */
  int local_world_size;    /* ranks on this node (0: unknown): splits the node's cores between them */
  const char *master_addr; /* the TCPStore's host (rank 0's, or torchrun's agent's) */
  int master_port;
  int agent_store;         /* TORCHELASTIC_USE_AGENT_STORE: the launcher serves the store */
  int restart_count;       /* TORCHELASTIC_RESTART_COUNT */
  double timeout_s;        /* rendezvous and every collective; a dead or missing rank ends the
                              others within it (0: 300) */
} ps_train_dist;

/* Read the launcher's environment: torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
 * MASTER_ADDR, MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE, TORCHELASTIC_RESTART_COUNT; else under
 * srun SLURM_PROCID, SLURM_STEP_NUM_TASKS (SLURM_NTASKS), SLURM_LOCALID, with MASTER_ADDR from
 * the environment or the first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST and MASTER_PORT
 * from the environment or 29500. None of them: world_size 1, PS_OK. Values that contradict
 * each other (RANK without WORLD_SIZE, rank >= world ...): PS_EINVAL saying which. master_addr
 * points into addr (cap bytes), which the caller keeps. */
PS_API int ps_train_dist_from_env(ps_train_dist *out, char *addr, size_t cap);

/* Valid zero-initialised: every 0 / NULL field takes the task's default. */
typedef struct ps_train_opts {
  const char *manifest;   /* required: split manifest (path,label,subtype,patient_id,split,sha256) */
  const char *outdir;     /* required: created if absent */
  int task;               /* PS_TASK_BINARY (0, default) or PS_TASK_MULTICLASS (1), as in ps_model.h */
  int epochs;             /* 0: 30 binary, 50 multiclass */
  double lr;              /* 0: 1e-3 */
  int lr_cosine;          /* 1: the learning rate follows a cosine from lr down to 0 over the max epochs,
                             step by step (SGDR without restarts); 0: constant */
  int batch;              /* 0: 32 */
  int patience;           /* 0: 5 binary, 10 multiclass; < 0: no early stopping */
  ps_monitor monitor;     /* 0: auc (binary), f1 (multiclass) */
  int size;               /* input size S (0: 224) */
  uint64_t seed;          /* RNG seed for init, sampling, augmentation */
  int threads;            /* CPU threads for libtorch and the cache (0: ps_default_threads()) */
  ps_train_device device; /* auto: CUDA when available */
  const char *init;       /* optional safetensors to start from (e.g. ImageNet ResNet18) */
  int init_keep_fc;       /* with init: fine-tune a trained model of the same classes, its fc kept */
  int resume;             /* 1: continue from OUTDIR/last.ckpt */
  int no_balance;         /* 1: plain shuffling even for binary */
  int no_augment;         /* 1: no augmentation */
  double crop_min;        /* random resized crop of scale crop_min..1 (ratio 0.9-1.1) in the
                             augmentation; 0: the task's default (binary 0.8, multiclass none);
                             1: no crop (jitter only); in (0, 1) otherwise */
  int balance;            /* 1: force class-balanced sampling (multiclass too) */
  const char *cache;      /* cache file path (0: OUTDIR/cache-S.pscache) */
  int limit;              /* > 0: use this many evenly spaced films per split (tests, smoke runs) */
  int save_half;          /* 1: store best.safetensors as F16 (half the size; for shipping) */
  int accumulate;         /* > 1: one optimizer step per this many micro-batches of `batch` films
                             (gradients summed, each micro-batch's loss weighted by its share of the
                             step's films; BatchNorm per micro-batch): an effective batch of
                             accumulate x batch in the memory of one micro-batch */
  const char *command;    /* command line recorded in the model's provenance (optional) */
  double patient_ages[2]; /* the training patients' ages in years, from-to, stored in the model
                             (ps_model_meta.patient_ages: DICOMs of patients outside are flagged);
                             to = 0: unknown */
  int roi;                /* ps_roi: PS_ROI_FILM (0, default) trains on whole films; PS_ROI_LUNGS on
                             the padded lung box of each film (ps_lung_roi), recorded in the model's
                             metadata so classify, evaluate and Grad-CAM crop the same way;
                             PS_ROI_LUNGMASK: that box, gray outside the dilated lung mask */
  ps_train_dist dist;     /* world_size > 1: data-parallel (libtorch c10d: Gloo on CPU). Every
                             optimizer step takes world_size x accumulate micro-batches of `batch`
                             films from the one global order a single process would use (same seed,
                             same order): rank r takes micro-batches r*accumulate .. of the step,
                             gradients are averaged over ranks by c10d's DDP reducer (bucketed,
                             overlapped with backward), weighted so the step equals one process with
                             --accumulate world_size x accumulate; BatchNorm statistics per rank,
                             buffers from rank 0 before each step. Validation is shared out between
                             the ranks (rank 0's statistics); rank 0 early-stops and
                             writes every file; the others follow its decisions. */
} ps_train_opts;

PS_API ps_train_opts ps_train_opts_default(void);

/* One epoch's numbers (also one row of history.json / history.csv). Validation metrics use
 * threshold 0.5 (binary) or argmax (multiclass); precision/recall/F1 are for PNEUMONIA (binary)
 * or macro (multiclass); AUC is macro one-vs-rest for 3 classes. */
typedef struct ps_train_epoch {
  int epoch;               /* 1-based */
  double train_loss, val_loss;
  double precision, recall, f1, accuracy, auc;
  double seconds;          /* wall time of the training pass */
  double images_per_s;     /* training images per second */
  int improved;            /* monitored metric improved: best.safetensors written */
} ps_train_epoch;

typedef struct ps_train_result {
  int epochs_run;          /* epochs in the history (resumed ones included) */
  int best_epoch;
  double best_score;       /* monitored metric at best_epoch */
  double threshold;        /* decision threshold stored in best.safetensors (binary); 0 for argmax */
  int stopped_early;
  int cache_built;         /* 1 when this run decoded films into the cache, 0 when reused */
  int n_train, n_val, n_test;
} ps_train_result;

/* Train. Writes OUTDIR/best.safetensors (atomically, each time the monitored metric improves,
 * then once more at the end with the validation threshold and provenance), OUTDIR/last.ckpt
 * (model + Adam state + epoch + RNG + history, every epoch), history.json, history.csv.
 * progress(fraction, what, user) is called per batch; returning non-zero stops at once with
 * PS_ECANCELLED, leaving best.safetensors loadable and last.ckpt resumable. result may be NULL. */
PS_API int ps_train_run(const ps_train_opts *opts, ps_progress_fn progress, void *user, ps_train_result *result);

/* The cache on its own (used by ps_train_run). Films: paths and their sha256 (hex, 64 chars;
 * NULL or "" entries are hashed from the file). pixels receives a malloc'd (N, S, S) uint8 block
 * (caller frees); *built is 1 when films were decoded. */
PS_API int ps_train_cache_load(const char *cache_path, int size, int n, const char *const *paths,
                               const char *const *sha256, int threads, ps_progress_fn progress,
                               void *user, uint8_t **pixels, int *built);
/* The same for a roi (PS_ROI_FILM: ps_train_cache_load; PS_ROI_LUNGS: lung-box crops, method 2;
 * PS_ROI_LUNGMASK: masked lung-box crops, method 3). */
PS_API int ps_train_cache_load_roi(const char *cache_path, int size, int roi, int n, const char *const *paths,
                                   const char *const *sha256, int threads, ps_progress_fn progress,
                                   void *user, uint8_t **pixels, int *built);
/* The same, without a private copy when it can be avoided: when the cache file holds exactly these
 * films in this order (always so once this list has built it), the pixels are the file itself,
 * memory-mapped read-only and shared, so the ranks of a node keep one copy in the page cache
 * instead of one each; otherwise a private malloc'd block. Release with ps_train_cache_release. */
typedef struct ps_train_cache_view {
  const uint8_t *pixels; /* (n, S, S) */
  int mapped;            /* 1: inside the mapped file */
  void *map_;            /* private */
  size_t maplen_;
} ps_train_cache_view;
PS_API int ps_train_cache_open(const char *cache_path, int size, int roi, int n, const char *const *paths,
                               const char *const *sha256, int threads, ps_progress_fn progress, void *user,
                               ps_train_cache_view *view, int *built);
PS_API void ps_train_cache_release(ps_train_cache_view *view);
/* The header's method id for a roi (1 film, 2 lungs, 3 lungmask). */
PS_API uint32_t ps_train_cache_method(int roi);

/* One optimizer step over nmicro micro-batches (what --accumulate does, and the step data-parallel
 * ranks each take their micro-batch of): zero the gradients; for each micro-batch j, forward in
 * train mode, cross entropy of logits vs y[j] (int64 class indices), backward of loss_j * n[j] / N
 * (N = sum of n) so the gradient is that of the mean loss over all N films; then one Adam step.
 * *loss_mean (nullable) gets the mean loss over the N films. x[j]: (n[j], 3, S, S). */
typedef struct ps_model ps_model;
typedef struct ps_tensor ps_tensor;
typedef struct ps_adam ps_adam;
PS_API int ps_train_step(ps_model *m, ps_adam *adam, ps_tensor *const *x, ps_tensor *const *y, const int *n, int nmicro,
                         double *loss_mean);

/* The model weights of a last.ckpt (for checks and export), in eval mode, metadata defaults plus
 * task and input size. device: ps_train_device. */
typedef struct ps_model ps_model;
PS_API int ps_train_checkpoint_load(const char *ckpt_path, int device, ps_model **out);

typedef struct ps_eval_opts {
  const char *model;      /* required: safetensors written by ps_train_run (or the bundled one) */
  const char *manifest;   /* required */
  const char *split;      /* 0: "test"; "all" uses every row */
  const char *outdir;     /* required: metrics.json (accuracy, per-class + macro + weighted
                             precision/recall/F1, sensitivity/specificity, ROC AUC, AP, confusion
                             matrix), predictions.csv (path, patient, true/predicted class, one
                             probability per class), ECE and the 15-bin reliability table, the
                             model's temperature; confusion.png, roc.png, pr.png, reliability.png
                             and curves.png (from history.json) when built with cairo */
  const char *history;    /* history.json for the training-curve plot (0: next to the model) */
  double threshold;       /* < 0 or 0 with use_threshold=0: the model's own */
  int use_threshold;      /* 1: use .threshold instead of the model's */
  int batch;              /* 0: 32 */
  int threads;            /* 0: ps_default_threads() */
  ps_train_device device;
  int limit;              /* > 0: this many evenly spaced films of each split (as ps_train_opts.limit) */
  int shard_count;        /* > 0: evaluate only shard shard_index (0-based) of shard_count contiguous
                             blocks of whole batches of the split's rows (ps_infer_shard_range over
                             the batches, as classify --shard): outdir gets that block's
                             predictions.csv rows and shard.json (which shard of which model,
                             manifest, split, limit, batch and threshold), no metrics and no plots;
                             ps_evaluate_merge makes the whole evaluation from the shard folders.
                             A shard refuses an outdir holding metrics.json, a whole run one holding
                             shard.json */
  int shard_index;
} ps_eval_opts;

typedef struct ps_eval_result {
  int n;
  double accuracy, auc, ap, f1_macro, threshold;
  double sensitivity, specificity;   /* binary: of PNEUMONIA */
  double ece;                        /* expected calibration error, top-label, 15 bins (ps_metrics_ece) */
} ps_eval_result;

/* A shard (opts->shard_count > 0) fills only result->n (its films) and ->threshold, the rest NAN. */
PS_API int ps_evaluate_run(const ps_eval_opts *opts, ps_progress_fn progress, void *user, ps_eval_result *result);
/* The whole evaluation from the ndirs folders of one run's shards 1..N (any order): checks that they
 * are every shard of one run once (the same model and manifest bytes, split, limit, batch, threshold)
 * and writes to outdir what the unsharded ps_evaluate_run writes: metrics.json with the same values,
 * predictions.csv with the same rows, the plots (history: as ps_eval_opts.history). PS_EINVAL for a
 * missing or duplicate shard or shards of different runs, PS_EIO for an unreadable folder, PS_EFORMAT
 * for a damaged shard, each naming the folder; outdir must not hold a shard.json. */
PS_API int ps_evaluate_merge(const char *const *shard_dirs, int ndirs, const char *outdir, const char *history,
                             ps_eval_result *result);

PS_API const char *ps_train_task_name(int task);     /* "binary", "multiclass" */
PS_API const char *ps_monitor_name(ps_monitor m);    /* "auc", "f1", "loss", "acc" */

#ifdef __cplusplus
}
#endif
#endif
