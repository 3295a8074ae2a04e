/* The preprocessed-film cache: every film decoded and resized once to (S, S) uint8 gray, keyed by
 * (version, S, resize method, sha256 of each file). Format in ps_train.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_image.h"
#include "ps_image_io.h"
#include "ps_lung.h"
#include "ps_preprocess.h"
#include "ps_train.h"
#include "train_internal.h"

static const char CACHE_MAGIC[8] = {'P', 'S', 'C', 'A', 'C', 'H', 'E', 0};

/* ---- cache file ---- */
typedef struct {
  uint32_t size, method, n;
  const char *keys;     /* (n, 64), inside the mapping */
  const uint8_t *pix;   /* (n, S, S), inside the mapping */
  void *map;            /* the whole file, mapped read-only and shared */
  size_t maplen;
} cache_file;

static void cache_file_free(cache_file *c) {
  if (c->map) munmap(c->map, c->maplen);
  memset(c, 0, sizeof *c);
}

/* Returns PS_OK and maps the file into c when it exists with this version/size/method and
 * exactly the size its header says; PS_ENOTFOUND when absent; PS_EFORMAT when it is not a usable
 * cache (then it is simply rebuilt). The mapping is shared: every process that maps the same file
 * (the ranks of a node) reads the same page-cache pages. */
static int cache_file_read(const char *path, uint32_t size, uint32_t method, cache_file *c) {
  memset(c, 0, sizeof *c);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PS_ENOTFOUND;
  struct stat sb;
  int st = PS_EFORMAT;
  if (fstat(fd, &sb) != 0 || sb.st_size < 24) goto done;
  c->maplen = (size_t)sb.st_size;
  c->map = mmap(NULL, c->maplen, PROT_READ, MAP_SHARED, fd, 0);
  if (c->map == MAP_FAILED) {
    c->map = NULL;
    st = errno == ENOMEM ? PS_ENOMEM : PS_EFORMAT;
    goto done;
  }
  const uint8_t *b = c->map;
  uint32_t hdr[4];
  memcpy(hdr, b + 8, sizeof hdr);
  if (memcmp(b, CACHE_MAGIC, 8) != 0 || hdr[0] != PS_TRAIN_CACHE_VERSION || hdr[1] != size || hdr[2] != method ||
      hdr[3] > 10000000u)
    goto done;
  const size_t px = (size_t)size * size;
  if (c->maplen != 24 + (size_t)hdr[3] * (64 + px)) goto done; /* short, or trailing bytes: not ours */
  c->size = hdr[1], c->method = hdr[2], c->n = hdr[3];
  c->keys = (const char *)b + 24;
  c->pix = b + 24 + (size_t)c->n * 64;
  st = PS_OK;
done:
  close(fd);
  if (st != PS_OK) cache_file_free(c);
  return st;
}

static int cache_file_write(const char *path, uint32_t size, uint32_t method, int n, const char *keys, const uint8_t *pix) {
  size_t len = strlen(path);
  char *tmp = malloc(len + 32);
  if (!tmp) return ps_error(PS_ENOMEM, "train: out of memory");
  snprintf(tmp, len + 32, "%s.tmp%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    int e = errno;
    free(tmp);
    return ps_error(PS_EIO, "train: cannot write cache %s: %s", path, strerror(e));
  }
  uint32_t hdr[4] = {PS_TRAIN_CACHE_VERSION, size, method, (uint32_t)n};
  size_t px = (size_t)size * size;
  int ok = fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(hdr, 4, 4, f) == 4 &&
           (n == 0 || (fwrite(keys, 64, n, f) == (size_t)n && fwrite(pix, px, n, f) == (size_t)n));
  ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    free(tmp);
    return ps_error(PS_EIO, "train: cannot write cache %s (disk full?)", path);
  }
  free(tmp);
  return PS_OK;
}

/* ---- building: worker threads decode + resize ---- */
typedef struct {
  int n, size, roi;
  const char *const *paths;
  const int *todo;       /* indices to decode */
  int ntodo;
  uint8_t *pix;          /* (n, S, S) */
  atomic_int next, done, failed;
  pthread_mutex_t mu;
  int err_status;
  char err_msg[1024];
} build_job;

int ps_train_film_to_u8(const char *path, int size, int roi, uint8_t *out) {
  ps_image *img = NULL;
  int st = ps_image_read(path, NULL, &img);
  if (st != PS_OK) return st;
  /* the one input path of classify / evaluate / Grad-CAM (ps_lung.h), kept as 8-bit pixels */
  st = ps_lung_roi_input_u8(img, roi, size, out, NULL, NULL);
  ps_image_free(img);
  return st;
}

