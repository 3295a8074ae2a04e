/* pneumoscope audit: Grad-CAM lung focus over the films of a manifest (see ps_gradcam.h). */
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

#define CSV_HEADER "path,truth,predicted,prob,target_class,lung_focus,flagged,lungs,lung_area,error\n"
#define JSON_TAG "\"pneumoscope_audit\": 1" /* within the first bytes of summary.json */

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
  int task = 0;
  const char *names[PS_GRADCAM_MAX_CLASSES];
  int K = ps_gradcam_model_classes(m, &task, names);
  if (K < 0) return K;

  int st;
  ps_dataset *ds = NULL;
  FILE *csv = NULL;
  char *csv_tmp = NULL, *csv_path = NULL, *json_path = NULL;
  double *foc = NULL, *cfoc = NULL;
  int *ctruth = NULL;
  ps_audit_summary sum;
  memset(&sum, 0, sizeof sum);
  sum.threshold = thr;
  sum.num_classes = K;
  sum.roi = ps_gradcam_model_roi(m);
  for (int k = 0; k < K; k++) snprintf(sum.classes[k].name, sizeof sum.classes[k].name, "%s", names[k]);

  if ((st = ps_dataset_read_manifest(manifest, &ds))) return st;
  if (mkdir(outdir, 0777) != 0 && errno != EEXIST) {
    st = ps_error(PS_EIO, "audit: cannot create %s: %s", outdir, strerror(errno));
    goto fail;
  }
  if (asprintf(&csv_path, "%s/lung_focus.csv", outdir) < 0 || asprintf(&json_path, "%s/summary.json", outdir) < 0) {
    csv_path = json_path = NULL;
    st = ps_error(PS_ENOMEM, "audit: out of memory");
    goto fail;
  }
  if (!may_replace(csv_path, CSV_HEADER, 1) || !may_replace(json_path, JSON_TAG, 0)) {
    st = ps_error(PS_EIO, "audit: %s already holds files this command did not write; choose another -o", outdir);
    goto fail;
  }
  size_t N = ps_dataset_size(ds);
  foc = malloc((N + 1) * sizeof *foc);
  cfoc = malloc((N + 1) * sizeof *cfoc);
  ctruth = malloc((N + 1) * sizeof *ctruth);
  if (!foc || !cfoc || !ctruth) {
    st = ps_error(PS_ENOMEM, "audit: out of memory");
    goto fail;
  }
  csv = open_tmp(csv_path, &csv_tmp);
  if (!csv) {
    st = ps_error(PS_EIO, "audit: cannot create a temporary file in %s: %s", outdir, strerror(errno));
    goto fail;
  }
  fputs(CSV_HEADER, csv);
  int nsel = 0, nf = 0;
  double uni_sum = 0;
  for (size_t i = 0; i < N; i++) {
    const ps_dataset_item *it = ps_dataset_item_at(ds, i);
    if (want_split != PS_SPLIT_NONE && it->split != want_split) continue;
    if (o.limit > 0 && nsel >= o.limit) break;
    nsel++;
  }
  int done = 0;
  for (size_t i = 0; i < N; i++) {
    const ps_dataset_item *it = ps_dataset_item_at(ds, i);
    if (want_split != PS_SPLIT_NONE && it->split != want_split) continue;
    if (o.limit > 0 && done >= o.limit) break;
    if (o.progress && o.progress((double)done / (nsel ? nsel : 1), it->path, o.progress_user)) {
      st = ps_error(PS_ECANCELLED, "audit: cancelled");
      goto fail;
    }
    done++;
    sum.films++;
    int truth = ps_dataset_item_class(it, task ? PS_TASK_MULTICLASS : PS_TASK_BINARY);
    if (truth >= K) truth = -1;
    ps_image *img = NULL;
    ps_gradcam_result *r = NULL;
    int fst = ps_image_read(it->path, NULL, &img);
    if (fst == PS_OK) fst = ps_gradcam_compute(m, img, &o.cam, &r);
    ps__csv_write_field(csv, it->path);
    fprintf(csv, ",%s,", truth >= 0 ? names[truth] : "");
    if (fst != PS_OK) {
      sum.failed++;
      fputs(",,,,,,,", csv);
      ps__csv_write_field(csv, ps_last_error()[0] ? ps_last_error() : ps_strerror(fst));
      fputc('\n', csv);
      ps_image_free(img);
      continue;
    }
    sum.scored++;
    sum.roi_fallbacks += sum.roi != PS_ROI_FILM && r->roi_fallback;
    double f = r->lung_focus;
    int flagged = !(f >= thr);
    sum.flagged += flagged;
    fprintf(csv, "%s,%.6f,%s,", names[r->predicted], r->probs[r->predicted], names[r->target_class]);
    if (isfinite(f)) fprintf(csv, "%.6f", f);
    fprintf(csv, ",%d,%d,%.6f,\n", flagged, r->lung.lungs, r->lung.area_fraction);
    if (isfinite(f)) foc[nf] = f, cfoc[nf] = f, ctruth[nf] = truth, nf++, uni_sum += r->lung_focus_uniform;
    if (truth >= 0) {
      ps_audit_class_summary *cs = &sum.classes[truth];
      cs->films++;
      cs->flagged += flagged;
      cs->correct += r->predicted == truth;
    }
    ps_gradcam_result_free(r);
    ps_image_free(img);
  }
  if ((st = close_rename(csv, csv_tmp, csv_path))) {
    csv = NULL, csv_tmp = NULL;
    goto fail;
  }
  csv = NULL, csv_tmp = NULL;

  /* summary statistics */
  {
    double s = 0;
    for (int i = 0; i < nf; i++) s += foc[i];
    sum.mean_focus = nf ? s / nf : NAN;
    sum.mean_focus_uniform = nf ? uni_sum / nf : NAN;
    for (int k = 0; k < K; k++) {
      ps_audit_class_summary *cs = &sum.classes[k];
      int n = 0;
      double t = 0, mn = INFINITY;
      for (int i = 0; i < nf; i++)
        if (ctruth[i] == k) cfoc[n++] = foc[i], t += foc[i], mn = fmin(mn, foc[i]);
      cs->mean_focus = n ? t / n : NAN;
      cs->min_focus = n ? mn : NAN;
      cs->median_focus = median_of(cfoc, n);
    }
    sum.median_focus = median_of(foc, nf);
  }
  {
    json_t *classes = json_object();
    for (int k = 0; k < K; k++) {
      const ps_audit_class_summary *cs = &sum.classes[k];
      json_object_set_new(classes, cs->name,
                          json_pack("{s:i, s:i, s:i, s:o, s:o, s:o}", "films", cs->films, "flagged", cs->flagged, "correct",
                                    cs->correct, "mean_lung_focus", ps__json_num(cs->mean_focus), "median_lung_focus",
                                    ps__json_num(cs->median_focus), "min_lung_focus", ps__json_num(cs->min_focus)));
    }
    json_t *j = json_pack("{s:i, s:o, s:o, s:s, s:i, s:i, s:s, s:o, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o}",
                          "pneumoscope_audit", 1, "manifest", ps__json_str(manifest), "split",
                          ps__json_str(o.split ? o.split : ""), "roi", ps_roi_name(sum.roi) ? ps_roi_name(sum.roi) : "film",
                          "roi_fallbacks", sum.roi_fallbacks, "layer", o.cam.layer ? o.cam.layer : 4, "method",
                          ps_cam_method_name(o.cam.method), "threshold", ps__json_num(thr), "films", sum.films, "scored",
                          sum.scored, "failed", sum.failed, "flagged", sum.flagged, "mean_lung_focus",
                          ps__json_num(sum.mean_focus), "median_lung_focus", ps__json_num(sum.median_focus),
                          "mean_lung_focus_uniform", ps__json_num(sum.mean_focus_uniform), "classes", classes);
    if ((st = ps__json_write_atomic(json_path, 1, j))) goto fail;
  }
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
  free(foc);
  free(cfoc);
  free(ctruth);
  ps_dataset_free(ds);
  return st;
}
