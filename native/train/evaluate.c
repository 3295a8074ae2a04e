/* ps_evaluate_run: a trained model on one split of a manifest -> metrics.json, predictions.csv, plots;
 * or one shard of the split -> its predictions.csv + shard.json, which ps_evaluate_merge joins into
 * the same outputs. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ps_image_io.h"
#include "ps_lung.h"
#include "ps_metrics.h"
#include "ps_model.h"
#include "ps_preprocess.h"
#include "ps_train.h"
#include "train_internal.h"
#include "ps_internal.h"
#include "ps_plot.h"
#include "dataset_internal.h" /* ps__csv_read: the merge reads the shards' predictions.csv */
#include "shard_internal.h"

#define EVAL_BINS 15 /* calibration bins (Guo et al. 2017) */

typedef struct {
  int n, K;
  const char *const *paths, *const *patient;    /* (n) */
  const int *y, *pred;                          /* (n) */
  const float *probs;                           /* (n, K) */
  const ps_model_meta *meta;                    /* classes, task, temperature */
  const char *model_path, *manifest, *split;
  ps_metrics m;                                 /* eval_finish fills in the rest */
  double ece;                                   /* top-label, EVAL_BINS bins */
  int64_t bin_count[EVAL_BINS];
  double bin_conf[EVAL_BINS], bin_acc[EVAL_BINS]; /* NAN for an empty bin */
} eval_out;

static json_t *num_array(const double *v, int n) {
  json_t *a = json_array();
  for (int i = 0; i < n; i++) json_array_append_new(a, ps__json_num(v[i]));
  return a;
}

static json_t *prf(double p, double r, double f1) {
  return json_pack("{s:o, s:o, s:o}", "precision", ps__json_num(p), "recall", ps__json_num(r), "f1", ps__json_num(f1));
}

static int write_metrics_json(FILE *f, void *user) {
  const eval_out *e = user;
  const ps_metrics *m = &e->m;
  const int K = e->K;
  json_t *classes = json_array(), *counts = json_array(), *per_class = json_object(), *confusion = json_array();
  for (int c = 0; c < K; c++) {
    json_array_append_new(classes, json_string(e->meta->classes[c]));
    json_t *pc = prf(m->precision[c], m->recall[c], m->f1[c]);
    json_object_set_new(pc, "support", json_integer(m->support[c]));
    json_object_set_new(per_class, e->meta->classes[c], pc);
    json_t *row = json_array();
    for (int j = 0; j < K; j++) json_array_append_new(row, json_integer(m->confusion[c * K + j]));
    json_array_append_new(confusion, row);
  }
  for (int b = 0; b < EVAL_BINS; b++) json_array_append_new(counts, json_integer(e->bin_count[b]));
  json_t *j = json_pack(
      "{s:o, s:o, s:o, s:s, s:o, s:I, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "model", ps__json_str(e->model_path),
      "manifest", ps__json_str(e->manifest), "split", ps__json_str(e->split), "task", ps_train_task_name(e->meta->task),
      "classes", classes, "n", (json_int_t)m->n, "threshold", K == 2 ? ps__json_num(m->threshold) : json_null(),
      "decision", K == 2 ? "P(classes[1]) >= threshold" : "argmax", "accuracy", ps__json_num(m->accuracy), "roc_auc",
      ps__json_num(m->roc_auc), "average_precision", ps__json_num(m->average_precision), "sensitivity",
      ps__json_num(K == 2 ? m->sensitivity : NAN), "specificity", ps__json_num(K == 2 ? m->specificity : NAN), "ece",
      ps__json_num(e->ece), "temperature", ps__json_num(e->meta->temperature > 0 ? e->meta->temperature : 1.0));
  if (j) {
    json_object_set_new(j, "reliability",
                        json_pack("{s:i, s:o, s:o, s:o}", "bins", EVAL_BINS, "count", counts, "confidence",
                                  num_array(e->bin_conf, EVAL_BINS), "accuracy", num_array(e->bin_acc, EVAL_BINS)));
    json_object_set_new(j, "ece_note",
                        json_string("top-label: max class probability vs argmax == true class, equal-width bins on [0, 1]"));
    json_object_set_new(j, "per_class", per_class);
    json_object_set_new(j, "macro", prf(m->macro_precision, m->macro_recall, m->macro_f1));
    json_object_set_new(j, "weighted", prf(m->weighted_precision, m->weighted_recall, m->weighted_f1));
    json_object_set_new(j, "confusion_matrix", confusion);
    json_object_set_new(j, "confusion_matrix_note", json_string("rows = true class, columns = predicted class"));
  } else {
    json_decref(counts), json_decref(per_class), json_decref(confusion);
  }
  return ps__json_dump(f, j);
}

