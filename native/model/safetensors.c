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

/* ---- a small strict JSON reader, enough for the safetensors header ---------------------------- */

typedef struct jp {
  const char *s, *end;
  const char *name; /* file name for messages */
  char err[200];
} jp;

#define JP_FAIL(p, what)                                                         \
  do {                                                                           \
    if (!(p)->err[0]) snprintf((p)->err, sizeof(p)->err, "%s", (what));          \
    return -1;                                                                   \
  } while (0)

static void jp_ws(jp *p) {
  while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')) p->s++;
}

static int jp_expect(jp *p, char c) {
  jp_ws(p);
  if (p->s >= p->end || *p->s != c) {
    if (!p->err[0]) snprintf(p->err, sizeof p->err, "bad JSON: expected '%c'", c);
    return -1;
  }
  p->s++;
  return 0;
}

static int jp_peek(jp *p, char c) {
  jp_ws(p);
  return p->s < p->end && *p->s == c;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Parse a JSON string into a malloc'd UTF-8 C string. */
static int jp_string(jp *p, char **out) {
  *out = NULL;
  if (jp_expect(p, '"')) JP_FAIL(p, "bad JSON: expected a string");
  size_t cap = 32, n = 0;
  char *b = malloc(cap);
  if (!b) JP_FAIL(p, "out of memory");
  for (;;) {
    if (p->s >= p->end) {
      free(b);
      JP_FAIL(p, "bad JSON: unterminated string");
    }
    unsigned char c = (unsigned char)*p->s++;
    unsigned cp = 0;
    int is_cp = 0;
    if (c == '"') break;
    if (c < 0x20) {
      free(b);
      JP_FAIL(p, "bad JSON: control character in string");
    }
    if (c == '\\') {
      if (p->s >= p->end) {
        free(b);
        JP_FAIL(p, "bad JSON: unterminated escape");
      }
      char e = *p->s++;
      switch (e) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
          if (p->end - p->s < 4) {
            free(b);
            JP_FAIL(p, "bad JSON: short \\u escape");
          }
          for (int i = 0; i < 4; i++) {
            int h = hexval(p->s[i]);
            if (h < 0) {
              free(b);
              JP_FAIL(p, "bad JSON: bad \\u escape");
            }
            cp = cp * 16 + (unsigned)h;
          }
          p->s += 4;
          if (cp >= 0xD800 && cp <= 0xDBFF && p->end - p->s >= 6 && p->s[0] == '\\' && p->s[1] == 'u') {
            unsigned lo = 0;
            int ok = 1;
            for (int i = 0; i < 4; i++) {
              int h = hexval(p->s[2 + i]);
              if (h < 0) ok = 0;
              lo = lo * 16 + (unsigned)(h < 0 ? 0 : h);
            }
            if (ok && lo >= 0xDC00 && lo <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              p->s += 6;
            }
          }
          is_cp = 1;
          break;
        }
        default:
          free(b);
          JP_FAIL(p, "bad JSON: unknown escape");
      }
    }
    char tmp[4];
    int k = 0;
    if (!is_cp) {
      tmp[k++] = (char)c;
    } else if (cp < 0x80) {
      tmp[k++] = (char)cp;
    } else if (cp < 0x800) {
      tmp[k++] = (char)(0xC0 | (cp >> 6));
      tmp[k++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      tmp[k++] = (char)(0xE0 | (cp >> 12));
      tmp[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
      tmp[k++] = (char)(0x80 | (cp & 0x3F));
    } else {
      tmp[k++] = (char)(0xF0 | (cp >> 18));
      tmp[k++] = (char)(0x80 | ((cp >> 12) & 0x3F));
      tmp[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
      tmp[k++] = (char)(0x80 | (cp & 0x3F));
    }
    if (n + (size_t)k + 1 > cap) {
      cap *= 2;
      char *nb = realloc(b, cap);
      if (!nb) {
        free(b);
        JP_FAIL(p, "out of memory");
      }
      b = nb;
    }
    memcpy(b + n, tmp, (size_t)k);
    n += (size_t)k;
  }
  b[n] = 0;
  if (strlen(b) != n) { /* embedded \u0000 */
    free(b);
    JP_FAIL(p, "bad JSON: NUL in string");
  }
  *out = b;
  return 0;
}

/* Non-negative integer (no sign, no fraction), < 2^63. */
static int jp_uint(jp *p, uint64_t *out) {
  jp_ws(p);
  if (p->s >= p->end || *p->s < '0' || *p->s > '9') JP_FAIL(p, "bad JSON: expected a non-negative integer");
  uint64_t v = 0;
  while (p->s < p->end && *p->s >= '0' && *p->s <= '9') {
    if (v > (UINT64_C(1) << 62) / 10) JP_FAIL(p, "integer too large");
    v = v * 10 + (uint64_t)(*p->s - '0');
    p->s++;
  }
  if (p->s < p->end && (*p->s == '.' || *p->s == 'e' || *p->s == 'E')) JP_FAIL(p, "expected an integer, got a fraction");
  *out = v;
  return 0;
}

static int jp_uint_array(jp *p, uint64_t *vals, int max, int *n) {
  *n = 0;
  if (jp_expect(p, '[')) JP_FAIL(p, "bad JSON: expected an array");
  if (jp_peek(p, ']')) {
    p->s++;
    return 0;
  }
  for (;;) {
    if (*n >= max) JP_FAIL(p, "array too long");
    if (jp_uint(p, &vals[*n])) return -1;
    (*n)++;
    jp_ws(p);
    if (jp_peek(p, ',')) {
      p->s++;
      continue;
    }
    if (jp_expect(p, ']')) return -1;
    return 0;
  }
}

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

static int parse_meta(jp *p, ps_st_file *f) {
  if (jp_expect(p, '{')) JP_FAIL(p, "__metadata__ is not an object");
  if (jp_peek(p, '}')) {
    p->s++;
    return 0;
  }
  for (;;) {
    char *k = NULL, *v = NULL;
    if (jp_string(p, &k)) return -1;
    if (jp_expect(p, ':')) {
      free(k);
      return -1;
    }
    if (jp_string(p, &v)) {
      free(k);
      JP_FAIL(p, "__metadata__ values must be strings");
    }
    char **nk = realloc(f->meta_keys, sizeof(char *) * (size_t)(f->nmeta + 1));
    if (nk) f->meta_keys = nk;
    char **nv = nk ? realloc(f->meta_vals, sizeof(char *) * (size_t)(f->nmeta + 1)) : NULL;
    if (nv) f->meta_vals = nv;
    if (!nk || !nv) {
      free(k);
      free(v);
      JP_FAIL(p, "out of memory");
    }
    f->meta_keys[f->nmeta] = k;
    f->meta_vals[f->nmeta] = v;
    f->nmeta++;
    if (jp_peek(p, ',')) {
      p->s++;
      continue;
    }
    return jp_expect(p, '}');
  }
}

static int parse_tensor(jp *p, ps_st_tensor *t) {
  int have_dtype = 0, have_shape = 0, have_off = 0;
  if (jp_expect(p, '{')) JP_FAIL(p, "tensor entry is not an object");
  if (jp_peek(p, '}')) JP_FAIL(p, "empty tensor entry");
  for (;;) {
    char *k = NULL;
    if (jp_string(p, &k)) return -1;
    if (jp_expect(p, ':')) {
      free(k);
      return -1;
    }
    if (!strcmp(k, "dtype")) {
      char *v = NULL;
      free(k);
      if (jp_string(p, &v)) return -1;
      if (dtype_from_name(v, &t->dtype)) {
        snprintf(p->err, sizeof p->err, "unknown or unsupported dtype \"%.40s\"", v);
        free(v);
        return -1;
      }
      free(v);
      have_dtype = 1;
    } else if (!strcmp(k, "shape")) {
      uint64_t v[PS_TENSOR_MAX_DIMS];
      int n = 0;
      free(k);
      if (jp_uint_array(p, v, PS_TENSOR_MAX_DIMS, &n)) return -1;
      t->ndim = n;
      for (int i = 0; i < n; i++) t->shape[i] = (int64_t)v[i];
      have_shape = 1;
    } else if (!strcmp(k, "data_offsets")) {
      uint64_t v[2];
      int n = 0;
      free(k);
      if (jp_uint_array(p, v, 2, &n)) return -1;
      if (n != 2) JP_FAIL(p, "data_offsets must hold 2 numbers");
      t->begin = v[0];
      t->end = v[1];
      have_off = 1;
    } else {
      free(k);
      JP_FAIL(p, "unknown key in tensor entry");
    }
    if (jp_peek(p, ',')) {
      p->s++;
      continue;
    }
    if (jp_expect(p, '}')) return -1;
    break;
  }
  if (!have_dtype || !have_shape || !have_off) JP_FAIL(p, "tensor entry lacks dtype, shape or data_offsets");
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
  jp p = {hbuf, hbuf + hlen, name, {0}};
  int cap = 0;
  if (jp_expect(&p, '{')) goto bad_json;
  if (!jp_peek(&p, '}')) {
    for (;;) {
      char *key = NULL;
      if (jp_string(&p, &key)) goto bad_json;
      if (jp_expect(&p, ':')) {
        free(key);
        goto bad_json;
      }
      if (!strcmp(key, "__metadata__")) {
        free(key);
        if (f->nmeta) {
          snprintf(p.err, sizeof p.err, "two __metadata__ entries");
          goto bad_json;
        }
        if (parse_meta(&p, f)) goto bad_json;
      } else {
        if (ps_st_find(f, key)) {
          snprintf(p.err, sizeof p.err, "tensor \"%.60s\" appears twice", key);
          free(key);
          goto bad_json;
        }
        if (f->n == cap) {
          int nc = cap ? cap * 2 : 64;
          ps_st_tensor *nt = realloc(f->tensors, sizeof *nt * (size_t)nc);
          if (!nt) {
            free(key);
            st = ps_error(PS_ENOMEM, "safetensors: out of memory");
            goto fail;
          }
          f->tensors = nt;
          cap = nc;
        }
        ps_st_tensor *t = &f->tensors[f->n];
        memset(t, 0, sizeof *t);
        t->name = key;
        f->n++;
        if (parse_tensor(&p, t)) {
          char tmp[200];
          snprintf(tmp, sizeof tmp, "%s (tensor \"%.60s\")", p.err, key);
          memcpy(p.err, tmp, sizeof p.err);
          goto bad_json;
        }
      }
      if (jp_peek(&p, ',')) {
        p.s++;
        continue;
      }
      if (jp_expect(&p, '}')) goto bad_json;
      break;
    }
  } else {
    p.s++;
  }
  jp_ws(&p);
  if (p.s != p.end) {
    snprintf(p.err, sizeof p.err, "bad JSON: trailing bytes after the header object");
    goto bad_json;
  }
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
  st = ps_error(PS_EFORMAT, "safetensors: %s: bad header: %s", name, p.err[0] ? p.err : "malformed JSON");
fail:
  free(order);
  free(hbuf);
  ps_st_free(f);
  return st;
}

/* ---- writing ---------------------------------------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->n + n + 1) nc *= 2;
    char *np = realloc(b->p, nc);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    char tmp[8];
    if (*c == '"' || *c == '\\') {
      tmp[0] = '\\';
      tmp[1] = (char)*c;
      sb_put(b, tmp, 2);
    } else if (*c < 0x20) {
      snprintf(tmp, sizeof tmp, "\\u%04x", *c);
      sb_str(b, tmp);
    } else {
      sb_put(b, (const char *)c, 1);
    }
  }
  sb_put(b, "\"", 1);
}

int ps_st_write(const char *path, const ps_st_out_tensor *ts, int n, const char *const *meta_keys,
                const char *const *meta_vals, int nmeta) {
  int st = PS_OK, fd = -1;
  char *tmp = NULL;
  sbuf h = {0};
  if (!path || (!ts && n)) return ps_error(PS_EINVAL, "safetensors: path/tensors is NULL");
  sb_str(&h, "{");
  if (nmeta > 0) {
    sb_str(&h, "\"__metadata__\":{");
    for (int i = 0; i < nmeta; i++) {
      if (i) sb_str(&h, ",");
      sb_json(&h, meta_keys[i]);
      sb_str(&h, ":");
      sb_json(&h, meta_vals[i] ? meta_vals[i] : "");
    }
    sb_str(&h, "}");
  }
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    char num[64];
    uint64_t numel = 1;
    for (int d = 0; d < ts[i].ndim; d++) numel *= (uint64_t)ts[i].shape[d];
    uint64_t bytes = numel * ps_dtype_size(ts[i].dtype);
    if (nmeta > 0 || i) sb_str(&h, ",");
    sb_json(&h, ts[i].name);
    sb_str(&h, ":{\"dtype\":");
    sb_json(&h, ps_dtype_name(ts[i].dtype));
    sb_str(&h, ",\"shape\":[");
    for (int d = 0; d < ts[i].ndim; d++) {
      snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)ts[i].shape[d]);
      sb_str(&h, num);
    }
    snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
             (unsigned long long)(off + bytes));
    sb_str(&h, num);
    off += bytes;
  }
  sb_str(&h, "}");
  while (!h.oom && h.n % 8) sb_str(&h, " "); /* align the data block to 8 bytes */
  if (h.oom) {
    st = ps_error(PS_ENOMEM, "safetensors: out of memory writing %s", path);
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
  uint64_t hl = h.n;
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(hl >> (8 * i));
  int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(h.p, 1, h.n, fp) == h.n;
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
  free(h.p);
  return PS_OK;
fail:
  if (fd >= 0) close(fd);
  if (tmp) {
    unlink(tmp);
    free(tmp);
  }
  free(h.p);
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
