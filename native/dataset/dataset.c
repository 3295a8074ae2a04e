/* dataset.c — dataset object, scanning folder trees, labels, patient ids, manifest read/write. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "dataset_internal.h"

/* DICOM PatientID / SOPInstanceUID come from the header (dicom module, when built in): no pixel
 * is decoded, so a film with damaged pixel data still gets its patient (reading it is refused later). */
#ifdef PS_HAVE_DICOM
#include "ps_dicom.h"
#endif

/* ---- names ---------------------------------------------------------------------------------- */

static const char *const class_names[2][3] = {{"NORMAL", "PNEUMONIA", NULL}, {"NORMAL", "BACTERIA", "VIRUS"}};

int ps_dataset_num_classes(ps_task task) { return task == PS_TASK_MULTICLASS ? 3 : 2; }

const char *ps_dataset_class_name(ps_task task, int cls) {
  int t = task == PS_TASK_MULTICLASS;
  if (cls < 0 || cls >= ps_dataset_num_classes(task)) return "?";
  return class_names[t][cls];
}

int ps_dataset_item_class(const ps_dataset_item *it, ps_task task) {
  if (!it) return -1;
  if (task == PS_TASK_MULTICLASS) return it->subtype >= 0 && it->subtype <= 2 ? it->subtype : -1;
  return it->label == 0 || it->label == 1 ? it->label : -1;
}

const char *ps_dataset_split_name(int split) {
  switch (split) {
    case PS_SPLIT_TRAIN: return "train";
    case PS_SPLIT_VAL: return "val";
    case PS_SPLIT_TEST: return "test";
    default: return "";
  }
}

int ps_dataset_parse_split(const char *s) {
  if (!s) return PS_SPLIT_NONE;
  if (!ps__strcasecmp(s, "train")) return PS_SPLIT_TRAIN;
  if (!ps__strcasecmp(s, "val") || !ps__strcasecmp(s, "valid") || !ps__strcasecmp(s, "validation"))
    return PS_SPLIT_VAL;
  if (!ps__strcasecmp(s, "test")) return PS_SPLIT_TEST;
  return PS_SPLIT_NONE;
}

const char *ps_dataset_label_name(int label) {
  return label == 0 ? "NORMAL" : label == 1 ? "PNEUMONIA" : "";
}