static int write_predictions_csv(FILE *f, void *user) {
  const eval_out *e = user;
  fputs("path,patient_id,true_label,true_index,pred_label,pred_index", f);
  for (int c = 0; c < e->K; c++) fprintf(f, ",prob_%s", e->meta->classes[c]);
  fputc('\n', f);
  for (int i = 0; i < e->n; i++) {
    ps__csv_write_field(f, e->paths[i]);
    fputc(',', f);
    ps__csv_write_field(f, e->patient[i]);
    fprintf(f, ",%s,%d,%s,%d", e->meta->classes[e->y[i]], e->y[i], e->meta->classes[e->pred[i]], e->pred[i]);
    for (int c = 0; c < e->K; c++) fprintf(f, ",%.9g", e->probs[(size_t)i * e->K + c]);
    fputc('\n', f);
  }
  return PS_OK;
}

/* history.json (as ps_train_run writes it) -> per-epoch arrays; returns epochs read (0: none, unreadable). */
static size_t read_history(const char *path, double **tl, double **vl, double **metric, const char **name) {
  json_t *h = json_load_file(path, 0, NULL), *epochs = json_object_get(h, "epochs");
  size_t m = json_array_size(epochs);
  int f1 = json_is_string(json_object_get(h, "monitor")) && !strcmp(json_string_value(json_object_get(h, "monitor")), "f1");
  *name = f1 ? "F1 (val)" : "AUC (val)";
  *tl = malloc(sizeof(double) * (m + 1)), *vl = malloc(sizeof(double) * (m + 1)), *metric = malloc(sizeof(double) * (m + 1));
  if (!*tl || !*vl || !*metric) m = 0;
  for (size_t k = 0; k < m; k++) { /* null (not finite) and missing -> NaN */
    json_t *e = json_array_get(epochs, k), *a = json_object_get(e, "train_loss"), *b = json_object_get(e, "val_loss"),
           *c = json_object_get(e, f1 ? "f1" : "auc");
    (*tl)[k] = json_is_number(a) ? json_number_value(a) : NAN;
    (*vl)[k] = json_is_number(b) ? json_number_value(b) : NAN;
    (*metric)[k] = json_is_number(c) ? json_number_value(c) : NAN;
  }
  json_decref(h);
  return m;
}

