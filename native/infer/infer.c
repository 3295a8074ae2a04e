/* infer.c — batch classification pipeline (see ps_infer.h). Worker threads read and preprocess
 * films into slots; the calling thread gathers them in order into batches, runs the model and
 * delivers results. Workers stay at most a window of films ahead to bound memory. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "ps_image_io.h"
#include "ps_infer.h"
#include "shard_internal.h" /* ps_shard_rows: the block rule classify shares with evaluate and audit */
#include "ps_lung.h"
#include "ps_preprocess.h"

/* CPU: one thread costs the same per film at batch 1 and 16 (67 vs 72 ms), but with several
 * OpenMP threads on a busy machine batch 16 ran 1.9x faster than batch 4 (fewer parallel regions). */
#define DEFAULT_BATCH_CPU 16
#define DEFAULT_BATCH_CUDA 32
#define MAX_DEPTH 64

/* ---- collecting files ---------------------------------------------------------------------- */

int ps_infer_skip_name(const char *path) {
  static const char *skip[] = {".txt", ".csv", ".json", ".md",   ".xml", ".html", ".htm",        ".py",
                               ".sh",  ".npy", ".npz",  ".yaml", ".yml", ".log",  ".safetensors", ".pt",
                               ".pth", ".zip", ".gz",   ".tar",  ".pdf", ".ini",  ".cfg",         ".tsv"};
  if (!path) return 1;
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  if (base[0] == '.') return 1; /* hidden (.DS_Store ...) */
  const char *dot = strrchr(base, '.');
  if (!dot) return 0;
  for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
    if (!strcasecmp(dot, skip[i])) return 1;
  return 0;
}

typedef struct strvec {
  char **v;
  int n, cap;
} strvec;

static int vec_push(strvec *s, const char *p) {
  if (s->n == s->cap) {
    int nc = s->cap ? s->cap * 2 : 64;
    char **nv = realloc(s->v, sizeof *nv * (size_t)nc);
    if (!nv) return ps_error(PS_ENOMEM, "infer: out of memory listing files");
    s->v = nv;
    s->cap = nc;
  }
  s->v[s->n] = strdup(p);
  if (!s->v[s->n]) return ps_error(PS_ENOMEM, "infer: out of memory listing files");
  s->n++;
  return PS_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int walk(const char *dir, int depth, strvec *out) {
  if (depth > MAX_DEPTH) return ps_error(PS_ELIMIT, "infer: folders nested deeper than %d at %s", MAX_DEPTH, dir);
  DIR *d = opendir(dir);
  if (!d) return ps_error(PS_EIO, "infer: cannot open folder %s: %s", dir, strerror(errno));
  strvec names = {0};
  int st = PS_OK;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || e->d_name[0] == '.') continue;
    if ((st = vec_push(&names, e->d_name))) break;
  }
  closedir(d);
  if (names.n) qsort(names.v, (size_t)names.n, sizeof *names.v, cmp_str);
  for (int i = 0; st == PS_OK && i < names.n; i++) {
    char *p = NULL;
    size_t dl = strlen(dir);
    if (asprintf(&p, "%s%s%s", dir, (dl && dir[dl - 1] == '/') ? "" : "/", names.v[i]) < 0) {
      st = ps_error(PS_ENOMEM, "infer: out of memory");
      break;
    }
    struct stat sb;
    if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
      st = walk(p, depth + 1, out);
    } else if (!ps_infer_skip_name(p)) {
      st = vec_push(out, p);
    }
    free(p);
  }
  for (int i = 0; i < names.n; i++) free(names.v[i]);
  free(names.v);
  return st;
}

void ps_infer_list_free(char **files, int nfiles) {
  if (!files) return;
  for (int i = 0; i < nfiles; i++) free(files[i]);
  free(files);
}

int ps_infer_collect(const char *const *paths, int n, char ***files, int *nfiles) {
  if (!files || !nfiles || (n > 0 && !paths)) return ps_error(PS_EINVAL, "infer: NULL argument");
  *files = NULL;
  *nfiles = 0;
  strvec out = {0};
  int st = PS_OK;
  for (int i = 0; st == PS_OK && i < n; i++) {
    struct stat sb;
    if (!paths[i]) continue;
    if (stat(paths[i], &sb) == 0 && S_ISDIR(sb.st_mode)) st = walk(paths[i], 0, &out);
    else st = vec_push(&out, paths[i]); /* named explicitly: always tried (missing -> failed film) */
  }
  if (st) {
    ps_infer_list_free(out.v, out.n);
    return st;
  }
  *files = out.v;
  *nfiles = out.n;
  return PS_OK;
}