const char *ps_dataset_subtype_name(int subtype) {
  return subtype >= 0 && subtype <= 2 ? class_names[1][subtype] : "";
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static int has_ci(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (; *hay; hay++)
    if (!strncasecmp(hay, needle, n)) return 1;
  return 0;
}

int ps_dataset_subtype_from_name(const char *name) {
  if (!name) return PS_SUBTYPE_UNKNOWN;
  const char *b = base_name(name);
  if (has_ci(b, "_bacteria_")) return PS_SUBTYPE_BACTERIA;
  if (has_ci(b, "_virus_")) return PS_SUBTYPE_VIRUS;
  return PS_SUBTYPE_UNKNOWN;
}

int ps_dataset_patient_id_from_name(const char *name, char *out, size_t cap) {
  if (!name || !out || cap < 2) return ps_error(PS_EINVAL, "dataset: bad patient id buffer");
  const char *b = base_name(name);
  size_t len = strlen(b);
  const char *dot = strrchr(b, '.');
  size_t stem = dot && dot != b ? (size_t)(dot - b) : len;
  size_t keep = stem;
  int matched = 0;
  /* personNNN_... -> personNNN */
  if (!strncasecmp(b, "person", 6) && isdigit((unsigned char)b[6])) {
    size_t i = 6;
    while (i < stem && isdigit((unsigned char)b[i])) i++;
    if (i == stem || b[i] == '_') keep = i, matched = 1;
  }
  /* [PREFIX-]IM-NNNN-NNNN[-NNNN] -> [PREFIX-]IM-NNNN */
  if (!matched) {
    for (size_t i = 0; i + 3 < stem; i++) {
      if ((i == 0 || b[i - 1] == '-') && !strncasecmp(b + i, "IM-", 3) && isdigit((unsigned char)b[i + 3])) {
        size_t j = i + 3;
        while (j < stem && isdigit((unsigned char)b[j])) j++;
        /* the rest must be (-digits)+ */
        size_t k = j;
        int ok = k < stem;
        while (ok && k < stem) {
          if (b[k] != '-' || k + 1 >= stem || !isdigit((unsigned char)b[k + 1])) {
            ok = 0;
            break;
          }
          k++;
          while (k < stem && isdigit((unsigned char)b[k])) k++;
        }
        if (ok) {
          keep = j;
          matched = 1;
        }
        break;
      }
    }
  }
  if (keep + 1 > cap) return ps_error(PS_EINVAL, "dataset: patient id of %s longer than %zu", b, cap - 1);
  if (keep == 0) { /* ".jpeg": the whole name; "dir/": the whole path */
    if (len == 0) b = name, len = strlen(name);
    if (len == 0) b = "unnamed", len = 7;
    keep = len < cap ? len : cap - 1;
  }
  memcpy(out, b, keep);
  out[keep] = '\0';
  return matched;
}

/* ---- dataset object ------------------------------------------------------------------------ */

int ps__ds_new(const char *root, ps_dataset **out) {
  ps_dataset *ds = calloc(1, sizeof *ds);
  if (!ds || !(ds->root = strdup(root ? root : ""))) {
    free(ds);
    return ps_error(PS_ENOMEM, "dataset: out of memory");
  }
  *out = ds;
  return PS_OK;
}

static void item_free_strings(ps_dataset_item *it) {
  free((char *)it->path);
  free((char *)it->rel_path);
  free((char *)it->patient_id);
}

int ps__ds_push(ps_dataset *ds, const ps_dataset_item *src) {
  if (ds->n == ds->cap) {
    size_t cap = ds->cap ? ds->cap * 2 : 256;
    ps_dataset_item *it = realloc(ds->items, cap * sizeof *it);
    if (!it) return ps_error(PS_ENOMEM, "dataset: out of memory for %zu films", cap);
    ds->items = it, ds->cap = cap;
  }
  ps_dataset_item it = *src;
  it.path = strdup(src->path ? src->path : "");
  it.rel_path = strdup(src->rel_path ? src->rel_path : "");
  it.patient_id = strdup(src->patient_id ? src->patient_id : "");
  if (!it.path || !it.rel_path || !it.patient_id) {
    item_free_strings(&it);
    return ps_error(PS_ENOMEM, "dataset: out of memory");
  }
  ds->items[ds->n++] = it;
  return PS_OK;
}

void ps_dataset_free(ps_dataset *ds) {
  if (!ds) return;
  for (size_t i = 0; i < ds->n; i++) item_free_strings(&ds->items[i]);
  free(ds->items);
  free(ds->root);
  free(ds);
}

size_t ps_dataset_size(const ps_dataset *ds) { return ds ? ds->n : 0; }

const ps_dataset_item *ps_dataset_item_at(const ps_dataset *ds, size_t i) {
  return ds && i < ds->n ? &ds->items[i] : NULL;
}

const char *ps_dataset_root(const ps_dataset *ds) { return ds ? ds->root : ""; }

/* ---- scanning ---------------------------------------------------------------------------- */

typedef struct {
  char **v;
  size_t n, cap;
} strvec;

static int sv_push(strvec *s, const char *x) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    char **v = realloc(s->v, cap * sizeof *v);
    if (!v) return -1;
    s->v = v, s->cap = cap;
  }
  if (!(s->v[s->n] = strdup(x))) return -1;
  s->n++;
  return 0;
}

static void sv_free(strvec *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

#define PS_DS_MAX_DEPTH 32

/* Collect regular files (relative paths) under root/rel; skips hidden entries and symlinked folders. */
static int walk(const char *root, const char *rel, int depth, strvec *files) {
  char dirpath[PATH_MAX];
  if (snprintf(dirpath, sizeof dirpath, "%s%s%s", root, *rel ? "/" : "", rel) >= (int)sizeof dirpath)
    return ps_error(PS_ELIMIT, "dataset: path too long under %s", root);
  if (depth > PS_DS_MAX_DEPTH) return ps_error(PS_ELIMIT, "dataset: folders nested deeper than %d at %s", PS_DS_MAX_DEPTH, dirpath);
  DIR *d = opendir(dirpath);
  if (!d) return ps_error(PS_EIO, "dataset: cannot open folder %s: %s", dirpath, strerror(errno));
  strvec names = {0};
  struct dirent *e;
  int st = PS_OK;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (sv_push(&names, e->d_name)) {
      st = ps_error(PS_ENOMEM, "dataset: out of memory");
      break;
    }
  }
  closedir(d);
  if (st == PS_OK) qsort(names.v, names.n, sizeof *names.v, cmp_str);
  for (size_t i = 0; st == PS_OK && i < names.n; i++) {
    char sub[PATH_MAX], full[PATH_MAX];
    if (snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", names.v[i]) >= (int)sizeof sub ||
        snprintf(full, sizeof full, "%s/%s", root, sub) >= (int)sizeof full) {
      st = ps_error(PS_ELIMIT, "dataset: path too long under %s", dirpath);
      break;
    }
    struct stat ls, s;
    if (lstat(full, &ls) != 0) continue;
    if (S_ISDIR(ls.st_mode)) {
      st = walk(root, sub, depth + 1, files);
    } else if (stat(full, &s) != 0) {
      ps_log(PS_LOG_WARN, "dataset: %s is a broken link or unreadable (%s), skipped", full, strerror(errno));
    } else if (S_ISREG(s.st_mode)) { /* files may be symlinks (materialised trees) */
      if (sv_push(files, sub)) st = ps_error(PS_ENOMEM, "dataset: out of memory");
    }
  }
  sv_free(&names);
  return st;
}