/* confusion.png, roc.png, pr.png, reliability.png and (with a history) curves.png in outdir. */
static int write_plots(const eval_out *e, const char *outdir, const char *history) {
  if (!ps_plot_available()) {
    ps_log(PS_LOG_WARN, "evaluate: no PNG plots: the plotting module (libpneumoscope_plot.so, cairo) is not in this build or install");
    return PS_OK;
  }
  const int K = e->K, n = e->n;
  ps_plot_opts po = {0, 0, NULL, 1};
  char *path = NULL;
  const char *names[PS_MODEL_MAX_CLASSES];
  for (int c = 0; c < K; c++) names[c] = e->meta->classes[c];
  int st = PS_OK;
  int *yk = malloc(sizeof(int) * (n + 1));
  float *sk = malloc(sizeof(float) * (n + 1));
  ps_curve *roc[PS_MODEL_MAX_CLASSES] = {0}, *pr[PS_MODEL_MAX_CLASSES] = {0};
  ps_plot_curve rc[PS_MODEL_MAX_CLASSES], pc[PS_MODEL_MAX_CLASSES];
  char labels[PS_MODEL_MAX_CLASSES][64];
  double *tl = NULL, *vl = NULL, *mt = NULL;
  if (!yk || !sk) {
    st = ps_error(PS_ENOMEM, "evaluate: out of memory");
    goto done;
  }
  path = ps__path_join(outdir, "confusion.png");
  char title[128];
  snprintf(title, sizeof title, "Confusion matrix — %s split (n = %d)", e->split, n);
  po.title = title;
  if ((st = ps_plot_confusion(e->m.confusion, K, names, &po, path))) goto done;
  /* binary: one curve for PNEUMONIA; 3 classes: one-vs-rest per class */
  int first = K == 2 ? 1 : 0, nc = 0, pos = 0;
  for (int c = first; c < K; c++, nc++) {
    if ((st = ps_metrics_one_vs_rest(e->y, e->probs, n, K, c, yk, sk))) goto done;
    int npos = 0;
    for (int i = 0; i < n; i++) npos += yk[i];
    if (K == 2) pos = npos;
    if (npos == 0 || npos == n) { /* curve undefined for this class */
      nc--;
      continue;
    }
    double auc = NAN, ap = NAN;
    ps_metrics_roc_auc(yk, sk, n, &auc);
    ps_metrics_average_precision(yk, sk, n, &ap);
    if ((st = ps_metrics_roc_curve(yk, sk, n, &roc[nc])) || (st = ps_metrics_pr_curve(yk, sk, n, &pr[nc]))) goto done;
    snprintf(labels[nc], sizeof labels[nc], K == 2 ? "%s" : "%s vs rest", names[c]);
    rc[nc] = (ps_plot_curve){labels[nc], roc[nc]->x, roc[nc]->y, roc[nc]->n, auc};
    pc[nc] = (ps_plot_curve){labels[nc], pr[nc]->x, pr[nc]->y, pr[nc]->n, ap};
  }
  if (nc > 0) {
    free(path);
    path = ps__path_join(outdir, "roc.png");
    snprintf(title, sizeof title, "ROC — %s split", e->split);
    if ((st = ps_plot_roc(rc, nc, &po, path))) goto done;
    free(path);
    path = ps__path_join(outdir, "pr.png");
    snprintf(title, sizeof title, "Precision-recall — %s split", e->split);
    if ((st = ps_plot_pr(pc, nc, K == 2 ? (double)pos / n : NAN, &po, path))) goto done;
  }
  free(path);
  path = ps__path_join(outdir, "reliability.png");
  snprintf(title, sizeof title, "Reliability — %s split", e->split);
  if ((st = ps_plot_reliability(e->bin_count, e->bin_conf, e->bin_acc, EVAL_BINS, e->ece, &po, path))) goto done;
  if (history) {
    const char *mname = NULL;
    size_t ne = read_history(history, &tl, &vl, &mt, &mname);
    if (ne > 0) {
      ps_plot_history h = {ne, tl, vl, mt, NULL, mname};
      free(path);
      path = ps__path_join(outdir, "curves.png");
      po.title = "Training";
      if ((st = ps_plot_training(&h, &po, path))) goto done;
    }
  }
done:
  for (int c = 0; c < PS_MODEL_MAX_CLASSES; c++) ps_curve_free(roc[c]), ps_curve_free(pr[c]);
  free(yk), free(sk), free(path), free(tl), free(vl), free(mt);
  return st;
}

/* history.json for curves.png: the one given, else the one beside the model when there is one (NULL: none). */
static char *history_path(const char *given, const char *model) {
  if (given && *given) return strdup(given);
  const char *slash = strrchr(model, '/');
  char dir[4096];
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - model) : 1, slash ? model : ".");
  char *hist = ps__path_join(dir, "history.json");
  struct stat sb;
  if (hist && stat(hist, &sb) != 0) free(hist), hist = NULL;
  return hist;
}

/* What a whole run and a merge share: the metrics of e's n predictions at threshold thr, then
 * metrics.json, predictions.csv and the plots in outdir. */
