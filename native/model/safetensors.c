/* safetensors.c — read/validate and atomically write .safetensors files (see safetensors.h). */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_internal.h"

/* ---- file model ---------------------------------------------------------------------------- */

static int dtype_from_name(const char *s, ps_dtype *out) {
  if (!strcmp(s, "F32")) *out = PS_DTYPE_F32;
  else if (!strcmp(s, "F16")) *out = PS_DTYPE_F16;
  else if (!strcmp(s, "BF16")) *out = PS_DTYPE_BF16;
  else if (!strcmp(s, "I64")) *out = PS_DTYPE_I64;
  else return -1;
  return 0;
}

void ps_st_free(ps_st_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
  for (int i = 0; i < f->nmeta; i++) {
    free(f->meta_keys[i]);
    free(f->meta_vals[i]);
  }
  free(f->tensors);
  free(f->meta_keys);
  free(f->meta_vals);
  if (f->fd >= 0) close(f->fd);
  free(f->path);
  free(f);
}

const ps_st_tensor *ps_st_find(const ps_st_file *f, const char *name) {
  if (!f || !name) return NULL;
  for (int i = 0; i < f->n; i++)
    if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
  return NULL;
}

const char *ps_st_meta(const ps_st_file *f, const char *key) {
  if (!f || !key) return NULL;
  for (int i = 0; i < f->nmeta; i++)
    if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
  return NULL;
}

static int cmp_begin(const void *a, const void *b) {
  const ps_st_tensor *x = *(const ps_st_tensor *const *)a, *y = *(const ps_st_tensor *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

/* Error text for the header's JSON: err[200] names what is wrong. */
typedef char st_err[200];

/* Non-negative integers (JSON integers, never fractions) into vals[max]; returns the count or -1. */
static int uint_array(const json_t *a, uint64_t *vals, int max, st_err err) {
  if (!json_is_array(a)) return snprintf(err, sizeof(st_err), "expected an array"), -1;
  if ((int)json_array_size(a) > max) return snprintf(err, sizeof(st_err), "array too long"), -1;
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) {
    if (!json_is_integer(v)) return snprintf(err, sizeof(st_err), "expected an integer"), -1;
    json_int_t x = json_integer_value(v);
    if (x < 0) return snprintf(err, sizeof(st_err), "expected a non-negative integer"), -1;
    vals[i] = (uint64_t)x;
  }
  return (int)json_array_size(a);
}

static int parse_meta(const json_t *o, ps_st_file *f, st_err err) {
  if (!json_is_object(o)) return snprintf(err, sizeof(st_err), "__metadata__ is not an object"), -1;
  size_t n = json_object_size(o);
  f->meta_keys = calloc(n ? n : 1, sizeof(char *));
  f->meta_vals = calloc(n ? n : 1, sizeof(char *));
  if (!f->meta_keys || !f->meta_vals) return snprintf(err, sizeof(st_err), "out of memory"), -1;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)o, k, v) {
    if (!json_is_string(v)) return snprintf(err, sizeof(st_err), "__metadata__ values must be strings"), -1;
    f->meta_keys[f->nmeta] = strdup(k);
    f->meta_vals[f->nmeta] = strdup(json_string_value(v));
    f->nmeta++;
    if (!f->meta_keys[f->nmeta - 1] || !f->meta_vals[f->nmeta - 1])
      return snprintf(err, sizeof(st_err), "out of memory"), -1;
  }
  return 0;
}

static int parse_tensor(const json_t *o, ps_st_tensor *t, st_err err) {
  if (!json_is_object(o)) return snprintf(err, sizeof(st_err), "tensor entry is not an object"), -1;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)o, k, v) {
    if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
      return snprintf(err, sizeof(st_err), "unknown key in tensor entry"), -1;
  }
  const json_t *dt = json_object_get(o, "dtype"), *sh = json_object_get(o, "shape"),
               *off = json_object_get(o, "data_offsets");
  if (!dt || !sh || !off) return snprintf(err, sizeof(st_err), "tensor entry lacks dtype, shape or data_offsets"), -1;
  if (!json_is_string(dt)) return snprintf(err, sizeof(st_err), "dtype is not a string"), -1;
  if (dtype_from_name(json_string_value(dt), &t->dtype))
    return snprintf(err, sizeof(st_err), "unknown or unsupported dtype \"%.40s\"", json_string_value(dt)), -1;
  uint64_t dims[PS_TENSOR_MAX_DIMS], be[2];
  int nd = uint_array(sh, dims, PS_TENSOR_MAX_DIMS, err);
  if (nd < 0) return -1;
  t->ndim = nd;
  for (int i = 0; i < nd; i++) t->shape[i] = (int64_t)dims[i];
  if (uint_array(off, be, 2, err) != 2) return err[0] ? -1 : (snprintf(err, sizeof(st_err), "data_offsets must hold 2 numbers"), -1);
  t->begin = be[0];
  t->end = be[1];
  return 0;
}