static int film_extension(const char *name) {
  const char *dot = strrchr(base_name(name), '.');
  if (!dot) return 0;
  static const char *const ext[] = {".jpeg", ".jpg", ".png", ".dcm", ".dicom", NULL};
  for (int i = 0; ext[i]; i++)
    if (!ps__strcasecmp(dot, ext[i])) return 1;
  return 0;
}

/* Label/subtype/source split from the folder components of rel (innermost class folder wins). */
static void folder_labels(const char *rel, int *label, int *subtype, int *split) {
  *label = PS_LABEL_UNKNOWN, *subtype = PS_SUBTYPE_UNKNOWN, *split = PS_SPLIT_NONE;
  char comp[NAME_MAX + 1];
  const char *p = rel;
  for (;;) {
    const char *slash = strchr(p, '/');
    if (!slash) break; /* last component is the file */
    size_t n = (size_t)(slash - p);
    if (n < sizeof comp) {
      memcpy(comp, p, n);
      comp[n] = '\0';
      if (!ps__strcasecmp(comp, "NORMAL")) *label = PS_LABEL_NORMAL, *subtype = PS_SUBTYPE_NORMAL;
      else if (!ps__strcasecmp(comp, "PNEUMONIA")) *label = PS_LABEL_PNEUMONIA, *subtype = PS_SUBTYPE_UNKNOWN;
      else if (!ps__strcasecmp(comp, "BACTERIA")) *label = PS_LABEL_PNEUMONIA, *subtype = PS_SUBTYPE_BACTERIA;
      else if (!ps__strcasecmp(comp, "VIRUS")) *label = PS_LABEL_PNEUMONIA, *subtype = PS_SUBTYPE_VIRUS;
      else if (ps_dataset_parse_split(comp) != PS_SPLIT_NONE) *split = ps_dataset_parse_split(comp);
    }
    p = slash + 1;
  }
}

static int is_dicom_file(const char *path) {
  const char *dot = strrchr(base_name(path), '.');
  if (dot && (!ps__strcasecmp(dot, ".dcm") || !ps__strcasecmp(dot, ".dicom"))) return 1;
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  unsigned char b[132];
  size_t got = fread(b, 1, sizeof b, f);
  fclose(f);
  return got == sizeof b && !memcmp(b + 128, "DICM", 4);
}

/* DICOM PatientID and SOPInstanceUID of a file. Returns PS_OK and fills what the file says ("" when
 * absent); PS_EUNSUPPORTED when the library was built without the image/DICOM readers. */
static int dicom_ids(const char *path, char *patient, size_t pcap, char *sop, size_t scap) {
  patient[0] = sop[0] = '\0';
#ifdef PS_HAVE_DICOM
  ps_film_meta m;
  ps_read_opts ro = ps_read_opts_default();
  int st = ps_dicom_read_meta(path, &ro, &m);
  if (st != PS_OK) return st;
  snprintf(patient, pcap, "%s", m.patient_id);
  snprintf(sop, scap, "%s", m.sop_uid);
  return PS_OK;
#else
  (void)path, (void)pcap, (void)scap;
  return ps_error(PS_EUNSUPPORTED, "dataset: built without DICOM (no DICOM PatientID for %s)", path);
#endif
}

/* Labels CSV: one entry per row, matched by key (relative path, file name or SOPInstanceUID). */
typedef struct {
  char *key;
  int label, subtype;
  char *patient;
  int used;
} label_row;

typedef struct {
  label_row *rows;
  size_t n;
  size_t *by_key;  /* (n) row indices sorted by normalised key */
  size_t *by_base; /* (n) row indices sorted by the key's file name */
} label_table;

