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

#ifdef PS_HAVE_TRAIN
int ps_cli_evaluate(int argc, char **argv) {
  ps_eval_opts o;
  memset(&o, 0, sizeof o);
  o.threshold = -1; /* the model's own */
  const ps_cli_option options[] = {{"model", 0, PS_OPT_STRING, &o.model},
                                   {"manifest", 0, PS_OPT_STRING, &o.manifest},
                                   {"split", 0, PS_OPT_STRING, &o.split},
                                   {"out", 'o', PS_OPT_STRING, &o.outdir},
                                   {"outdir", 0, PS_OPT_STRING, &o.outdir},
                                   {"history", 0, PS_OPT_STRING, &o.history},
                                   {"threshold", 0, PS_OPT_DOUBLE, &o.threshold, .range = "in [0, 1]"},
                                   {"threads", 0, PS_OPT_INT, &o.threads},
                                   {"batch", 0, PS_OPT_INT, &o.batch},
                                   {"limit", 0, PS_OPT_INT, &o.limit},
                                   {"device", 0, PS_OPT_CHOICE, &o.device, .choices = ps_cli_train_devices},
                                   {0}};
  int rc = ps_cli_parse("evaluate", usage_text, options, argc, argv, NULL, NULL);
  if (rc >= 0) return rc;
  if (!o.model || !o.manifest || !o.outdir) {
    fprintf(stderr, "pneumoscope evaluate: --model, --manifest and -o are required\n\n%s", usage_text);
    return 2;
  }
  o.use_threshold = o.threshold >= 0;
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
}
#else
int ps_cli_evaluate(int argc, char **argv) { return ps_cli_without_torch("evaluate", usage_text, argc, argv); }
#endif