static void *build_worker(void *arg) {
  build_job *j = arg;
  size_t px = (size_t)j->size * j->size;
  for (;;) {
    if (atomic_load(&j->failed)) break;
    int k = atomic_fetch_add(&j->next, 1);
    if (k >= j->ntodo) break;
    int i = j->todo[k];
    int st = ps_train_film_to_u8(j->paths[i], j->size, j->roi, j->pix + (size_t)i * px);
    if (st != PS_OK) {
      pthread_mutex_lock(&j->mu);
      if (!atomic_load(&j->failed)) {
        j->err_status = st;
        snprintf(j->err_msg, sizeof j->err_msg, "train: cannot read film %s: %s", j->paths[i],
                 ps_last_error()[0] ? ps_last_error() : ps_strerror(st));
        atomic_store(&j->failed, 1);
      }
      pthread_mutex_unlock(&j->mu);
      break;
    }
    atomic_fetch_add(&j->done, 1);
  }
  return NULL;
}

typedef struct {
  const char *key;
  int idx;
} key_idx;

static int key_cmp(const void *a, const void *b) { return memcmp(((const key_idx *)a)->key, ((const key_idx *)b)->key, 64); }

int ps_train_cache_load(const char *cache_path, int size, int n, const char *const *paths, const char *const *sha256,
                        int threads, ps_progress_fn progress, void *user, uint8_t **pixels, int *built) {
  return ps_train_cache_load_roi(cache_path, size, PS_ROI_FILM, n, paths, sha256, threads, progress, user, pixels,
                                 built);
}

uint32_t ps_train_cache_method(int roi) {
  return roi == PS_ROI_LUNGS ? PS_TRAIN_CACHE_LUNG_ROI
         : roi == PS_ROI_LUNGMASK ? PS_TRAIN_CACHE_LUNG_MASK
                                  : PS_TRAIN_CACHE_RESIZE_PIL_BILINEAR;
}

/* Exactly these n films (keys), in this order: the file can be used in place. */
static int cache_matches(const cache_file *c, int n, const char *keys) {
  return c->map && c->n == (uint32_t)n && memcmp(c->keys, keys, (size_t)n * 64) == 0;
}