static int eval_finish(eval_out *e, double thr, const char *outdir, const char *history, ps_eval_result *result) {
  const int n = e->n, K = e->K;
  int st;
  char *p_metrics = NULL, *p_pred = NULL, *hist = NULL;
  if ((st = ps_metrics_compute(e->y, e->probs, n, K, thr, &e->m)) || (st = ps_metrics_ece(e->y, e->probs, n, K, EVAL_BINS, &e->ece)) ||
      (st = ps_metrics_reliability(e->y, e->probs, n, K, EVAL_BINS, e->bin_count, e->bin_conf, e->bin_acc)))
    return st;
  p_metrics = ps__path_join(outdir, "metrics.json");
  p_pred = ps__path_join(outdir, "predictions.csv");
  if (!p_metrics || !p_pred) {
    st = ps_error(PS_ENOMEM, "evaluate: out of memory");
    goto done;
  }
  if ((st = ps__write_atomic(p_metrics, 1, write_metrics_json, e)) ||
      (st = ps__write_atomic(p_pred, 1, write_predictions_csv, e)))
    goto done;
  hist = history_path(history, e->model_path);
  if ((st = write_plots(e, outdir, hist))) goto done;
  const ps_metrics *m = &e->m;
  ps_log(PS_LOG_INFO, "evaluate: accuracy %.4f, ROC AUC %.4f, AP %.4f, macro F1 %.4f%s, ECE %.4f", m->accuracy, m->roc_auc,
         m->average_precision, m->macro_f1, K == 2 ? "" : " (argmax)", e->ece);
  if (result) {
    result->n = n, result->accuracy = m->accuracy, result->auc = m->roc_auc, result->ap = m->average_precision;
    result->f1_macro = m->macro_f1, result->threshold = thr, result->sensitivity = m->sensitivity, result->specificity = m->specificity;
    result->ece = e->ece;
  }
done:
  free(p_metrics), free(p_pred), free(hist);
  return st;
}

/* What the shards of one run must agree on beyond the model's and the manifest's bytes; the merge
 * takes the classes, task, temperature and threshold of its metrics from here. */
static json_t *shard_run(const ps_model_meta *meta, const char *split, int limit, int batch, double thr) {
  json_t *classes = json_array();
  for (int c = 0; c < meta->num_classes; c++) json_array_append_new(classes, json_string(meta->classes[c]));
  return json_pack("{s:s, s:i, s:i, s:s, s:o, s:f, s:f}", "split", split, "limit", limit > 0 ? limit : 0, "batch", batch,
                   "task", ps_train_task_name(meta->task), "classes", classes, "threshold", thr, "temperature",
                   meta->temperature > 0 ? meta->temperature : 1.0);
}

