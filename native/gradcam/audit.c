/* pneumoscope audit: Grad-CAM lung focus over the films of a manifest (see ps_gradcam.h); a shard of
 * them, and the merge of the shards into the whole audit. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gradcam_internal.h"
#include "ps_internal.h"
#include "ps_dataset.h"
#include "ps_image_io.h"
#include "ps_lung.h"
#include "dataset_internal.h" /* ps__csv_read: the merge reads the shards' lung_focus.csv */
#include "shard_internal.h"

#define CSV_HEADER "path,truth,predicted,prob,target_class,lung_focus,flagged,lungs,lung_area,error\n"
#define JSON_TAG "\"pneumoscope_audit\": 1" /* within the first bytes of summary.json */
#define SHARD_TAG "\"pneumoscope_shard\": \"audit\"" /* within the first bytes of a shard's shard.json */

/* An existing output is replaced only when this code wrote it: it starts with the CSV header, or
 * the JSON tag stands in its first bytes. */
static int may_replace(const char *path, const char *tag, int at_start) {
  FILE *f = fopen(path, "rb");
  if (!f) return errno == ENOENT;
  char buf[257] = {0};
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  return at_start ? n >= strlen(tag) && !memcmp(buf, tag, strlen(tag)) : strstr(buf, tag) != NULL;
}

static FILE *open_tmp(const char *path, char **tmp) {
  size_t n = strlen(path) + 32;
  *tmp = malloc(n);
  if (!*tmp) return NULL;
  snprintf(*tmp, n, "%s.tmp-XXXXXX", path);
  int fd = mkstemp(*tmp);
  if (fd < 0) return NULL;
  FILE *f = fdopen(fd, "w");
  if (!f) close(fd);
  return f;
}