int ps_train_cache_open(const char *cache_path, int size, int roi, int n, const char *const *paths,
                        const char *const *sha256, int threads, ps_progress_fn progress, void *user,
                        ps_train_cache_view *view, int *built) {
  if (!cache_path || !paths || !view || n < 0 || size < 8 || size > 4096)
    return ps_error(PS_EINVAL, "train: cache: bad arguments");
  memset(view, 0, sizeof *view);
  if (!ps_roi_name(roi)) return ps_error(PS_EINVAL, "train: cache: unknown roi %d", roi);
  const uint32_t method = ps_train_cache_method(roi);
  if (built) *built = 0;
  size_t px = (size_t)size * size;
  int st = PS_OK;
  char *keys = malloc((size_t)n * 64 + 1);
  uint8_t *pix = malloc((size_t)n * px + 1);
  int *todo = malloc(sizeof(int) * (size_t)(n + 1));
  key_idx *index = NULL;
  cache_file cf;
  memset(&cf, 0, sizeof cf);
  if (!keys || !pix || !todo) {
    st = ps_error(PS_ENOMEM, "train: out of memory for a %d-film cache at %d px", n, size);
    goto fail;
  }
  for (int i = 0; i < n; i++) {
    const char *h = sha256 ? sha256[i] : NULL;
    char hex[65];
    if (!h || strlen(h) != 64) {
      if ((st = ps_train_sha256_file(paths[i], hex)) != PS_OK) goto fail;
      h = hex;
    }
    for (int k = 0; k < 64; k++) keys[(size_t)i * 64 + k] = (char)((h[k] >= 'A' && h[k] <= 'F') ? h[k] + 32 : h[k]);
  }
  int r = cache_file_read(cache_path, (uint32_t)size, method, &cf);
  if (r == PS_ENOMEM) {
    st = ps_error(PS_ENOMEM, "train: out of memory reading cache %s", cache_path);
    goto fail;
  }
  int ntodo = 0;
  if (r == PS_OK && cache_matches(&cf, n, keys)) { /* the usual case: used in place, nothing copied */
    ps_log(PS_LOG_INFO, "train: cache reused: %s (%d films at %dx%d, roi %s, no decoding, memory-mapped)", cache_path, n,
           size, size, ps_roi_name(roi));
    view->pixels = cf.pix, view->map_ = cf.map, view->maplen_ = cf.maplen, view->mapped = 1;
    cf.map = NULL;
    goto fail;
  }
  if (r == PS_OK && cf.n > 0) {
    index = malloc(sizeof *index * cf.n);
    if (!index) {
      st = ps_error(PS_ENOMEM, "train: out of memory");
      goto fail;
    }
    for (uint32_t i = 0; i < cf.n; i++) index[i].key = cf.keys + (size_t)i * 64, index[i].idx = (int)i;
    qsort(index, cf.n, sizeof *index, key_cmp);
  }
  for (int i = 0; i < n; i++) {
    key_idx q = {keys + (size_t)i * 64, 0};
    key_idx *hit = index ? bsearch(&q, index, cf.n, sizeof *index, key_cmp) : NULL;
    if (hit) memcpy(pix + (size_t)i * px, cf.pix + (size_t)hit->idx * px, px);
    else todo[ntodo++] = i;
  }
  if (r == PS_EFORMAT)
    ps_log(PS_LOG_INFO, "train: cache %s is for another size, roi or version (this run: %d px, roi %s): rebuilding",
           cache_path, size, ps_roi_name(roi));
  if (ntodo == 0) {
    ps_log(PS_LOG_INFO, "train: cache reused: %s (%d films at %dx%d, roi %s, no decoding)", cache_path, n, size, size,
           ps_roi_name(roi));
  } else {
    int nt = threads > 0 ? threads : ps_default_threads();
    if (nt > ntodo) nt = ntodo;
    if (nt > 64) nt = 64;
    ps_log(PS_LOG_INFO, "train: building cache %s: decoding %d of %d films at %dx%d, roi %s, with %d threads",
           cache_path, ntodo, n, size, size, ps_roi_name(roi), nt);
    build_job j;
    memset(&j, 0, sizeof j);
    j.n = n, j.size = size, j.roi = roi, j.paths = paths, j.todo = todo, j.ntodo = ntodo, j.pix = pix;
    pthread_mutex_init(&j.mu, NULL);
    pthread_t tids[64];
    int started = 0;
    for (int t = 0; t < nt; t++)
      if (pthread_create(&tids[t], NULL, build_worker, &j) == 0) started++;
      else break;
    if (started == 0) build_worker(&j);
    int cancelled = 0;
    while (started > 0) {
      int d = atomic_load(&j.done);
      if (progress && !cancelled && progress((double)d / ntodo, "decoding films into the cache", user)) {
        cancelled = 1;
        atomic_store(&j.failed, 1);
      }
      if (d >= ntodo || atomic_load(&j.failed)) break;
      usleep(50000);
    }
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
    pthread_mutex_destroy(&j.mu);
    if (cancelled) {
      st = ps_error(PS_ECANCELLED, "train: cancelled while building the cache");
      goto fail;
    }
    if (j.err_status != PS_OK) {
      st = ps_error(j.err_status, "%s", j.err_msg);
      goto fail;
    }
    if ((st = cache_file_write(cache_path, (uint32_t)size, method, n, keys, pix)) != PS_OK) goto fail;
    if (built) *built = 1;
  }
  /* the file now holds exactly these films: map it (shared with the other ranks) and drop the copy */
  cache_file_free(&cf);
  if (cache_file_read(cache_path, (uint32_t)size, method, &cf) == PS_OK && cache_matches(&cf, n, keys)) {
    view->pixels = cf.pix, view->map_ = cf.map, view->maplen_ = cf.maplen, view->mapped = 1;
    cf.map = NULL;
  } else {
    view->pixels = pix, view->mapped = 0;
    pix = NULL;
  }
fail:
  cache_file_free(&cf);
  free(index);
  free(keys);
  free(pix);
  free(todo);
  return st;
}

void ps_train_cache_release(ps_train_cache_view *v) {
  if (!v) return;
  if (v->mapped) munmap(v->map_, v->maplen_);
  else free((void *)v->pixels);
  memset(v, 0, sizeof *v);
}

int ps_train_cache_load_roi(const char *cache_path, int size, int roi, int n, const char *const *paths,
                            const char *const *sha256, int threads, ps_progress_fn progress, void *user,
                            uint8_t **pixels, int *built) {
  if (!pixels) return ps_error(PS_EINVAL, "train: cache: bad arguments");
  *pixels = NULL;
  ps_train_cache_view v;
  int st = ps_train_cache_open(cache_path, size, roi, n, paths, sha256, threads, progress, user, &v, built);
  if (st) return st;
  if (!v.mapped) {
    *pixels = (uint8_t *)v.pixels;
    return PS_OK;
  }
  const size_t bytes = (size_t)n * size * size;
  if (!(*pixels = malloc(bytes + 1))) st = ps_error(PS_ENOMEM, "train: out of memory for a %d-film cache", n);
  else memcpy(*pixels, v.pixels, bytes);
  ps_train_cache_release(&v);
  return st;
}

void ps_train_cache_name(int size, int roi, char *buf, size_t cap) {
  snprintf(buf, cap, "cache-%d%s%s.pscache", size, roi == PS_ROI_FILM ? "" : "-", roi == PS_ROI_FILM ? "" : ps_roi_name(roi));
}