int ps_evaluate_run(const ps_eval_opts *opts, ps_progress_fn progress, void *user, ps_eval_result *result) {
  if (!opts || !opts->model || !opts->manifest || !opts->outdir)
    return ps_error(PS_EINVAL, "evaluate: model, manifest and output folder are required");
  const char *split = opts->split && *opts->split ? opts->split : "test";
  int want_split = !strcmp(split, "train") ? 0 : !strcmp(split, "val") ? 1 : !strcmp(split, "test") ? 2 : !strcmp(split, "all") ? -1 : -2;
  if (want_split == -2) return ps_error(PS_EINVAL, "evaluate: unknown split '%s' (train, val, test or all)", split);
  const int sharded = opts->shard_count > 0;
  if (opts->shard_count < 0 || (sharded && (opts->shard_index < 0 || opts->shard_index >= opts->shard_count)))
    return ps_error(PS_EINVAL, "evaluate: shard %d of %d does not exist", opts->shard_index + 1, opts->shard_count);
  ps_model *model = NULL;
  ps_train_films films;
  memset(&films, 0, sizeof films);
  int *idx = NULL, *y = NULL, *pred = NULL;
  float *probs = NULL, *x = NULL;
  const char **paths = NULL, **patient = NULL;
  char *p_pred = NULL;
  int st, n = 0;
  int threads = opts->threads > 0 ? opts->threads : ps_default_threads();
  ps_device dev = opts->device == PS_TRAIN_DEVICE_CPU ? PS_DEVICE_CPU : opts->device == PS_TRAIN_DEVICE_CUDA ? PS_DEVICE_CUDA : PS_DEVICE_AUTO;
  if ((st = ps_torch_set_threads(threads)) || (st = ps_model_load(opts->model, dev, &model))) goto done;
  const ps_model_meta *meta = ps_model_meta_get(model);
  const int K = meta->num_classes, task = meta->task, S = meta->input_size > 0 ? meta->input_size : 224;
  if ((task == PS_TASK_BINARY && K != 2) || (task == PS_TASK_MULTICLASS && K != 3)) {
    st = ps_error(PS_EUNSUPPORTED, "evaluate: %s has %d classes for task %s; expected 2 (binary) or 3 (multiclass)", opts->model, K,
                  ps_train_task_name(task));
    goto done;
  }
  for (int c = 0; c < K; c++)
    if (strcmp(meta->classes[c], ps_train_class_name(task, c)) != 0) {
      st = ps_error(PS_EUNSUPPORTED, "evaluate: %s class %d is '%s'; the manifest's class is '%s'", opts->model, c,
                    meta->classes[c], ps_train_class_name(task, c));
      goto done;
    }
  double thr = opts->use_threshold ? opts->threshold : meta->threshold;
  if (K == 2 && !(thr >= 0 && thr <= 1)) {
    st = ps_error(PS_EINVAL, "evaluate: threshold %g outside [0, 1]", thr);
    goto done;
  }
  if ((st = ps_train_films_read(opts->manifest, task, opts->limit, 0, &films))) goto done;
  if ((st = ps_shard_check_outdir("evaluate", opts->outdir, sharded, "metrics.json")) || (st = ps_mkdir_p("evaluate", opts->outdir)))
    goto done;
  idx = malloc(sizeof(int) * (films.n + 1));
  y = malloc(sizeof(int) * (films.n + 1));
  pred = malloc(sizeof(int) * (films.n + 1));
  probs = malloc(sizeof(float) * K * (films.n + 1));
  paths = malloc(sizeof(char *) * (films.n + 1));
  patient = malloc(sizeof(char *) * (films.n + 1));
  const int B = opts->batch > 0 ? opts->batch : 32;
  const size_t px = (size_t)S * S;
  x = malloc(sizeof(float) * 3 * px * B);
  if (!idx || !y || !pred || !probs || !paths || !patient || !x) {
    st = ps_error(PS_ENOMEM, "evaluate: out of memory");
    goto done;
  }
  for (int i = 0; i < films.n; i++)
    if (want_split < 0 || films.split[i] == want_split)
      idx[n] = i, y[n] = films.cls[i], paths[n] = films.paths[i], patient[n] = films.patient[i], n++;
  if (n == 0) {
    st = ps_error(PS_EINVAL, "evaluate: %s has no %s films for the %s task", opts->manifest, split, ps_train_task_name(task));
    goto done;
  }
  /* a shard: the rows of its whole batches (lo is a multiple of B, so every batch holds the films one run's would) */
  int lo = 0, hi = n;
  if (sharded && (st = ps_shard_rows(n, B, opts->shard_index, opts->shard_count, &lo, &hi))) goto done;
  if (sharded)
    ps_log(PS_LOG_INFO, "evaluate: shard %d/%d: rows %d to %d of %d %s films of %s", opts->shard_index + 1, opts->shard_count,
           lo + 1, hi, n, split, opts->manifest);
  ps_log(PS_LOG_INFO, "evaluate: %s on %d %s films of %s at %dx%d (roi %s)", opts->model, hi - lo, split, opts->manifest, S, S,
         ps_roi_name(meta->roi));
  for (int b0 = lo; b0 < hi; b0 += B) {
    int nb = hi - b0 < B ? hi - b0 : B;
    for (int k = 0; k < nb; k++) {
      ps_image *img = NULL;
      const char *path = films.paths[idx[b0 + k]];
      if ((st = ps_image_read(path, NULL, &img))) goto done;
      /* the crop classify uses (film models: exactly ps_preprocess_tensor_ex) */
      st = ps_lung_roi_input(img, meta->roi, S, meta->mean, meta->std, x + (size_t)k * 3 * px, NULL, NULL);
      ps_image_free(img);
      if (st) goto done;
    }
    if ((st = ps_model_predict(model, x, nb, S, S, NULL, probs + (size_t)b0 * K))) goto done;
    if (progress && progress((double)(b0 + nb - lo) / (hi - lo), "evaluating", user)) {
      st = ps_error(PS_ECANCELLED, "evaluate: cancelled");
      goto done;
    }
  }
  for (int i = lo; i < hi; i++) {
    if ((st = ps_model_label(model, probs + (size_t)i * K, &pred[i]))) goto done;
    if (K == 2) pred[i] = probs[(size_t)i * 2 + 1] >= thr;
  }
  eval_out e = {.n = hi - lo, .K = K, .paths = paths + lo, .patient = patient + lo, .y = y + lo, .pred = pred + lo,
                .probs = probs + (size_t)lo * K, .meta = meta, .model_path = opts->model, .manifest = opts->manifest,
                .split = split};
  if (!sharded) {
    st = eval_finish(&e, thr, opts->outdir, opts->history, result);
    goto done;
  }
  /* a shard: its rows of predictions.csv, then shard.json (last: a folder with it is complete) */
  if (!(p_pred = ps__path_join(opts->outdir, "predictions.csv"))) {
    st = ps_error(PS_ENOMEM, "evaluate: out of memory");
    goto done;
  }
  if ((st = ps__write_atomic(p_pred, 1, write_predictions_csv, &e)) ||
      (st = ps_shard_write(opts->outdir, "evaluate", opts->shard_index, opts->shard_count, lo, hi, n, opts->model,
                           opts->manifest, shard_run(meta, split, opts->limit, B, thr), NULL)))
    goto done;
  if (result) {
    memset(result, 0, sizeof *result);
    result->n = hi - lo, result->threshold = thr;
    result->accuracy = result->auc = result->ap = result->f1_macro = NAN;
    result->sensitivity = result->specificity = result->ece = NAN;
  }
done:
  ps_model_free(model);
  ps_train_films_free(&films);
  free(idx), free(y), free(pred), free(probs), free(x), free(paths), free(patient), free(p_pred);
  return st;
}