static int read_full(int fd, void *dst, size_t n, uint64_t off) {
  uint8_t *p = dst;
  while (n > 0) {
    ssize_t k = pread(fd, p, n, (off_t)off);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
    off += (uint64_t)k;
  }
  return 0;
}

int ps_st_read_tensor(const ps_st_file *f, const ps_st_tensor *t, void *dst) {
  if (!f || !t || (!dst && t->end > t->begin)) return ps_error(PS_EINVAL, "safetensors: NULL argument");
  if (read_full(f->fd, dst, (size_t)(t->end - t->begin), f->data_start + t->begin))
    return ps_error(PS_EIO, "safetensors: %s: cannot read tensor \"%s\" (file changed or unreadable)", f->path, t->name);
  return PS_OK;
}

int ps_st_open(const char *path, ps_st_file **out) {
  int st = PS_OK;
  ps_st_file *f = NULL;
  const ps_st_tensor **order = NULL;
  char *hbuf = NULL;
  json_t *root = NULL;
  st_err err = {0};
  if (!path || !out) return ps_error(PS_EINVAL, "safetensors: path/out is NULL");
  *out = NULL;
  const char *name = path;
  f = calloc(1, sizeof *f);
  if (!f) return ps_error(PS_ENOMEM, "safetensors: out of memory");
  f->fd = -1;
  f->path = strdup(path);
  if (!f->path) {
    st = ps_error(PS_ENOMEM, "safetensors: out of memory reading %s", name);
    goto fail;
  }
  f->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) {
    st = ps_error(errno == ENOENT ? PS_ENOTFOUND : PS_EIO, "safetensors: cannot open %s: %s", path, strerror(errno));
    goto fail;
  }
  struct stat sb;
  if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    st = ps_error(PS_EIO, "safetensors: %s is not a regular file", path);
    goto fail;
  }
  uint64_t size = (uint64_t)sb.st_size;
  f->size = size;
  if (size < 8) {
    st = ps_error(PS_EFORMAT, "safetensors: %s: file is %llu bytes, too short for the 8-byte header length", name,
                  (unsigned long long)size);
    goto fail;
  }
  uint8_t len8[8];
  if (read_full(f->fd, len8, 8, 0)) {
    st = ps_error(PS_EIO, "safetensors: cannot read %s", path);
    goto fail;
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | len8[i];
  if (hlen > PS_ST_MAX_HEADER) {
    st = ps_error(PS_EFORMAT, "safetensors: %s: header length %llu exceeds the %llu-byte limit", name,
                  (unsigned long long)hlen, (unsigned long long)PS_ST_MAX_HEADER);
    goto fail;
  }
  if (hlen > size - 8) {
    st = ps_error(PS_EFORMAT, "safetensors: %s: header length %llu is beyond the end of the %llu-byte file", name,
                  (unsigned long long)hlen, (unsigned long long)size);
    goto fail;
  }
  if (hlen < 2) {
    st = ps_error(PS_EFORMAT, "safetensors: %s: header of %llu bytes is too short", name, (unsigned long long)hlen);
    goto fail;
  }
  hbuf = malloc((size_t)hlen);
  if (!hbuf) {
    st = ps_error(PS_ENOMEM, "safetensors: out of memory reading %s", name);
    goto fail;
  }
  if (read_full(f->fd, hbuf, (size_t)hlen, 8)) {
    st = ps_error(PS_EIO, "safetensors: cannot read %s", path);
    goto fail;
  }
  f->data_start = 8 + hlen;
  uint64_t body_len = size - 8 - hlen;
  /* jansson, strict: duplicate keys (a tensor or __metadata__ twice) and \u0000 refused, nothing
   * may follow the header object. */
  json_error_t jerr;
  root = json_loadb(hbuf, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    snprintf(err, sizeof err, "bad JSON at byte %d: %s", jerr.position, jerr.text);
    goto bad_json;
  }
  if (!json_is_object(root)) {
    snprintf(err, sizeof err, "header is not a JSON object");
    goto bad_json;
  }
  f->tensors = calloc(json_object_size(root) ? json_object_size(root) : 1, sizeof *f->tensors);
  if (!f->tensors) {
    st = ps_error(PS_ENOMEM, "safetensors: out of memory");
    goto fail;
  }
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (!strcmp(key, "__metadata__")) {
      if (parse_meta(val, f, err)) goto bad_json;
      continue;
    }
    ps_st_tensor *t = &f->tensors[f->n];
    t->name = strdup(key);
    if (!t->name) {
      st = ps_error(PS_ENOMEM, "safetensors: out of memory");
      goto fail;
    }
    f->n++;
    if (parse_tensor(val, t, err)) {
      char tmp[sizeof err];
      snprintf(tmp, sizeof tmp, "%s (tensor \"%.60s\")", err, key);
      memcpy(err, tmp, sizeof err);
      goto bad_json;
    }
  }
  json_decref(root);
  root = NULL;
  /* Validate every tensor against the data block. */
  for (int i = 0; i < f->n; i++) {
    ps_st_tensor *t = &f->tensors[i];
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
      if (t->shape[d] > 0 && numel > (UINT64_C(1) << 60) / (uint64_t)t->shape[d]) {
        st = ps_error(PS_EFORMAT, "safetensors: %s: tensor \"%s\" shape is absurdly large", name, t->name);
        goto fail;
      }
      numel *= (uint64_t)t->shape[d];
    }
    if (t->end < t->begin || t->end > body_len) {
      st = ps_error(PS_EFORMAT,
                    "safetensors: %s: tensor \"%s\" data_offsets [%llu, %llu] lie outside the %llu-byte data block",
                    name, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                    (unsigned long long)body_len);
      goto fail;
    }
    uint64_t want = numel * ps_dtype_size(t->dtype);
    if (t->end - t->begin != want) {
      st = ps_error(PS_EFORMAT,
                    "safetensors: %s: tensor \"%s\" has %llu bytes but %s x shape needs %llu", name, t->name,
                    (unsigned long long)(t->end - t->begin), ps_dtype_name(t->dtype), (unsigned long long)want);
      goto fail;
    }
  }
  if (f->n >= 1) {
    order = malloc(sizeof *order * (size_t)f->n);
    if (!order) {
      st = ps_error(PS_ENOMEM, "safetensors: out of memory");
      goto fail;
    }
    for (int i = 0; i < f->n; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n, sizeof *order, cmp_begin);
    for (int i = 1; i < f->n; i++) {
      if (order[i]->begin < order[i - 1]->end) {
        st = ps_error(PS_EFORMAT, "safetensors: %s: tensors \"%s\" and \"%s\" overlap in the data block", name,
                      order[i - 1]->name, order[i]->name);
        goto fail;
      }
    }
    /* The spec: the byte buffer is entirely indexed, without holes. A hole means the header
     * length or offsets lie (e.g. a header length off by one still parses and would load every
     * tensor shifted): refuse rather than load garbage weights. */
    uint64_t pos = 0;
    for (int i = 0; i < f->n; i++) {
      if (order[i]->begin != pos) {
        st = ps_error(PS_EFORMAT, "safetensors: %s: data block has %llu unreferenced bytes at offset %llu "
                      "(corrupt or truncated header)", name,
                      (unsigned long long)(order[i]->begin - pos), (unsigned long long)pos);
        goto fail;
      }
      pos = order[i]->end;
    }
    if (pos != body_len) {
      st = ps_error(PS_EFORMAT, "safetensors: %s: data block has %llu unreferenced bytes at offset %llu "
                    "(corrupt or truncated header)", name, (unsigned long long)(body_len - pos),
                    (unsigned long long)pos);
      goto fail;
    }
    free(order);
    order = NULL;
  }
  free(hbuf);
  *out = f;
  return PS_OK;
