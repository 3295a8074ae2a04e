/* pneumoscope evaluate: argument handling around ps_evaluate_run (and ps_evaluate_merge). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#ifdef PS_HAVE_TRAIN
#include "ps_infer.h"
#include "ps_model.h"
#include "ps_train.h"
#endif

const char ps_cli_evaluate_help[] = "metrics, predictions and plots of a model on a manifest split";

static const char usage_text[] =
    "usage: pneumoscope evaluate --model M --manifest MANIFEST [--split test] [--shard K/N|auto] -o OUTDIR\n"
    "       pneumoscope evaluate --merge -o OUTDIR SHARDDIR...\n"
    "  --model M            binary, 3class (the bundled models) or a .safetensors from pneumoscope train\n"
    "  --manifest MANIFEST  split manifest\n"
    "  --split S            train, val, test (default) or all\n"
    "  -o, --out OUTDIR     metrics.json, predictions.csv, confusion.png, roc.png, pr.png, curves.png\n"
    "  --threshold T        binary decision threshold instead of the model's own\n"
    "  --history H          history.json for the training curves (default: next to the model)\n"
    "  --threads N, --device cpu|cuda|auto, --batch B, --limit N\n"
    "  --shard K/N          only the K-th of N contiguous blocks of whole batches of the split's films\n"
    "                       (K = 1..N; `auto`: from SLURM_ARRAY_TASK_ID/_COUNT or RANK/WORLD_SIZE, as\n"
    "                       classify): OUTDIR gets that block's predictions.csv and shard.json (which\n"
    "                       shard of which model, manifest, split, --limit, --batch, threshold), no\n"
    "                       metrics. Run the N shards with the same options and -o folders of their own\n"
    "  --merge              OUTDIR gets what one unsharded run writes (the same metrics, the same\n"
    "                       predictions.csv rows, the plots) from the shard folders SHARDDIR... (every\n"
    "                       shard 1..N once, of one run; model and manifest are taken from them)\n";

#ifdef PS_HAVE_TRAIN
static void print_result(const ps_eval_result *r, const char *outdir) {
  printf("n %d accuracy %.4f roc_auc %.4f ap %.4f macro_f1 %.4f threshold %.4f sensitivity %.4f specificity %.4f ece %.4f\n",
         r->n, r->accuracy, r->auc, r->ap, r->f1_macro, r->threshold, r->sensitivity, r->specificity, r->ece);
  printf("wrote %s/metrics.json and %s/predictions.csv\n", outdir, outdir);
}

static int merge(const char *outdir, const char *history, const char **dirs, int ndirs) {
  if (ndirs < 1) {
    fprintf(stderr, "pneumoscope evaluate: --merge needs the shard folders\n\n%s", usage_text);
    return 2;
  }
  ps_eval_result r;
  int st = ps_evaluate_merge(dirs, ndirs, outdir, history, &r);
  if (st != PS_OK) return ps_cli_fail("evaluate", "merge", st);
  print_result(&r, outdir);
  return 0;
}

int ps_cli_evaluate(int argc, char **argv) {
  ps_eval_opts o;
  memset(&o, 0, sizeof o);
  o.threshold = -1; /* the model's own */
  const char *shard = NULL;
  int do_merge = 0;
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
                                   {"shard", 0, PS_OPT_STRING, &shard},
                                   {"merge", 0, PS_OPT_FLAG, &do_merge},
                                   {0}};
  const char **dirs = calloc((size_t)argc + 1, sizeof *dirs);
  int ndirs = argc;
  if (!dirs) return ps_cli_fail("evaluate", "arguments", PS_ENOMEM);
  int st, rc = ps_cli_parse("evaluate", usage_text, options, argc, argv, dirs, &ndirs);
  if (rc < 0 && do_merge && (o.model || o.manifest || o.split || shard || o.threshold >= 0 || o.limit || o.batch)) {
    fprintf(stderr, "pneumoscope evaluate: --merge takes model, manifest, split, shard, threshold, limit and batch from the "
                    "shard folders\n");
    rc = 2;
  } else if (rc < 0 && !do_merge && ndirs > 0) {
    fprintf(stderr, "pneumoscope evaluate: unexpected argument '%s' (shard folders go with --merge)\n\n%s", dirs[0], usage_text);
    rc = 2;
  }
  if (rc < 0 && (!o.outdir || (!do_merge && (!o.model || !o.manifest)))) {
    fprintf(stderr, "pneumoscope evaluate: --model, --manifest and -o are required (--merge: -o)\n\n%s", usage_text);
    rc = 2;
  }
  if (rc < 0 && shard && (st = ps_cli_shard("evaluate", shard, &o.shard_index, &o.shard_count))) rc = st;
  if (rc < 0 && do_merge) rc = merge(o.outdir, o.history, dirs, ndirs);
  free(dirs);
  if (rc >= 0) return rc;
  o.use_threshold = o.threshold >= 0;
  char model_path[4096];
  st = ps_model_resolve(o.model, model_path, sizeof model_path);
  if (st != PS_OK) return ps_cli_fail("evaluate", o.model, st);
  o.model = model_path;
  ps_eval_result r;
  st = ps_evaluate_run(&o, NULL, NULL, &r);
  if (st != PS_OK) return ps_cli_fail("evaluate", "evaluation failed", st);
  if (o.shard_count) {
    printf("shard %d/%d: %d films, threshold %.4f\n", o.shard_index + 1, o.shard_count, r.n, r.threshold);
    printf("wrote %s/predictions.csv and %s/shard.json (merge the shards with evaluate --merge)\n", o.outdir, o.outdir);
    return 0;
  }
  print_result(&r, o.outdir);
  return 0;
}
#else
int ps_cli_evaluate(int argc, char **argv) { return ps_cli_without_torch("evaluate", usage_text, argc, argv); }
#endif
