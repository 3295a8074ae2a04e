/* Native methods of pneumoscope.Model: load a .safetensors classifier, its metadata, classify one
 * film. The handle is a ps_model *. Calls on one model are serialised by the Java class. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pneumoscope_Model.h"
#include "ps_image.h"
#include "ps_jni.h"

#if __has_include("ps_model.h") && __has_include("ps_preprocess.h")
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
  jdoubleArray a = (*env)->NewDoubleArray(env, 4);
  if (a) (*env)->SetDoubleArrayRegion(env, a, 0, 4, v);
  return a;
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

/* Classification exactly as pneumoscope classify: the model's input size and mean/std through
 * ps_preprocess_tensor_ex, ps_model_predict (eval, no autograd), softmax probabilities. */
JNIEXPORT jfloatArray JNICALL Java_pneumoscope_Model_nativeClassify(JNIEnv *env, jclass cls, jlong handle,
                                                                  jlong film) {
  (void)cls;
#ifdef PS_JNI_HAVE_MODEL
  ps_model *m = PS_JNI_PTR(ps_model, handle);
  const ps_image *img = PS_JNI_PTR(const ps_image, film);
  if (img->is_raw)
    return ps_jni_throwf(env, PS_EINVAL, "classify: the film holds raw modality values; read it display-ready"), NULL;
  const ps_model_meta *meta = ps_model_meta_get(m);
  int size = meta->input_size > 0 ? meta->input_size : 224;
  int k = meta->num_classes;
  float probs[PS_MODEL_MAX_CLASSES];
  float *x = malloc((size_t)3 * size * size * sizeof(float));
  if (!x) return ps_jni_throwf(env, PS_ENOMEM, "classify: out of memory for a %dx%d input", size, size), NULL;
  int st = ps_preprocess_tensor_ex(img, size, meta->mean, meta->std, x);
  if (st == PS_OK) st = ps_model_predict(m, x, 1, size, size, NULL, probs);
  free(x);
  if (st != PS_OK) return ps_jni_throw(env, st), NULL;
  jfloatArray a = (*env)->NewFloatArray(env, k);
  if (a) (*env)->SetFloatArrayRegion(env, a, 0, k, probs);
  return a;
#else
  (void)handle;
  (void)film;
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
