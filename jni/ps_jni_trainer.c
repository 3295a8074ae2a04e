/* Native methods of pneumoscope.Trainer: ps_train_run and ps_evaluate_run with a Java progress
 * listener (ps_jni_progress_cb: any thread, cancel by returning true). */
#include <stdlib.h>
#include <string.h>

#include "pneumoscope_Trainer.h"
#include "ps_jni.h"

#if __has_include("ps_train.h") && defined(PS_HAVE_INFER)
#include "ps_model.h"
#include "ps_train.h"
#define PS_JNI_HAVE_TRAIN 1
#endif

JNIEXPORT jdoubleArray JNICALL Java_pneumoscope_Trainer_nativeTrain(
    JNIEnv *env, jclass cls, jbyteArray jmanifest, jbyteArray joutdir, jint task, jint epochs, jdouble lr, jint batch,
    jint patience, jint size, jlong seed, jint threads, jint device, jbyteArray jinit, jboolean finetune, jboolean resume, jint balance,
    jboolean augment, jint limit, jboolean save_half, jbyteArray jcommand, jbyteArray jages, jobject listener) {
  (void)cls;
#ifdef PS_JNI_HAVE_TRAIN
  jdoubleArray out = NULL;
  ps_jni_progress prog;
  char *manifest = NULL, *outdir = NULL, *init = NULL, *command = NULL, *ages = NULL;
  if (ps_jni_progress_init(env, &prog, listener) != PS_OK) return NULL; /* exception pending */
  if (!(manifest = ps_jni_cstr(env, jmanifest, "manifest")) || !(outdir = ps_jni_cstr(env, joutdir, "outdir")) ||
      !(init = ps_jni_cstr(env, jinit, "init")) || !(command = ps_jni_cstr(env, jcommand, "command")) ||
      !(ages = ps_jni_cstr(env, jages, "patient_ages")))
    goto done;
  ps_train_opts o = ps_train_opts_default();
  o.manifest = manifest;
  o.outdir = outdir;
  o.task = task;
  if (epochs > 0) o.epochs = epochs;
  if (lr > 0) o.lr = lr;
  if (batch > 0) o.batch = batch;
  if (patience != 0) o.patience = patience;
  if (size > 0) o.size = size;
  o.seed = (uint64_t)seed;
  if (threads > 0) o.threads = threads;
  o.device = (ps_train_device)device;
  char tuned[4096];
  if (init[0]) { /* binary / 3class name the bundled models, as on the command line */
    int st = ps_model_resolve(init, tuned, sizeof tuned);
    if (st) {
      ps_jni_throw(env, st);
      goto done;
    }
    o.init = tuned;
    o.init_keep_fc = finetune ? 1 : 0;
  }
  o.resume = resume ? 1 : 0;
  if (balance == 1) o.balance = 1;
  if (balance == 2) o.no_balance = 1;
  o.no_augment = augment ? 0 : 1;
  if (limit > 0) o.limit = limit;
  o.save_half = save_half ? 1 : 0;
  o.command = command[0] ? command : "Fiji: Plugins > PneumoScope > Train Model...";
  if (ages[0]) {
    int st = ps_model_parse_ages(ages, o.patient_ages);
    if (st) {
      ps_jni_throw(env, st);
      goto done;
    }
  }
  ps_train_result r;
  memset(&r, 0, sizeof r);
  int st = ps_train_run(&o, listener ? ps_jni_progress_cb : NULL, &prog, &r);
  if ((*env)->ExceptionCheck(env)) goto done; /* the listener threw: that exception wins */
  if (st != PS_OK) {
    ps_jni_throw(env, st);
    goto done;
  }
  jdouble v[9] = {r.epochs_run, r.best_epoch, r.best_score, r.threshold, r.stopped_early, r.cache_built,
                  r.n_train, r.n_val, r.n_test};
  out = ps_jni_doubles(env, v, 9);
done:
  free(manifest);
  free(outdir);
  free(init);
  free(command);
  free(ages);
  ps_jni_progress_release(env, &prog);
  return out;
#else
  (void)jmanifest; (void)joutdir; (void)task; (void)epochs; (void)lr; (void)batch; (void)patience; (void)size;
  (void)seed; (void)threads; (void)device; (void)jinit; (void)finetune; (void)resume; (void)balance; (void)augment; (void)limit;
  (void)save_half; (void)jcommand; (void)jages; (void)listener;
  return ps_jni_throwf(env, PS_EUNSUPPORTED, "this PneumoScope library was built without training (libtorch)"), NULL;
#endif
}

JNIEXPORT jdoubleArray JNICALL Java_pneumoscope_Trainer_nativeEvaluate(JNIEnv *env, jclass cls, jbyteArray jmodel,
                                                                      jbyteArray jmanifest, jbyteArray jsplit,
                                                                      jbyteArray joutdir, jdouble threshold,
                                                                      jint device, jint limit, jobject listener) {
  (void)cls;
#ifdef PS_JNI_HAVE_TRAIN
  jdoubleArray out = NULL;
  ps_jni_progress prog;
  char *model = NULL, *manifest = NULL, *split = NULL, *outdir = NULL;
  if (ps_jni_progress_init(env, &prog, listener) != PS_OK) return NULL;
  if (!(model = ps_jni_cstr(env, jmodel, "model")) || !(manifest = ps_jni_cstr(env, jmanifest, "manifest")) ||
      !(split = ps_jni_cstr(env, jsplit, "split")) || !(outdir = ps_jni_cstr(env, joutdir, "outdir")))
    goto done;
  ps_eval_opts o;
  memset(&o, 0, sizeof o);
  o.model = model;
  o.manifest = manifest;
  o.split = split[0] ? split : NULL;
  o.outdir = outdir;
  if (threshold >= 0 && threshold <= 1) {
    o.threshold = threshold;
    o.use_threshold = 1;
  }
  o.device = (ps_train_device)device;
  if (limit > 0) o.limit = limit;
  ps_eval_result r;
  memset(&r, 0, sizeof r);
  int st = ps_evaluate_run(&o, listener ? ps_jni_progress_cb : NULL, &prog, &r);
  if ((*env)->ExceptionCheck(env)) goto done;
  if (st != PS_OK) {
    ps_jni_throw(env, st);
    goto done;
  }
  jdouble v[8] = {r.n, r.accuracy, r.auc, r.ap, r.f1_macro, r.threshold, r.sensitivity, r.specificity};
  out = ps_jni_doubles(env, v, 8);
done:
  free(model);
  free(manifest);
  free(split);
  free(outdir);
  ps_jni_progress_release(env, &prog);
  return out;
#else
  (void)jmodel; (void)jmanifest; (void)jsplit; (void)joutdir; (void)threshold; (void)device; (void)limit;
  (void)listener;
  return ps_jni_throwf(env, PS_EUNSUPPORTED, "this PneumoScope library was built without evaluation (libtorch)"), NULL;
#endif
}