/* A whole number in [lo, hi] from all of s. */
static int parse_int(const char *s, int lo, int hi, int *v) {
  char *end = NULL;
  long x = strtol(s, &end, 10);
  if (!*s || *end || x < lo || x > hi) return 0;
  *v = (int)x;
  return 1;
}

/* One shard's predictions.csv (rows lo..hi of the whole) into the merge's arrays; the strings stay in csv. */
static int read_shard_predictions(const char *dir, const ps_model_meta *meta, int lo, int hi, ps__csv *csv,
                                  const char **paths, const char **patient, int *y, int *pred, float *probs) {
  const int K = meta->num_classes;
  char *path = ps__path_join(dir, "predictions.csv");
  if (!path) return ps_error(PS_ENOMEM, "evaluate: out of memory");
  int st = ps__csv_read(path, csv);
  if (st) {
    free(path);
    return st;
  }
  const char *head[6 + PS_MODEL_MAX_CLASSES] = {"path", "patient_id", "true_label", "true_index", "pred_label", "pred_index"};
  char probname[PS_MODEL_MAX_CLASSES][PS_MODEL_CLASS_NAME_MAX + 8];
  for (int c = 0; c < K; c++) snprintf(probname[c], sizeof probname[c], "prob_%s", meta->classes[c]), head[6 + c] = probname[c];
  int ok = csv->rows >= 1 && csv->ncols[0] == (size_t)(6 + K);
  for (int j = 0; ok && j < 6 + K; j++) ok = !strcmp(csv->field[0][j], head[j]);
  if (!ok) {
    st = ps_error(PS_EFORMAT, "evaluate: %s is not the predictions.csv of this model's shard (its header differs)", path);
  } else if (csv->rows - 1 != (size_t)(hi - lo)) {
    st = ps_error(PS_EFORMAT, "evaluate: %s holds %zu rows; its shard.json says %d", path, csv->rows - 1, hi - lo);
  }
  for (int i = lo; st == PS_OK && i < hi; i++) {
    size_t r = (size_t)(i - lo) + 1;
    char **f = csv->field[r];
    ok = csv->ncols[r] == (size_t)(6 + K) && parse_int(f[3], 0, K - 1, &y[i]) && parse_int(f[5], 0, K - 1, &pred[i]);
    for (int c = 0; ok && c < K; c++) {
      char *end = NULL;
      probs[(size_t)i * K + c] = strtof(f[6 + c], &end);
      ok = *f[6 + c] && !*end;
    }
    if (!ok) st = ps_error(PS_EFORMAT, "evaluate: %s line %zu: not a prediction row", path, csv->line[r]);
    paths[i] = f[0], patient[i] = f[1];
  }
  free(path);
  return st;
}