static int parse_label(const char *s, int *label, int *subtype) {
  while (*s == ' ') s++;
  if (!ps__strcasecmp(s, "NORMAL") || !strcmp(s, "0")) *label = 0, *subtype = PS_SUBTYPE_NORMAL;
  else if (!ps__strcasecmp(s, "PNEUMONIA") || !strcmp(s, "1")) *label = 1, *subtype = PS_SUBTYPE_UNKNOWN;
  else if (!ps__strcasecmp(s, "BACTERIA") || !ps__strcasecmp(s, "BACTERIAL")) *label = 1, *subtype = PS_SUBTYPE_BACTERIA;
  else if (!ps__strcasecmp(s, "VIRUS") || !ps__strcasecmp(s, "VIRAL")) *label = 1, *subtype = PS_SUBTYPE_VIRUS;
  else return -1;
  return 0;
}

static int parse_subtype(const char *s, int *subtype) {
  while (*s == ' ') s++;
  if (!*s) *subtype = PS_SUBTYPE_UNKNOWN;
  else if (!ps__strcasecmp(s, "NORMAL")) *subtype = PS_SUBTYPE_NORMAL;
  else if (!ps__strcasecmp(s, "BACTERIA") || !ps__strcasecmp(s, "BACTERIAL")) *subtype = PS_SUBTYPE_BACTERIA;
  else if (!ps__strcasecmp(s, "VIRUS") || !ps__strcasecmp(s, "VIRAL")) *subtype = PS_SUBTYPE_VIRUS;
  else return -1;
  return 0;
}

static void label_table_free(label_table *t) {
  for (size_t i = 0; i < t->n; i++) free(t->rows[i].key), free(t->rows[i].patient);
  free(t->rows);
  free(t->by_key);
  free(t->by_base);
}

static const char *norm_key(const char *k) {
  while (k[0] == '.' && k[1] == '/') k += 2;
  return k;
}

static int cmp_rows(const void *a, const void *b, void *ctx) {
  const label_table *t = ((const void **)ctx)[0];
  int base = *(const int *)((const void **)ctx)[1];
  const char *x = norm_key(t->rows[*(const size_t *)a].key), *y = norm_key(t->rows[*(const size_t *)b].key);
  if (base) x = base_name(x), y = base_name(y);
  int c = strcmp(x, y);
  return c ? c : (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

static int index_labels(label_table *t) {
  t->by_key = malloc((t->n ? t->n : 1) * sizeof(size_t));
  t->by_base = malloc((t->n ? t->n : 1) * sizeof(size_t));
  if (!t->by_key || !t->by_base) return ps_error(PS_ENOMEM, "labels: out of memory");
  for (size_t i = 0; i < t->n; i++) t->by_key[i] = t->by_base[i] = i;
  int zero = 0, one = 1;
  const void *c0[2] = {t, &zero}, *c1[2] = {t, &one};
  qsort_r(t->by_key, t->n, sizeof(size_t), cmp_rows, c0);
  qsort_r(t->by_base, t->n, sizeof(size_t), cmp_rows, c1);
  return PS_OK;
}

/* First row (in file order among equals) whose key (or key's file name) equals want; NULL if none. */
static label_row *find_row(label_table *t, const size_t *idx, int base, const char *want) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const char *k = norm_key(t->rows[idx[mid]].key);
    if (base) k = base_name(k);
    if (strcmp(k, want) < 0) lo = mid + 1;
    else hi = mid;
  }
  if (lo < t->n) {
    const char *k = norm_key(t->rows[idx[lo]].key);
    if (base) k = base_name(k);
    if (!strcmp(k, want)) return &t->rows[idx[lo]];
  }
  return NULL;
}