/* ---- pipeline ------------------------------------------------------------------------------- */

typedef struct slot {
  int done;
  int status;
  char err[600];
  float *x; /* (3, S, S) */
  ps_film_meta meta;
  double roi[4];
  int roi_fallback;
} slot;

typedef struct ctx {
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_done;
  char **files;
  int n;
  int next;     /* next file a worker takes */
  int consumed; /* files before this were delivered (slots freed) */
  int window;
  int stop;
  slot *slots;
  int size;
  float mean[3], std[3];
  int roi;
  ps_read_opts read;
} ctx;

static void decode_one(ctx *c, int i, slot *s) {
  ps_image *img = NULL;
  float *x = NULL;
  int st = ps_image_read(c->files[i], &c->read, &img);
  if (st == PS_OK) {
    x = malloc(sizeof(float) * 3 * (size_t)c->size * (size_t)c->size);
    if (!x) st = ps_error(PS_ENOMEM, "infer: out of memory for %s", c->files[i]);
  }
  if (st == PS_OK) st = ps_lung_roi_input(img, c->roi, c->size, c->mean, c->std, x, s->roi, &s->roi_fallback);
  if (st == PS_OK) {
    s->meta = img->meta;
    s->x = x;
    x = NULL;
  } else {
    const char *d = ps_last_error();
    if (d && *d && strstr(d, c->files[i])) snprintf(s->err, sizeof s->err, "%s", d);
    else snprintf(s->err, sizeof s->err, "%s: %s", c->files[i], (d && *d) ? d : ps_strerror(st));
  }
  s->status = st;
  free(x);
  ps_image_free(img);
}

