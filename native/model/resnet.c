/* resnet.c — torchvision's ResNet18 in C over ps_torch (see ps_model.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "ps_internal.h"
#include "ps_model.h"
#include "safetensors.h"

#define N_TENSORS 122
#define N_PARAMS 62
#define BN_MOMENTUM 0.1
#define BN_EPS 1e-5
#define OOD_MEANS "ood.class_means"
#define OOD_PREC "ood.precision"
#define OOD_METHOD "mahalanobis-shared-cov"
#define NF PS_MODEL_FEATURES
#define MAX_D PS_MODEL_OOD_MAX_DIM

static const int layer_width[4] = {64, 128, 256, 512};

int ps_model_layers_dim(unsigned layers) {
  int d = 0;
  for (int l = 0; l < 4; l++)
    if (layers & (1u << l)) d += layer_width[l];
  return d;
}

/* "layer1,layer2,layer3,layer4" <-> mask; -1 for anything else or an empty list */
static int parse_layers(const char *v) {
  unsigned mask = 0;
  while (*v) {
    if (strncmp(v, "layer", 5) || v[5] < '1' || v[5] > '4' || (v[6] && v[6] != ',')) return -1;
    mask |= 1u << (v[5] - '1');
    v += 6;
    if (*v == ',') v++;
  }
  return mask ? (int)mask : -1;
}

static void format_layers(unsigned mask, char *buf, size_t cap) {
  buf[0] = 0;
  for (int l = 0; l < 4; l++)
    if (mask & (1u << l)) snprintf(buf + strlen(buf), cap - strlen(buf), "%slayer%d", buf[0] ? "," : "", l + 1);
}

typedef struct entry {
  char name[48];
  ps_tensor *t;        /* libtorch tensor; NULL while the model is host-only (see struct ps_model) */
  float *host;         /* host-only model: float32 copy (numel), C order; num_batches_tracked in nbt */
  int64_t nbt;
  int param;           /* trainable parameter (else BN buffer) */
  int is_nbt;          /* num_batches_tracked (int64) */
  int ndim;
  int64_t shape[4];
} entry;

typedef struct bn_ix {
  int w, b, rm, rv, nbt;
} bn_ix;

typedef struct block_ix {
  int conv1, conv2, ds_conv; /* ds_conv -1 when no downsample */
  bn_ix bn1, bn2, ds_bn;
  int stride;
} block_ix;

struct ps_model {
  ps_model_meta meta;
  int K;
  entry e[N_TENSORS];
  int n;
  int param_ix[N_PARAMS];
  int np;
  int conv1;
  bn_ix bn1;
  block_ix blocks[8];
  int fc_w, fc_b;
  ps_device dev;
  int training;
  int channels_last;
  /* A model loaded from a file for the CPU starts host-only: its weights sit in entry.host and
   * ps_model_predict runs the C engine (engine.h), so classifying never loads libtorch. The first
   * call that needs libtorch tensors (forward, parameters, training, Grad-CAM, another device,
   * saving) moves the weights into libtorch (to_torch) and drops the host copy and the engine. */
  ps_engine *engine;
  float *host_arena; /* every entry.host, one ps__big_alloc of host_bytes */
  size_t host_bytes;
  /* Out-of-distribution detector (ps_model.h): class means (K,512) and the shared precision
   * (512,512), host float32; NULL when the model has none. */
  float *ood_means, *ood_prec;
  double ood_thr;
  unsigned ood_layers; /* which layers' channel means make the feature row (bit l = layer l+1) */
  int ood_dim;         /* its width D */
};

/* ---- metadata ---------------------------------------------------------------------------------- */

int ps_model_meta_default(int num_classes, ps_model_meta *out) {
  if (!out) return ps_error(PS_EINVAL, "model: meta is NULL");
  if (num_classes < 2 || num_classes > PS_MODEL_MAX_CLASSES)
    return ps_error(PS_EINVAL, "model: %d classes (need 2..%d)", num_classes, PS_MODEL_MAX_CLASSES);
  memset(out, 0, sizeof *out);
  out->num_classes = num_classes;
  if (num_classes == 2) {
    out->task = PS_TASK_BINARY;
    strcpy(out->classes[0], "NORMAL");
    strcpy(out->classes[1], "PNEUMONIA");
  } else {
    out->task = PS_TASK_MULTICLASS;
    if (num_classes == 3) {
      strcpy(out->classes[0], "NORMAL");
      strcpy(out->classes[1], "BACTERIA");
      strcpy(out->classes[2], "VIRUS");
    } else {
      for (int i = 0; i < num_classes; i++) snprintf(out->classes[i], PS_MODEL_CLASS_NAME_MAX, "class%d", i);
    }
  }
  out->input_size = 224;
  const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
  memcpy(out->mean, mean, sizeof mean);
  memcpy(out->std, std, sizeof std);
  out->threshold = 0.5;
  out->temperature = 1.0;
  return PS_OK;
}

static int meta_check(const ps_model_meta *mm, int K, const char *where) {
  if (mm->num_classes != K)
    return ps_error(PS_EINVAL, "model: %s: metadata names %d classes but the model has %d outputs", where,
                    mm->num_classes, K);
  if (mm->task != PS_TASK_BINARY && mm->task != PS_TASK_MULTICLASS)
    return ps_error(PS_EINVAL, "model: %s: unknown task %d", where, (int)mm->task);
  if (mm->task == PS_TASK_BINARY && K != 2)
    return ps_error(PS_EINVAL, "model: %s: a binary task needs 2 classes, not %d", where, K);
  for (int i = 0; i < K; i++) {
    if (!mm->classes[i][0] || memchr(mm->classes[i], 0, PS_MODEL_CLASS_NAME_MAX) == NULL ||
        strchr(mm->classes[i], ','))
      return ps_error(PS_EINVAL, "model: %s: class name %d is empty, too long or holds a comma", where, i);
  }
  if (!(mm->threshold >= 0 && mm->threshold <= 1))
    return ps_error(PS_EINVAL, "model: %s: threshold %g outside [0, 1]", where, mm->threshold);
  if (mm->input_size < 32 || mm->input_size > 4096)
    return ps_error(PS_EINVAL, "model: %s: input_size %d outside [32, 4096]", where, mm->input_size);
  for (int c = 0; c < 3; c++)
    if (!(mm->std[c] > 0) || !isfinite(mm->mean[c]))
      return ps_error(PS_EINVAL, "model: %s: bad mean/std", where);
  if (memchr(mm->provenance, 0, PS_MODEL_PROVENANCE_MAX) == NULL)
    return ps_error(PS_EINVAL, "model: %s: provenance not NUL-terminated", where);
  if (mm->roi != PS_ROI_FILM && mm->roi != PS_ROI_LUNGS && mm->roi != PS_ROI_LUNGMASK)
    return ps_error(PS_EINVAL, "model: %s: roi %d is not film (0), lungs (1) or lungmask (2)", where, mm->roi);
  if (mm->temperature != 0 && !(mm->temperature >= 0.01 && mm->temperature <= 100))
    return ps_error(PS_EINVAL, "model: %s: temperature %g outside [0.01, 100]", where, mm->temperature);
  char who[256];
  snprintf(who, sizeof who, "model: %s", where);
  return ps_model_check_ages(mm->patient_ages, who);
}

int ps_model_check_ages(const double ages[2], const char *who) {
  if (!who) who = "model";
  if (!ages) return ps_error(PS_EINVAL, "%s: no patient ages", who);
  if (ages[1] == 0 || (ages[0] >= 0 && ages[0] <= ages[1] && ages[1] <= 150)) return PS_OK;
  return ps_error(PS_EINVAL, "%s: patient ages %g-%g are not 0 <= from <= to <= 150 years", who, ages[0], ages[1]);
}