static int load_labels(const char *path, label_table *t) {
  memset(t, 0, sizeof *t);
  ps__csv c;
  int st = ps__csv_read(path, &c);
  if (st) return st;
  static const char *const key_names[] = {"path", "file", "filename", "file_name", "sop_instance_uid",
                                          "SOPInstanceUID", "sop_uid", NULL};
  static const char *const label_names[] = {"label", "class", NULL};
  static const char *const sub_names[] = {"subtype", NULL};
  static const char *const pid_names[] = {"patient_id", "PatientID", "patient", NULL};
  int ck = ps__csv_col(&c, key_names), cl = ps__csv_col(&c, label_names), cs = ps__csv_col(&c, sub_names),
      cp = ps__csv_col(&c, pid_names);
  if (c.rows == 0 || ck < 0 || cl < 0) {
    st = ps_error(PS_EFORMAT, "labels: %s line 1: header needs a path/file/SOPInstanceUID column and a label column", path);
    goto done;
  }
  t->rows = calloc(c.rows, sizeof *t->rows);
  if (!t->rows) {
    st = ps_error(PS_ENOMEM, "labels: out of memory");
    goto done;
  }
  for (size_t r = 1; r < c.rows; r++) {
    if (c.ncols[r] != c.ncols[0]) {
      st = ps_error(PS_EFORMAT, "labels: %s line %zu: %zu fields, header has %zu", path, c.line[r], c.ncols[r], c.ncols[0]);
      goto done;
    }
    label_row *lr = &t->rows[t->n];
    if (parse_label(c.field[r][cl], &lr->label, &lr->subtype)) {
      st = ps_error(PS_EFORMAT, "labels: %s line %zu: label '%s' is not NORMAL/PNEUMONIA/BACTERIA/VIRUS", path, c.line[r],
                    c.field[r][cl]);
      goto done;
    }
    if (cs >= 0 && c.field[r][cs][0]) {
      int sub;
      if (parse_subtype(c.field[r][cs], &sub)) {
        st = ps_error(PS_EFORMAT, "labels: %s line %zu: subtype '%s' is not NORMAL/BACTERIA/VIRUS", path, c.line[r],
                      c.field[r][cs]);
        goto done;
      }
      if ((sub == PS_SUBTYPE_NORMAL) != (lr->label == 0)) {
        st = ps_error(PS_EFORMAT, "labels: %s line %zu: subtype '%s' contradicts label '%s'", path, c.line[r],
                      c.field[r][cs], c.field[r][cl]);
        goto done;
      }
      lr->subtype = sub;
    }
    if (!c.field[r][ck][0]) {
      st = ps_error(PS_EFORMAT, "labels: %s line %zu: empty path", path, c.line[r]);
      goto done;
    }
    lr->key = strdup(c.field[r][ck]);
    lr->patient = strdup(cp >= 0 ? c.field[r][cp] : "");
    t->n++;
    if (!lr->key || !lr->patient) {
      st = ps_error(PS_ENOMEM, "labels: out of memory");
      goto done;
    }
  }
  st = index_labels(t);
done:
  ps__csv_free(&c);
  if (st) label_table_free(t);
  return st;
}

static label_row *label_lookup(label_table *t, const char *rel, const char *sop) {
  if (!t) return NULL; /* relative path first, then file name, then SOP Instance UID */
  label_row *r = find_row(t, t->by_key, 0, rel);
  if (!r) r = find_row(t, t->by_base, 1, base_name(rel));
  if (!r && sop && *sop) r = find_row(t, t->by_key, 0, sop);
  return r;
}

/* Parallel hashing. */
typedef struct {
  ps_dataset *ds;
  atomic_size_t next, done;
  atomic_int status;
  atomic_int cancel;
  char err[512];
  pthread_mutex_t lock;
} hash_job;

static void *hash_worker(void *arg) {
  hash_job *j = arg;
  for (;;) {
    if (atomic_load(&j->status) != PS_OK || atomic_load(&j->cancel)) break;
    size_t i = atomic_fetch_add(&j->next, 1);
    if (i >= j->ds->n) break;
    int st = ps_sha256_file(j->ds->items[i].path, j->ds->items[i].sha256);
    if (st != PS_OK) {
      pthread_mutex_lock(&j->lock);
      if (atomic_load(&j->status) == PS_OK) {
        snprintf(j->err, sizeof j->err, "%s", ps_last_error());
        atomic_store(&j->status, st);
      }
      pthread_mutex_unlock(&j->lock);
      break;
    }
    atomic_fetch_add(&j->done, 1);
  }
  return NULL;
}