static void *worker(void *arg) {
  ctx *c = arg;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (!c->stop && c->next < c->n && c->next >= c->consumed + c->window) pthread_cond_wait(&c->cv_work, &c->mu);
    if (c->stop || c->next >= c->n) break;
    int i = c->next++;
    pthread_mutex_unlock(&c->mu);
    slot tmp;
    memset(&tmp, 0, sizeof tmp);
    decode_one(c, i, &tmp);
    pthread_mutex_lock(&c->mu);
    c->slots[i] = tmp;
    c->slots[i].done = 1;
    pthread_cond_broadcast(&c->cv_done);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

int ps_infer_shard_range(int total, int k, int n, int *lo, int *hi) { return ps_shard_rows(total, 1, k, n, lo, hi); }

/* A non-negative integer from the environment variable name: 1 and *v, 0 when unset, -1 when not
 * a number. */
static int env_int(const char *name, long *v) {
  const char *s = getenv(name);
  if (!s || !*s) return 0;
  char *end = NULL;
  errno = 0;
  *v = strtol(s, &end, 10);
  return (*end || errno || *v < 0 || *v > INT_MAX) ? -1 : 1;
}

int ps_infer_shard_from_env(int *k, int *n) {
  if (!k || !n) return ps_error(PS_EINVAL, "infer: NULL shard output");
  long id = 0, count = 0, min = 0;
  int a = env_int("SLURM_ARRAY_TASK_ID", &id), b = env_int("SLURM_ARRAY_TASK_COUNT", &count);
  if (a || b) {
    if (a != 1 || b != 1 || env_int("SLURM_ARRAY_TASK_MIN", &min) < 0 || id < min || id - min >= count)
      return ps_error(PS_EINVAL, "infer: SLURM_ARRAY_TASK_ID=%s, SLURM_ARRAY_TASK_COUNT=%s, SLURM_ARRAY_TASK_MIN=%s "
                      "do not name one shard of a contiguous array (use --array=0-N or 1-N)",
                      getenv("SLURM_ARRAY_TASK_ID") ? getenv("SLURM_ARRAY_TASK_ID") : "(unset)",
                      getenv("SLURM_ARRAY_TASK_COUNT") ? getenv("SLURM_ARRAY_TASK_COUNT") : "(unset)",
                      getenv("SLURM_ARRAY_TASK_MIN") ? getenv("SLURM_ARRAY_TASK_MIN") : "(unset)");
    *k = (int)(id - min), *n = (int)count;
    return PS_OK;
  }
  a = env_int("RANK", &id), b = env_int("WORLD_SIZE", &count);
  if (a || b) {
    if (a != 1 || b != 1 || count < 1 || id >= count)
      return ps_error(PS_EINVAL, "infer: RANK=%s, WORLD_SIZE=%s do not name one shard",
                      getenv("RANK") ? getenv("RANK") : "(unset)", getenv("WORLD_SIZE") ? getenv("WORLD_SIZE") : "(unset)");
    *k = (int)id, *n = (int)count;
    return PS_OK;
  }
  return ps_error(PS_ENOTFOUND, "infer: no shard in the environment: neither SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT nor "
                  "RANK/WORLD_SIZE is set");
}

int ps_infer_run(ps_model *m, const char *const *paths, int n, const ps_infer_opts *opts, ps_infer_fn fn, void *user,
                 int *nfailed) {
  ctx c;
  char **files = NULL;
  int nf = 0, st, nthreads = 0, failed = 0;
  pthread_t *threads = NULL;
  float *batch = NULL, *probs = NULL, *scores = NULL;
  int *bidx = NULL;
  char reason[160];
  if (nfailed) *nfailed = 0;
  if (!m || !fn) return ps_error(PS_EINVAL, "infer: model/callback is NULL");
  ps_infer_opts o = {0};
  if (opts) o = *opts;
  if (o.batch < 0 || o.threads < 0) return ps_error(PS_EINVAL, "infer: batch and threads must be >= 0");
  int B = o.batch ? o.batch : (ps_model_device(m) == PS_DEVICE_CUDA ? DEFAULT_BATCH_CUDA : DEFAULT_BATCH_CPU);
  int T = o.threads ? o.threads : ps_default_threads();
  if (B > 1024) B = 1024;
  if (T < 1) T = 1;
  if (T > 64) T = 64;
  if (o.shard_count < 0 || (o.shard_count > 0 && (o.shard_index < 0 || o.shard_index >= o.shard_count)))
    return ps_error(PS_EINVAL, "infer: shard %d of %d does not exist", o.shard_index + 1, o.shard_count);
  if ((st = ps_infer_collect(paths, n, &files, &nf))) return st;
  int first = 0; /* index of files[0] in the whole list */
  if (o.shard_count > 0) { /* whole batches of B films per shard (see the flush below) */
    int lo = 0, hi = 0;
    ps_shard_rows(nf, B, o.shard_index, o.shard_count, &lo, &hi);
    for (int i = 0; i < nf; i++)
      if (i < lo || i >= hi) free(files[i]);
    memmove(files, files + lo, sizeof *files * (size_t)(hi - lo));
    first = lo;
    nf = hi - lo;
  }
  const ps_model_meta *mm = ps_model_meta_get(m);
  int K = ps_model_num_classes(m);
  memset(&c, 0, sizeof c);
  c.files = files;
  c.n = nf;
  c.size = mm->input_size;
  c.roi = mm->roi;
  memcpy(c.mean, mm->mean, sizeof c.mean);
  memcpy(c.std, mm->std, sizeof c.std);
  c.read = o.read;
  if (o.fast_decode && c.read.min_side <= 0) c.read.min_side = (c.roi ? 3 : 2) * c.size;
  c.window = 2 * B + T;
  size_t per = (size_t)3 * (size_t)c.size * (size_t)c.size;
  c.slots = calloc((size_t)(nf ? nf : 1), sizeof *c.slots);
  batch = malloc(sizeof(float) * per * (size_t)B);
  probs = malloc(sizeof(float) * (size_t)K * (size_t)B);
  scores = malloc(sizeof(float) * (size_t)B);
  bidx = malloc(sizeof(int) * (size_t)(nf ? nf : 1));
  threads = calloc((size_t)T, sizeof *threads);
  if (!c.slots || !batch || !probs || !scores || !bidx || !threads) {
    st = ps_error(PS_ENOMEM, "infer: out of memory");
    goto out;
  }
  pthread_mutex_init(&c.mu, NULL);
  pthread_cond_init(&c.cv_work, NULL);
  pthread_cond_init(&c.cv_done, NULL);
  if (T > nf) T = nf;
  for (; nthreads < T; nthreads++)
    if (pthread_create(&threads[nthreads], NULL, worker, &c) != 0) break;
  if (nf > 0 && nthreads == 0) {
    st = ps_error(PS_ENOMEM, "infer: cannot start decoding threads");
    goto join;
  }
  /* While the first films decode: the engine's kernels and weight layouts for the first batch
   * (a one-film process spent about a third of its time on these after the film was ready). A
   * failure here would be the forward's too, and is reported there. */
  if (nf > 0) ps_model_prepare(m, nf < B ? nf : B, c.size, c.size);
  st = PS_OK;
  int start = 0, nb = 0; /* pending results [start, i], nb of them in the batch */
  for (int i = 0; i < nf && st == PS_OK; i++) {
    pthread_mutex_lock(&c.mu);
    while (!c.slots[i].done) pthread_cond_wait(&c.cv_done, &c.mu);
    pthread_mutex_unlock(&c.mu);
    slot *s = &c.slots[i];
    if (s->status == PS_OK) {
      memcpy(batch + per * (size_t)nb, s->x, sizeof(float) * per);
      free(s->x);
      s->x = NULL;
      bidx[i] = nb++;
    } else {
      bidx[i] = -1;
    }
    /* Flush every B films of the list (the readable ones among them form the batch), so a film's
     * batch depends only on its position: a shard starting at a multiple of B gets the same batches,
     * hence the same probabilities to the bit, as one run. B < window: workers, who never decode
     * past consumed + window, always reach the films this loop waits for (no deadlock on a run of
     * bad films). */
    if (i + 1 - start < B && i < nf - 1) continue;
    /* Flush: forward the batch, deliver pending results in order. */
    if (nb > 0 && (st = ps_model_predict_ood(m, batch, nb, c.size, c.size, NULL, probs, scores))) break;
    for (int j = start; j <= i && st == PS_OK; j++) {
      slot *r = &c.slots[j];
      ps_infer_result res;
      memset(&res, 0, sizeof res);
      res.index = first + j;
      res.file = files[j];
      res.num_classes = K;
      res.status = r->status;
      res.roi[2] = res.roi[3] = 1;
      res.in_distribution = -1;
      res.ood_score = NAN;
      res.ood_reason = "";
      if (r->status == PS_OK) {
        res.ood_score = scores[bidx[j]];
        ps_infer_ood_verdict(m, &r->meta, res.ood_score, &res.in_distribution, reason, sizeof reason);
        res.ood_reason = reason;
        memcpy(res.roi, r->roi, sizeof res.roi);
        res.roi_fallback = r->roi_fallback;
        memcpy(res.probs, probs + (size_t)bidx[j] * (size_t)K, sizeof(float) * (size_t)K);
        ps_model_label(m, res.probs, &res.label);
        res.label_name = mm->classes[res.label];
        res.error = "";
        res.meta = &r->meta;
      } else {
        failed++;
        res.label = -1;
        res.label_name = "";
        res.error = r->err;
      }
      if (fn(&res, user) != 0) st = ps_error(PS_ECANCELLED, "infer: cancelled");
    }
    start = i + 1;
    nb = 0;
    pthread_mutex_lock(&c.mu);
    c.consumed = start;
    pthread_cond_broadcast(&c.cv_work);
    pthread_mutex_unlock(&c.mu);
  }
join:
  pthread_mutex_lock(&c.mu);
  c.stop = 1;
  pthread_cond_broadcast(&c.cv_work);
  pthread_mutex_unlock(&c.mu);
  for (int t = 0; t < nthreads; t++) pthread_join(threads[t], NULL);
  pthread_mutex_destroy(&c.mu);
  pthread_cond_destroy(&c.cv_work);
  pthread_cond_destroy(&c.cv_done);
out:
  if (c.slots)
    for (int i = 0; i < nf; i++) free(c.slots[i].x);
  free(c.slots);
  free(batch);
  free(probs);
  free(scores);
  free(bidx);
  free(threads);
  ps_infer_list_free(files, nf);
  if (nfailed) *nfailed = failed;
  return st;
}

int ps_infer_image(ps_model *m, const ps_image *img, float *probs, int *label) {
  return ps_infer_image_ood(m, img, probs, label, NULL, NULL, NULL, NULL, NULL, 0);
}

int ps_infer_image_roi(ps_model *m, const ps_image *img, float *probs, int *label, double roi[4], int *roi_fallback) {
  return ps_infer_image_ood(m, img, probs, label, roi, roi_fallback, NULL, NULL, NULL, 0);
}

int ps_infer_image_ood(ps_model *m, const ps_image *img, float *probs, int *label, double roi[4], int *roi_fallback,
                       int *in_dist, float *score, char *reason, size_t cap) {
  if (!m || !img || !probs) return ps_error(PS_EINVAL, "infer: NULL argument");
  if (img->is_raw) return ps_error(PS_EINVAL, "infer: the film holds raw modality values; read it display-ready");
  const ps_model_meta *mm = ps_model_meta_get(m);
  int S = mm->input_size > 0 ? mm->input_size : 224;
  float sc = NAN;
  float *x = malloc(sizeof(float) * 3 * (size_t)S * (size_t)S);
  if (!x) return ps_error(PS_ENOMEM, "infer: out of memory for a %dx%d input", S, S);
  int st = ps_lung_roi_input(img, mm->roi, S, mm->mean, mm->std, x, roi, roi_fallback);
  if (!st) st = ps_model_predict_ood(m, x, 1, S, S, NULL, probs, in_dist || score || reason ? &sc : NULL);
  if (!st && label) st = ps_model_label(m, probs, label);
  if (!st && score) *score = sc;
  if (!st && (in_dist || reason)) {
    char buf[160];
    int v = -1;
    st = ps_infer_ood_verdict(m, &img->meta, sc, &v, reason ? reason : buf, reason ? cap : sizeof buf);
    if (in_dist) *in_dist = v;
  }
  free(x);
  return st;
}

/* Modalities of projection radiographs: computed / digital radiography (and DR, used by some
 * vendors), radiographic imaging, panoramic X-ray. An absent Modality (PNG, JPEG, ACR-NEMA files)
 * says nothing. */
static int radiograph_modality(const char *mod) {
  static const char *const ok[] = {"", "CR", "DX", "DR", "RG", "PX"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (!strcmp(mod, ok[i])) return 1;
  return 0;
}

int ps_infer_ood_verdict(const ps_model *m, const ps_film_meta *meta, float score, int *in_dist, char *reason,
                         size_t cap) {
  if (!m || !in_dist || !reason || cap == 0) return ps_error(PS_EINVAL, "infer: NULL argument");
  reason[0] = 0;
  *in_dist = -1;
  if (meta && meta->format == PS_FORMAT_DICOM && !radiograph_modality(meta->modality)) {
    *in_dist = 0;
    snprintf(reason, cap, "DICOM modality %s is not a radiograph", meta->modality);
    return PS_OK;
  }
  const double *ages = ps_model_meta_get(m)->patient_ages;
  if (meta && meta->has_patient_age && ages[1] > 0 &&
      (meta->patient_age_years < ages[0] - 1 || meta->patient_age_years > ages[1] + 1)) {
    /* a year's tolerance: header ages are whole years, and "1-5" means up to 5 years 11 months */
    *in_dist = 0;
    snprintf(reason, cap, "patient age %.3g years (DICOM header); the model learnt from patients aged %g-%g",
             meta->patient_age_years, ages[0], ages[1]);
    return PS_OK;
  }
  if (!ps_model_has_ood(m) || !isfinite(score)) return PS_OK;
  double thr = ps_model_ood_threshold(m);
  *in_dist = score <= thr;
  if (!*in_dist) snprintf(reason, cap, "features unlike the training films (score %.4g > %.4g)", score, thr);
  return PS_OK;
}

int ps_infer_file(ps_model *m, const char *path, const ps_read_opts *read, float *probs, int *label) {
  if (!m || !path || !probs) return ps_error(PS_EINVAL, "infer: NULL argument");
  ps_image *img = NULL;
  int st = ps_image_read(path, read, &img);
  if (st) return st;
  st = ps_infer_image(m, img, probs, label);
  ps_image_free(img);
  return st;
}