int ps_model_parse_ages(const char *s, double ages[2]) {
  char *end = NULL;
  if (!s || !ages) return ps_error(PS_EINVAL, "model: NULL argument");
  double a = strtod(s, &end);
  if (end == s || *end != '-') return ps_error(PS_EINVAL, "patient ages \"%.40s\" are not FROM-TO (years)", s);
  const char *p = end + 1;
  double b = strtod(p, &end);
  if (end == p || *end || !(b > 0) || ps_model_check_ages((const double[2]){a, b}, "patient ages"))
    return ps_error(PS_EINVAL, "patient ages \"%.40s\" are not FROM-TO years with 0 <= FROM <= TO <= 150", s);
  ages[0] = a, ages[1] = b;
  return PS_OK;
}

/* The temperature probabilities are computed with (0 in a zeroed meta means none). */
static double temperature_of(const ps_model_meta *mm) { return mm->temperature > 0 ? mm->temperature : 1.0; }

static int parse_floats3(const char *s, float out[3]) {
  char *end = NULL;
  for (int i = 0; i < 3; i++) {
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno) return -1;
    out[i] = (float)v;
    s = end;
    while (*s == ' ') s++;
    if (i < 2) {
      if (*s != ',') return -1;
      s++;
    }
  }
  while (*s == ' ') s++;
  return *s ? -1 : 0;
}

/* Fill meta from a file's __metadata__ (defaults for what is absent). */
static int meta_from_file(const ps_st_file *f, int K, ps_model_meta *mm) {
  int st = ps_model_meta_default(K, mm);
  if (st) return st;
  const char *v;
  const char *path = f->path;
  if ((v = ps_st_meta(f, "task"))) {
    if (!strcmp(v, "binary")) mm->task = PS_TASK_BINARY;
    else if (!strcmp(v, "multiclass")) mm->task = PS_TASK_MULTICLASS;
    else return ps_error(PS_EFORMAT, "model: %s: metadata task \"%.40s\" is not binary or multiclass", path, v);
  }
  if ((v = ps_st_meta(f, "classes"))) {
    int n = 0;
    const char *s = v;
    char tmp[PS_MODEL_MAX_CLASSES][PS_MODEL_CLASS_NAME_MAX];
    for (;;) {
      const char *c = strchr(s, ',');
      size_t len = c ? (size_t)(c - s) : strlen(s);
      if (n >= PS_MODEL_MAX_CLASSES || len == 0 || len >= PS_MODEL_CLASS_NAME_MAX)
        return ps_error(PS_EFORMAT, "model: %s: metadata classes \"%.80s\" is malformed", path, v);
      memcpy(tmp[n], s, len);
      tmp[n][len] = 0;
      n++;
      if (!c) break;
      s = c + 1;
    }
    if (n != K)
      return ps_error(PS_EFORMAT, "model: %s: metadata lists %d classes but fc.weight has %d outputs", path, n, K);
    memcpy(mm->classes, tmp, sizeof tmp);
  }
  if ((v = ps_st_meta(f, "input_size"))) {
    char *end = NULL;
    long s = strtol(v, &end, 10);
    if (end == v || *end || s < 32 || s > 4096)
      return ps_error(PS_EFORMAT, "model: %s: metadata input_size \"%.40s\" is not in 32..4096", path, v);
    mm->input_size = (int)s;
  }
  if ((v = ps_st_meta(f, "mean")) && parse_floats3(v, mm->mean))
    return ps_error(PS_EFORMAT, "model: %s: metadata mean \"%.60s\" is not 3 numbers", path, v);
  if ((v = ps_st_meta(f, "std")) && (parse_floats3(v, mm->std) || !(mm->std[0] > 0 && mm->std[1] > 0 && mm->std[2] > 0)))
    return ps_error(PS_EFORMAT, "model: %s: metadata std \"%.60s\" is not 3 positive numbers", path, v);
  if ((v = ps_st_meta(f, "threshold"))) {
    char *end = NULL;
    double t = strtod(v, &end);
    if (end == v || *end || !(t >= 0 && t <= 1))
      return ps_error(PS_EFORMAT, "model: %s: metadata threshold \"%.40s\" is not in [0, 1]", path, v);
    mm->threshold = t;
  }
  if ((v = ps_st_meta(f, "provenance"))) snprintf(mm->provenance, PS_MODEL_PROVENANCE_MAX, "%s", v);
  if ((v = ps_st_meta(f, "roi"))) {
    if (!strcmp(v, "lungs")) mm->roi = PS_ROI_LUNGS;
    else if (!strcmp(v, "lungmask")) mm->roi = PS_ROI_LUNGMASK;
    else if (!strcmp(v, "film")) mm->roi = PS_ROI_FILM;
    else return ps_error(PS_EFORMAT, "model: %s: metadata roi \"%.40s\" is not lungs, lungmask or film", path, v);
  }
  if ((v = ps_st_meta(f, "temperature"))) {
    char *end = NULL;
    double t = strtod(v, &end);
    if (end == v || *end || !(t >= 0.01 && t <= 100))
      return ps_error(PS_EFORMAT, "model: %s: metadata temperature \"%.40s\" is not in [0.01, 100]", path, v);
    mm->temperature = t;
  }
  if ((v = ps_st_meta(f, "patient_ages"))) {
    double a[2];
    if (ps_model_parse_ages(v, a))
      return ps_error(PS_EFORMAT, "model: %s: metadata patient_ages \"%.40s\" is not FROM-TO years (0..150)", path, v);
    mm->patient_ages[0] = a[0], mm->patient_ages[1] = a[1];
  }
  if (mm->task == PS_TASK_BINARY && K != 2)
    return ps_error(PS_EFORMAT, "model: %s: task binary but %d classes", path, K);
  return PS_OK;
}

/* ---- structure ---------------------------------------------------------------------------------- */

static int add(ps_model *m, const char *name, int param, int is_nbt, int ndim, int64_t a, int64_t b, int64_t c,
               int64_t d) {
  entry *e = &m->e[m->n];
  snprintf(e->name, sizeof e->name, "%s", name);
  e->param = param;
  e->is_nbt = is_nbt;
  e->ndim = ndim;
  e->shape[0] = a;
  e->shape[1] = b;
  e->shape[2] = c;
  e->shape[3] = d;
  if (param) m->param_ix[m->np++] = m->n;
  return m->n++;
}

static int add_conv(ps_model *m, const char *name, int64_t out, int64_t in, int64_t k) {
  return add(m, name, 1, 0, 4, out, in, k, k);
}

static bn_ix add_bn(ps_model *m, const char *prefix, int64_t ch) {
  char n[48];
  bn_ix b;
  snprintf(n, sizeof n, "%s.weight", prefix);
  b.w = add(m, n, 1, 0, 1, ch, 0, 0, 0);
  snprintf(n, sizeof n, "%s.bias", prefix);
  b.b = add(m, n, 1, 0, 1, ch, 0, 0, 0);
  snprintf(n, sizeof n, "%s.running_mean", prefix);
  b.rm = add(m, n, 0, 0, 1, ch, 0, 0, 0);
  snprintf(n, sizeof n, "%s.running_var", prefix);
  b.rv = add(m, n, 0, 0, 1, ch, 0, 0, 0);
  snprintf(n, sizeof n, "%s.num_batches_tracked", prefix);
  b.nbt = add(m, n, 0, 1, 0, 0, 0, 0, 0);
  return b;
}

