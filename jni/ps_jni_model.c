/* Native methods of pneumoscope.Model: resolve a model name, load a .safetensors classifier, its
 * metadata, classify one film or many (with the out-of-distribution verdict of ps_infer_result).
 * The handle is a ps_model *. Calls on one model are serialised by the Java class. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pneumoscope_Model.h"
#include "ps_image.h"
#include "ps_jni.h"

#if __has_include("ps_model.h") && __has_include("ps_preprocess.h") && defined(PS_HAVE_INFER)
#include "ps_infer.h"
#include "ps_model.h"
#include "ps_preprocess.h"
#define PS_JNI_HAVE_MODEL 1
#endif

#ifndef PS_JNI_HAVE_MODEL
#define NO_MODEL(env) ps_jni_throwf(env, PS_EUNSUPPORTED, "this PneumoScope library was built without the model (libtorch)")
#endif

JNIEXPORT jlong JNICALL Java_pneumoscope_Model_nativeLoad(JNIEnv *env, jclass cls, jbyteArray jpath, jint device) {
  (void)cls;
  char *path = ps_jni_cstr(env, jpath, "model path");
  if (!path) return 0;
#ifdef PS_JNI_HAVE_MODEL
  ps_model *m = NULL;
  int st = ps_model_load(path, (ps_device)device, &m);
  free(path);
  if (st != PS_OK) {
    ps_model_free(m);
    return ps_jni_throw(env, st), 0;
  }
  return ps_jni_handle(m);
#else
  (void)device;
  free(path);
  return NO_MODEL(env), 0;
#endif
}

JNIEXPORT jbyteArray JNICALL Java_pneumoscope_Model_nativeDefaultPath(JNIEnv *env, jclass cls) {
  (void)cls;
#ifdef PS_JNI_HAVE_MODEL
  char buf[4096];
  int st = ps_model_default_path(buf, sizeof buf);
  if (st != PS_OK) return ps_jni_throw(env, st), NULL;
  return ps_jni_bytes(env, buf);
#else
  return NO_MODEL(env), NULL;
#endif
}

/* ps_model_resolve: "binary" / "3class" -> the bundled file, "" -> the default model, a path as given. */
JNIEXPORT jbyteArray JNICALL Java_pneumoscope_Model_nativeResolve(JNIEnv *env, jclass cls, jbyteArray jname) {
  (void)cls;
  char *name = ps_jni_cstr(env, jname, "model name");
  if (!name) return NULL;
#ifdef PS_JNI_HAVE_MODEL
  char buf[4096];
  int st = ps_model_resolve(name, buf, sizeof buf);
  free(name);
  if (st != PS_OK) return ps_jni_throw(env, st), NULL;
  return ps_jni_bytes(env, buf);
#else
  free(name);
  return NO_MODEL(env), NULL;
#endif
}

JNIEXPORT jobjectArray JNICALL Java_pneumoscope_Model_nativeClasses(JNIEnv *env, jclass cls, jlong handle) {
  (void)cls;
  jclass sc = (*env)->FindClass(env, "java/lang/String");
  if (!sc) return NULL;
#ifdef PS_JNI_HAVE_MODEL
  const ps_model_meta *meta = ps_model_meta_get(PS_JNI_PTR(ps_model, handle));
  int k = meta->num_classes;
  jobjectArray a = (*env)->NewObjectArray(env, k, sc, NULL);
  if (!a) return NULL;
  for (int i = 0; i < k; i++) {
    char name[PS_MODEL_CLASS_NAME_MAX + 1];
    snprintf(name, sizeof name, "%.*s", PS_MODEL_CLASS_NAME_MAX, meta->classes[i]);
    jstring s = ps_jni_string(env, name);
    if (!s) return NULL;
    (*env)->SetObjectArrayElement(env, a, i, s);
    (*env)->DeleteLocalRef(env, s);
  }
  return a;
#else
  (void)handle;
  return (*env)->NewObjectArray(env, 0, sc, NULL);
#endif
}

JNIEXPORT jdoubleArray JNICALL Java_pneumoscope_Model_nativeMetaNumbers(JNIEnv *env, jclass cls, jlong handle) {
  (void)cls;
  jdouble v[4] = {0, 0, 0, 0};
#ifdef PS_JNI_HAVE_MODEL
  const ps_model_meta *meta = ps_model_meta_get(PS_JNI_PTR(ps_model, handle));
  v[0] = meta->task;
  v[1] = meta->num_classes;
  v[2] = meta->input_size;
  v[3] = meta->threshold;
#else
  (void)handle;
#endif
  return ps_jni_doubles(env, v, 4);
}