bad_json:
  st = ps_error(PS_EFORMAT, "safetensors: %s: bad header: %s", name, err[0] ? err : "malformed JSON");
fail:
  json_decref(root);
  free(order);
  free(hbuf);
  ps_st_free(f);
  return st;
}

/* ---- writing ---------------------------------------------------------------------------------- */

int ps_st_write(const char *path, const ps_st_out_tensor *ts, int n, const char *const *meta_keys,
                const char *const *meta_vals, int nmeta) {
  int st = PS_OK, fd = -1;
  char *tmp = NULL;
  char *h = NULL;
  size_t hn = 0;
  if (!path || (!ts && n)) return ps_error(PS_EINVAL, "safetensors: path/tensors is NULL");
  /* Header: compact JSON, __metadata__ first, tensors in data order. */
  json_t *root = json_object(), *meta = nmeta > 0 ? json_object() : NULL;
  int bad = !root || (nmeta > 0 && (!meta || json_object_set_new(root, "__metadata__", meta)));
  for (int i = 0; !bad && i < nmeta; i++)
    bad = !meta_keys[i] || json_object_set_new(meta, meta_keys[i], ps__json_str(meta_vals[i] ? meta_vals[i] : ""));
  uint64_t off = 0;
  for (int i = 0; !bad && i < n; i++) {
    uint64_t numel = 1;
    json_t *shape = json_array(), *t = json_object();
    for (int d = 0; d < ts[i].ndim; d++) {
      numel *= (uint64_t)ts[i].shape[d];
      json_array_append_new(shape, json_integer(ts[i].shape[d]));
    }
    uint64_t bytes = numel * ps_dtype_size(ts[i].dtype);
    bad = !t || json_object_set_new(t, "dtype", json_string(ps_dtype_name(ts[i].dtype))) ||
          json_object_set_new(t, "shape", shape) ||
          json_object_set_new(t, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes))) ||
          json_object_set_new(root, ts[i].name, t);
    off += bytes;
  }
  char *js = bad ? NULL : json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
  json_decref(root);
  if (js) {
    hn = strlen(js);
    h = malloc(hn + 8);
    if (h) {
      memcpy(h, js, hn);
      while (hn % 8) h[hn++] = ' '; /* align the data block to 8 bytes */
    }
    free(js);
  }
  if (!h) {
    st = ps_error(bad ? PS_EINVAL : PS_ENOMEM, "safetensors: cannot write the header of %s (%s)", path,
                  bad ? "a NULL or non-UTF-8 name or value" : "out of memory");
    goto fail;
  }
  size_t plen = strlen(path);
  tmp = malloc(plen + 40);
  if (!tmp) {
    st = ps_error(PS_ENOMEM, "safetensors: out of memory");
    goto fail;
  }
  /* <path>.tmp<pid>.XXXXXX: the pid lets a later run tell a killed writer's leftover (train) */
  snprintf(tmp, plen + 40, "%s.tmp%ld.XXXXXX", path, (long)getpid());
  fd = mkstemp(tmp);
  if (fd < 0) {
    st = ps_error(PS_EIO, "safetensors: cannot create a temporary file next to %s: %s", path, strerror(errno));
    free(tmp);
    tmp = NULL;
    goto fail;
  }
  FILE *fp = fdopen(fd, "wb");
  if (!fp) {
    st = ps_error(PS_EIO, "safetensors: cannot write %s: %s", tmp, strerror(errno));
    goto fail;
  }
  fd = -1;
  uint8_t len8[8];
  uint64_t hl = hn;
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(hl >> (8 * i));
  int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(h, 1, hn, fp) == hn;
  for (int i = 0; ok && i < n; i++) {
    uint64_t numel = 1;
    for (int d = 0; d < ts[i].ndim; d++) numel *= (uint64_t)ts[i].shape[d];
    size_t bytes = (size_t)(numel * ps_dtype_size(ts[i].dtype));
    if (bytes && fwrite(ts[i].data, 1, bytes, fp) != bytes) ok = 0;
  }
  if (ok && fflush(fp) != 0) ok = 0;
  if (ok && fsync(fileno(fp)) != 0) ok = 0;
  if (fclose(fp) != 0) ok = 0;
  if (!ok) {
    st = ps_error(PS_EIO, "safetensors: writing %s failed: %s", tmp, strerror(errno));
    goto fail;
  }
  chmod(tmp, 0644);
  if (rename(tmp, path) != 0) {
    st = ps_error(PS_EIO, "safetensors: cannot rename %s to %s: %s", tmp, path, strerror(errno));
    goto fail;
  }
  free(tmp);
  free(h);
  return PS_OK;