static int close_rename(FILE *f, char *tmp, const char *path) {
  int ok = !ferror(f) && fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    free(tmp);
    return ps_error(PS_EIO, "audit: cannot write %s: %s", path, strerror(e));
  }
  free(tmp);
  return PS_OK;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median_of(double *v, int n) {
  if (n <= 0) return NAN;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One film of the audit: what the summary counts. */
typedef struct {
  int truth;        /* class index, -1 when the manifest gives none for the task */
  int predicted;    /* -1: the film failed (unreadable) */
  int flagged, roi_fallback;
  double focus, uniform; /* lung_focus and lung_focus_uniform (NAN: undefined) */
} audit_film;

/* The summary of n films into sum (whose threshold, classes and roi are set). */
static int summarize(const audit_film *fl, int n, ps_audit_summary *sum) {
  double *foc = malloc((size_t)(n + 1) * sizeof *foc), *cfoc = malloc((size_t)(n + 1) * sizeof *cfoc);
  int *ctruth = malloc((size_t)(n + 1) * sizeof *ctruth);
  if (!foc || !cfoc || !ctruth) {
    free(foc), free(cfoc), free(ctruth);
    return ps_error(PS_ENOMEM, "audit: out of memory");
  }
  int nf = 0;
  double uni_sum = 0;
  sum->films = n;
  for (int i = 0; i < n; i++) {
    const audit_film *f = &fl[i];
    if (f->predicted < 0) {
      sum->failed++;
      continue;
    }
    sum->scored++;
    sum->roi_fallbacks += sum->roi != PS_ROI_FILM && f->roi_fallback;
    sum->flagged += f->flagged;
    if (isfinite(f->focus)) foc[nf] = f->focus, ctruth[nf] = f->truth, nf++, uni_sum += f->uniform;
    if (f->truth >= 0) {
      ps_audit_class_summary *cs = &sum->classes[f->truth];
      cs->films++;
      cs->flagged += f->flagged;
      cs->correct += f->predicted == f->truth;
    }
  }
  double t = 0;
  for (int i = 0; i < nf; i++) t += foc[i];
  sum->mean_focus = nf ? t / nf : NAN;
  sum->mean_focus_uniform = nf ? uni_sum / nf : NAN;
  for (int k = 0; k < sum->num_classes; k++) {
    ps_audit_class_summary *cs = &sum->classes[k];
    int c = 0;
    double tc = 0, mn = INFINITY;
    for (int i = 0; i < nf; i++)
      if (ctruth[i] == k) cfoc[c++] = foc[i], tc += foc[i], mn = fmin(mn, foc[i]);
    cs->mean_focus = c ? tc / c : NAN;
    cs->min_focus = c ? mn : NAN;
    cs->median_focus = median_of(cfoc, c);
  }
  sum->median_focus = median_of(foc, nf);
  free(foc), free(cfoc), free(ctruth);
  return PS_OK;
}

static int write_summary(const char *path, const char *manifest, const char *split, int layer, const char *method,
                         const ps_audit_summary *sum) {
  json_t *classes = json_object();
  for (int k = 0; k < sum->num_classes; k++) {
    const ps_audit_class_summary *cs = &sum->classes[k];
    json_object_set_new(classes, cs->name,
                        json_pack("{s:i, s:i, s:i, s:o, s:o, s:o}", "films", cs->films, "flagged", cs->flagged, "correct",
                                  cs->correct, "mean_lung_focus", ps__json_num(cs->mean_focus), "median_lung_focus",
                                  ps__json_num(cs->median_focus), "min_lung_focus", ps__json_num(cs->min_focus)));
  }
  json_t *j = json_pack("{s:i, s:o, s:o, s:s, s:i, s:i, s:s, s:o, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o}",
                        "pneumoscope_audit", 1, "manifest", ps__json_str(manifest), "split", ps__json_str(split), "roi",
                        ps_roi_name(sum->roi) ? ps_roi_name(sum->roi) : "film", "roi_fallbacks", sum->roi_fallbacks,
                        "layer", layer, "method", method, "threshold", ps__json_num(sum->threshold), "films", sum->films,
                        "scored", sum->scored, "failed", sum->failed, "flagged", sum->flagged, "mean_lung_focus",
                        ps__json_num(sum->mean_focus), "median_lung_focus", ps__json_num(sum->median_focus),
                        "mean_lung_focus_uniform", ps__json_num(sum->mean_focus_uniform), "classes", classes);
  return ps__json_write_atomic(path, 1, j);
}

/* outdir created, its lung_focus.csv and summary.json (a shard: shard.json) named in *csv_path and
 * *json_path, and both either absent or written by this command. */
static int prepare_outdir(const char *outdir, int sharded, char **csv_path, char **json_path) {
  *csv_path = *json_path = NULL;
  int st = ps_shard_check_outdir("audit", outdir, sharded, "summary.json");
  if (st) return st;
  if ((st = ps_mkdir_p("audit", outdir))) return st;
  if (asprintf(csv_path, "%s/lung_focus.csv", outdir) < 0 ||
      asprintf(json_path, "%s/%s", outdir, sharded ? PS_SHARD_FILE : "summary.json") < 0) {
    *csv_path = *json_path = NULL;
    return ps_error(PS_ENOMEM, "audit: out of memory");
  }
  if (!may_replace(*csv_path, CSV_HEADER, 1) || !may_replace(*json_path, sharded ? SHARD_TAG : JSON_TAG, 0))
    return ps_error(PS_EIO, "audit: %s already holds files this command did not write; choose another -o", outdir);
  return PS_OK;
}

/* What the shards of one audit must agree on beyond the model's and the manifest's bytes. */
static json_t *shard_run(const char *split, int limit, double thr, int layer, const char *method, int task,
                         const char *const *names, int K, int roi) {
  json_t *classes = json_array();
  for (int k = 0; k < K; k++) json_array_append_new(classes, json_string(names[k]));
  return json_pack("{s:s, s:i, s:f, s:i, s:s, s:s, s:o, s:s}", "split", split, "limit", limit > 0 ? limit : 0, "threshold",
                   thr, "layer", layer, "method", method, "task", task ? "multiclass" : "binary", "classes", classes, "roi",
                   ps_roi_name(roi) ? ps_roi_name(roi) : "film");
}

/* The shard's films as columns (reals to 17 digits in shard.json: the merge's summary is the one run's). */
static json_t *films_json(const audit_film *fl, int n) {
  json_t *t = json_array(), *p = json_array(), *f = json_array(), *r = json_array(), *lf = json_array(), *u = json_array();
  for (int i = 0; i < n; i++) {
    json_array_append_new(t, json_integer(fl[i].truth));
    json_array_append_new(p, json_integer(fl[i].predicted));
    json_array_append_new(f, json_integer(fl[i].flagged));
    json_array_append_new(r, json_integer(fl[i].roi_fallback));
    json_array_append_new(lf, ps__json_num(fl[i].focus));
    json_array_append_new(u, ps__json_num(fl[i].uniform));
  }
  return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "truth", t, "predicted", p, "flagged", f, "roi_fallback", r,
                   "lung_focus", lf, "lung_focus_uniform", u);
}