static int hash_all(ps_dataset *ds, const ps_scan_opts *o) {
  int threads = o->threads > 0 ? o->threads : ps_default_threads();
  if (threads > 8) threads = 8;
  if ((size_t)threads > ds->n) threads = ds->n ? (int)ds->n : 1;
  hash_job j;
  memset(&j, 0, sizeof j);
  j.ds = ds;
  atomic_init(&j.next, 0);
  atomic_init(&j.done, 0);
  atomic_init(&j.status, PS_OK);
  atomic_init(&j.cancel, 0);
  pthread_mutex_init(&j.lock, NULL);
  pthread_t tid[8];
  int started = 0;
  for (int t = 1; t < threads; t++)
    if (pthread_create(&tid[started], NULL, hash_worker, &j) == 0) started++;
  if (o->progress) {
    /* the calling thread reports progress while hashing too */
    for (;;) {
      if (atomic_load(&j.status) != PS_OK) break;
      size_t i = atomic_fetch_add(&j.next, 1);
      if (i >= ds->n) break;
      int st = ps_sha256_file(ds->items[i].path, ds->items[i].sha256);
      if (st != PS_OK) {
        pthread_mutex_lock(&j.lock);
        if (atomic_load(&j.status) == PS_OK) {
          snprintf(j.err, sizeof j.err, "%s", ps_last_error());
          atomic_store(&j.status, st);
        }
        pthread_mutex_unlock(&j.lock);
        break;
      }
      size_t done = atomic_fetch_add(&j.done, 1) + 1;
      if (o->progress((double)done / (double)ds->n, "hashing films", o->progress_user)) {
        atomic_store(&j.cancel, 1);
        break;
      }
    }
  } else {
    hash_worker(&j);
  }
  for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
  pthread_mutex_destroy(&j.lock);
  if (atomic_load(&j.status) != PS_OK) return ps_error(atomic_load(&j.status), "%s", j.err);
  if (atomic_load(&j.cancel)) return ps_error(PS_ECANCELLED, "dataset: scan cancelled while hashing");
  return PS_OK;
}

int ps_dataset_scan(const char *root, const ps_scan_opts *opts, ps_dataset **out) {
  if (!root || !out) return ps_error(PS_EINVAL, "dataset: NULL root or output");
  *out = NULL;
  ps_scan_opts o = {0};
  if (opts) o = *opts;
  char absroot[PATH_MAX];
  struct stat s;
  if (!realpath(root, absroot) || stat(absroot, &s) != 0)
    return ps_error(PS_ENOTFOUND, "dataset: %s does not exist", root);
  if (!S_ISDIR(s.st_mode)) return ps_error(PS_EINVAL, "dataset: %s is not a folder", root);
  label_table table = {0}, *tp = NULL;
  strvec files = {0};
  ps_dataset *ds = NULL;
  int st;
  if (o.labels_csv) {
    if ((st = load_labels(o.labels_csv, &table)) != PS_OK) return st;
    tp = &table;
  }
  if ((st = walk(absroot, "", 0, &files)) != PS_OK) goto fail;
  /* walk sorts per folder; sort the whole list byte-wise so order never depends on the file system */
  qsort(files.v, files.n, sizeof *files.v, cmp_str);
  if ((st = ps__ds_new(absroot, &ds)) != PS_OK) goto fail;
  size_t skipped = 0, no_pid = 0;
  for (size_t i = 0; i < files.n; i++) {
    const char *rel = files.v[i];
    char full[PATH_MAX], pid[256] = "", dpid[68] = "", sop[68] = "";
    if (snprintf(full, sizeof full, "%s/%s", absroot, rel) >= (int)sizeof full) {
      st = ps_error(PS_ELIMIT, "dataset: path too long: %s/%s", absroot, rel);
      goto fail;
    }
    ps_dataset_item it;
    memset(&it, 0, sizeof it);
    it.group = -1;
    it.split = PS_SPLIT_NONE;
    folder_labels(rel, &it.label, &it.subtype, &it.source_split);
    int dicom = (film_extension(rel) || tp) && is_dicom_file(full);
    if (dicom) {
      int dst = dicom_ids(full, dpid, sizeof dpid, sop, sizeof sop);
      if (dst != PS_OK) ps_log(PS_LOG_WARN, "dataset: no DICOM PatientID for %s: %s", rel, ps_last_error());
    }
    label_row *lr = label_lookup(tp, rel, sop);
    if (lr) {
      it.label = lr->label;
      it.subtype = lr->subtype;
      lr->used = 1;
    } else if (!film_extension(rel)) {
      continue; /* not a film (README, CSV, ...) */
    }
    if (it.label == PS_LABEL_UNKNOWN) {
      if (skipped++ < 5) ps_log(PS_LOG_WARN, "dataset: %s has no label (no class folder%s), skipped", rel, tp ? ", not in the labels CSV" : "");
      continue;
    }
    if (it.label == PS_LABEL_PNEUMONIA && it.subtype == PS_SUBTYPE_UNKNOWN) it.subtype = ps_dataset_subtype_from_name(rel);
    if (lr && lr->patient[0]) snprintf(pid, sizeof pid, "%s", lr->patient);
    else if (dpid[0]) snprintf(pid, sizeof pid, "%s", dpid);
    else if (ps_dataset_patient_id_from_name(rel, pid, sizeof pid) == 0) no_pid++;
    it.path = full;
    it.rel_path = rel;
    it.patient_id = pid;
    if ((st = ps__ds_push(ds, &it)) != PS_OK) goto fail;
  }
  if (skipped) ps_log(PS_LOG_WARN, "dataset: %zu files without a label skipped under %s", skipped, absroot);
  if (no_pid)
    ps_log(PS_LOG_INFO, "dataset: %zu films have no patient id in their name or header: each is its own patient", no_pid);
  if (tp) {
    size_t unused = 0;
    for (size_t i = 0; i < table.n; i++)
      if (!table.rows[i].used && unused++ < 5)
        ps_log(PS_LOG_WARN, "dataset: labels CSV entry %s matches no file under %s", table.rows[i].key, absroot);
    if (unused) ps_log(PS_LOG_WARN, "dataset: %zu labels CSV entries match no file", unused);
  }
  if (ds->n == 0) {
    st = ps_error(PS_ENOTFOUND, "dataset: no labelled film under %s (expected NORMAL/PNEUMONIA folders or a labels CSV)", root);
    goto fail;
  }
  if (!o.no_hash && (st = hash_all(ds, &o)) != PS_OK) goto fail;
  sv_free(&files);
  label_table_free(&table);
  *out = ds;
  return PS_OK;
fail:
  sv_free(&files);
  label_table_free(&table);
  ps_dataset_free(ds);
  return st;
}