fail:
  if (fd >= 0) close(fd);
  if (tmp) {
    unlink(tmp);
    free(tmp);
  }
  free(h);
  return st;
}

/* IEEE half -> float, exact for every value (subnormals, infinities); NaNs keep their payload and
 * come out quiet, as the F16C instruction torch uses makes them. */
static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0);
  } else if (exp) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man) { /* subnormal: normalise */
    int e = -1;
    do {
      e++;
      man <<= 1;
    } while (!(man & 0x400u));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
  } else {
    bits = sign;
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

int ps_st_to_f32(const void *src, ps_dtype dtype, size_t n, float *dst) {
  const unsigned char *b = src;
  switch (dtype) {
    case PS_DTYPE_F32:
      for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
                     (uint32_t)b[4 * i + 3] << 24;
        memcpy(&dst[i], &u, sizeof u);
      }
      return PS_OK;
    case PS_DTYPE_F16:
      for (size_t i = 0; i < n; i++) dst[i] = half_to_float((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
      return PS_OK;
    case PS_DTYPE_BF16:
      for (size_t i = 0; i < n; i++) {
        uint32_t u = ((uint32_t)b[2 * i] | (uint32_t)b[2 * i + 1] << 8) << 16;
        if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) u |= 0x00400000u; /* quiet NaN */
        memcpy(&dst[i], &u, sizeof u);
      }
      return PS_OK;
    default:
      return ps_error(PS_EFORMAT, "safetensors: cannot convert %s to float32", ps_dtype_name(dtype));
  }
}
