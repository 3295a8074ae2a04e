/* pneumoscope train: argument handling around ps_train_run (the same call the Fiji plugin makes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#ifdef PS_HAVE_TRAIN
#include "ps_model.h"
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
    "  --accumulate K        one optimizer step per K micro-batches of --batch films (gradients\n"
    "                        summed): an effective batch of K x batch in one micro-batch's memory (1)\n"
    "  --init W.safetensors  start from these ResNet18 weights (e.g. ImageNet), fc re-initialised\n"
    "  --finetune M          fine-tune a trained model of the same classes, its fc kept: binary or\n"
    "                        3class (the bundled models) or a .safetensors file; lower --lr (1e-4)\n"
    "  --resume              continue OUTDIR/last.ckpt (loses at most the epoch that was running;\n"
    "                        refused when the training options differ from the ones it began with)\n"
    "  --no-balance          plain shuffling (binary default: class-balanced sampling)\n"
    "  --balance             class-balanced sampling for multiclass too\n"
    "  --no-augment          no crop/jitter augmentation\n"
    "  --crop MIN            random resized crop of scale MIN-1 in the augmentation (binary 0.8;\n"
    "                        multiclass 1 = none, jitter only)\n"
    "  --cache FILE          preprocessed-film cache (default OUTDIR/cache-S.pscache; cache-S-lungs, cache-S-lungmask for those rois)\n"
    "  --limit N             at most N films per split (smoke tests)\n"
    "  --half                store best.safetensors in float16 (half the size)\n"
    "  --patient-ages A-B    the training patients' ages in years (e.g. 1-5), stored in the model:\n"
    "                        classify flags a DICOM whose PatientAge is more than a year outside\n"
    "  --dist-timeout S      data-parallel runs: seconds a rank waits for its peers at the start and\n"
    "                        in each collective before it gives up (300)\n"
    "Data-parallel: launched by torchrun (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT ...) or srun\n"
    "(SLURM_PROCID, SLURM_STEP_NUM_TASKS, first host of the node list), train runs as one rank of a\n"
    "libtorch c10d group (Gloo on CPU): the same optimizer steps as one process with --accumulate\n"
    "ranks x K; rank 0 decides and writes every file. See README, 'More than one machine'.\n"
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

int ps_cli_train(int argc, char **argv) {
  static const ps_cli_choice tasks[] = {
      {"binary", PS_TASK_BINARY}, {"multiclass", PS_TASK_MULTICLASS}, {"3class", PS_TASK_MULTICLASS}, {NULL, 0}};
  static const ps_cli_choice schedules[] = {{"constant", 0}, {"cosine", 1}, {NULL, 0}};
  static const ps_cli_choice monitors[] = {{"auc", PS_MONITOR_AUC}, {"f1", PS_MONITOR_F1}, {"loss", PS_MONITOR_LOSS},
                                           {"acc", PS_MONITOR_ACC}, {NULL, 0}};
  static const ps_cli_choice rois[] = {
      {"film", PS_ROI_FILM}, {"lungs", PS_ROI_LUNGS}, {"lungmask", PS_ROI_LUNGMASK}, {NULL, 0}};
  ps_train_opts o;
  memset(&o, 0, sizeof o);
  int seed = 0;
  const char *finetune = NULL;
  double dist_timeout = 0;
  const char *ages = NULL;
  const ps_cli_option options[] = {{"manifest", 0, PS_OPT_STRING, &o.manifest},
                                   {"out", 'o', PS_OPT_STRING, &o.outdir},
                                   {"outdir", 0, PS_OPT_STRING, &o.outdir},
                                   {"task", 0, PS_OPT_CHOICE, &o.task, .choices = tasks},
                                   {"epochs", 0, PS_OPT_INT, &o.epochs, .range = ">= 1"},
                                   {"lr", 0, PS_OPT_DOUBLE, &o.lr, .range = "> 0"},
                                   {"lr-schedule", 0, PS_OPT_CHOICE, &o.lr_cosine, .choices = schedules},
                                   {"batch", 0, PS_OPT_INT, &o.batch, .range = ">= 2"},
                                   {"patience", 0, PS_OPT_INT, &o.patience},
                                   {"monitor", 0, PS_OPT_CHOICE, &o.monitor, .choices = monitors},
                                   {"size", 0, PS_OPT_INT, &o.size, .range = ">= 32"},
                                   {"roi", 0, PS_OPT_CHOICE, &o.roi, .choices = rois},
                                   {"seed", 0, PS_OPT_INT, &seed},
                                   {"threads", 0, PS_OPT_INT, &o.threads, .range = ">= 0"},
                                   {"device", 0, PS_OPT_CHOICE, &o.device, .choices = ps_cli_train_devices},
                                   {"init", 0, PS_OPT_STRING, &o.init},
                                   {"accumulate", 0, PS_OPT_INT, &o.accumulate, .range = "in [1, 64]"},
                                   {"finetune", 0, PS_OPT_STRING, &finetune},
                                   {"cache", 0, PS_OPT_STRING, &o.cache},
                                   {"limit", 0, PS_OPT_INT, &o.limit, .range = ">= 0"},
                                   {"resume", 0, PS_OPT_FLAG, &o.resume},
                                   {"no-balance", 0, PS_OPT_FLAG, &o.no_balance},
                                   {"balance", 0, PS_OPT_FLAG, &o.balance},
                                   {"no-augment", 0, PS_OPT_FLAG, &o.no_augment},
                                   {"crop", 0, PS_OPT_DOUBLE, &o.crop_min, .range = "in (0, 1]"},
                                   {"half", 0, PS_OPT_FLAG, &o.save_half},
                                   {"patient-ages", 0, PS_OPT_STRING, &ages},
                                   {"dist-timeout", 0, PS_OPT_DOUBLE, &dist_timeout, .range = "> 0"},
                                   {0}};
  int rc = ps_cli_parse("train", usage_text, options, argc, argv, NULL, NULL);
  if (rc >= 0) return rc;
  if (ages && ps_model_parse_ages(ages, o.patient_ages)) return ps_cli_fail("train", "--patient-ages", PS_EINVAL), 2;
  char tuned[4096];
  if (finetune) {
    if (o.init) {
      fprintf(stderr, "pneumoscope train: --init and --finetune exclude each other\n");
      return 2;
    }
    int st = ps_model_resolve(finetune, tuned, sizeof tuned);
    if (st) return ps_cli_fail("train", "--finetune", st);
    o.init = tuned;
    o.init_keep_fc = 1;
  }
  if (!o.manifest || !o.outdir) {
    fprintf(stderr, "pneumoscope train: --manifest and -o are required\n\n%s", usage_text);
    return 2;
  }
  o.seed = (uint64_t)(int64_t)seed;
  char master[256];
  int dst = ps_train_dist_from_env(&o.dist, master, sizeof master);
  if (dst) {
    ps_cli_fail("train", "data-parallel environment", dst);
    return 2; /* a launch mistake, like a bad option */
  }
  o.dist.timeout_s = dist_timeout;
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
  if (o.dist.world_size > 1 && o.dist.rank != 0) return 0; /* rank 0 prints the result */
  printf("best epoch %d of %d, val %s %.4f, threshold %.4f, model %s/best.safetensors\n", r.best_epoch, r.epochs_run,
         ps_monitor_name(o.monitor ? o.monitor : (o.task ? PS_MONITOR_F1 : PS_MONITOR_AUC)), r.best_score, r.threshold,
         o.outdir);
  return 0;
}
#else
int ps_cli_train(int argc, char **argv) { return ps_cli_without_torch("train", usage_text, argc, argv); }
#endif