JNIEXPORT jbyteArray JNICALL Java_pneumoscope_Model_nativeProvenance(JNIEnv *env, jclass cls, jlong handle) {
  (void)cls;
#ifdef PS_JNI_HAVE_MODEL
  const ps_model_meta *meta = ps_model_meta_get(PS_JNI_PTR(ps_model, handle));
  char buf[PS_MODEL_PROVENANCE_MAX + 1];
  snprintf(buf, sizeof buf, "%.*s", PS_MODEL_PROVENANCE_MAX, meta->provenance);
  return ps_jni_bytes(env, buf);
#else
  (void)handle;
  return ps_jni_bytes(env, "");
#endif
}

/* Classification exactly as pneumoscope classify: ps_infer_image_ood, the same library call. Out:
 * ood (2) = {in_distribution 1/0/-1, ood_score (NaN when unknown)}, reason (1) = ood_reason. */
JNIEXPORT jfloatArray JNICALL Java_pneumoscope_Model_nativeClassify(JNIEnv *env, jclass cls, jlong handle,
                                                                  jlong film, jdoubleArray jood, jobjectArray jreason) {
  (void)cls;
#ifdef PS_JNI_HAVE_MODEL
  if (!jood || (*env)->GetArrayLength(env, jood) != 2 || !jreason || (*env)->GetArrayLength(env, jreason) != 1)
    return ps_jni_throwf(env, PS_EINVAL, "classify: need double[2] and String[1] for the OOD verdict"), NULL;
  ps_model *m = PS_JNI_PTR(ps_model, handle);
  const ps_image *img = PS_JNI_PTR(const ps_image, film);
  int k = ps_model_num_classes(m);
  float probs[PS_MODEL_MAX_CLASSES];
  int in_dist = -1;
  float score = NAN;
  char reason[512] = "";
  int st = ps_infer_image_ood(m, img, probs, NULL, NULL, NULL, &in_dist, &score, reason, sizeof reason);
  if (st != PS_OK) return ps_jni_throw(env, st), NULL;
  jdouble ood[2] = {in_dist, score};
  (*env)->SetDoubleArrayRegion(env, jood, 0, 2, ood);
  jstring s = ps_jni_string(env, reason);
  if (!s) return NULL;
  (*env)->SetObjectArrayElement(env, jreason, 0, s);
  (*env)->DeleteLocalRef(env, s);
  return ps_jni_floats(env, probs, k, "probabilities");
#else
  (void)handle; (void)film; (void)jood; (void)jreason;
  return NO_MODEL(env), NULL;
#endif
}

JNIEXPORT jint JNICALL Java_pneumoscope_Model_nativeLabel(JNIEnv *env, jclass cls, jlong handle, jfloatArray jprobs) {
  (void)cls;
#ifdef PS_JNI_HAVE_MODEL
  ps_model *m = PS_JNI_PTR(ps_model, handle);
  int k = ps_model_num_classes(m);
  if (!jprobs || (*env)->GetArrayLength(env, jprobs) != k)
    return ps_jni_throwf(env, PS_EINVAL, "label: need %d probabilities", k), 0;
  float probs[PS_MODEL_MAX_CLASSES];
  (*env)->GetFloatArrayRegion(env, jprobs, 0, k, probs);
  int label = 0;
  int st = ps_model_label(m, probs, &label);
  if (st != PS_OK) return ps_jni_throw(env, st), 0;
  return label;
#else
  (void)handle;
  (void)jprobs;
  return NO_MODEL(env), 0;
#endif
}

JNIEXPORT void JNICALL Java_pneumoscope_Model_nativeFree(JNIEnv *env, jclass cls, jlong handle) {
  (void)env;
  (void)cls;
#ifdef PS_JNI_HAVE_MODEL
  ps_model_free(PS_JNI_PTR(ps_model, handle));
#else
  (void)handle;
#endif
}

#ifdef PS_JNI_HAVE_MODEL
typedef struct infer_ctx {
  JNIEnv *env;
  jobject listener;
  jmethodID method;
  jclass string_class;
} infer_ctx;

