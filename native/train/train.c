/* The training loop (llm.c style: explicit create / forward / backward / step / free).
 * Recipe and file formats: ps_train.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ps_calibrate.h"
#include "ps_lung.h"
#include "ps_metrics.h"
#include "ps_model.h"
#include "ps_preprocess.h"
#include "ps_torch.h"
#include "ps_train.h"
#include "train_internal.h"
#include "ps_internal.h"
#include "train_gpu.h"

#define CKPT_MAGIC "PSCKPT\0\0"
/* 2: the run's options (recipe_options) after the header, checked by --resume; 1: without them */
#define CKPT_VERSION 2u
#define CKPT_MAX_RECIPE 1024
#define MAX_HISTORY 10000

ps_train_opts ps_train_opts_default(void) {
  ps_train_opts o;
  memset(&o, 0, sizeof o);
  o.task = PS_TASK_BINARY;
  o.epochs = 30;
  o.lr = 1e-3;
  o.batch = 32;
  o.patience = 5;
  o.monitor = PS_MONITOR_AUC;
  o.size = 224;
  return o;
}

const char *ps_train_task_name(int task) { return task == PS_TASK_MULTICLASS ? "multiclass" : "binary"; }

const char *ps_monitor_name(ps_monitor m) {
  switch (m) {
    case PS_MONITOR_AUC: return "auc";
    case PS_MONITOR_F1: return "f1";
    case PS_MONITOR_LOSS: return "loss";
    case PS_MONITOR_ACC: return "acc";
    default: return "default";
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int file_exists(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0;
}

/* ---- the run's state ---- */
typedef struct {
  /* resolved options */
  int task, K, epochs, batch, accumulate, patience, size, threads, augment, balance, roi;
  double lr, ages[2];
  ps_monitor monitor;
  ps_device dev;
  uint64_t seed;
  /* data */
  ps_train_films films;
  ps_train_cache_view cache; /* the film cache (memory-mapped when it can be) */
  const uint8_t *pix;      /* (n_films, S, S) cache pixels, films.paths order for train+val */
  int *train_idx, n_train; /* indices into films */
  int *val_idx, n_val;
  int *val_y;              /* (n_val) */
  /* model */
  ps_model *model;
  ps_adam *adam;
  ps_tensor **params;
  int n_params;
  ps_rng rng;
  ps_devbatch *devbatch;   /* non-NULL: training batches built on the device (train_gpu.h) */
  /* data-parallel (opts.dist.world_size > 1) */
  ps_dist *dist;           /* NULL: one process */
  int rank, world;
  ps_tensor **buffers;     /* BatchNorm running statistics: rank 0's before every step */
  int n_buffers;
  /* progress */
  int epoch;               /* last completed epoch */
  int best_epoch, bad_epochs;
  double best_score;
  ps_train_epoch *history;
  int n_history;
  /* paths */
  char *best_path, *last_path, *hist_json, *hist_csv, *cache_path;
  const ps_train_opts *opts;
} run;

static int better(ps_monitor m, double a, double b) {
  if (isnan(a)) return 0;
  if (isnan(b)) return 1;
  return m == PS_MONITOR_LOSS ? a < b : a > b;
}

static double monitored(ps_monitor m, const ps_train_epoch *e) {
  switch (m) {
    case PS_MONITOR_AUC: return e->auc;
    case PS_MONITOR_F1: return e->f1;
    case PS_MONITOR_LOSS: return e->val_loss;
    default: return e->accuracy;
  }
}

/* ---- batches ---- */

/* x (nb, 3, S, S) from cache pixels of films idx[0..nb), augmented with seeds[k] when aug != NULL. */
static int fill_batch(run *r, const int *idx, int nb, const ps_augment_opts *aug, const uint64_t *seeds, float *x,
                      float *src, float *dst) {
  const int S = r->size;
  const size_t px = (size_t)S * S;
  static const float mean[3] = PS_IMAGENET_MEAN, stdv[3] = PS_IMAGENET_STD;
  for (int k = 0; k < nb; k++) {
    int st = ps_train_cached_input(r->pix + (size_t)idx[k] * px, S, mean, stdv, aug, aug ? seeds[k] : 0, src, dst,
                                   x + (size_t)k * 3 * px);
    if (st != PS_OK) return st;
  }
  return PS_OK;
}

/* The training order of one epoch: class-balanced draws with replacement (weights 1/count, as
 * torch's WeightedRandomSampler) or a shuffled permutation. */
static void epoch_order(run *r, int *order) {
  const int n = r->n_train;
  if (r->balance) {
    int count[PS_MODEL_MAX_CLASSES] = {0};
    for (int i = 0; i < n; i++) count[r->films.cls[r->train_idx[i]]]++;
    double total = 0;
    for (int c = 0; c < r->K; c++) total += count[c] ? 1.0 : 0.0; /* sum over films of 1/count */
    for (int k = 0; k < n; k++) {
      double u = ps_rng_uniform(&r->rng) * total, acc = 0;
      int c = 0;
      for (c = 0; c < r->K; c++) {
        if (!count[c]) continue;
        acc += 1.0;
        if (u < acc) break;
      }
      if (c >= r->K) c = r->K - 1;
      while (!count[c]) c--;
      int j = ps_rng_int(&r->rng, count[c]); /* the j-th film of class c */
      for (int i = 0; i < n; i++)
        if (r->films.cls[r->train_idx[i]] == c && j-- == 0) {
          order[k] = r->train_idx[i];
          break;
        }
    }
  } else {
    for (int i = 0; i < n; i++) order[i] = r->train_idx[i];
    for (int i = n - 1; i > 0; i--) {
      int j = ps_rng_int(&r->rng, i + 1), t = order[i];
      order[i] = order[j], order[j] = t;
    }
  }
}

/* Probabilities (n, K) and mean cross-entropy of the films idx[0..n) (eval mode, no grad). */
static int predict_films(run *r, const int *idx, int n, const int *y, float *probs, double *loss) {
  const int S = r->size, B = r->batch;
  const size_t px = (size_t)S * S;
  float *x = malloc(sizeof(float) * 3 * px * B), *src = malloc(sizeof(float) * px);
  float *logits = malloc(sizeof(float) * r->K * B);
  int st = PS_OK;
  double tot = 0;
  if (!x || !src || !logits) {
    st = ps_error(PS_ENOMEM, "train: out of memory");
    goto fail;
  }
  for (int b0 = 0; b0 < n; b0 += B) {
    int nb = n - b0 < B ? n - b0 : B;
    if ((st = fill_batch(r, idx + b0, nb, NULL, NULL, x, src, NULL)) != PS_OK) goto fail;
    if ((st = ps_model_predict(r->model, x, nb, S, S, logits, probs + (size_t)b0 * r->K)) != PS_OK) goto fail;
    for (int k = 0; k < nb; k++) {
      const float *l = logits + (size_t)k * r->K;
      double mx = l[0], s = 0;
      for (int c = 1; c < r->K; c++) mx = l[c] > mx ? l[c] : mx;
      for (int c = 0; c < r->K; c++) s += exp(l[c] - mx);
      tot += mx + log(s) - l[y[b0 + k]];
    }
  }
  if (loss) *loss = n ? tot / n : NAN;
fail:
  free(x);
  free(src);
  free(logits);
  return st;
}

/* ---- files: history, checkpoint, model ---- */

static int write_history_json(FILE *f, void *user) {
  run *r = user;
  json_t *epochs = json_array();
  for (int i = 0; i < r->n_history; i++) {
    const ps_train_epoch *e = &r->history[i];
    json_array_append_new(epochs, json_pack("{s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:b}", "epoch", e->epoch,
                                            "train_loss", ps__json_num(e->train_loss), "val_loss",
                                            ps__json_num(e->val_loss), "precision", ps__json_num(e->precision), "recall",
                                            ps__json_num(e->recall), "f1", ps__json_num(e->f1), "accuracy",
                                            ps__json_num(e->accuracy), "auc", ps__json_num(e->auc), "seconds",
                                            ps__json_num(e->seconds), "images_per_s", ps__json_num(e->images_per_s),
                                            "improved", e->improved));
  }
  return ps__json_dump(f, json_pack("{s:s, s:s, s:i, s:o}", "task", ps_train_task_name(r->task), "monitor",
                                    ps_monitor_name(r->monitor), "best_epoch", r->best_epoch, "epochs", epochs));
}

static int write_history_csv(FILE *f, void *user) {
  run *r = user;
  fputs("epoch,train_loss,val_loss,precision,recall,f1,accuracy,auc,seconds,images_per_s,improved\n", f);
  for (int i = 0; i < r->n_history; i++) {
    const ps_train_epoch *e = &r->history[i];
    fprintf(f, "%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.3f,%.3f,%d\n", e->epoch, e->train_loss, e->val_loss, e->precision,
            e->recall, e->f1, e->accuracy, e->auc, e->seconds, e->images_per_s, e->improved);
  }
  return PS_OK;
}

static int write_all(FILE *f, const void *p, size_t n) {
  return fwrite(p, 1, n, f) == n ? PS_OK : ps_error(PS_EIO, "train: write error");
}

static void recipe_options(const run *r, char *buf, size_t n);

/* last.ckpt: magic, version, run state, the run's options, history, Adam state, every state_dict
 * tensor. */
static int write_ckpt(FILE *f, void *user) {
  run *r = user;
  int st;
  void *adam = NULL;
  size_t adam_len = 0;
  if ((st = ps_adam_save(r->adam, &adam, &adam_len)) != PS_OK) return st;
  uint32_t ver = CKPT_VERSION;
  /* ints[0]: task in the low byte, roi in the next (0 = film: checkpoints from before the roi
   * option read the same), the data-parallel world size above (0 before it: one process) */
  int32_t ints[8] = {r->task | (r->roi << 8) | ((r->world > 1 ? r->world & 0x7fff : 0) << 16), r->K, r->size, r->epoch, r->best_epoch, r->bad_epochs, r->n_history,
                     ps_model_num_tensors(r->model)};
  uint64_t alen = adam_len;
  char recipe[CKPT_MAX_RECIPE];
  recipe_options(r, recipe, sizeof recipe);
  uint32_t rlen = (uint32_t)strlen(recipe);
  if ((st = write_all(f, CKPT_MAGIC, 8)) || (st = write_all(f, &ver, 4)) || (st = write_all(f, ints, sizeof ints)) ||
      (st = write_all(f, &rlen, 4)) || (st = write_all(f, recipe, rlen)) || (st = write_all(f, &r->best_score, 8)) ||
      (st = write_all(f, r->rng.s, sizeof r->rng.s)) ||
      (st = write_all(f, r->history, sizeof(ps_train_epoch) * r->n_history)) || (st = write_all(f, &alen, 8)) ||
      (st = write_all(f, adam, adam_len)))
    goto done;
  for (int i = 0; i < ints[7]; i++) {
    const char *name = NULL;
    ps_tensor *t = ps_model_tensor(r->model, i, &name);
    ps_dtype dt = ps_tensor_dtype(t) == PS_DTYPE_I64 ? PS_DTYPE_I64 : PS_DTYPE_F32;
    uint64_t numel = (uint64_t)ps_tensor_numel(t);
    uint32_t meta[2] = {(uint32_t)strlen(name), (uint32_t)dt};
    size_t bytes = numel * ps_dtype_size(dt);
    void *buf = malloc(bytes ? bytes : 1);
    if (!buf) {
      st = ps_error(PS_ENOMEM, "train: out of memory");
      goto done;
    }
    st = ps_tensor_to_data(t, dt, buf, numel);
    if (!st && !(st = write_all(f, meta, 8)) && !(st = write_all(f, name, meta[0])) && !(st = write_all(f, &numel, 8)))
      st = write_all(f, buf, bytes);
    free(buf);
    if (st) goto done;
  }
done:
  free(adam);
  return st;
}

static int read_all(FILE *f, void *p, size_t n, const char *path) {
  return fread(p, 1, n, f) == n ? PS_OK : ps_error(PS_EFORMAT, "train: %s is truncated", path);
}

static int read_ckpt(run *r, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return ps_error(PS_ENOTFOUND, "train: --resume: no checkpoint %s (%s)", path, strerror(errno));
  int st = PS_OK;
  void *adam = NULL, *buf = NULL;
  char magic[8], name[256];
  uint32_t ver;
  int32_t ints[8];
  uint64_t alen;
  if ((st = read_all(f, magic, 8, path)) || (st = read_all(f, &ver, 4, path))) goto done;
  if (memcmp(magic, CKPT_MAGIC, 8) != 0 || ver < 1 || ver > CKPT_VERSION) {
    st = ps_error(PS_EFORMAT, "train: %s is not a PneumoScope checkpoint (versions 1-%u)", path, CKPT_VERSION);
    goto done;
  }
  if ((st = read_all(f, ints, sizeof ints, path))) goto done;
  char recipe[CKPT_MAX_RECIPE] = "";
  if (ver >= 2) {
    uint32_t rlen = 0;
    if ((st = read_all(f, &rlen, 4, path))) goto done;
    if (rlen >= sizeof recipe) {
      st = ps_error(PS_EFORMAT, "train: %s: bad header", path);
      goto done;
    }
    if ((st = read_all(f, recipe, rlen, path))) goto done;
    recipe[rlen] = 0;
  }
  const int ck_world = (ints[0] >> 16) > 0 ? ints[0] >> 16 : 1;
  ints[0] &= 0xffff;
  if (ck_world != r->world) {
    st = ps_error(PS_EINVAL, "train: --resume: %s was written by a run of %d rank%s; resume it with %d (this run has %d)",
                  path, ck_world, ck_world == 1 ? "" : "s", ck_world, r->world);
    goto done;
  }
  if ((ints[0] & 0xff) != r->task || ints[1] != r->K || ints[2] != r->size || (ints[0] >> 8) != r->roi) {
    st = ps_error(PS_EINVAL, "train: --resume: %s was a %s run at size %d, roi %s; this run is %s at size %d, roi %s",
                  path, ps_train_task_name(ints[0] & 0xff), ints[2], ps_roi_name(ints[0] >> 8) ? ps_roi_name(ints[0] >> 8) : "?",
                  ps_train_task_name(r->task), r->size, ps_roi_name(r->roi));
    goto done;
  }
  if (ints[6] < 0 || ints[6] > MAX_HISTORY || ints[7] != ps_model_num_tensors(r->model) || ints[3] < 0) {
    st = ps_error(PS_EFORMAT, "train: %s: bad header", path);
    goto done;
  }
  if (r->opts) { /* --resume (not ps_train_checkpoint_load): the same options, or another run */
    char mine[CKPT_MAX_RECIPE];
    recipe_options(r, mine, sizeof mine);
    if (ver < 2) {
      ps_log(PS_LOG_WARN, "train: --resume: %s predates checkpoints that keep their options: not checked against "
             "this run's (%s)", path, mine);
    } else if (strcmp(recipe, mine) != 0) {
      st = ps_error(PS_EINVAL, "train: --resume: %s was trained with %s; this run asks for %s: resume with the "
                    "options it started with", path, recipe, mine);
      goto done;
    }
  }
  r->epoch = ints[3], r->best_epoch = ints[4], r->bad_epochs = ints[5], r->n_history = ints[6];
  if ((st = read_all(f, &r->best_score, 8, path)) || (st = read_all(f, r->rng.s, sizeof r->rng.s, path)) ||
      (st = read_all(f, r->history, sizeof(ps_train_epoch) * r->n_history, path)) || (st = read_all(f, &alen, 8, path)))
    goto done;
  if (alen > ((uint64_t)1 << 32) || !(adam = malloc(alen ? alen : 1))) {
    st = ps_error(PS_EFORMAT, "train: %s: bad optimizer state size", path);
    goto done;
  }
  if ((st = read_all(f, adam, alen, path))) goto done;
  for (int i = 0; i < ints[7]; i++) {
    const char *want = NULL;
    ps_tensor *t = ps_model_tensor(r->model, i, &want);
    uint32_t meta[2];
    uint64_t numel;
    if ((st = read_all(f, meta, 8, path))) goto done;
    if (meta[0] >= sizeof name || (st = read_all(f, name, meta[0], path))) {
      if (!st) st = ps_error(PS_EFORMAT, "train: %s: bad tensor name", path);
      goto done;
    }
    name[meta[0]] = 0;
    if ((st = read_all(f, &numel, 8, path))) goto done;
    if (strcmp(name, want) != 0 || numel != (uint64_t)ps_tensor_numel(t) ||
        (meta[1] != PS_DTYPE_F32 && meta[1] != PS_DTYPE_I64)) {
      st = ps_error(PS_EFORMAT, "train: %s: tensor %d is %s, expected %s", path, i, name, want);
      goto done;
    }
    size_t bytes = numel * ps_dtype_size((ps_dtype)meta[1]);
    free(buf);
    if (!(buf = malloc(bytes ? bytes : 1))) {
      st = ps_error(PS_ENOMEM, "train: out of memory");
      goto done;
    }
    if ((st = read_all(f, buf, bytes, path)) || (st = ps_tensor_copy_from_data_(t, buf, (ps_dtype)meta[1], numel))) goto done;
  }
  if (r->adam) st = ps_adam_load(r->adam, adam, alen);
done:
  free(adam);
  free(buf);
  fclose(f);
  return st;
}

int ps_train_checkpoint_load(const char *path, int device, ps_model **out) {
  if (!path || !out) return ps_error(PS_EINVAL, "train: NULL argument");
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return ps_error(PS_ENOTFOUND, "train: no checkpoint %s (%s)", path, strerror(errno));
  char magic[8];
  uint32_t ver = 0;
  int32_t ints[8];
  int ok = fread(magic, 1, 8, f) == 8 && fread(&ver, 4, 1, f) == 1 && fread(ints, sizeof ints, 1, f) == 1;
  fclose(f);
  if (!ok || memcmp(magic, CKPT_MAGIC, 8) != 0 || ver < 1 || ver > CKPT_VERSION || ints[1] < 2 ||
      ints[1] > PS_MODEL_MAX_CLASSES)
    return ps_error(PS_EFORMAT, "train: %s is not a PneumoScope checkpoint (versions 1-%u)", path, CKPT_VERSION);
  run r;
  memset(&r, 0, sizeof r);
  r.task = ints[0] & 0xff, r.roi = (ints[0] >> 8) & 0xff, r.K = ints[1], r.size = ints[2];
  r.world = (ints[0] >> 16) > 0 ? ints[0] >> 16 : 1; /* any world size: only the weights are read */
  if (!ps_roi_name(r.roi))
    return ps_error(PS_EFORMAT, "train: %s: unknown roi %d in the checkpoint", path, r.roi);
  r.history = calloc(MAX_HISTORY, sizeof(ps_train_epoch));
  ps_device dev = device == PS_TRAIN_DEVICE_CPU ? PS_DEVICE_CPU : device == PS_TRAIN_DEVICE_CUDA ? PS_DEVICE_CUDA : PS_DEVICE_AUTO;
  int st = r.history ? ps_torch_resolve_device(dev, &dev) : ps_error(PS_ENOMEM, "train: out of memory");
  if (!st) st = ps_model_create(r.K, dev, 0, &r.model);
  if (!st) st = read_ckpt(&r, path);
  if (!st) {
    ps_model_meta meta;
    st = ps_model_meta_default(r.K, &meta);
    meta.task = (ps_task)r.task;
    meta.input_size = r.size;
    meta.roi = r.roi;
    if (!st) st = ps_model_set_meta(r.model, &meta);
  }
  if (!st) *out = r.model, r.model = NULL;
  ps_model_free(r.model);
  free(r.history);
  return st;
}

static void iso_date(char *buf, size_t cap) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The smallest scale of the random resized crop (1: no crop): --crop, else the task's default. */
static double crop_min(const run *r) {
  return r->opts->crop_min > 0 ? r->opts->crop_min : r->task == PS_TASK_BINARY ? 0.8 : 1.0;
}

/* What the augmentation does, for the log and the model's recipe. */
static const char *augment_name(const run *r, char *buf, size_t n) {
  if (!r->augment) return "no augmentation";
  if (crop_min(r) < 1.0) snprintf(buf, n, "augmented (crop %g-1, jitter)", crop_min(r));
  else snprintf(buf, n, "augmented (jitter only)");
  return buf;
}

/* How the run trains, whatever its weights start from: the model's recipe after "ResNet18 <start>, ",
 * and what --resume holds a checkpoint to (resumed with other options, it would silently become
 * another run). */
static void recipe_options(const run *r, char *buf, size_t n) {
  char acc[48] = "", aug[48];
  if (r->accumulate > 1) snprintf(acc, sizeof acc, " (%d micro-batches per step)", r->accumulate);
  snprintf(buf, n, "Adam lr %g%s, batch %d%s, size %d, roi %s, %s sampling, %s", r->lr,
           r->opts->lr_cosine ? " (cosine decay to 0)" : "", r->batch, acc, r->size, ps_roi_name(r->roi),
           r->balance ? "class-balanced" : "shuffled", augment_name(r, aug, sizeof aug));
}

/* Metadata for a saved model: task, classes, size, ImageNet mean/std, threshold, provenance. */
static int set_meta(run *r, double threshold, const char *note) {
  ps_model_meta meta;
  int st = ps_model_meta_default(r->K, &meta);
  if (st) return st;
  meta.task = (ps_task)r->task;
  for (int c = 0; c < r->K; c++) snprintf(meta.classes[c], sizeof meta.classes[c], "%s", ps_train_class_name(r->task, c));
  meta.input_size = r->size;
  meta.threshold = threshold;
  meta.roi = r->roi;
  meta.temperature = ps_model_meta_get(r->model)->temperature; /* set by calibration, else 1 */
  meta.patient_ages[0] = r->ages[0], meta.patient_ages[1] = r->ages[1];
  char date[32];
  iso_date(date, sizeof date);
  const ps_train_epoch *be = NULL;
  for (int i = 0; i < r->n_history; i++)
    if (r->history[i].epoch == r->best_epoch) be = &r->history[i];
  char recipe[CKPT_MAX_RECIPE + 64], options[CKPT_MAX_RECIPE];
  recipe_options(r, options, sizeof options);
  snprintf(recipe, sizeof recipe, "ResNet18 %s, %s",
           r->opts->init ? (r->opts->init_keep_fc ? "fine-tuned from --init (fc kept)" : "from --init weights")
                         : "from scratch",
           options);
  char software[64];
  snprintf(software, sizeof software, "PneumoScope %s", ps_version());
  json_t *p = json_pack(
      "{s:s, s:o, s:i, s:i, s:o, s:s, s:i, s:i, s:s, s:o, s:o, s:o, s:s, s:s}", "software", software, "data",
      ps__json_str(r->opts->manifest), "training_films", r->n_train, "validation_films", r->n_val, "command",
      ps__json_str(r->opts->command ? r->opts->command : ""), "recipe", recipe, "epochs_run", r->n_history, "best_epoch",
      r->best_epoch, "monitor", ps_monitor_name(r->monitor), "val_auc", ps__json_num(be ? be->auc : NAN), "val_f1",
      ps__json_num(be ? be->f1 : NAN), "val_accuracy", ps__json_num(be ? be->accuracy : NAN), "threshold_rule",
      r->task == PS_TASK_BINARY ? "Youden J (max TPR-FPR) on the validation split, P(PNEUMONIA) >= threshold" : "argmax",
      "date", date);
  if (p && note) json_object_set_new(p, "note", ps__json_str(note));
  /* the metadata field holds PS_MODEL_PROVENANCE_MAX bytes: a very long command line or note gives way */
  char *text = NULL;
  for (int drop = 0; p && drop < 3; drop++) {
    if (drop) json_object_del(p, drop == 1 ? "command" : "note");
    text = json_dumps(p, JSON_REAL_PRECISION(4));
    if (!text || strlen(text) < sizeof meta.provenance) break;
    free(text);
    text = NULL;
  }
  json_decref(p);
  if (!text) return ps_error(PS_ENOMEM, "train: cannot write the provenance (out of memory)");
  snprintf(meta.provenance, sizeof meta.provenance, "%s", text);
  free(text);
  return ps_model_set_meta(r->model, &meta);
}

static int save_best(run *r, double threshold, const char *note) {
  int st = set_meta(r, threshold, note);
  if (st) return st;
  ps_model_save_opts so = {r->opts->save_half ? PS_DTYPE_F16 : PS_DTYPE_F32};
  return ps_model_save(r->model, r->best_path, &so);
}

/* After training: reload best, choose the threshold on validation, save it with provenance. */
static int finalize_best(run *r, double *threshold) {
  ps_model *trained = r->model, *best = NULL;
  int st = ps_model_load(r->best_path, r->dev, &best);
  if (st) return st;
  r->model = best;
  float *probs = malloc(sizeof(float) * r->K * (r->n_val + 1));
  float *score = malloc(sizeof(float) * (r->n_val + 1));
  double thr = 0.5, j = NAN;
  if (!probs || !score) {
    st = ps_error(PS_ENOMEM, "train: out of memory");
    goto done;
  }
  if ((st = predict_films(r, r->val_idx, r->n_val, r->val_y, probs, NULL))) goto done;
  if (r->task == PS_TASK_BINARY) {
    for (int i = 0; i < r->n_val; i++) score[i] = probs[i * 2 + 1];
    if (ps_metrics_youden_threshold(r->val_y, score, r->n_val, &thr, &j) != PS_OK) {
      ps_log(PS_LOG_WARN, "train: validation split holds one class only: threshold stays 0.5");
      thr = 0.5;
    }
    if (thr > 1) thr = 1;
    if (thr < 0) thr = 0;
    ps_log(PS_LOG_INFO, "train: decision threshold %.4f (Youden J %.3f on %d validation films)", thr, j, r->n_val);
  } else {
    thr = 0.5; /* unused for argmax; kept valid in the metadata */
  }
  { /* temperature scaling and the out-of-distribution detector (ps_calibrate.h), from the same films */
    int *train_y = malloc(sizeof(int) * (r->n_train + 1));
    ps_calibrate_result cal;
    char note[400];
    if (!train_y) {
      st = ps_error(PS_ENOMEM, "train: out of memory");
      goto done;
    }
    for (int i = 0; i < r->n_train; i++) train_y[i] = r->films.cls[r->train_idx[i]];
    ps_model_meta mm = *ps_model_meta_get(r->model);
    mm.threshold = thr;
    st = ps_model_set_meta(r->model, &mm);
    if (!st)
      st = ps_calibrate_model(r->model, r->pix, r->size, r->train_idx, train_y, r->n_train, r->val_idx, r->val_y, r->n_val,
                              NULL, &cal);
    free(train_y);
    if (st == PS_ENOMEM) goto done;
    if (st) { /* e.g. too few films: the model is still good, without a detector (classify says so) */
      snprintf(note, sizeof note, "calibration skipped: %.300s", ps_last_error());
      ps_log(PS_LOG_WARN, "train: %s", note);
      ps_model_free(best); /* the uncalibrated best model again, as saved */
      best = NULL;
      if ((st = ps_model_load(r->best_path, r->dev, &best))) goto done;
      r->model = best;
    } else {
      thr = cal.threshold;
      ps_log(PS_LOG_INFO,
             "train: temperature %.4f (validation ECE %.4f -> %.4f); out-of-distribution threshold %.4g (%.1f %% of "
             "validation films flagged)",
             cal.temperature, cal.ece_before, cal.ece_after, cal.ood_threshold, 100 * cal.val_flagged);
      snprintf(note, sizeof note,
               "calibration: temperature %.4f (fitted %.4f; validation ECE %.4f at T=1, %.4f stored); OOD detector %s "
               "threshold %.6g (validation quantile 0.99: %.2f %% of validation, %.2f %% of training films flagged)",
               cal.temperature, cal.temperature_fitted, cal.ece_before, cal.ece_after, "mahalanobis-shared-cov",
               cal.ood_threshold, 100 * cal.val_flagged, 100 * cal.train_flagged);
    }
    if ((st = save_best(r, thr, note))) goto done;
  }
  *threshold = thr;
done:
  r->model = trained;
  ps_model_free(best);
  free(probs);
  free(score);
  return st;
}

static void run_free(run *r) {
  ps_devbatch_free(r->devbatch);
  ps_adam_free(r->adam);
  ps_model_free(r->model);
  free(r->params);
  free(r->buffers);
  ps_dist_free(r->dist); /* its reducer holds references to the parameters: freed with it */
  ps_train_films_free(&r->films);
  ps_train_cache_release(&r->cache);
  free(r->train_idx);
  free(r->val_idx);
  free(r->val_y);
  free(r->history);
  free(r->best_path);
  free(r->last_path);
  free(r->hist_json);
  free(r->hist_csv);
  free(r->cache_path);
}

/* ---- the run ---- */

static int resolve(run *r, const ps_train_opts *o) {
  r->opts = o;
  if (!o->manifest || !*o->manifest) return ps_error(PS_EINVAL, "train: no manifest given");
  if (!o->outdir || !*o->outdir) return ps_error(PS_EINVAL, "train: no output folder given");
  if (o->task != PS_TASK_BINARY && o->task != PS_TASK_MULTICLASS) return ps_error(PS_EINVAL, "train: unknown task %d", o->task);
  r->task = o->task;
  r->K = r->task == PS_TASK_BINARY ? 2 : 3;
  r->epochs = o->epochs > 0 ? o->epochs : (r->task == PS_TASK_BINARY ? 30 : 50);
  r->batch = o->batch > 0 ? o->batch : 32;
  r->accumulate = o->accumulate > 0 ? o->accumulate : 1;
  if (r->accumulate > PS_TRAIN_MAX_ACCUMULATE)
    return ps_error(PS_EINVAL, "train: accumulate %d out of range 1..%d", r->accumulate, PS_TRAIN_MAX_ACCUMULATE);
  if (!(o->crop_min >= 0 && o->crop_min <= 1)) /* also NaN */
    return ps_error(PS_EINVAL, "train: crop scale %g out of range (0, 1]", o->crop_min);
  r->patience = o->patience != 0 ? o->patience : (r->task == PS_TASK_BINARY ? 5 : 10);
  r->size = o->size > 0 ? o->size : 224;
  r->lr = o->lr > 0 ? o->lr : 1e-3;
  r->monitor = o->monitor != PS_MONITOR_DEFAULT ? o->monitor : (r->task == PS_TASK_BINARY ? PS_MONITOR_AUC : PS_MONITOR_F1);
  r->world = o->dist.world_size > 1 ? o->dist.world_size : 1;
  r->rank = r->world > 1 ? o->dist.rank : 0;
  if (r->rank < 0 || r->rank >= r->world)
    return ps_error(PS_EINVAL, "train: rank %d outside a world of %d ranks", o->dist.rank, r->world);
  /* ranks of one node share its cores unless --threads says otherwise */
  r->threads = o->threads > 0 ? o->threads : ps_default_threads();
  if (o->threads <= 0 && r->world > 1 && o->dist.local_world_size > 1)
    r->threads = r->threads / o->dist.local_world_size > 0 ? r->threads / o->dist.local_world_size : 1;
  r->augment = !o->no_augment;
  r->balance = o->balance ? 1 : (o->no_balance ? 0 : r->task == PS_TASK_BINARY);
  r->seed = o->seed;
  r->roi = o->roi;
  r->ages[0] = o->patient_ages[0], r->ages[1] = o->patient_ages[1];
  if (ps_model_check_ages(r->ages, "train")) return PS_EINVAL;
  if (!ps_roi_name(r->roi))
    return ps_error(PS_EINVAL, "train: unknown roi %d (film, lungs or lungmask)", o->roi);
  if (r->batch < 2 || r->batch > 4096) return ps_error(PS_EINVAL, "train: batch %d out of range 2..4096", r->batch);
  if (r->size < 32 || r->size > 1024) return ps_error(PS_EINVAL, "train: size %d out of range 32..1024", r->size);
  if (o->monitor < PS_MONITOR_DEFAULT || o->monitor > PS_MONITOR_ACC) return ps_error(PS_EINVAL, "train: unknown monitor");
  if (!isfinite(r->lr) || r->lr > 10) return ps_error(PS_EINVAL, "train: learning rate %g out of range", r->lr);
  ps_device want = o->device == PS_TRAIN_DEVICE_CPU ? PS_DEVICE_CPU
                   : o->device == PS_TRAIN_DEVICE_CUDA ? PS_DEVICE_CUDA
                                                       : PS_DEVICE_AUTO;
  return ps_torch_resolve_device(want, &r->dev);
}

/* The cache is built by one process at a time: the ranks of a data-parallel run (one per node
 * on node-local disks, one in all on a shared file system) and concurrent runs sharing --cache.
 * The lock is flock() on the cache's folder (no lock file left behind): the first to take it
 * builds, the others wait and then map what it wrote. The holder also sweeps the temporaries a
 * killed builder left. Returns the descriptor (close to release), or -1 when the folder cannot be
 * opened (then no waiting: each builds its own copy, written atomically as always). */
static int cache_lock(const char *cache_path) {
  char *dir = strdup(cache_path), *slash = dir ? strrchr(dir, '/') : NULL;
  if (!dir) return -1;
  const char *base = slash ? slash + 1 : dir, *folder = !slash ? "." : slash == dir ? "/" : dir;
  if (slash) *slash = 0;
  int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ps_log(PS_LOG_INFO, "train: waiting for %s: another process is building it", cache_path);
    while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  if (fd >= 0) {
    const char *cb[] = {base};
    ps_train_sweep_tmp(folder, cb, 1);
  }
  free(dir);
  return fd;
}

static int setup_data(run *r, ps_progress_fn progress, void *user, ps_train_result *res) {
  int st = ps_train_films_read(r->opts->manifest, r->task, r->opts->limit, 1, &r->films);
  if (st) return st;
  ps_train_films *f = &r->films;
  if (f->count[0] < 2 || f->count[1] < 1)
    return ps_error(PS_EINVAL, "train: %s has %d training and %d validation films usable for the %s task (need >= 2 and >= 1)",
                    r->opts->manifest, f->count[0], f->count[1], ps_train_task_name(r->task));
  /* cache only what training reads: train + val, in manifest order */
  r->train_idx = malloc(sizeof(int) * f->n);
  r->val_idx = malloc(sizeof(int) * f->n);
  r->val_y = malloc(sizeof(int) * f->n);
  const char **paths = malloc(sizeof(char *) * f->n), **shas = malloc(sizeof(char *) * f->n);
  int *map = malloc(sizeof(int) * f->n);
  if (!r->train_idx || !r->val_idx || !r->val_y || !paths || !shas || !map) {
    st = ps_error(PS_ENOMEM, "train: out of memory");
    goto done;
  }
  int nc = 0;
  for (int i = 0; i < f->n; i++) {
    if (f->split[i] > 1) continue;
    paths[nc] = f->paths[i], shas[nc] = f->sha256[i], map[nc] = i;
    if (f->split[i] == 0) r->train_idx[r->n_train++] = nc;
    else r->val_y[r->n_val] = f->cls[i], r->val_idx[r->n_val++] = nc;
    nc++;
  }
  /* films.cls must be addressable by cache index: remap in place (cache order is a prefix order) */
  for (int k = 0; k < nc; k++) f->cls[k] = f->cls[map[k]];
  int built = 0, lock = cache_lock(r->cache_path);
  st = ps_train_cache_open(r->cache_path, r->size, r->roi, nc, paths, shas, r->threads, progress, user, &r->cache,
                           &built);
  r->pix = r->cache.pixels;
  if (lock >= 0) close(lock); /* releases the lock */
  res->cache_built = built;
  res->n_train = r->n_train, res->n_val = r->n_val, res->n_test = f->count[2];
done:
  free(paths);
  free(shas);
  free(map);
  return st;
}

/* Data-parallel: every rank starts from rank 0's weights and statistics (as DDP's constructor
 * syncs module state), then c10d's reducer takes the parameters. */
static int setup_dist_model(run *r) {
  const int nt = ps_model_num_tensors(r->model);
  ps_tensor **all = malloc(sizeof(ps_tensor *) * nt);
  r->buffers = malloc(sizeof(ps_tensor *) * nt);
  if (!all || !r->buffers) {
    free(all);
    return ps_error(PS_ENOMEM, "train: out of memory");
  }
  for (int i = 0; i < nt; i++) {
    ps_tensor *t = ps_model_tensor(r->model, i, NULL);
    int is_param = 0;
    for (int k = 0; k < r->n_params && !is_param; k++) is_param = r->params[k] == t;
    all[i] = t;
    if (!is_param) r->buffers[r->n_buffers++] = t;
  }
  int st = ps_dist_broadcast_(r->dist, all, nt, 0);
  free(all);
  return st ? st : ps_dist_reducer_create(r->dist, r->params, r->n_params);
}

static int setup_model(run *r) {
  int st = ps_torch_set_threads(r->threads);
  if (!st) st = ps_torch_manual_seed(r->seed);
  if (!st) st = ps_model_create(r->K, r->dev, r->seed, &r->model);
  if (st) return st;
  if (r->opts->init && !r->opts->resume) {
    const char *names[PS_MODEL_MAX_CLASSES];
    for (int c = 0; c < r->K; c++) names[c] = ps_train_class_name(r->task, c);
    st = r->opts->init_keep_fc ? ps_model_init_from_finetune(r->model, r->opts->init, names, r->K)
                               : ps_model_init_from(r->model, r->opts->init);
    if (st) return st;
  }
  /* CUDA: the settings of the device-resident bench (bench_gpu.c) and of PyTorch's reference; before
   * Adam takes its references to the parameters (channels_last replaces the conv weight tensors). */
  if (r->dev == PS_DEVICE_CUDA && ((st = ps_model_set_channels_last(r->model, 1)) || (st = ps_torch_set_cudnn_benchmark(1))))
    return st;
  r->n_params = ps_model_num_params(r->model);
  r->params = malloc(sizeof(ps_tensor *) * r->n_params);
  if (!r->params) return ps_error(PS_ENOMEM, "train: out of memory");
  for (int i = 0; i < r->n_params; i++) r->params[i] = ps_model_param(r->model, i, NULL);
  ps_adam_opts ao;
  memset(&ao, 0, sizeof ao);
  ao.lr = r->lr;
  if ((st = ps_adam_create(&r->adam, r->params, r->n_params, &ao))) return st;
  ps_rng_seed(&r->rng, r->seed ^ 0x5053545241494eull);
  r->best_score = NAN;
  if (r->opts->resume) {
    if ((st = read_ckpt(r, r->last_path))) return st;
    ps_log(PS_LOG_INFO, "train: resumed from %s after epoch %d (best epoch %d)", r->last_path, r->epoch, r->best_epoch);
  }
  if (r->dist && (st = setup_dist_model(r))) return st;
  return ps_model_set_train(r->model, 1);
}

/* One micro-batch as tensors on the run's device: films order[0..nb), augmented with seeds
 * (host path: fill_batch; device path: the same draws built there). */
static int make_batch(run *r, const int *order, int nb, const ps_augment_opts *aug, const uint64_t *seeds, float *x,
                      float *src, float *dst, int64_t *y, int *batch_idx, ps_tensor **xt, ps_tensor **yt) {
  const int S = r->size;
  int64_t xsh[4] = {nb, 3, S, S}, ysh[1] = {nb};
  int st;
  for (int k = 0; k < nb; k++) batch_idx[k] = order[k], y[k] = r->films.cls[order[k]];
  if (r->devbatch) {
    st = ps_devbatch_fill(r->devbatch, batch_idx, nb, r->augment ? aug : NULL, seeds, xt);
  } else if (!(st = fill_batch(r, batch_idx, nb, r->augment ? aug : NULL, seeds, x, src, dst))) {
    st = ps_tensor_from_f32(xt, x, xsh, 4, r->dev);
  }
  return st ? st : ps_tensor_from_data(yt, y, PS_DTYPE_I64, ysh, 1, r->dev);
}

/* One optimizer step: micro-batch j's mean loss weighted by w[j] (skipped when 1), gradients
 * accumulated; with dist, the last backward all-reduces them (DDP's reducer: the mean over ranks).
 * lv[j] gets micro-batch j's mean loss. */
static int step_core(ps_model *m, ps_adam *adam, ps_dist *dist, ps_tensor *const *x, ps_tensor *const *y, const double *w,
                     int nmicro, double *lv) {
  int st = ps_adam_zero_grad(adam);
  for (int j = 0; j < nmicro && st == PS_OK; j++) {
    ps_tensor *logits = NULL, *loss = NULL, *scaled = NULL;
    lv[j] = NAN;
    if (!(st = ps_model_forward(m, x[j], &logits)) && !(st = ps_op_cross_entropy(&loss, logits, y[j], NULL, 0.0)) &&
        !(st = ps_tensor_item(loss, &lv[j])) && (w[j] == 1.0 || !(st = ps_op_affine(&scaled, loss, w[j], 0.0))) &&
        (!dist || j < nmicro - 1 || !(st = ps_dist_expect_backward(dist))))
      st = ps_tensor_backward(scaled ? scaled : loss, NULL, 0);
    ps_tensor_free(scaled), ps_tensor_free(loss), ps_tensor_free(logits);
  }
  return st == PS_OK ? ps_adam_step(adam) : st;
}

int ps_train_step(ps_model *m, ps_adam *adam, ps_tensor *const *x, ps_tensor *const *y, const int *n, int nmicro,
                  double *loss_mean) {
  if (!m || !adam || !x || !y || !n || nmicro < 1 || nmicro > PS_TRAIN_MAX_ACCUMULATE)
    return ps_error(PS_EINVAL, "train: bad step arguments");
  int N = 0;
  for (int j = 0; j < nmicro; j++) N += n[j];
  if (N < 1) return ps_error(PS_EINVAL, "train: a step without films");
  double w[PS_TRAIN_MAX_ACCUMULATE], lv[PS_TRAIN_MAX_ACCUMULATE], sum = 0;
  /* micro-batch j's share n_j / N of the mean (none when it is the whole step: unchanged) */
  for (int j = 0; j < nmicro; j++) w[j] = nmicro == 1 ? 1.0 : (double)n[j] / N;
  int st = step_core(m, adam, NULL, x, y, w, nmicro, lv);
  for (int j = 0; j < nmicro; j++) sum += lv[j] * n[j];
  if (loss_mean) *loss_mean = sum / N;
  return st;
}

/* One pass over the training films. *cancelled set when progress asked to stop.
 * Every rank walks the same global order: optimizer step s covers the global micro-batches
 * s*G .. s*G+G-1 (G = world x accumulate); rank r builds and runs micro-batches s*G + r*A .. + A-1
 * (A = accumulate), drawing the augmentation seeds of all of them so its RNG stays the one a single
 * process has. A rank left without a micro-batch in the epoch's short last step runs the step's
 * first one with weight 0 (its gradient adds nothing, but it joins the all-reduce). */
static int train_epoch(run *r, ps_progress_fn progress, void *user, ps_train_epoch *e, int *cancelled) {
  const int S = r->size, B = r->batch, n = r->n_train, A = r->accumulate, W = r->world;
  const size_t px = (size_t)S * S;
  ps_augment_opts aug = ps_augment_opts_default();
  const double crop = crop_min(r);
  if (crop < 1.0) {
    aug.crop_scale_min = crop, aug.crop_scale_max = 1.0, aug.crop_ratio_min = 0.9, aug.crop_ratio_max = 1.1;
  } else {
    aug.crop_scale_min = 0, aug.crop_scale_max = 0; /* jitter only */
  }
  aug.brightness = 0.2, aug.contrast = 0.2, aug.hflip = 0, aug.rotate_deg = 0;
  int *order = malloc(sizeof(int) * n);
  float *x = malloc(sizeof(float) * 3 * px * B), *src = malloc(sizeof(float) * px), *dst = malloc(sizeof(float) * px);
  int64_t *y = malloc(sizeof(int64_t) * B);
  int *batch_idx = malloc(sizeof(int) * B);
  uint64_t *seeds = malloc(sizeof(uint64_t) * B), *seeds0 = malloc(sizeof(uint64_t) * B);
  ps_tensor *xs[PS_TRAIN_MAX_ACCUMULATE] = {0}, *ys[PS_TRAIN_MAX_ACCUMULATE] = {0};
  int st = PS_OK;
  double tot = 0, seen = 0;
  if (!order || !x || !src || !dst || !y || !batch_idx || !seeds || !seeds0) {
    st = ps_error(PS_ENOMEM, "train: out of memory");
    goto done;
  }
  epoch_order(r, order);
  const int nbatches = (n + B - 1) / B, G = W * A;
  /* batch norm needs 2 films: a last micro-batch of one is dropped */
  const int usable = nbatches > 0 && n - (nbatches - 1) * B < 2 ? nbatches - 1 : nbatches;
  const int nsteps = (usable + G - 1) / G;
  double t0 = now_s();
  for (int s = 0; s < nsteps; s++) {
    const int g0 = s * G, g1 = g0 + G < usable ? g0 + G : usable; /* the step's global micro-batches */
    const int mine0 = g0 + r->rank * A, mine1 = mine0 + A < g1 ? mine0 + A : g1;
    int N = 0, nm = 0, ns[PS_TRAIN_MAX_ACCUMULATE];
    if (r->opts->lr_cosine) { /* cosine decay over the run's max epochs, by step */
      const double t = (r->epoch + (double)g0 / nbatches) / r->epochs;
      if ((st = ps_adam_set_lr(r->adam, r->lr * 0.5 * (1.0 + cos(M_PI * t))))) goto done;
    }
    for (int g = g0; g < g1; g++) {
      const int nb = (g + 1) * B <= n ? B : n - g * B;
      N += nb;
      for (int k = 0; k < nb; k++) seeds[k] = r->augment ? ps_rng_next(&r->rng) : 0;
      if (g == g0) memcpy(seeds0, seeds, sizeof(uint64_t) * nb);
      if (g < mine0 || g >= mine1) continue;
      if ((st = make_batch(r, order + (size_t)g * B, nb, &aug, seeds, x, src, dst, y, batch_idx, &xs[nm], &ys[nm]))) goto done;
      ns[nm++] = nb;
    }
    double w[PS_TRAIN_MAX_ACCUMULATE], lv[PS_TRAIN_MAX_ACCUMULATE];
    if (nm == 0) { /* nothing of mine in this short step: join it with weight 0 */
      const int nb = B <= n - g0 * B ? B : n - g0 * B;
      if ((st = make_batch(r, order + (size_t)g0 * B, nb, &aug, seeds0, x, src, dst, y, batch_idx, &xs[0], &ys[0]))) goto done;
      w[0] = 0.0, ns[0] = 0, nm = 1;
    } else {
      /* weights n_j x W / N: the reducer's mean over ranks then gives sum_j n_j / N g_j, the
       * gradient of the step's mean loss (one process: n_j / N, or 1 for a lone micro-batch) */
      for (int j = 0; j < nm; j++) w[j] = nm == 1 && W == 1 ? 1.0 : (double)ns[j] * W / N;
    }
    if (r->dist && r->n_buffers && (st = ps_dist_broadcast_(r->dist, r->buffers, r->n_buffers, 0))) goto done;
    /* CUDA: bf16 autocast for this step only. Autocast keeps its bf16 copy of each weight until it
     * is switched off, so switching it off after every step (as PyTorch's `with autocast()` per
     * step does) is what lets the next forward see the weights Adam has just changed; left on for
     * the epoch, every forward ran on the epoch's first weights and training diverged. */
    if (r->dev == PS_DEVICE_CUDA && (st = ps_torch_set_autocast(1))) goto done;
    st = step_core(r->model, r->adam, r->dist, xs, ys, w, nm, lv);
    if (r->dev == PS_DEVICE_CUDA) {
      int off = ps_torch_set_autocast(0);
      if (!st) st = off;
    }
    if (st) goto done;
    for (int j = 0; j < nm; j++) {
      if (ns[j] && !isfinite(lv[j])) {
        st = ps_error(PS_ESTATE, "train: loss became %g in epoch %d batch %d (learning rate %g too high?)", lv[j],
                      r->epoch + 1, g0 + r->rank * A + j + 1, r->lr);
        goto done;
      }
      tot += lv[j] * ns[j], seen += ns[j];
      ps_tensor_free(xs[j]), ps_tensor_free(ys[j]);
      xs[j] = ys[j] = NULL;
    }
    if (progress) {
      char what[96];
      snprintf(what, sizeof what, "epoch %d/%d batch %d/%d loss %.4f", r->epoch + 1, r->epochs, g1, nbatches,
               seen ? tot / seen : NAN);
      double frac = (r->epoch + (double)g1 / nbatches) / r->epochs;
      if (progress(frac, what, user)) {
        *cancelled = 1;
        goto done;
      }
    }
  }
  e->seconds = now_s() - t0;
  if (r->dist) { /* the epoch's loss over every rank's films */
    double v[2] = {tot, seen};
    if ((st = ps_dist_allreduce_sum_f64(r->dist, v, 2))) goto done;
    tot = v[0], seen = v[1];
  }
  e->train_loss = seen ? tot / seen : NAN;
  e->images_per_s = e->seconds > 0 ? seen / e->seconds : 0;
done:
  if (r->dev == PS_DEVICE_CUDA) ps_torch_set_autocast(0);
  for (int j = 0; j < PS_TRAIN_MAX_ACCUMULATE; j++) ps_tensor_free(xs[j]), ps_tensor_free(ys[j]);
  free(order), free(x), free(src), free(dst), free(y), free(batch_idx), free(seeds), free(seeds0);
  return st;
}

/* Validation metrics of the epoch. Data-parallel: every rank predicts its share of the validation
 * films with rank 0's BatchNorm statistics (broadcast first, so all ranks hold the same model) and
 * the shares are summed over ranks: each rank does 1/world of the work, and no rank waits on
 * another for a whole validation pass (which a large validation split could stretch past
 * --dist-timeout). */
static int validate(run *r, ps_train_epoch *e) {
  const int K = r->K, n = r->n_val;
  float *probs = calloc((size_t)K * n + 1, sizeof(float));
  double *sum = r->dist ? calloc((size_t)K * n + 1, sizeof(double)) : NULL;
  if (!probs || (r->dist && !sum)) {
    free(probs), free(sum);
    return ps_error(PS_ENOMEM, "train: out of memory");
  }
  const int lo = (int)((int64_t)n * r->rank / r->world), hi = (int)((int64_t)n * (r->rank + 1) / r->world);
  double loss = 0;
  int st = PS_OK;
  if (r->dist && r->n_buffers) st = ps_dist_broadcast_(r->dist, r->buffers, r->n_buffers, 0);
  if (!st && hi > lo)
    st = predict_films(r, r->val_idx + lo, hi - lo, r->val_y + lo, probs + (size_t)lo * K, &loss);
  if (!st && r->dist) { /* the shares, and the loss summed over films */
    for (size_t i = (size_t)lo * K; i < (size_t)hi * K; i++) sum[i] = probs[i];
    sum[(size_t)K * n] = hi > lo ? loss * (hi - lo) : 0;
    if (!(st = ps_dist_allreduce_sum_f64(r->dist, sum, K * n + 1))) {
      for (size_t i = 0; i < (size_t)K * n; i++) probs[i] = (float)sum[i];
      loss = n ? sum[(size_t)K * n] / n : NAN;
    }
  }
  e->val_loss = loss;
  ps_metrics m;
  if (!st) st = ps_metrics_compute(r->val_y, probs, n, K, 0.5, &m);
  if (!st) {
    e->accuracy = m.accuracy, e->auc = m.roc_auc;
    if (K == 2) e->precision = m.precision[1], e->recall = m.recall[1], e->f1 = m.f1[1];
    else e->precision = m.macro_precision, e->recall = m.macro_recall, e->f1 = m.macro_f1;
  }
  free(probs), free(sum);
  return st;
}

/* The end of an epoch on rank 0 (the only rank in one process), after validate: track the best
 * epoch, write best.safetensors when it improved, last.ckpt and the history; *stopped on early stop. */
static int epoch_end(run *r, ps_train_epoch *ep, int *stopped) {
  ps_train_epoch e = *ep;
  int st;
  double score = monitored(r->monitor, &e);
  if (better(r->monitor, score, r->best_score) || !file_exists(r->best_path)) {
    e.improved = 1;
    r->best_score = score, r->best_epoch = e.epoch, r->bad_epochs = 0;
  } else {
    r->bad_epochs++;
  }
  r->history[r->n_history++] = e;
  r->epoch = e.epoch;
  if (e.improved && (st = save_best(r, 0.5, "threshold not yet chosen (training in progress)"))) return st;
  if ((st = ps__write_atomic(r->last_path, 1, write_ckpt, r)) ||
      (st = ps__write_atomic(r->hist_json, 1, write_history_json, r)) ||
      (st = ps__write_atomic(r->hist_csv, 1, write_history_csv, r)))
    return st;
  ps_log(PS_LOG_INFO,
         "epoch %d/%d train_loss %.4f val_loss %.4f precision %.3f recall %.3f f1 %.3f acc %.3f auc %.4f | %.1f s, %.1f images/s%s",
         e.epoch, r->epochs, e.train_loss, e.val_loss, e.precision, e.recall, e.f1, e.accuracy, e.auc, e.seconds,
         e.images_per_s, e.improved ? " | best" : "");
  if (r->patience > 0 && r->bad_epochs >= r->patience) {
    ps_log(PS_LOG_INFO, "train: early stop: val %s did not improve for %d epochs (best %.4f at epoch %d)",
           ps_monitor_name(r->monitor), r->patience, r->best_score, r->best_epoch);
    *stopped = 1;
  }
  *ep = e;
  return PS_OK;
}

int ps_train_run(const ps_train_opts *opts, ps_progress_fn progress, void *user, ps_train_result *result) {
  run r;
  memset(&r, 0, sizeof r);
  ps_train_result res;
  memset(&res, 0, sizeof res);
  ps_train_opts zero;
  if (!opts) {
    memset(&zero, 0, sizeof zero);
    opts = &zero;
  }
  int st = resolve(&r, opts), cancelled = 0;
  if (st) goto fail;
  if ((st = ps_mkdir_p("train", opts->outdir))) goto fail;
  char cname[64];
  ps_train_cache_name(r.size, r.roi, cname, sizeof cname);
  r.best_path = ps__path_join(opts->outdir, "best.safetensors");
  r.last_path = ps__path_join(opts->outdir, "last.ckpt");
  r.hist_json = ps__path_join(opts->outdir, "history.json");
  r.hist_csv = ps__path_join(opts->outdir, "history.csv");
  r.cache_path = opts->cache && *opts->cache ? strdup(opts->cache) : ps__path_join(opts->outdir, cname);
  r.history = calloc(MAX_HISTORY, sizeof(ps_train_epoch));
  if (!r.best_path || !r.last_path || !r.hist_json || !r.hist_csv || !r.cache_path || !r.history) {
    st = ps_error(PS_ENOMEM, "train: out of memory");
    goto fail;
  }
  if (r.world > 1) { /* the rendezvous first: a missing peer ends the run before any work */
    const ps_train_dist *dd = &opts->dist;
    ps_dist_opts d = {dd->master_addr, dd->master_port, r.rank, r.world, dd->timeout_s, dd->agent_store,
                      dd->restart_count, r.dev};
    ps_log(PS_LOG_INFO, "train: rank %d of %d: joining the group at %s:%d (Gloo, timeout %g s)", r.rank, r.world,
           dd->master_addr ? dd->master_addr : "?", dd->master_port, dd->timeout_s > 0 ? dd->timeout_s : 300);
    if ((st = ps_dist_create(&r.dist, &d))) goto fail;
  }
  if (r.rank == 0) { /* temporaries of a killed earlier run (their writer is gone): the run
                       * folder's own files (the cache's: under its lock, setup_data) */
    const char *own[] = {"best.safetensors", "last.ckpt", "history.json", "history.csv"};
    ps_train_sweep_tmp(opts->outdir, own, 4);
  }
  if (r.epochs > MAX_HISTORY) {
    st = ps_error(PS_EINVAL, "train: at most %d epochs", MAX_HISTORY);
    goto fail;
  }
  char aug[48];
  if (!opts->resume && file_exists(r.last_path))
    ps_log(PS_LOG_WARN, "train: %s exists: starting a new run over it (use --resume to continue it)", r.last_path);
  ps_log(PS_LOG_INFO, "train: %s task, size %d, roi %s, batch %d x %d per step, lr %g, max %d epochs, patience %d on val %s, %s, %s, %s, %d threads",
         ps_train_task_name(r.task), r.size, ps_roi_name(r.roi), r.batch, r.accumulate, r.lr, r.epochs, r.patience, ps_monitor_name(r.monitor),
         r.balance ? "class-balanced sampling" : "shuffled", augment_name(&r, aug, sizeof aug),
         r.dev == PS_DEVICE_CUDA ? "CUDA bf16 autocast" : "CPU fp32", r.threads);
  if ((st = setup_data(&r, progress, user, &res)) != PS_OK) {
    cancelled = st == PS_ECANCELLED;
    goto fail;
  }
  ps_log(PS_LOG_INFO, "train: %d training, %d validation films", r.n_train, r.n_val);
  if ((st = setup_model(&r))) goto fail;
  if (ps_devbatch_wanted(r.dev)) { /* issue 8: the uint8 cache on the device, batches augmented there */
    if (ps_devbatch_create(&r.devbatch, r.pix, r.n_train + r.n_val, r.size, r.dev) == PS_OK)
      ps_log(PS_LOG_INFO, "train: batches built on the %s (cache of %d films resident there)",
             r.dev == PS_DEVICE_CUDA ? "GPU" : "CPU device path", r.n_train + r.n_val);
    else
      ps_log(PS_LOG_WARN, "train: batches stay on the host: %s", ps_last_error());
  }

  int stopped = 0;
  if (r.patience > 0 && r.bad_epochs >= r.patience) stopped = 1; /* resumed a finished run */
  while (!stopped && r.epoch < r.epochs) {
    ps_train_epoch e;
    memset(&e, 0, sizeof e);
    e.epoch = r.epoch + 1;
    if ((st = train_epoch(&r, progress, user, &e, &cancelled))) goto fail;
    if (cancelled) break;
    if ((st = validate(&r, &e))) goto fail;
    int st0 = r.rank == 0 ? epoch_end(&r, &e, &stopped) : PS_OK;
    if (r.dist) { /* rank 0's decisions, for every rank */
      double dec[5] = {st0 == PS_OK, stopped, r.best_score, r.best_epoch, r.bad_epochs};
      if ((st = ps_dist_broadcast_f64(r.dist, dec, 5, 0))) goto fail;
      if (r.rank != 0) {
        if (!dec[0]) {
          st = ps_error(PS_EIO, "train: rank 0 stopped at the end of epoch %d (its log says why)", e.epoch);
          goto fail;
        }
        stopped = dec[1] != 0, r.best_score = dec[2], r.best_epoch = (int)dec[3], r.bad_epochs = (int)dec[4];
        r.history[r.n_history++] = e;
        r.epoch = e.epoch;
      }
    }
    if ((st = st0)) goto fail;
  }
  if (r.rank != 0) { /* rank 0 chooses the threshold and writes the model */
    if (!cancelled) ps_log(PS_LOG_INFO, "train: rank %d of %d done after epoch %d", r.rank, r.world, r.epoch);
    goto fail;
  }
  if (cancelled) {
    if (!file_exists(r.best_path)) {
      /* a loadable model even when stopped inside the first epoch */
      if ((st = save_best(&r, 0.5, "cancelled before the first epoch ended"))) goto fail;
    }
    st = ps_error(PS_ECANCELLED, "train: cancelled in epoch %d; %s is loadable, --resume continues from epoch %d",
                  r.epoch + 1, r.best_path, r.epoch + 1);
    goto fail;
  }
  if ((st = finalize_best(&r, &res.threshold))) goto fail;
  res.stopped_early = stopped;
  ps_log(PS_LOG_INFO, "train: done: best epoch %d (val %s %.4f), model %s", r.best_epoch, ps_monitor_name(r.monitor),
         r.best_score, r.best_path);
fail:
  if (r.dist && st != PS_OK && st != PS_ECANCELLED) { /* which peer is gone, when one is */
    char why[1024];
    snprintf(why, sizeof why, "%s", ps_last_error());
    double t = opts->dist.timeout_s > 0 && opts->dist.timeout_s < 10 ? opts->dist.timeout_s : 10;
    if (ps_dist_check_peers(r.dist, t, why) != PS_OK) {
      char peers[512];
      snprintf(peers, sizeof peers, "%s", ps_last_error());
      st = ps_error(st, "%s; peer check: %s", why, peers);
    } else {
      ps_error(st, "%s", why);
    }
  }
  res.epochs_run = r.n_history;
  res.best_epoch = r.best_epoch;
  res.best_score = r.best_score;
  if (result) *result = res;
  if (cancelled && st == PS_OK) st = ps_error(PS_ECANCELLED, "train: cancelled");
  run_free(&r);
  return st;
}