int ps_gradcam_audit(ps_model *m, const char *manifest, const char *outdir, const ps_audit_opts *opts,
                     ps_audit_summary *summary) {
  if (!m || !manifest || !outdir || !*outdir) return ps_error(PS_EINVAL, "audit: NULL model, manifest or outdir");
  ps_audit_opts o;
  if (opts) o = *opts;
  else memset(&o, 0, sizeof o), o.cam = ps_gradcam_opts_default();
  double thr = o.threshold > 0 ? o.threshold : 0.5;
  if (thr > 1) return ps_error(PS_EINVAL, "audit: threshold %.3g outside (0, 1]", thr);
  int want_split = PS_SPLIT_NONE;
  if (o.split && *o.split) {
    want_split = ps_dataset_parse_split(o.split);
    if (want_split == PS_SPLIT_NONE) return ps_error(PS_EINVAL, "audit: unknown split '%s' (train, val, test)", o.split);
  }
  const int sharded = o.shard_count > 0;
  if (o.shard_count < 0 || (sharded && (o.shard_index < 0 || o.shard_index >= o.shard_count)))
    return ps_error(PS_EINVAL, "audit: shard %d of %d does not exist", o.shard_index + 1, o.shard_count);
  if (sharded && (!o.model_path || !*o.model_path))
    return ps_error(PS_EINVAL, "audit: a shard needs the model's file (ps_audit_opts.model_path) to tell shards apart");
  int task = 0;
  const char *names[PS_GRADCAM_MAX_CLASSES];
  int K = ps_gradcam_model_classes(m, &task, names);
  if (K < 0) return K;

  int st;
  ps_dataset *ds = NULL;
  FILE *csv = NULL;
  char *csv_tmp = NULL, *csv_path = NULL, *json_path = NULL;
  size_t *sel = NULL;
  audit_film *fl = NULL;
  ps_audit_summary sum;
  memset(&sum, 0, sizeof sum);
  sum.threshold = thr;
  sum.num_classes = K;
  sum.roi = ps_gradcam_model_roi(m);
  for (int k = 0; k < K; k++) snprintf(sum.classes[k].name, sizeof sum.classes[k].name, "%s", names[k]);

  if ((st = ps_dataset_read_manifest(manifest, &ds))) return st;
  if ((st = prepare_outdir(outdir, sharded, &csv_path, &json_path))) goto fail;
  size_t N = ps_dataset_size(ds);
  sel = malloc((N + 1) * sizeof *sel);
  fl = malloc((N + 1) * sizeof *fl);
  if (!sel || !fl) {
    st = ps_error(PS_ENOMEM, "audit: out of memory");
    goto fail;
  }
  int nsel = 0; /* the films of the split (the first o.limit), in manifest order */
  for (size_t i = 0; i < N && !(o.limit > 0 && nsel >= o.limit); i++)
    if (want_split == PS_SPLIT_NONE || ps_dataset_item_at(ds, i)->split == want_split) sel[nsel++] = i;
  int lo = 0, hi = nsel;
  if (sharded && (st = ps_shard_rows(nsel, 1, o.shard_index, o.shard_count, &lo, &hi))) goto fail;
  csv = open_tmp(csv_path, &csv_tmp);
  if (!csv) {
    st = ps_error(PS_EIO, "audit: cannot create a temporary file in %s: %s", outdir, strerror(errno));
    goto fail;
  }
  fputs(CSV_HEADER, csv);
  for (int j = lo; j < hi; j++) {
    const ps_dataset_item *it = ps_dataset_item_at(ds, sel[j]);
    if (o.progress && o.progress((double)(j - lo) / (hi - lo), it->path, o.progress_user)) {
      st = ps_error(PS_ECANCELLED, "audit: cancelled");
      goto fail;
    }
    int truth = ps_dataset_item_class(it, task ? PS_TASK_MULTICLASS : PS_TASK_BINARY);
    if (truth >= K) truth = -1;
    audit_film *f = &fl[j - lo];
    *f = (audit_film){truth, -1, 0, 0, NAN, NAN};
    ps_image *img = NULL;
    ps_gradcam_result *r = NULL;
    int fst = ps_image_read(it->path, NULL, &img);
    if (fst == PS_OK) fst = ps_gradcam_compute(m, img, &o.cam, &r);
    ps__csv_write_field(csv, it->path);
    fprintf(csv, ",%s,", truth >= 0 ? names[truth] : "");
    if (fst != PS_OK) {
      fputs(",,,,,,,", csv);
      ps__csv_write_field(csv, ps_last_error()[0] ? ps_last_error() : ps_strerror(fst));
      fputc('\n', csv);
      ps_image_free(img);
      continue;
    }
    double fc = r->lung_focus;
    *f = (audit_film){truth, r->predicted, !(fc >= thr), r->roi_fallback, fc, r->lung_focus_uniform};
    fprintf(csv, "%s,%.6f,%s,", names[r->predicted], r->probs[r->predicted], names[r->target_class]);
    if (isfinite(fc)) fprintf(csv, "%.6f", fc);
    fprintf(csv, ",%d,%d,%.6f,\n", f->flagged, r->lung.lungs, r->lung.area_fraction);
    ps_gradcam_result_free(r);
    ps_image_free(img);
  }
  st = close_rename(csv, csv_tmp, csv_path);
  csv = NULL, csv_tmp = NULL;
  if (st || (st = summarize(fl, hi - lo, &sum))) goto fail;
  const char *split = o.split ? o.split : "", *method = ps_cam_method_name(o.cam.method);
  int layer = o.cam.layer ? o.cam.layer : 4;
  if (sharded)
    st = ps_shard_write(outdir, "audit", o.shard_index, o.shard_count, lo, hi, nsel, o.model_path, manifest,
                        shard_run(split, o.limit, thr, layer, method, task, names, K, sum.roi), films_json(fl, hi - lo));
  else
    st = write_summary(json_path, manifest, split, layer, method, &sum);
  if (st) goto fail;
  if (summary) *summary = sum;
  st = PS_OK;
fail:
  if (csv) {
    fclose(csv);
    unlink(csv_tmp);
  }
  free(csv_tmp);
  free(csv_path);
  free(json_path);
  free(sel);
  free(fl);
  ps_dataset_free(ds);
  return st;
}