/* ---- manifest ---------------------------------------------------------------------------- */

static int write_manifest_rows(FILE *f, void *user) {
  const ps_dataset *ds = user;
  fputs("path,label,subtype,patient_id,split,sha256\n", f);
  for (size_t i = 0; i < ds->n; i++) {
    const ps_dataset_item *it = &ds->items[i];
    ps__csv_write_field(f, it->path);
    fputc(',', f);
    fputs(ps_dataset_label_name(it->label), f);
    fputc(',', f);
    fputs(ps_dataset_subtype_name(it->subtype), f);
    fputc(',', f);
    ps__csv_write_field(f, it->patient_id);
    fputc(',', f);
    fputs(ps_dataset_split_name(it->split), f);
    fputc(',', f);
    fputs(it->sha256, f);
    fputc('\n', f);
  }
  return PS_OK;
}

int ps_dataset_write_manifest(const ps_dataset *ds, const char *path, int force) {
  if (!ds || !path) return ps_error(PS_EINVAL, "dataset: NULL dataset or manifest path");
  int st = ps__write_atomic(path, force, write_manifest_rows, (void *)ds);
  if (st != PS_OK && strncmp(ps_last_error(), "manifest", 8)) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ps_last_error());
    ps_error(st, "manifest: %s", msg);
  }
  return st;
}

static int is_hex64(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if (!isxdigit((unsigned char)s[n])) return 0;
  return n == 64;
}