int ps_evaluate_merge(const char *const *shard_dirs, int ndirs, const char *outdir, const char *history,
                      ps_eval_result *result) {
  if (!shard_dirs || ndirs < 1 || !outdir || !*outdir)
    return ps_error(PS_EINVAL, "evaluate: the merge needs the shard folders and an output folder");
  ps_shard_set set;
  int st = ps_shard_read_set("evaluate", shard_dirs, ndirs, &set);
  if (st) return st;
  ps__csv *csv = calloc((size_t)set.n, sizeof *csv);
  const char **paths = NULL, **patient = NULL;
  int *y = NULL, *pred = NULL;
  float *probs = NULL;
  json_t *m0 = set.marks[0], *run = json_object_get(m0, "run"), *classes = json_object_get(run, "classes");
  const char *task = json_string_value(json_object_get(run, "task")), *split = json_string_value(json_object_get(run, "split"));
  const int total = (int)json_integer_value(json_object_get(m0, "total")), K = (int)json_array_size(classes);
  ps_model_meta meta;
  memset(&meta, 0, sizeof meta);
  meta.task = task && !strcmp(task, "multiclass") ? PS_TASK_MULTICLASS : PS_TASK_BINARY;
  meta.num_classes = K;
  meta.temperature = json_real_value(json_object_get(run, "temperature"));
  double thr = json_real_value(json_object_get(run, "threshold"));
  if (!task || !split || K != (meta.task == PS_TASK_MULTICLASS ? 3 : 2) || !json_is_real(json_object_get(run, "threshold"))) {
    st = ps_error(PS_EFORMAT, "evaluate: %s/%s lacks the task, split, classes or threshold of its run", set.dirs[0], PS_SHARD_FILE);
    goto done;
  }
  for (int c = 0; c < K; c++)
    snprintf(meta.classes[c], sizeof meta.classes[c], "%s", json_string_value(json_array_get(classes, c)) ? json_string_value(json_array_get(classes, c)) : "");
  paths = malloc(sizeof(char *) * (total + 1));
  patient = malloc(sizeof(char *) * (total + 1));
  y = malloc(sizeof(int) * (total + 1));
  pred = malloc(sizeof(int) * (total + 1));
  probs = malloc(sizeof(float) * K * (total + 1));
  if (!csv || !paths || !patient || !y || !pred || !probs) {
    st = ps_error(PS_ENOMEM, "evaluate: out of memory");
    goto done;
  }
  for (int s = 0; s < set.n; s++) {
    int lo, hi;
    ps_shard_set_rows(&set, s, &lo, &hi);
    if ((st = read_shard_predictions(set.dirs[s], &meta, lo, hi, &csv[s], paths, patient, y, pred, probs))) goto done;
  }
  if (total == 0) {
    st = ps_error(PS_EINVAL, "evaluate: the shards hold no films");
    goto done;
  }
  if ((st = ps_shard_check_outdir("evaluate", outdir, 0, NULL)) || (st = ps_mkdir_p("evaluate", outdir))) goto done;
  ps_log(PS_LOG_INFO, "evaluate: %d shards, %d %s films", set.n, total, split);
  const char *model = json_string_value(json_object_get(m0, "model")), *manifest = json_string_value(json_object_get(m0, "manifest"));
  eval_out e = {.n = total, .K = K, .paths = paths, .patient = patient, .y = y, .pred = pred, .probs = probs,
                .meta = &meta, .model_path = model ? model : "", .manifest = manifest ? manifest : "", .split = split};
  st = eval_finish(&e, thr, outdir, history, result);
done:
  for (int s = 0; csv && s < set.n; s++) ps__csv_free(&csv[s]);
  free(csv), free(paths), free(patient), free(y), free(pred), free(probs);
  ps_shard_set_free(&set);
  return st;
}