/* One shard's lung_focus.csv rows (lo..hi of the whole) onto out, as this code wrote them, and its
 * films from shard.json into fl[lo..hi). */
static int merge_shard(const char *dir, json_t *mark, int lo, int hi, FILE *out, audit_film *fl) {
  ps__csv c;
  char *path = NULL;
  if (asprintf(&path, "%s/lung_focus.csv", dir) < 0) return ps_error(PS_ENOMEM, "audit: out of memory");
  int st = ps__csv_read(path, &c);
  if (st) {
    free(path);
    return st;
  }
  char head[sizeof CSV_HEADER] = "";
  for (size_t j = 0; c.rows > 0 && j < c.ncols[0]; j++)
    snprintf(head + strlen(head), sizeof head - strlen(head), "%s%s", j ? "," : "", c.field[0][j]);
  strncat(head, "\n", sizeof head - strlen(head) - 1);
  json_t *films = json_object_get(mark, "films");
  const char *col[] = {"truth", "predicted", "flagged", "roi_fallback", "lung_focus", "lung_focus_uniform"};
  int ok = 1;
  for (int k = 0; k < 6; k++) ok = ok && json_array_size(json_object_get(films, col[k])) == (size_t)(hi - lo);
  if (c.rows == 0 || strcmp(head, CSV_HEADER))
    st = ps_error(PS_EFORMAT, "audit: %s is not an audit's lung_focus.csv (its header differs)", path);
  else if (c.rows - 1 != (size_t)(hi - lo) || !ok)
    st = ps_error(PS_EFORMAT, "audit: %s holds %zu rows; its shard.json says %d", path, c.rows - 1, hi - lo);
  for (size_t r = 1; st == PS_OK && r < c.rows; r++) {
    for (size_t j = 0; j < c.ncols[r]; j++) {
      if (j) fputc(',', out);
      ps__csv_write_field(out, c.field[r][j]);
    }
    fputc('\n', out);
    json_t *v[6];
    for (int k = 0; k < 6; k++) v[k] = json_array_get(json_object_get(films, col[k]), r - 1);
    audit_film *f = &fl[lo + r - 1];
    f->truth = (int)json_integer_value(v[0]), f->predicted = (int)json_integer_value(v[1]);
    f->flagged = (int)json_integer_value(v[2]), f->roi_fallback = (int)json_integer_value(v[3]);
    f->focus = json_is_number(v[4]) ? json_number_value(v[4]) : NAN;
    f->uniform = json_is_number(v[5]) ? json_number_value(v[5]) : NAN;
  }
  ps__csv_free(&c);
  free(path);
  return st;
}