/* Lay out the 122 state_dict entries in torchvision's order. */
static int layout(ps_model *m, int K, ps_device dev) {
  char n[48];
  m->K = K;
  m->dev = dev;
  m->conv1 = add_conv(m, "conv1.weight", 64, 3, 7);
  m->bn1 = add_bn(m, "bn1", 64);
  const int64_t widths[4] = {64, 128, 256, 512};
  int64_t in = 64;
  for (int l = 0; l < 4; l++) {
    for (int bi = 0; bi < 2; bi++) {
      block_ix *b = &m->blocks[l * 2 + bi];
      int64_t w = widths[l];
      b->stride = (l > 0 && bi == 0) ? 2 : 1;
      snprintf(n, sizeof n, "layer%d.%d.conv1.weight", l + 1, bi);
      b->conv1 = add_conv(m, n, w, bi == 0 ? in : w, 3);
      snprintf(n, sizeof n, "layer%d.%d.bn1", l + 1, bi);
      b->bn1 = add_bn(m, n, w);
      snprintf(n, sizeof n, "layer%d.%d.conv2.weight", l + 1, bi);
      b->conv2 = add_conv(m, n, w, w, 3);
      snprintf(n, sizeof n, "layer%d.%d.bn2", l + 1, bi);
      b->bn2 = add_bn(m, n, w);
      b->ds_conv = -1;
      if (l > 0 && bi == 0) {
        snprintf(n, sizeof n, "layer%d.%d.downsample.0.weight", l + 1, bi);
        b->ds_conv = add_conv(m, n, w, in, 1);
        snprintf(n, sizeof n, "layer%d.%d.downsample.1", l + 1, bi);
        b->ds_bn = add_bn(m, n, w);
      }
    }
    in = widths[l];
  }
  m->fc_w = add(m, "fc.weight", 1, 0, 2, K, 512, 0, 0);
  m->fc_b = add(m, "fc.bias", 1, 0, 1, K, 0, 0, 0);
  if (m->n != N_TENSORS || m->np != N_PARAMS)
    return ps_error(PS_ESTATE, "model: internal layout error (%d tensors, %d params)", m->n, m->np);
  return PS_OK;
}

static int entry_index(const ps_model *m, const char *name) {
  for (int i = 0; i < m->n; i++)
    if (!strcmp(m->e[i].name, name)) return i;
  return -1;
}

static int64_t entry_numel(const entry *e) {
  int64_t numel = 1;
  for (int d = 0; d < e->ndim; d++) numel *= e->shape[d];
  return numel;
}

/* Zero libtorch tensors for every entry on m->dev (parameters require grad). */
static int alloc_tensors(ps_model *m) {
  for (int i = 0; i < m->n; i++) {
    entry *e = &m->e[i];
    int st = ps_tensor_zeros(&e->t, e->shape, e->ndim, e->is_nbt ? PS_DTYPE_I64 : PS_DTYPE_F32, m->dev);
    if (st) return st;
    if (e->param && (st = ps_tensor_set_requires_grad(e->t, 1))) return st;
  }
  return PS_OK;
}

/* Zeroed host arrays for every entry (a host-only model). */
static int alloc_host(ps_model *m) {
  size_t n = 0; /* floats, each array 64-byte aligned */
  for (int i = 0; i < m->n; i++)
    if (!m->e[i].is_nbt) n += ((size_t)entry_numel(&m->e[i]) + 15) / 16 * 16;
  m->host_bytes = n * sizeof(float);
  if (!(m->host_arena = ps__big_alloc(m->host_bytes))) return ps_error(PS_ENOMEM, "model: out of memory");
  n = 0;
  for (int i = 0; i < m->n; i++) {
    entry *e = &m->e[i];
    if (e->is_nbt) continue;
    e->host = m->host_arena + n;
    n += ((size_t)entry_numel(e) + 15) / 16 * 16;
  }
  return PS_OK;
}

static void free_host(ps_model *m) {
#ifdef PS_HAVE_ENGINE
  ps_engine_free(m->engine);
#endif
  m->engine = NULL;
  for (int i = 0; i < m->n; i++) m->e[i].host = NULL;
  ps__big_free(m->host_arena, m->host_bytes);
  m->host_arena = NULL;
  m->host_bytes = 0;
}

static int host_only(const ps_model *m) { return m->n > 0 && m->e[0].t == NULL; }

/* A host-only model gets its libtorch tensors (same values, bit for bit); no-op otherwise. */
static int to_torch(ps_model *m) {
  if (!host_only(m)) return PS_OK;
  int st = alloc_tensors(m);
  for (int i = 0; st == PS_OK && i < m->n; i++) {
    entry *e = &m->e[i];
    st = e->is_nbt ? ps_tensor_copy_from_data_(e->t, &e->nbt, PS_DTYPE_I64, 1)
                   : ps_tensor_copy_from_data_(e->t, e->host, PS_DTYPE_F32, (size_t)entry_numel(e));
  }
  if (st) { /* stay host-only */
    for (int i = 0; i < m->n; i++) {
      ps_tensor_free(m->e[i].t);
      m->e[i].t = NULL;
    }
    return st;
  }
  free_host(m);
  return PS_OK;
}

/* For the accessors that hand out borrowed tensors of a logically const model. */
static ps_model *torch_view(const ps_model *m) {
  ps_model *mm = (ps_model *)m;
  return to_torch(mm) == PS_OK ? mm : NULL;
}

#ifdef PS_HAVE_ENGINE
static const float *engine_lookup(void *ctx, const char *name) {
  const ps_model *m = ctx;
  int i = entry_index(m, name);
  return i < 0 ? NULL : m->e[i].host;
}
#endif

/* host: weights in host arrays (filled by the caller) instead of libtorch tensors. */
static int alloc_model(int K, ps_device device, int host, ps_model **out) {
  ps_device dev;
  int st = ps_torch_resolve_device(device, &dev);
  if (st) return st;
  ps_model *m = calloc(1, sizeof *m);
  if (!m) return ps_error(PS_ENOMEM, "model: out of memory");
#ifdef PS_HAVE_ENGINE
  host = host && dev == PS_DEVICE_CPU;
#else
  host = 0; /* no C engine in this build: CPU inference through libtorch */
#endif
  if ((st = ps_model_meta_default(K, &m->meta)) || (st = layout(m, K, dev)) ||
      (st = host ? alloc_host(m) : alloc_tensors(m))) {
    ps_model_free(m);
    return st;
  }
  *out = m;
  return PS_OK;
}

void ps_model_free(ps_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n; i++) ps_tensor_free(m->e[i].t);
  free_host(m);
  free(m->ood_means);
  free(m->ood_prec);
  free(m);
}

int ps_model_use_torch(ps_model *m) {
  if (!m) return ps_error(PS_EINVAL, "model: NULL");
  return to_torch(m);
}

int ps_model_uses_torch(const ps_model *m) { return m && !host_only(m); }

int ps_model_set_precision(ps_model *m, ps_precision precision) {
  if (!m || (precision != PS_PRECISION_FP32 && precision != PS_PRECISION_BF16))
    return ps_error(PS_EINVAL, "model: unknown precision");
#ifdef PS_HAVE_ENGINE
  if (m->engine) return ps_engine_set_precision(m->engine, precision == PS_PRECISION_BF16 ? PS_ENGINE_BF16 : PS_ENGINE_FP32);
#endif
  if (precision == PS_PRECISION_FP32) return PS_OK;
  return ps_error(PS_EUNSUPPORTED, "model: bf16 runs in the C engine on the CPU; this model predicts through libtorch");
}

const char *ps_model_cpu_engine(void) {
#ifdef PS_HAVE_ENGINE
  static char buf[620]; /* ps_engine_kernels' 600 and the prefix */
  snprintf(buf, sizeof buf, "C engine, %s", ps_engine_kernels(NULL));
  return buf;
#else
  return "libtorch";
#endif
}

