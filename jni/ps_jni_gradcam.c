/* Native methods of pneumoscope.GradCam: ps_gradcam_compute on a model + film, the map, the lung
 * mask and the numbers. The handle is a ps_gradcam_result *. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "pneumoscope_GradCam.h"
#include "ps_image.h"
#include "ps_jni.h"

#if __has_include("ps_gradcam.h")
#include "ps_gradcam.h"
#define PS_JNI_HAVE_GRADCAM 1
#endif

JNIEXPORT jlong JNICALL Java_pneumoscope_GradCam_nativeCompute(JNIEnv *env, jclass cls, jlong model, jlong film,
                                                             jint layer, jint class_index, jint method) {
  (void)cls;
#ifdef PS_JNI_HAVE_GRADCAM
  const ps_image *img = PS_JNI_PTR(const ps_image, film);
  if (img->is_raw)
    return ps_jni_throwf(env, PS_EINVAL, "Grad-CAM: the film holds raw modality values; read it display-ready"), 0;
  ps_gradcam_opts o = ps_gradcam_opts_default();
  o.layer = layer;
  if (class_index >= 0) {
    o.use_class = 1;
    o.class_index = class_index;
  }
  o.method = (ps_cam_method)method;
  ps_gradcam_result *r = NULL;
  int st = ps_gradcam_compute(PS_JNI_PTR(ps_model, model), img, &o, &r);
  if (st != PS_OK) {
    ps_gradcam_result_free(r);
    return ps_jni_throw(env, st), 0;
  }
  return ps_jni_handle(r);
#else
  (void)model; (void)film; (void)layer; (void)class_index; (void)method;
  return ps_jni_throwf(env, PS_EUNSUPPORTED, "this PneumoScope library was built without Grad-CAM (libtorch)"), 0;
#endif
}

#ifdef PS_JNI_HAVE_GRADCAM
#define RESULT(h) PS_JNI_PTR(ps_gradcam_result, h)
#endif

JNIEXPORT jdoubleArray JNICALL Java_pneumoscope_GradCam_nativeNumbers(JNIEnv *env, jclass cls, jlong h) {
  (void)cls;
  jdouble v[15] = {0};
#ifdef PS_JNI_HAVE_GRADCAM
  const ps_gradcam_result *r = RESULT(h);
  v[0] = r->width;
  v[1] = r->height;
  v[2] = r->num_classes;
  v[3] = r->predicted;
  v[4] = r->target_class;
  v[5] = r->layer;
  v[6] = r->method;
  v[7] = r->lung_focus;
  v[8] = r->lung.lungs;
  v[9] = r->raw_max;
  v[10] = r->lung.mirrored;
  for (int i = 0; i < 4; i++) v[11 + i] = r->roi[i]; /* the box the model saw (fractions) */
#else
  (void)h;
#endif
  return ps_jni_doubles(env, v, 15);
}

JNIEXPORT jfloatArray JNICALL Java_pneumoscope_GradCam_nativeProbs(JNIEnv *env, jclass cls, jlong h) {
  (void)cls;
#ifdef PS_JNI_HAVE_GRADCAM
  const ps_gradcam_result *r = RESULT(h);
  return ps_jni_floats(env, r->probs, r->num_classes, "probabilities");
#else
  (void)h;
  return (*env)->NewFloatArray(env, 0);
#endif
}

JNIEXPORT jfloatArray JNICALL Java_pneumoscope_GradCam_nativeCam(JNIEnv *env, jclass cls, jlong h) {
  (void)cls;
#ifdef PS_JNI_HAVE_GRADCAM
  const ps_gradcam_result *r = RESULT(h);
  return ps_jni_floats(env, r->cam, (int64_t)r->width * r->height, "Grad-CAM map");
#else
  (void)h;
  return ps_jni_throwf(env, PS_EUNSUPPORTED, "built without Grad-CAM"), NULL;
#endif
}

JNIEXPORT jbyteArray JNICALL Java_pneumoscope_GradCam_nativeLungMask(JNIEnv *env, jclass cls, jlong h) {
  (void)cls;
#ifdef PS_JNI_HAVE_GRADCAM
  const ps_gradcam_result *r = RESULT(h);
  if (!r->lung_mask) return NULL;
  return ps_jni_byte_array(env, r->lung_mask, (int64_t)r->width * r->height, "lung mask");
#else
  (void)h;
  return ps_jni_throwf(env, PS_EUNSUPPORTED, "built without Grad-CAM"), NULL;
#endif
}

JNIEXPORT void JNICALL Java_pneumoscope_GradCam_nativeFree(JNIEnv *env, jclass cls, jlong h) {
  (void)env;
  (void)cls;
#ifdef PS_JNI_HAVE_GRADCAM
  ps_gradcam_result_free(RESULT(h));
#else
  (void)h;
#endif
}
