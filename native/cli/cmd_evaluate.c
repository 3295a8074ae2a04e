/* pneumoscope evaluate: argument handling around ps_evaluate_run. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#ifdef PS_HAVE_TRAIN
#include "ps_model.h"
#include "ps_train.h"
#endif

const char ps_cli_evaluate_help[] = "metrics, predictions and plots of a model on a manifest split";

static const char usage_text[] =
    "usage: pneumoscope evaluate --model M --manifest MANIFEST [--split test] -o OUTDIR\n"
    "  --model M            binary, 3class (the bundled models) or a .safetensors from pneumoscope train\n"
    "  --manifest MANIFEST  split manifest\n"
    "  --split S            train, val, test (default) or all\n"
    "  -o, --out OUTDIR     metrics.json, predictions.csv, confusion.png, roc.png, pr.png, curves.png\n"
    "  --threshold T        binary decision threshold instead of the model's own\n"
    "  --history H          history.json for the training curves (default: next to the model)\n"
    "  --threads N, --device cpu|cuda|auto, --batch B, --limit N\n";

int ps_cli_evaluate(int argc, char **argv) {
#ifndef PS_HAVE_TRAIN
  (void)argc;
  (void)argv;
  fprintf(stderr, "pneumoscope evaluate: built without libtorch\n");
  return 1;
#else
  ps_eval_opts o;
  memset(&o, 0, sizeof o);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
#define NEXT() PS_CLI_NEXT("evaluate")
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage_text, stdout);
      return 0;
    } else if (ps_cli_opt(a, "--model", &v)) {
      NEXT();
      o.model = v;
    } else if (ps_cli_opt(a, "--manifest", &v)) {
      NEXT();
      o.manifest = v;
    } else if (ps_cli_opt(a, "--split", &v)) {
      NEXT();
      o.split = v;
    } else if (!strcmp(a, "-o") || ps_cli_opt(a, "--out", &v) || ps_cli_opt(a, "--outdir", &v)) {
      NEXT();
      o.outdir = v;
    } else if (ps_cli_opt(a, "--history", &v)) {
      NEXT();
      o.history = v;
    } else if (ps_cli_opt(a, "--threshold", &v)) {
      NEXT();
      if (ps_cli_double("evaluate", a, v, &o.threshold) || !(o.threshold >= 0 && o.threshold <= 1)) return 2;
      o.use_threshold = 1;
    } else if (ps_cli_opt(a, "--threads", &v)) {
      NEXT();
      if (ps_cli_int("evaluate", a, v, &o.threads)) return 2;
    } else if (ps_cli_opt(a, "--batch", &v)) {
      NEXT();
      if (ps_cli_int("evaluate", a, v, &o.batch)) return 2;
    } else if (ps_cli_opt(a, "--limit", &v)) {
      NEXT();
      if (ps_cli_int("evaluate", a, v, &o.limit)) return 2;
    } else if (ps_cli_opt(a, "--device", &v)) {
      NEXT();
      if (!strcmp(v, "cpu")) o.device = PS_TRAIN_DEVICE_CPU;
      else if (!strcmp(v, "cuda")) o.device = PS_TRAIN_DEVICE_CUDA;
      else if (!strcmp(v, "auto")) o.device = PS_TRAIN_DEVICE_AUTO;
      else return fprintf(stderr, "pneumoscope evaluate: --device is cpu, cuda or auto\n"), 2;
    } else {
      fprintf(stderr, "pneumoscope evaluate: unknown option '%s'\n\n%s", a, usage_text);
      return 2;
    }
#undef NEXT
  }
  if (!o.model || !o.manifest || !o.outdir) {
    fprintf(stderr, "pneumoscope evaluate: --model, --manifest and -o are required\n\n%s", usage_text);
    return 2;
  }
  char model_path[4096];
  int st = ps_model_resolve(o.model, model_path, sizeof model_path);
  if (st != PS_OK) return ps_cli_fail("evaluate", o.model, st);
  o.model = model_path;
  ps_eval_result r;
  st = ps_evaluate_run(&o, NULL, NULL, &r);
  if (st != PS_OK) return ps_cli_fail("evaluate", "evaluation failed", st);
  printf("n %d accuracy %.4f roc_auc %.4f ap %.4f macro_f1 %.4f threshold %.4f sensitivity %.4f specificity %.4f ece %.4f\n",
         r.n, r.accuracy, r.auc, r.ap, r.f1_macro, r.threshold, r.sensitivity, r.specificity, r.ece);
  printf("wrote %s/metrics.json and %s/predictions.csv\n", o.outdir, o.outdir);
  return 0;
#endif
}