int ps_model_create(int num_classes, ps_device device, uint64_t seed, ps_model **out) {
  if (!out) return ps_error(PS_EINVAL, "model: out is NULL");
  *out = NULL;
  if (num_classes < 2 || num_classes > PS_MODEL_MAX_CLASSES)
    return ps_error(PS_EINVAL, "model: %d classes (need 2..%d)", num_classes, PS_MODEL_MAX_CLASSES);
  ps_model *m = NULL;
  int st = alloc_model(num_classes, device, 0, &m);
  if (st) return st;
  if ((st = ps_torch_manual_seed(seed))) goto fail;
  for (int i = 0; i < m->n; i++) {
    entry *e = &m->e[i];
    if (e->ndim == 4) { /* conv: kaiming_normal_(mode="fan_out", nonlinearity="relu") */
      double fan_out = (double)(e->shape[0] * e->shape[2] * e->shape[3]);
      st = ps_tensor_normal_(e->t, 0.0, sqrt(2.0 / fan_out));
    } else if (i == m->fc_w || i == m->fc_b) { /* nn.Linear default: U(-1/sqrt(in), 1/sqrt(in)) */
      double bound = 1.0 / sqrt(512.0);
      st = ps_tensor_uniform_(e->t, -bound, bound);
    } else if (strstr(e->name, "running_var") || (e->param && strstr(e->name, ".weight"))) {
      st = ps_tensor_fill_(e->t, 1.0); /* BN weight 1, running_var 1 */
    } /* BN bias, running_mean, num_batches_tracked stay 0 */
    if (st) goto fail;
  }
  *out = m;
  return PS_OK;
fail:
  ps_model_free(m);
  return st;
}

/* ---- load / save ----------------------------------------------------------------------------- */

static int fill_from_file(ps_model *m, const ps_st_file *f, int skip_fc) {
  /* One staging buffer, as large as the largest tensor (layer4 conv: 9.4 MB in F32). */
  void *buf = NULL;
  size_t cap = 0;
  int st = PS_OK;
  for (int i = 0; i < m->n; i++) {
    entry *e = &m->e[i];
    if (skip_fc && (i == m->fc_w || i == m->fc_b)) continue;
    const ps_st_tensor *t = ps_st_find(f, e->name);
    if (!t) {
      if (e->is_nbt) continue; /* older torchvision files (e.g. ImageNet weights) lack it: 0 */
      st = ps_error(PS_EFORMAT, "model: %s: missing tensor \"%s\"", f->path, e->name);
      goto done;
    }
    int same = t->ndim == e->ndim;
    for (int d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
    if (!same) {
      char want[80] = "", got[80] = "";
      for (int d = 0; d < e->ndim; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)e->shape[d]);
      for (int d = 0; d < t->ndim; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)t->shape[d]);
      st = ps_error(PS_EFORMAT, "model: %s: tensor \"%s\" has shape [%s], ResNet18 needs [%s]", f->path, e->name,
                    got, want);
      goto done;
    }
    if (e->is_nbt ? t->dtype != PS_DTYPE_I64 : t->dtype == PS_DTYPE_I64) {
      st = ps_error(PS_EFORMAT, "model: %s: tensor \"%s\" has dtype %s", f->path, e->name, ps_dtype_name(t->dtype));
      goto done;
    }
    int64_t numel = entry_numel(e);
    size_t bytes = (size_t)(t->end - t->begin);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (!e->t && !e->is_nbt && t->dtype == PS_DTYPE_F32) { /* the file's bytes are the host array */
      if ((st = ps_st_read_tensor(f, t, e->host))) goto done;
      continue;
    }
#endif
    if (bytes > cap) {
      ps__big_free(buf, cap);
      cap = bytes;
      buf = ps__big_alloc(cap);
      if (!buf) {
        st = ps_error(PS_ENOMEM, "model: out of memory loading %s", f->path);
        goto done;
      }
    }
    if ((st = ps_st_read_tensor(f, t, buf))) goto done;
    if (e->is_nbt && !e->t) memcpy(&e->nbt, buf, sizeof e->nbt);
    else if (!e->t) st = ps_st_to_f32(buf, t->dtype, (size_t)numel, e->host);
    else st = ps_tensor_copy_from_data_(e->t, buf, t->dtype, (size_t)numel);
    if (st) goto done;
  }
done:
  ps__big_free(buf, cap);
  if (st) return st;
  for (int j = 0; j < f->n; j++) {
    const char *name = f->tensors[j].name;
    if (skip_fc && !strncmp(name, "fc.", 3)) continue;
    if (!strcmp(name, OOD_MEANS) || !strcmp(name, OOD_PREC)) continue; /* the OOD detector: load_ood */
    if (entry_index(m, name) < 0)
      return ps_error(PS_EFORMAT, "model: %s: unexpected tensor \"%s\" (not a ResNet18 state_dict key)", f->path, name);
  }
  return PS_OK;
}

/* One float tensor of the OOD detector, shape (a,b), into a new host array. */
static int read_ood_tensor(const ps_st_file *f, const char *name, int64_t a, int64_t b, float **out) {
  const ps_st_tensor *t = ps_st_find(f, name);
  if (!t) return ps_error(PS_EFORMAT, "model: %s: tensor \"%s\" missing (the OOD detector needs %s and %s)", f->path, name,
                          OOD_MEANS, OOD_PREC);
  if (t->ndim != 2 || t->shape[0] != a || t->shape[1] != b || t->dtype == PS_DTYPE_I64)
    return ps_error(PS_EFORMAT, "model: %s: tensor \"%s\" must be float [%lld,%lld]", f->path, name, (long long)a,
                    (long long)b);
  size_t numel = (size_t)(a * b);
  void *buf = malloc((size_t)(t->end - t->begin) + 1);
  float *dst = malloc(sizeof(float) * numel);
  int st = !buf || !dst ? ps_error(PS_ENOMEM, "model: out of memory loading %s", f->path) : PS_OK;
  if (!st) st = ps_st_read_tensor(f, t, buf);
  if (!st) st = ps_st_to_f32(buf, t->dtype, numel, dst);
  for (size_t i = 0; !st && i < numel; i++)
    if (!isfinite(dst[i])) st = ps_error(PS_EFORMAT, "model: %s: tensor \"%s\" holds a non-finite value", f->path, name);
  free(buf);
  if (st) {
    free(dst);
    return st;
  }
  *out = dst;
  return PS_OK;
}

/* The OOD detector of a file, when it has one (both tensors and ood_threshold, or none of them). */
static int load_ood(ps_model *m, const ps_st_file *f) {
  const char *thr = ps_st_meta(f, "ood_threshold");
  int has_t = ps_st_find(f, OOD_MEANS) || ps_st_find(f, OOD_PREC);
  if (!thr && !has_t) return PS_OK; /* a model from before the detector */
  if (!thr) return ps_error(PS_EFORMAT, "model: %s: OOD tensors without metadata ood_threshold", f->path);
  char *end = NULL;
  double t = strtod(thr, &end);
  if (end == thr || *end || !(t > 0 && isfinite(t)))
    return ps_error(PS_EFORMAT, "model: %s: metadata ood_threshold \"%.40s\" is not a positive number", f->path, thr);
  const char *method = ps_st_meta(f, "ood_method");
  if (method && strcmp(method, OOD_METHOD))
    return ps_error(PS_EFORMAT, "model: %s: unknown ood_method \"%.60s\" (this version knows %s)", f->path, method,
                    OOD_METHOD);
  const char *lv = ps_st_meta(f, "ood_layers");
  int layers = lv ? parse_layers(lv) : 8; /* layer4 alone when the key is absent */
  if (layers < 0)
    return ps_error(PS_EFORMAT, "model: %s: metadata ood_layers \"%.60s\" is not a list of layer1..layer4", f->path, lv);
  const int D = ps_model_layers_dim((unsigned)layers);
  int st = read_ood_tensor(f, OOD_MEANS, m->K, D, &m->ood_means);
  if (!st) st = read_ood_tensor(f, OOD_PREC, D, D, &m->ood_prec);
  if (st) return st;
  m->ood_thr = t;
  m->ood_layers = (unsigned)layers;
  m->ood_dim = D;
  return PS_OK;
}