/* ps_infer_fn: one Java callback per film, on the thread that called ps_infer_run. */
static int on_infer_result(const ps_infer_result *r, void *user) {
  infer_ctx *c = (infer_ctx *)user;
  JNIEnv *env = c->env;
  if ((*env)->ExceptionCheck(env)) return 1;
  int cancel = 1;
  jstring file = ps_jni_string(env, r->file);
  jstring error = file ? ps_jni_string(env, r->error ? r->error : "") : NULL;
  jstring reason = error ? ps_jni_string(env, r->ood_reason ? r->ood_reason : "") : NULL;
  jfloatArray probs = reason ? (*env)->NewFloatArray(env, r->num_classes) : NULL;
  jobjectArray meta = probs ? (*env)->NewObjectArray(env, 5, c->string_class, NULL) : NULL;
  if (meta) {
    (*env)->SetFloatArrayRegion(env, probs, 0, r->num_classes, r->probs);
    const ps_film_meta *m = r->meta;
    const char *v[5] = {m ? m->patient_id : "", m ? m->study_uid : "", m ? m->sop_uid : "",
                        m ? m->view_position : "", m ? ps_format_name(m->format) : ""};
    int ok = 1;
    for (int i = 0; i < 5 && ok; i++) {
      char buf[72];
      snprintf(buf, sizeof buf, "%s", v[i]);
      jstring s = ps_jni_string(env, buf);
      if (!s) ok = 0;
      else {
        (*env)->SetObjectArrayElement(env, meta, i, s);
        (*env)->DeleteLocalRef(env, s);
      }
    }
    if (ok)
      cancel = (*env)->CallBooleanMethod(env, c->listener, c->method, (jint)r->index, file, (jint)r->status, error,
                                         (jint)r->label, probs, meta, (jint)r->in_distribution, (jfloat)r->ood_score,
                                         reason) ? 1 : 0;
  }
  if (file) (*env)->DeleteLocalRef(env, file);
  if (error) (*env)->DeleteLocalRef(env, error);
  if (reason) (*env)->DeleteLocalRef(env, reason);
  if (probs) (*env)->DeleteLocalRef(env, probs);
  if (meta) (*env)->DeleteLocalRef(env, meta);
  if ((*env)->ExceptionCheck(env)) cancel = 1;
  return cancel;
}
#endif

JNIEXPORT jint JNICALL Java_pneumoscope_Model_nativeInfer(JNIEnv *env, jclass cls, jlong handle, jobjectArray jpaths,
                                                        jint batch, jint threads, jobject listener) {
  (void)cls;
#ifdef PS_JNI_HAVE_MODEL
  jsize n = (*env)->GetArrayLength(env, jpaths);
  char **paths = calloc((size_t)n + 1, sizeof *paths);
  if (!paths) return ps_jni_throwf(env, PS_ENOMEM, "classify: out of memory"), 0;
  int nfailed = 0, st = PS_OK;
  for (jsize i = 0; i < n && st == PS_OK; i++) {
    jbyteArray b = (jbyteArray)(*env)->GetObjectArrayElement(env, jpaths, i);
    paths[i] = ps_jni_cstr(env, b, "film path");
    (*env)->DeleteLocalRef(env, b);
    if (!paths[i]) st = PS_EINVAL; /* exception already thrown */
  }
  if (st == PS_OK) {
    infer_ctx c = {env, listener, NULL, NULL};
    jclass lc = (*env)->GetObjectClass(env, listener);
    c.method = (*env)->GetMethodID(env, lc, "result",
                                   "(ILjava/lang/String;ILjava/lang/String;I[F[Ljava/lang/String;IFLjava/lang/String;)Z");
    (*env)->DeleteLocalRef(env, lc);
    c.string_class = c.method ? (*env)->FindClass(env, "java/lang/String") : NULL;
    if (c.string_class) {
      ps_infer_opts o;
      memset(&o, 0, sizeof o);
      o.batch = batch > 0 ? batch : 0;
      o.threads = threads > 0 ? threads : 0;
      st = ps_infer_run(PS_JNI_PTR(ps_model, handle), (const char *const *)paths, (int)n, &o, on_infer_result, &c,
                        &nfailed);
      if (!(*env)->ExceptionCheck(env) && st != PS_OK) ps_jni_throw(env, st);
    }
  }
  for (jsize i = 0; i < n; i++) free(paths[i]);
  free(paths);
  return nfailed;
#else
  (void)handle; (void)jpaths; (void)batch; (void)threads; (void)listener;
  return NO_MODEL(env), 0;
#endif
}

JNIEXPORT jboolean JNICALL Java_pneumoscope_Model_nativeSkipName(JNIEnv *env, jclass cls, jbyteArray jpath) {
  (void)cls;
#ifdef PS_JNI_HAVE_MODEL
  char *path = ps_jni_cstr(env, jpath, "path");
  if (!path) return JNI_FALSE;
  int skip = ps_infer_skip_name(path);
  free(path);
  return skip ? JNI_TRUE : JNI_FALSE;
#else
  (void)jpath;
  return NO_MODEL(env), JNI_FALSE;
#endif
}