int ps_dataset_read_manifest(const char *path, ps_dataset **out) {
  if (!path || !out) return ps_error(PS_EINVAL, "manifest: NULL path or output");
  *out = NULL;
  ps__csv c;
  int st = ps__csv_read(path, &c);
  if (st) return st;
  ps_dataset *ds = NULL;
  static const char *const pn[] = {"path", "file", "filename", NULL}, *const ln[] = {"label", "class", NULL},
                           *const sn[] = {"subtype", NULL}, *const in[] = {"patient_id", "patient", NULL},
                           *const spn[] = {"split", NULL}, *const hn[] = {"sha256", NULL};
  int cp = ps__csv_col(&c, pn), cl = ps__csv_col(&c, ln), cs = ps__csv_col(&c, sn), ci = ps__csv_col(&c, in),
      csp = ps__csv_col(&c, spn), ch = ps__csv_col(&c, hn);
  if (c.rows == 0) {
    st = ps_error(PS_EFORMAT, "manifest: %s is empty (no header)", path);
    goto fail;
  }
  if (cp < 0 || cl < 0) {
    st = ps_error(PS_EFORMAT, "manifest: %s line %zu: header needs 'path' (or 'file') and 'label' (or 'class') columns", path,
                  c.line[0]);
    goto fail;
  }
  char dir[PATH_MAX];
  {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *slash = strrchr(tmp, '/');
    if (slash) *slash = '\0';
    else snprintf(tmp, sizeof tmp, ".");
    if (!realpath(slash ? (tmp[0] ? tmp : "/") : ".", dir)) snprintf(dir, sizeof dir, "%s", tmp);
  }
  if ((st = ps__ds_new(dir, &ds)) != PS_OK) goto fail;
  for (size_t r = 1; r < c.rows; r++) {
    size_t line = c.line[r];
    if (c.ncols[r] != c.ncols[0]) {
      st = ps_error(PS_EFORMAT, "manifest: %s line %zu: %zu fields, header has %zu", path, line, c.ncols[r], c.ncols[0]);
      goto fail;
    }
    char **fl = c.field[r];
    ps_dataset_item it;
    memset(&it, 0, sizeof it);
    it.group = -1;
    it.source_split = PS_SPLIT_NONE;
    if (!fl[cp][0]) {
      st = ps_error(PS_EFORMAT, "manifest: %s line %zu: empty path", path, line);
      goto fail;
    }
    if (parse_label(fl[cl], &it.label, &it.subtype)) {
      st = ps_error(PS_EFORMAT, "manifest: %s line %zu: label '%s' is not NORMAL or PNEUMONIA", path, line, fl[cl]);
      goto fail;
    }
    if (cs >= 0 && fl[cs][0]) {
      int sub;
      if (parse_subtype(fl[cs], &sub) || (sub == PS_SUBTYPE_NORMAL) != (it.label == 0)) {
        st = ps_error(PS_EFORMAT, "manifest: %s line %zu: subtype '%s' is not valid for label '%s'", path, line, fl[cs], fl[cl]);
        goto fail;
      }
      it.subtype = sub;
    }
    if (it.label == 1 && it.subtype == PS_SUBTYPE_UNKNOWN) it.subtype = ps_dataset_subtype_from_name(fl[cp]);
    it.split = PS_SPLIT_NONE;
    if (csp >= 0 && fl[csp][0]) {
      it.split = ps_dataset_parse_split(fl[csp]);
      if (it.split == PS_SPLIT_NONE) {
        st = ps_error(PS_EFORMAT, "manifest: %s line %zu: split '%s' is not train, val or test", path, line, fl[csp]);
        goto fail;
      }
    }
    if (ch >= 0 && fl[ch][0]) {
      if (!is_hex64(fl[ch])) {
        st = ps_error(PS_EFORMAT, "manifest: %s line %zu: sha256 '%s' is not 64 hex digits", path, line, fl[ch]);
        goto fail;
      }
      for (int k = 0; k < 64; k++) it.sha256[k] = (char)tolower((unsigned char)fl[ch][k]);
      it.sha256[64] = '\0';
    }
    size_t plen = strlen(fl[cp]);
    if (plen == 0 || fl[cp][plen - 1] == '/') {
      st = ps_error(PS_EFORMAT, "manifest: %s line %zu: path '%s' names a folder, not a film", path, line, fl[cp]);
      goto fail;
    }
    char pid[256];
    if (ci >= 0 && fl[ci][0]) snprintf(pid, sizeof pid, "%s", fl[ci]);
    else ps_dataset_patient_id_from_name(fl[cp], pid, sizeof pid);
    char full[PATH_MAX];
    if (fl[cp][0] == '/') snprintf(full, sizeof full, "%s", fl[cp]);
    else if (snprintf(full, sizeof full, "%s/%s", dir, fl[cp]) >= (int)sizeof full) {
      st = ps_error(PS_EFORMAT, "manifest: %s line %zu: path too long", path, line);
      goto fail;
    }
    it.path = full;
    it.rel_path = fl[cp];
    it.patient_id = pid;
    if ((st = ps__ds_push(ds, &it)) != PS_OK) goto fail;
  }
  ps__csv_free(&c);
  *out = ds;
  return PS_OK;
fail:
  ps__csv_free(&c);
  ps_dataset_free(ds);
  return st;
}

int ps_sha256_file(const char *path, char hex[65]) {
  if (!path || !hex) return ps_error(PS_EINVAL, "sha256: NULL argument");
  hex[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (!f) return ps_error(PS_EIO, "sha256: cannot open %s: %s", path, strerror(errno));
  struct sha256_ctx c;
  sha256_init(&c);
  uint8_t buf[1 << 16];
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(&c, got, buf);
  int err = ferror(f);
  fclose(f);
  if (err) return ps_error(PS_EIO, "sha256: read error in %s", path);
  uint8_t d[SHA256_DIGEST_SIZE];
  sha256_digest(&c, sizeof d, d);
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
    hex[2 * i] = digits[d[i] >> 4];
    hex[2 * i + 1] = digits[d[i] & 15];
  }
  hex[64] = '\0';
  return PS_OK;
}