int ps_gradcam_audit_merge(const char *const *shard_dirs, int ndirs, const char *outdir, ps_audit_summary *summary) {
  if (!shard_dirs || ndirs < 1 || !outdir || !*outdir)
    return ps_error(PS_EINVAL, "audit: the merge needs the shard folders and an output folder");
  ps_shard_set set;
  int st = ps_shard_read_set("audit", shard_dirs, ndirs, &set);
  if (st) return st;
  FILE *csv = NULL;
  char *csv_tmp = NULL, *csv_path = NULL, *json_path = NULL;
  audit_film *fl = NULL;
  json_t *m0 = set.marks[0], *run = json_object_get(m0, "run"), *classes = json_object_get(run, "classes");
  const char *split = json_string_value(json_object_get(run, "split")), *method = json_string_value(json_object_get(run, "method"));
  const int total = (int)json_integer_value(json_object_get(m0, "total"));
  ps_audit_summary sum;
  memset(&sum, 0, sizeof sum);
  sum.threshold = json_real_value(json_object_get(run, "threshold"));
  sum.num_classes = (int)json_array_size(classes);
  if (!split || !method || sum.num_classes < 2 || sum.num_classes > PS_GRADCAM_MAX_CLASSES ||
      ps_roi_parse(json_string_value(json_object_get(run, "roi")), &sum.roi) != PS_OK) {
    st = ps_error(PS_EFORMAT, "audit: %s/%s lacks the split, method, classes or roi of its run", set.dirs[0], PS_SHARD_FILE);
    goto fail;
  }
  for (int k = 0; k < sum.num_classes; k++) {
    const char *name = json_string_value(json_array_get(classes, k));
    snprintf(sum.classes[k].name, sizeof sum.classes[k].name, "%s", name ? name : "");
  }
  if ((st = prepare_outdir(outdir, 0, &csv_path, &json_path))) goto fail;
  fl = malloc((size_t)(total + 1) * sizeof *fl);
  csv = fl ? open_tmp(csv_path, &csv_tmp) : NULL;
  if (!csv) {
    st = fl ? ps_error(PS_EIO, "audit: cannot create a temporary file in %s: %s", outdir, strerror(errno))
            : ps_error(PS_ENOMEM, "audit: out of memory");
    goto fail;
  }
  fputs(CSV_HEADER, csv);
  for (int s = 0; s < set.n; s++) {
    int lo, hi;
    ps_shard_set_rows(&set, s, &lo, &hi);
    if ((st = merge_shard(set.dirs[s], set.marks[s], lo, hi, csv, fl))) goto fail;
  }
  for (int i = 0; i < total; i++)
    if (fl[i].truth < -1 || fl[i].truth >= sum.num_classes || fl[i].predicted < -1 || fl[i].predicted >= sum.num_classes) {
      st = ps_error(PS_EFORMAT, "audit: film %d of the shards has class indices outside the model's %d classes", i + 1,
                    sum.num_classes);
      goto fail;
    }
  st = close_rename(csv, csv_tmp, csv_path);
  csv = NULL, csv_tmp = NULL;
  if (st || (st = summarize(fl, total, &sum)) ||
      (st = write_summary(json_path, json_string_value(json_object_get(m0, "manifest")), split,
                          (int)json_integer_value(json_object_get(run, "layer")), method, &sum)))
    goto fail;
  if (summary) *summary = sum;
fail:
  if (csv) {
    fclose(csv);
    unlink(csv_tmp);
  }
  free(csv_tmp), free(csv_path), free(json_path), free(fl);
  ps_shard_set_free(&set);
  return st;
}