int ps_model_load(const char *path, ps_device device, ps_model **out) {
  ps_st_file *f = NULL;
  ps_model *m = NULL;
  int st;
  if (!path || !out) return ps_error(PS_EINVAL, "model: path/out is NULL");
  *out = NULL;
  if ((st = ps_st_open(path, &f))) return st;
  const ps_st_tensor *fw = ps_st_find(f, "fc.weight");
  if (!fw) {
    st = ps_error(PS_EFORMAT, "model: %s: missing tensor \"fc.weight\"", path);
    goto fail;
  }
  if (fw->ndim != 2 || fw->shape[1] != 512 || fw->shape[0] < 2 || fw->shape[0] > PS_MODEL_MAX_CLASSES) {
    st = ps_error(PS_EFORMAT, "model: %s: fc.weight must be [K,512] with 2 <= K <= %d", path, PS_MODEL_MAX_CLASSES);
    goto fail;
  }
  int K = (int)fw->shape[0];
  if ((st = alloc_model(K, device, 1, &m))) goto fail;
  if ((st = meta_from_file(f, K, &m->meta))) goto fail;
  if ((st = fill_from_file(m, f, 0))) goto fail;
  if ((st = load_ood(m, f))) goto fail;
#ifdef PS_HAVE_ENGINE
  if (host_only(m) && (st = ps_engine_create(engine_lookup, m, K, &m->engine))) goto fail;
#endif
  ps_st_free(f);
  *out = m;
  return PS_OK;
fail:
  ps_st_free(f);
  ps_model_free(m);
  return st;
}

int ps_model_init_from(ps_model *m, const char *path) {
  ps_st_file *f = NULL;
  if (!m || !path) return ps_error(PS_EINVAL, "model: model/path is NULL");
  int st = to_torch(m);
  if (st || (st = ps_st_open(path, &f))) return st;
  st = fill_from_file(m, f, 1);
  ps_st_free(f);
  return st;
}

