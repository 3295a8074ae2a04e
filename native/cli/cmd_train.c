/* pneumoscope train: argument handling around ps_train_run (the same call the Fiji plugin makes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#ifdef PS_HAVE_TRAIN
#include "ps_train.h"
#endif

const char ps_cli_train_help[] = "train a ResNet18 (binary or 3-class) on a split manifest";

static const char usage_text[] =
    "usage: pneumoscope train --manifest M -o OUTDIR [options]\n"
    "  --manifest M          split manifest (pneumoscope split): path,label,subtype,patient_id,split,sha256\n"
    "  -o, --out OUTDIR      best.safetensors, last.ckpt, history.json, history.csv, cache-S.pscache\n"
    "  --task binary|multiclass   NORMAL/PNEUMONIA (default) or NORMAL/BACTERIA/VIRUS\n"
    "  --epochs N            max epochs (binary 30, multiclass 50)\n"
    "  --lr X                Adam learning rate (1e-3)\n"
    "  --lr-schedule S       constant (default) or cosine: decay to 0 over --epochs, step by step\n"
    "  --batch B             batch size (32)\n"
    "  --patience P          early stopping patience in epochs (binary 5, multiclass 10; 0 = default, -1 = off)\n"
    "  --monitor auc|f1|loss|acc   validation metric for best model and patience (binary auc, multiclass f1)\n"
    "  --size S              input size S x S (224); stored in the model, classify uses it\n"
    "  --roi film|lungs|lungmask   what the model sees: the whole film (default), the padded lung box\n"
    "                        of each film (classical lung finder, ps_lung_roi), or that box with\n"
    "                        everything outside the lung fields (dilated by 4 % of the box width)\n"
    "                        set to a neutral gray; stored in the model, so classify, evaluate,\n"
    "                        gradcam and audit prepare films the same way\n"
    "  --seed N              seed for init, sampling and augmentation (0)\n"
    "  --threads N           CPU threads (all available)\n"
    "  --device cpu|cuda|auto   (auto: CUDA with bf16 autocast when available, else CPU fp32)\n"
    "  --init W.safetensors  start from these ResNet18 weights (e.g. ImageNet), fc re-initialised\n"
    "  --resume              continue OUTDIR/last.ckpt (loses at most the epoch that was running)\n"
    "  --no-balance          plain shuffling (binary default: class-balanced sampling)\n"
    "  --balance             class-balanced sampling for multiclass too\n"
    "  --no-augment          no crop/jitter augmentation\n"
    "  --cache FILE          preprocessed-film cache (default OUTDIR/cache-S.pscache; cache-S-lungs, cache-S-lungmask for those rois)\n"
    "  --limit N             at most N films per split (smoke tests)\n"
    "  --half                store best.safetensors in float16 (half the size)\n"
    "The decision threshold is chosen on the validation split (Youden's J on P(PNEUMONIA)) and stored\n"
    "in best.safetensors; progress shows as a bar on a terminal, as plain lines otherwise.\n";

#ifdef PS_HAVE_TRAIN
typedef struct {
  int tty;
  double last;
} bar_state;

static int bar(double fraction, const char *what, void *user) {
  bar_state *b = user;
  if (!b->tty) return 0;
  if (fraction - b->last < 0.002 && fraction < 1) return 0;
  b->last = fraction;
  int w = 30, filled = (int)(fraction * w + 0.5);
  fprintf(stderr, "\r[");
  for (int i = 0; i < w; i++) fputc(i < filled ? '#' : '.', stderr);
  fprintf(stderr, "] %5.1f%% %-60.60s", fraction * 100, what ? what : "");
  fflush(stderr);
  return 0;
}

static bar_state *g_bar;
static void log_line(ps_log_level level, const char *msg, void *user) {
  (void)user;
  static const char *names[] = {"debug", "info", "warning", "error"};
  if (level == PS_LOG_DEBUG) return;
  if (g_bar && g_bar->tty) fprintf(stderr, "\r%-100s\r", "");
  fprintf(stderr, "pneumoscope: %s: %s\n", names[level], msg);
}
#endif

int ps_cli_train(int argc, char **argv) {
#ifndef PS_HAVE_TRAIN
  (void)argc;
  (void)argv;
  fprintf(stderr, "pneumoscope train: built without libtorch\n");
  return 1;
#else
  ps_train_opts o;
  memset(&o, 0, sizeof o);
  const char *v = NULL;
  int device_set = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
#define NEXT() PS_CLI_NEXT("train")
    v = NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage_text, stdout);
      return 0;
    } else if (ps_cli_opt(a, "--manifest", &v)) {
      NEXT();
      o.manifest = v;
    } else if (!strcmp(a, "-o") || ps_cli_opt(a, "--out", &v) || ps_cli_opt(a, "--outdir", &v)) {
      NEXT();
      o.outdir = v;
    } else if (ps_cli_opt(a, "--task", &v)) {
      NEXT();
      if (!strcmp(v, "binary")) o.task = 0;
      else if (!strcmp(v, "multiclass") || !strcmp(v, "3class")) o.task = 1;
      else return fprintf(stderr, "pneumoscope train: --task is binary or multiclass, got '%s'\n", v), 2;
    } else if (ps_cli_opt(a, "--epochs", &v)) {
      NEXT();
      if (ps_cli_int("train", a, v, &o.epochs) || o.epochs < 1) return 2;
    } else if (ps_cli_opt(a, "--lr", &v)) {
      NEXT();
      if (ps_cli_double("train", a, v, &o.lr) || !(o.lr > 0)) return 2;
    } else if (ps_cli_opt(a, "--lr-schedule", &v)) {
      NEXT();
      if (!strcmp(v, "cosine")) o.lr_cosine = 1;
      else if (!strcmp(v, "constant")) o.lr_cosine = 0;
      else return fprintf(stderr, "pneumoscope train: --lr-schedule is constant or cosine, got '%s'\n", v), 2;
    } else if (ps_cli_opt(a, "--batch", &v)) {
      NEXT();
      if (ps_cli_int("train", a, v, &o.batch) || o.batch < 2) return 2;
    } else if (ps_cli_opt(a, "--patience", &v)) {
      NEXT();
      if (ps_cli_int("train", a, v, &o.patience)) return 2;
    } else if (ps_cli_opt(a, "--monitor", &v)) {
      NEXT();
      if (!strcmp(v, "auc")) o.monitor = PS_MONITOR_AUC;
      else if (!strcmp(v, "f1")) o.monitor = PS_MONITOR_F1;
      else if (!strcmp(v, "loss")) o.monitor = PS_MONITOR_LOSS;
      else if (!strcmp(v, "acc")) o.monitor = PS_MONITOR_ACC;
      else return fprintf(stderr, "pneumoscope train: --monitor is auc, f1, loss or acc, got '%s'\n", v), 2;
    } else if (ps_cli_opt(a, "--size", &v)) {
      NEXT();
      if (ps_cli_int("train", a, v, &o.size) || o.size < 32) return 2;
    } else if (ps_cli_opt(a, "--roi", &v)) {
      NEXT();
      if (!strcmp(v, "film")) o.roi = PS_ROI_FILM;
      else if (!strcmp(v, "lungs")) o.roi = PS_ROI_LUNGS;
      else if (!strcmp(v, "lungmask")) o.roi = PS_ROI_LUNGMASK;
      else return fprintf(stderr, "pneumoscope train: --roi is film, lungs or lungmask, got '%s'\n", v), 2;
    } else if (ps_cli_opt(a, "--seed", &v)) {
      NEXT();
      int s;
      if (ps_cli_int("train", a, v, &s)) return 2;
      o.seed = (uint64_t)(int64_t)s;
    } else if (ps_cli_opt(a, "--threads", &v)) {
      NEXT();
      if (ps_cli_int("train", a, v, &o.threads) || o.threads < 0) return 2;
    } else if (ps_cli_opt(a, "--device", &v)) {
      NEXT();
      device_set = 1;
      if (!strcmp(v, "cpu")) o.device = PS_TRAIN_DEVICE_CPU;
      else if (!strcmp(v, "cuda")) o.device = PS_TRAIN_DEVICE_CUDA;
      else if (!strcmp(v, "auto")) o.device = PS_TRAIN_DEVICE_AUTO;
      else return fprintf(stderr, "pneumoscope train: --device is cpu, cuda or auto, got '%s'\n", v), 2;
    } else if (ps_cli_opt(a, "--init", &v)) {
      NEXT();
      o.init = v;
    } else if (ps_cli_opt(a, "--cache", &v)) {
      NEXT();
      o.cache = v;
    } else if (ps_cli_opt(a, "--limit", &v)) {
      NEXT();
      if (ps_cli_int("train", a, v, &o.limit) || o.limit < 0) return 2;
    } else if (!strcmp(a, "--resume")) {
      o.resume = 1;
    } else if (!strcmp(a, "--no-balance")) {
      o.no_balance = 1;
    } else if (!strcmp(a, "--balance")) {
      o.balance = 1;
    } else if (!strcmp(a, "--no-augment")) {
      o.no_augment = 1;
    } else if (!strcmp(a, "--half")) {
      o.save_half = 1;
    } else {
      fprintf(stderr, "pneumoscope train: unknown option '%s'\n\n%s", a, usage_text);
      return 2;
    }
#undef NEXT
  }
  (void)device_set;
  if (!o.manifest || !o.outdir) {
    fprintf(stderr, "pneumoscope train: --manifest and -o are required\n\n%s", usage_text);
    return 2;
  }
  /* the command line goes into the model's provenance */
  size_t len = 16;
  for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
  char *cmd = malloc(len);
  if (cmd) {
    strcpy(cmd, "pneumoscope");
    for (int i = 0; i < argc; i++) strcat(cmd, " "), strcat(cmd, argv[i]);
    o.command = cmd;
  }
  bar_state b = {isatty(2), -1};
  g_bar = &b;
  ps_log_set(log_line, NULL);
  ps_train_result r;
  int st = ps_train_run(&o, bar, &b, &r);
  if (b.tty) fprintf(stderr, "\r%-100s\r", "");
  g_bar = NULL;
  free(cmd);
  if (st != PS_OK) return ps_cli_fail("train", "training failed", st);
  printf("best epoch %d of %d, val %s %.4f, threshold %.4f, model %s/best.safetensors\n", r.best_epoch, r.epochs_run,
         ps_monitor_name(o.monitor ? o.monitor : (o.task ? PS_MONITOR_F1 : PS_MONITOR_AUC)), r.best_score, r.threshold,
         o.outdir);
  return 0;
#endif
}
