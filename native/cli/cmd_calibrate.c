/* pneumoscope calibrate: argument handling around ps_calibrate_run (temperature + OOD detector). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#ifdef PS_HAVE_TRAIN
#include "ps_calibrate.h"
#include "ps_model.h"
#endif

const char ps_cli_calibrate_help[] = "fit a model's temperature and out-of-distribution detector on its split (train does it too)";

static const char usage_text[] =
    "usage: pneumoscope calibrate --model M --manifest MANIFEST -o OUT.safetensors [options]\n"
    "  Writes a copy of model M (never M itself) with what `pneumoscope train` now fits at the end of\n"
    "  every run, for a model trained before: temperature scaling (fitted on the validation films,\n"
    "  kept when it lowers their expected calibration error; a binary threshold is moved with it so\n"
    "  every label stays the same) and the out-of-distribution detector (class means and shared\n"
    "  covariance of the training films' pooled features; threshold = a quantile of the validation\n"
    "  films' scores). Only train and val rows of the manifest are read, never test.\n"
    "  --model M            binary, 3class (the bundled models) or a .safetensors file\n"
    "  --manifest MANIFEST  the split manifest M was trained on (pneumoscope split)\n"
    "  -o, --out FILE       the calibrated model (refused when it exists, unless --force)\n"
    "  --ood-quantile Q     share of validation films kept in distribution (0.99)\n"
    "  --shrink S           covariance shrinkage: each variance raised by S times itself (0.01)\n"
    "  --ood-layers L       layers whose channel means the detector uses (layer1,layer2,layer3,layer4)\n"
    "  --patient-ages A-B   the training patients' ages in years (e.g. 1-5), stored in the model:\n"
    "                       classify flags a DICOM whose PatientAge is more than a year outside\n"
    "  --no-temperature     keep temperature 1\n"
    "  --cache FILE         preprocessed-film cache (default: beside OUT, as train names it)\n"
    "  --half               store the weights in float16\n"
    "  --threads N, --limit N, --force\n";

#ifdef PS_HAVE_TRAIN
int ps_cli_calibrate(int argc, char **argv) {
  ps_calibrate_opts o = ps_calibrate_opts_default();
  const char *model = NULL, *layers = NULL, *ages = NULL;
  const ps_cli_option options[] = {{"model", 0, PS_OPT_STRING, &model},
                                   {"manifest", 0, PS_OPT_STRING, &o.manifest},
                                   {"out", 'o', PS_OPT_STRING, &o.out},
                                   {"cache", 0, PS_OPT_STRING, &o.cache},
                                   {"ood-quantile", 0, PS_OPT_DOUBLE, &o.ood_quantile, .range = "in (0.5, 1]"},
                                   {"shrink", 0, PS_OPT_DOUBLE, &o.shrink, .range = "in [0, 10]"},
                                   {"ood-layers", 0, PS_OPT_STRING, &layers},
                                   {"patient-ages", 0, PS_OPT_STRING, &ages},
                                   {"threads", 0, PS_OPT_INT, &o.threads},
                                   {"limit", 0, PS_OPT_INT, &o.limit},
                                   {"no-temperature", 0, PS_OPT_FLAG, &o.no_temperature},
                                   {"half", 0, PS_OPT_FLAG, &o.save_half},
                                   {"force", 0, PS_OPT_FLAG, &o.overwrite},
                                   {0}};
  int rc = ps_cli_parse("calibrate", usage_text, options, argc, argv, NULL, NULL);
  if (rc >= 0) return rc;
  if (o.shrink == 0) o.shrink = -1; /* none */
  if (ages && ps_model_parse_ages(ages, o.patient_ages)) return ps_cli_fail("calibrate", "--patient-ages", PS_EINVAL), 2;
  for (const char *p = layers; p && *p;) {
    if (strncmp(p, "layer", 5) || p[5] < '1' || p[5] > '4' || (p[6] && p[6] != ','))
      return fprintf(stderr, "pneumoscope calibrate: --ood-layers is a list of layer1..layer4, got '%s'\n", layers), 2;
    o.ood_layers |= 1u << (p[5] - '1');
    p += p[6] ? 7 : 6;
  }
  if (!model || !o.manifest || !o.out) {
    fprintf(stderr, "pneumoscope calibrate: --model, --manifest and -o are required\n\n%s", usage_text);
    return 2;
  }
  char model_path[4096];
  int st = ps_model_resolve(model, model_path, sizeof model_path);
  if (st != PS_OK) return ps_cli_fail("calibrate", model, st);
  o.model = model_path;
  ps_calibrate_result r;
  if ((st = ps_calibrate_run(&o, NULL, NULL, &r)) != PS_OK) return ps_cli_fail("calibrate", "calibration failed", st);
  printf("train %d val %d temperature %.4f (fitted %.4f) val_ece %.4f -> %.4f threshold %.6g ood_threshold %.6g "
         "val_flagged %.4f train_flagged %.4f\n",
         r.n_train, r.n_val, r.temperature, r.temperature_fitted, r.ece_before, r.ece_after, r.threshold,
         r.ood_threshold, r.val_flagged, r.train_flagged);
  printf("wrote %s\n", o.out);
  return 0;
}
#else
int ps_cli_calibrate(int argc, char **argv) { return ps_cli_without_torch("calibrate", usage_text, argc, argv); }
#endif