int ps_model_init_from_finetune(ps_model *m, const char *path, const char *const *classes, int K) {
  ps_st_file *f = NULL;
  if (!m || !path || !classes || K != m->K) return ps_error(PS_EINVAL, "model: bad fine-tuning arguments");
  int st = to_torch(m);
  if (st || (st = ps_st_open(path, &f))) return st;
  char want[PS_MODEL_MAX_CLASSES * PS_MODEL_CLASS_NAME_MAX] = "";
  for (int k = 0; k < K; k++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", k ? "," : "", classes[k]);
  const ps_st_tensor *fw = ps_st_find(f, "fc.weight");
  const char *have = ps_st_meta(f, "classes");
  if (!fw || fw->ndim != 2 || fw->shape[0] != K || (have && strcmp(have, want)))
    st = ps_error(PS_EINVAL, "model: %s: cannot fine-tune: its classes are %s, this task's are %s (use --init to keep only "
                  "the backbone)", path, have ? have : (fw && fw->ndim == 2 ? "unnamed" : "missing"), want);
  else
    st = fill_from_file(m, f, 0);
  ps_st_free(f);
  return st;
}

int ps_model_save(const ps_model *m, const char *path, const ps_model_save_opts *opts) {
  int st = PS_OK;
  ps_st_out_tensor ts[N_TENSORS + 2];
  void *bufs[N_TENSORS] = {0};
  char classes[PS_MODEL_MAX_CLASSES * PS_MODEL_CLASS_NAME_MAX + 8] = "";
  char input_size[16], mean[80], std[80], thr[40], temp[40], ood_thr[40], ood_layers[64], ages[48];
  const int64_t D = m ? m->ood_dim : 0, means_shape[2] = {m ? m->K : 0, D}, prec_shape[2] = {D, D};
  if (!m || !path) return ps_error(PS_EINVAL, "model: model/path is NULL");
  ps_dtype storage = opts ? opts->storage : PS_DTYPE_F32;
  if (storage != PS_DTYPE_F32 && storage != PS_DTYPE_F16 && storage != PS_DTYPE_BF16)
    return ps_error(PS_EINVAL, "model: save storage must be F32, F16 or BF16");
  if ((st = meta_check(&m->meta, m->K, path))) return st;
  if ((st = to_torch((ps_model *)m))) return st; /* a host-only model: write through libtorch */
  for (int i = 0; i < m->n; i++) {
    const entry *e = &m->e[i];
    ps_dtype dt = e->is_nbt ? PS_DTYPE_I64 : storage;
    int64_t numel = ps_tensor_numel(e->t);
    bufs[i] = malloc((size_t)numel * ps_dtype_size(dt) + 1);
    if (!bufs[i]) {
      st = ps_error(PS_ENOMEM, "model: out of memory saving %s", path);
      goto done;
    }
    if ((st = ps_tensor_to_data(e->t, dt, bufs[i], (size_t)numel))) goto done;
    ts[i].name = e->name;
    ts[i].dtype = dt;
    ts[i].ndim = e->ndim;
    ts[i].shape = e->shape;
    ts[i].data = bufs[i];
  }
  for (int k = 0; k < m->K; k++) {
    if (k) strcat(classes, ",");
    strcat(classes, m->meta.classes[k]);
  }
  snprintf(input_size, sizeof input_size, "%d", m->meta.input_size);
  snprintf(mean, sizeof mean, "%.9g,%.9g,%.9g", m->meta.mean[0], m->meta.mean[1], m->meta.mean[2]);
  snprintf(std, sizeof std, "%.9g,%.9g,%.9g", m->meta.std[0], m->meta.std[1], m->meta.std[2]);
  snprintf(thr, sizeof thr, "%.17g", m->meta.threshold);
  const char *keys[16] = {"format", "task", "classes", "input_size", "mean", "std", "threshold", "provenance"};
  const char *vals[16] = {"pt", m->meta.task == PS_TASK_BINARY ? "binary" : "multiclass", classes, input_size, mean, std,
                          thr, m->meta.provenance};
  int nmeta = 8, nt = m->n;
  /* keys a model without them never had stay absent: such files are unchanged */
  if (m->meta.roi != PS_ROI_FILM)
    keys[nmeta] = "roi", vals[nmeta++] = m->meta.roi == PS_ROI_LUNGMASK ? "lungmask" : "lungs";
  if (temperature_of(&m->meta) != 1.0) {
    snprintf(temp, sizeof temp, "%.9g", m->meta.temperature);
    keys[nmeta] = "temperature", vals[nmeta++] = temp;
  }
  if (m->meta.patient_ages[1] > 0) {
    snprintf(ages, sizeof ages, "%g-%g", m->meta.patient_ages[0], m->meta.patient_ages[1]);
    keys[nmeta] = "patient_ages", vals[nmeta++] = ages;
  }
  if (m->ood_means) {
    snprintf(ood_thr, sizeof ood_thr, "%.9g", m->ood_thr);
    keys[nmeta] = "ood_threshold", vals[nmeta++] = ood_thr;
    keys[nmeta] = "ood_method", vals[nmeta++] = OOD_METHOD;
    format_layers(m->ood_layers, ood_layers, sizeof ood_layers);
    keys[nmeta] = "ood_layers", vals[nmeta++] = ood_layers;
    ts[nt++] = (ps_st_out_tensor){OOD_MEANS, PS_DTYPE_F32, 2, means_shape, m->ood_means};
    ts[nt++] = (ps_st_out_tensor){OOD_PREC, PS_DTYPE_F32, 2, prec_shape, m->ood_prec};
  }
  st = ps_st_write(path, ts, nt, keys, vals, nmeta);
done:
  for (int i = 0; i < m->n; i++) free(bufs[i]);
  return st;
}

/* ---- accessors ------------------------------------------------------------------------------- */

const ps_model_meta *ps_model_meta_get(const ps_model *m) { return m ? &m->meta : NULL; }

int ps_model_set_meta(ps_model *m, const ps_model_meta *meta) {
  if (!m || !meta) return ps_error(PS_EINVAL, "model: model/meta is NULL");
  int st = meta_check(meta, m->K, "set_meta");
  if (st) return st;
  m->meta = *meta;
  return PS_OK;
}

int ps_model_num_classes(const ps_model *m) { return m ? m->K : 0; }

int ps_model_class_index(const ps_model *m, const char *name) {
  if (!m || !name) return ps_error(PS_EINVAL, "model: model/name is NULL");
  for (int k = 0; k < m->K; k++)
    if (!strcmp(m->meta.classes[k], name)) return k;
  return ps_error(PS_ENOTFOUND, "model: no class named \"%s\"", name);
}

int ps_model_label(const ps_model *m, const float *probs, int *label) {
  if (!m || !probs || !label) return ps_error(PS_EINVAL, "model: NULL argument");
  if (m->meta.task == PS_TASK_BINARY) {
    *label = probs[1] >= m->meta.threshold ? 1 : 0;
  } else {
    int best = 0;
    for (int k = 1; k < m->K; k++)
      if (probs[k] > probs[best]) best = k;
    *label = best;
  }
  return PS_OK;
}

int ps_model_set_train(ps_model *m, int training) {
  if (!m) return ps_error(PS_EINVAL, "model: NULL");
  m->training = training != 0;
  return PS_OK;
}

int ps_model_is_train(const ps_model *m) { return m ? m->training : 0; }

int ps_model_to(ps_model *m, ps_device device) {
  if (!m) return ps_error(PS_EINVAL, "model: NULL");
  ps_device dev;
  int st = ps_torch_resolve_device(device, &dev);
  if (st) return st;
  if (host_only(m) && dev == PS_DEVICE_CPU) return PS_OK;
  if ((st = to_torch(m))) return st;
  for (int i = 0; i < m->n; i++)
    if ((st = ps_tensor_move_(m->e[i].t, dev))) return st;
  m->dev = dev;
  return PS_OK;
}

ps_device ps_model_device(const ps_model *m) { return m ? m->dev : PS_DEVICE_CPU; }

int ps_model_set_channels_last(ps_model *m, int on) {
  if (!m) return ps_error(PS_EINVAL, "model: NULL");
  int st = to_torch(m);
  if (st) return st;
  for (int i = 0; i < m->n; i++) {
    if (m->e[i].ndim != 4) continue;
    int st = ps_tensor_set_channels_last_(m->e[i].t, on);
    if (st) return st;
  }
  m->channels_last = on != 0;
  return PS_OK;
}

int ps_model_num_params(const ps_model *m) { return m ? m->np : 0; }

ps_tensor *ps_model_param(const ps_model *m, int i, const char **name) {
  if (!m || i < 0 || i >= m->np || !torch_view(m)) return NULL;
  if (name) *name = m->e[m->param_ix[i]].name;
  return m->e[m->param_ix[i]].t;
}

int ps_model_num_tensors(const ps_model *m) { return m ? m->n : 0; }

ps_tensor *ps_model_tensor(const ps_model *m, int i, const char **name) {
  if (!m || i < 0 || i >= m->n || !torch_view(m)) return NULL;
  if (name) *name = m->e[i].name;
  return m->e[i].t;
}

ps_tensor *ps_model_find(const ps_model *m, const char *name) {
  if (!m || !name || !torch_view(m)) return NULL;
  int i = entry_index(m, name);
  return i < 0 ? NULL : m->e[i].t;
}

ps_tensor *ps_model_fc_weight(const ps_model *m) { return m && torch_view(m) ? m->e[m->fc_w].t : NULL; }
ps_tensor *ps_model_fc_bias(const ps_model *m) { return m && torch_view(m) ? m->e[m->fc_b].t : NULL; }

/* ---- forward ---------------------------------------------------------------------------------- */

#define T_(i) (m->e[(i)].t)

static int bn_fwd(ps_model *m, const bn_ix *b, const ps_tensor *x, int training, ps_tensor **out) {
  int st = ps_op_batch_norm(out, x, T_(b->w), T_(b->b), T_(b->rm), T_(b->rv), training, BN_MOMENTUM, BN_EPS);
  if (st == PS_OK && training) st = ps_tensor_add_scalar_(T_(b->nbt), 1.0);
  return st;
}

/* conv -> bn (-> relu) */
static int cbr(ps_model *m, int conv, const bn_ix *b, const ps_tensor *x, int stride, int pad, int relu, int training,
               ps_tensor **out) {
  ps_tensor *a = NULL, *c = NULL;
  *out = NULL;
  int st = ps_op_conv2d(&a, x, T_(conv), NULL, stride, pad);
  if (!st) st = bn_fwd(m, b, a, training, &c);
  ps_tensor_free(a);
  if (!st && relu) {
    st = ps_op_relu(out, c);
    ps_tensor_free(c);
  } else if (!st) {
    *out = c;
  } else {
    ps_tensor_free(c);
  }
  return st;
}

static int block_fwd(ps_model *m, const block_ix *b, const ps_tensor *x, int training, ps_tensor **out) {
  ps_tensor *h = NULL, *y = NULL, *idn = NULL, *s = NULL;
  *out = NULL;
  int st = cbr(m, b->conv1, &b->bn1, x, b->stride, 1, 1, training, &h);
  if (!st) st = cbr(m, b->conv2, &b->bn2, h, 1, 1, 0, training, &y);
  if (!st && b->ds_conv >= 0) st = cbr(m, b->ds_conv, &b->ds_bn, x, b->stride, 0, 0, training, &idn);
  if (!st) st = ps_op_add(&s, y, idn ? idn : x);
  if (!st) st = ps_op_relu(out, s);
  ps_tensor_free(h);
  ps_tensor_free(y);
  ps_tensor_free(idn);
  ps_tensor_free(s);
  return st;
}

static int forward_impl(ps_model *m, const ps_tensor *x_in, int training, ps_tensor **logits, ps_tensor **acts) {
  ps_tensor *x = NULL, *h = NULL, *p = NULL, *f = NULL;
  int st = PS_OK;
  *logits = NULL;
  if (acts)
    for (int i = 0; i < 4; i++) acts[i] = NULL;
  if ((st = to_torch(m))) return st;
  int64_t shape[PS_TENSOR_MAX_DIMS];
  int nd = ps_tensor_shape(x_in, shape);
  if (nd < 0) return nd;
  if (nd != 4 || shape[1] != 3 || shape[0] < 1 || shape[2] < 32 || shape[3] < 32)
    return ps_error(PS_EINVAL, "model: input must be (N,3,H,W) with N >= 1 and H, W >= 32");
  if (ps_tensor_device(x_in) != m->dev || ps_tensor_dtype(x_in) != PS_DTYPE_F32) {
    if ((st = ps_tensor_to(&x, x_in, m->dev, PS_DTYPE_F32))) return st;
  } else if ((st = ps_tensor_ref(&x, x_in))) {
    return st;
  }
  if (m->channels_last && !ps_tensor_requires_grad(x) && (st = ps_tensor_set_channels_last_(x, 1))) goto done;
  if ((st = cbr(m, m->conv1, &m->bn1, x, 2, 3, 1, training, &h))) goto done;
  if ((st = ps_op_max_pool2d(&p, h, 3, 2, 1))) goto done;
  ps_tensor_free(h);
  h = p;
  p = NULL;
  for (int bi = 0; bi < 8; bi++) {
    if ((st = block_fwd(m, &m->blocks[bi], h, training, &p))) goto done;
    ps_tensor_free(h);
    h = p;
    p = NULL;
    if (acts && (bi & 1) && (st = ps_tensor_ref(&acts[bi / 2], h))) goto done;
  }
  if ((st = ps_op_adaptive_avg_pool2d(&p, h, 1, 1))) goto done;
  if ((st = ps_op_flatten(&f, p, 1))) goto done;
  st = ps_op_linear(logits, f, T_(m->fc_w), T_(m->fc_b));
done:
  ps_tensor_free(x);
  ps_tensor_free(h);
  ps_tensor_free(p);
  ps_tensor_free(f);
  if (st && acts)
    for (int i = 0; i < 4; i++) {
      ps_tensor_free(acts[i]);
      acts[i] = NULL;
    }
  return st;
}

int ps_model_forward(ps_model *m, const ps_tensor *x, ps_tensor **logits) {
  if (!m || !x || !logits) return ps_error(PS_EINVAL, "model: NULL argument to forward");
  return forward_impl(m, x, m->training, logits, NULL);
}

int ps_model_forward_features(ps_model *m, const ps_tensor *x, ps_tensor **logits, ps_tensor *acts[4]) {
  if (!m || !x || !logits) return ps_error(PS_EINVAL, "model: NULL argument to forward");
  return forward_impl(m, x, m->training, logits, acts);
}

/* softmax of each row of logits / T (n, K), as torch computes softmax (max-shifted, float32 exp). */
void ps_model_softmax(const float *logits, int n, int K, double T, float *probs) {
  for (int i = 0; i < n; i++) {
    const float *l = logits + (size_t)i * K;
    float *p = probs + (size_t)i * K;
    float z[PS_MODEL_MAX_CLASSES], mx;
    for (int k = 0; k < K; k++) z[k] = T == 1.0 ? l[k] : (float)(l[k] / T);
    mx = z[0];
    for (int k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
    double sum = 0;
    for (int k = 0; k < K; k++) sum += (p[k] = expf(z[k] - mx));
    for (int k = 0; k < K; k++) p[k] = (float)(p[k] / sum);
  }
}

/* logits (n,K) and/or pooled features (n,512) through libtorch (eval BN, no autograd). */
static int torch_forward(ps_model *m, const float *x, int n, int h, int w, float *logits, float *feats,
                         unsigned layers) {
  ps_tensor *xt = NULL, *lt = NULL, *pool = NULL, *flat = NULL;
  ps_tensor *acts[4] = {NULL, NULL, NULL, NULL};
  float *part = NULL;
  int prev = 1, st;
  const int D = ps_model_layers_dim(layers);
  int64_t shape[4] = {n, 3, h, w};
  if ((st = ps_torch_set_grad_enabled(0, &prev))) return st;
  if ((st = ps_tensor_from_f32(&xt, x, shape, 4, m->dev))) goto done;
  if ((st = forward_impl(m, xt, 0, &lt, feats ? acts : NULL))) goto done;
  if (logits && (st = ps_tensor_to_f32(lt, logits, (size_t)n * (size_t)m->K))) goto done;
  if (feats && !(part = malloc(sizeof(float) * (size_t)n * NF))) {
    st = ps_error(PS_ENOMEM, "model: out of memory");
    goto done;
  }
  for (int l = 0, off = 0; feats && l < 4; l++) { /* channel means of each chosen layer, concatenated */
    if (!(layers & (1u << l))) continue;
    const int C = layer_width[l];
    if ((st = ps_op_adaptive_avg_pool2d(&pool, acts[l], 1, 1)) || (st = ps_op_flatten(&flat, pool, 1)) ||
        (st = ps_tensor_to_f32(flat, part, (size_t)n * C)))
      goto done;
    for (int i = 0; i < n; i++) memcpy(feats + (size_t)i * D + off, part + (size_t)i * C, sizeof(float) * C);
    ps_tensor_free(pool), ps_tensor_free(flat);
    pool = flat = NULL;
    off += C;
  }
done:
  free(part);
  for (int i = 0; i < 4; i++) ps_tensor_free(acts[i]);
  ps_tensor_free(xt);
  ps_tensor_free(lt);
  ps_tensor_free(pool);
  ps_tensor_free(flat);
  ps_torch_set_grad_enabled(prev, NULL);
  return st;
}

/* The one forward of every prediction: the C engine for a host-only CPU model, else libtorch. */
static int run_forward(ps_model *m, const float *x, int n, int h, int w, float *logits, float *feats,
                       unsigned layers) {
#ifdef PS_HAVE_ENGINE
  if (m->engine) return ps_engine_forward(m->engine, x, n, h, w, ps_torch_get_threads(), logits, feats, layers, NULL);
#endif
  return torch_forward(m, x, n, h, w, logits, feats, layers);
}

int ps_model_prepare(ps_model *m, int n, int h, int w) {
  if (!m || n < 1 || h < 32 || w < 32) return ps_error(PS_EINVAL, "model: prepare needs N >= 1 and H, W >= 32");
#ifdef PS_HAVE_ENGINE
  if (m->engine) return ps_engine_prepare(m->engine, n, h, w, ps_torch_get_threads());
#endif
  return PS_OK;
}

static int check_input(const ps_model *m, const float *x, int n, int h, int w) {
  if (!m || !x || n < 1 || h < 32 || w < 32) return ps_error(PS_EINVAL, "model: predict needs (N,3,H,W), H,W >= 32");
  return PS_OK;
}

int ps_model_layer4_size(int h, int w, int *ah, int *aw) {
  if (!ah || !aw || h < 32 || w < 32) return ps_error(PS_EINVAL, "model: layer4 size of a %dx%d input", w, h);
  int s[2] = {h, w};
  for (int i = 0; i < 2; i++) { /* conv1 7/2 pad 3, max pool 3/2 pad 1, layer2..4 3/2 pad 1 */
    s[i] = (s[i] + 6 - 7) / 2 + 1;
    for (int k = 0; k < 4; k++) s[i] = (s[i] + 2 - 3) / 2 + 1;
  }
  *ah = s[0], *aw = s[1];
  return PS_OK;
}

int ps_model_layer4(ps_model *m, const float *x, int h, int w, float *logits, float *act, float *fc_w) {
  int st = check_input(m, x, 1, h, w);
  if (st) return st;
  if (!logits || !act || !fc_w) return ps_error(PS_EINVAL, "model: layer4: NULL output");
  int ah, aw;
  if ((st = ps_model_layer4_size(h, w, &ah, &aw))) return st;
  const size_t n4 = (size_t)PS_MODEL_FEATURES * ah * aw;
#ifdef PS_HAVE_ENGINE
  if (m->engine) {
    memcpy(fc_w, m->e[m->fc_w].host, sizeof(float) * (size_t)m->K * PS_MODEL_FEATURES);
    return ps_engine_forward(m->engine, x, 1, h, w, ps_torch_get_threads(), logits, NULL, 0, act);
  }
#endif
  int prev = 1, was_train = ps_model_is_train(m);
  ps_tensor *xt = NULL, *lt = NULL, *acts[4] = {NULL, NULL, NULL, NULL};
  const int64_t shape[4] = {1, 3, h, w};
  if ((st = ps_torch_set_grad_enabled(0, &prev))) return st;
  if (was_train && (st = ps_model_set_train(m, 0))) return st;
  if (!(st = ps_tensor_from_f32(&xt, x, shape, 4, m->dev)) && !(st = ps_model_forward_features(m, xt, &lt, acts)) &&
      !(st = ps_tensor_to_f32(lt, logits, (size_t)m->K)) && !(st = ps_tensor_to_f32(acts[3], act, n4)))
    st = ps_tensor_to_f32(T_(m->fc_w), fc_w, (size_t)m->K * PS_MODEL_FEATURES);
  for (int i = 0; i < 4; i++) ps_tensor_free(acts[i]);
  ps_tensor_free(xt), ps_tensor_free(lt);
  if (was_train) ps_model_set_train(m, 1);
  ps_torch_set_grad_enabled(prev, NULL);
  return st;
}

int ps_model_predict_ood(ps_model *m, const float *x, int n, int h, int w, float *logits, float *probs, float *score) {
  int st = check_input(m, x, n, h, w);
  if (st) return st;
  int want_feats = score && m->ood_means;
  float *buf = logits ? logits : malloc(sizeof(float) * (size_t)n * (size_t)m->K);
  float *feats = want_feats ? malloc(sizeof(float) * (size_t)n * (size_t)m->ood_dim) : NULL;
  if (!buf || (want_feats && !feats)) {
    st = ps_error(PS_ENOMEM, "model: out of memory");
    goto done;
  }
  if ((st = run_forward(m, x, n, h, w, buf, feats, m->ood_layers))) goto done;
  if (probs) ps_model_softmax(buf, n, m->K, temperature_of(&m->meta), probs);
  if (score) {
    if (want_feats) st = ps_model_ood_score(m, feats, n, score);
    else
      for (int i = 0; i < n; i++) score[i] = NAN;
  }
done:
  if (buf != logits) free(buf);
  free(feats);
  return st;
}

int ps_model_predict(ps_model *m, const float *x, int n, int h, int w, float *logits, float *probs) {
  return ps_model_predict_ood(m, x, n, h, w, logits, probs, NULL);
}

int ps_model_features(ps_model *m, const float *x, int n, int h, int w, float *feats, float *logits) {
  return ps_model_features_layers(m, x, n, h, w, 8u, feats, logits);
}

int ps_model_features_layers(ps_model *m, const float *x, int n, int h, int w, unsigned layers, float *feats,
                             float *logits) {
  int st = check_input(m, x, n, h, w);
  if (st) return st;
  if (feats && (layers == 0 || layers > 15u)) return ps_error(PS_EINVAL, "model: features of layers mask %u (1..15)", layers);
  float *buf = logits ? logits : malloc(sizeof(float) * (size_t)n * (size_t)m->K);
  if (!buf) return ps_error(PS_ENOMEM, "model: out of memory");
  st = run_forward(m, x, n, h, w, buf, feats, layers);
  if (buf != logits) free(buf);
  return st;
}

/* ---- out-of-distribution detector ---------------------------------------------------------------- */

int ps_model_has_ood(const ps_model *m) { return m && m->ood_means != NULL; }

double ps_model_ood_threshold(const ps_model *m) { return ps_model_has_ood(m) ? m->ood_thr : NAN; }

unsigned ps_model_ood_layers(const ps_model *m) { return ps_model_has_ood(m) ? m->ood_layers : 0u; }

int ps_model_set_ood(ps_model *m, unsigned layers, const float *means, const float *prec, double threshold) {
  if (!m || !means || !prec) return ps_error(PS_EINVAL, "model: set_ood: NULL argument");
  if (layers == 0 || layers > 15u) return ps_error(PS_EINVAL, "model: OOD layers mask %u (1..15)", layers);
  if (!(threshold > 0 && isfinite(threshold))) return ps_error(PS_EINVAL, "model: OOD threshold %g is not positive", threshold);
  const size_t D = (size_t)ps_model_layers_dim(layers);
  float *a = malloc(sizeof(float) * (size_t)m->K * D), *b = malloc(sizeof(float) * D * D);
  if (!a || !b) {
    free(a), free(b);
    return ps_error(PS_ENOMEM, "model: out of memory");
  }
  for (size_t i = 0; i < (size_t)m->K * D; i++) a[i] = means[i];
  for (size_t i = 0; i < D * D; i++) b[i] = prec[i];
  for (size_t i = 0; i < D * D; i++)
    if (!isfinite(b[i]) || (i < (size_t)m->K * D && !isfinite(a[i]))) {
      free(a), free(b);
      return ps_error(PS_EINVAL, "model: OOD detector holds a non-finite value");
    }
  free(m->ood_means);
  free(m->ood_prec);
  m->ood_means = a, m->ood_prec = b, m->ood_thr = threshold;
  m->ood_layers = layers, m->ood_dim = (int)D;
  return PS_OK;
}

int ps_model_ood_score(const ps_model *m, const float *feats, int n, float *score) {
  if (!m || !feats || !score || n < 0) return ps_error(PS_EINVAL, "model: ood_score: NULL argument");
  if (!m->ood_means) return ps_error(PS_ENOTFOUND, "model: this model has no out-of-distribution detector");
  const int D = m->ood_dim;
  double d[MAX_D];
  for (int i = 0; i < n; i++) {
    const float *f = feats + (size_t)i * D;
    double best = INFINITY;
    for (int k = 0; k < m->K; k++) {
      const float *mu = m->ood_means + (size_t)k * D;
      for (int c = 0; c < D; c++) d[c] = (double)f[c] - mu[c];
      double q = 0;
      for (int r = 0; r < D; r++) { /* d^T P d, P symmetric */
        const float *pr = m->ood_prec + (size_t)r * D;
        double acc = 0;
        for (int c = 0; c < D; c++) acc += pr[c] * d[c];
        q += d[r] * acc;
      }
      if (q < best) best = q;
    }
    score[i] = (float)best;
  }
  return PS_OK;
}

/* ---- default model ---------------------------------------------------------------------------- */

#ifndef PS_MODEL_SOURCE_DIR
#define PS_MODEL_SOURCE_DIR "."
#endif
#ifndef PS_MODEL_INSTALL_DIR
#define PS_MODEL_INSTALL_DIR "/usr/local/share/pneumoscope/models"
#endif
#define PS_DEFAULT_MODEL_NAME "pneumoscope-binary.safetensors"
#define PS_3CLASS_MODEL_NAME "pneumoscope-3class.safetensors"

static int file_exists(const char *p) { return access(p, R_OK) == 0; }

/* The bundled file `name` (pneumoscope-binary.safetensors ...): beside the source tree, in the
 * install prefix, or relative to the executable (a relocated install), the first that exists. */
static int bundled_path(const char *name, char *buf, size_t cap) {
  char cand[3][4096];
  int nc = 0;
  snprintf(cand[nc++], sizeof cand[0], "%s/sample_data/models/%s", PS_MODEL_SOURCE_DIR, name);
  snprintf(cand[nc++], sizeof cand[0], "%s/%s", PS_MODEL_INSTALL_DIR, name);
  /* Relocated install: <exe dir>/../share/pneumoscope/models. */
  char exe[4096];
  ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (k > 0) {
    exe[k] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = 0;
      snprintf(cand[nc++], sizeof cand[0], "%.3000s/../share/pneumoscope/models/%s", exe, name);
    }
  }
  for (int i = 0; i < nc; i++) {
    if (file_exists(cand[i])) {
      if (strlen(cand[i]) >= cap) return ps_error(PS_EINVAL, "model: path too long");
      strcpy(buf, cand[i]);
      return PS_OK;
    }
  }
  return ps_error(PS_ENOTFOUND, "model: no bundled %s found (set PNEUMOSCOPE_MODEL or pass --model); looked for %s, %s%s%s",
                  name, cand[0], cand[1], nc > 2 ? ", " : "", nc > 2 ? cand[2] : "");
}

int ps_model_default_path(char *buf, size_t cap) {
  if (!buf || cap == 0) return ps_error(PS_EINVAL, "model: buffer is NULL");
  buf[0] = 0;
  const char *env = getenv("PNEUMOSCOPE_MODEL");
  if (env && *env) {
    if (!file_exists(env))
      return ps_error(PS_ENOTFOUND, "model: PNEUMOSCOPE_MODEL=%s does not name a readable file", env);
    if (strlen(env) >= cap) return ps_error(PS_EINVAL, "model: path too long");
    strcpy(buf, env);
    return PS_OK;
  }
  return bundled_path(PS_DEFAULT_MODEL_NAME, buf, cap);
}

int ps_model_resolve(const char *name, char *buf, size_t cap) {
  if (!buf || cap == 0) return ps_error(PS_EINVAL, "model: buffer is NULL");
  buf[0] = 0;
  if (!name || !*name) return ps_model_default_path(buf, cap);
  if (!strcmp(name, "binary")) return bundled_path(PS_DEFAULT_MODEL_NAME, buf, cap);
  if (!strcmp(name, "3class")) return bundled_path(PS_3CLASS_MODEL_NAME, buf, cap);
  if (strlen(name) >= cap) return ps_error(PS_EINVAL, "model: path too long");
  strcpy(buf, name);
  return PS_OK;
}
