/* Native methods of pneumoscope.PsNative: version, features, status text, log routing, where
 * libtorch is (ps_torch_set_backend). */
#include "pneumoscope_PsNative.h"
#include "ps_jni.h"

#if __has_include("ps_gradcam.h")
#include "ps_gradcam.h"
#define PS_JNI_HAVE_COLORMAP 1
#endif
#if __has_include("ps_torch.h")
#include <stdlib.h>

#include "ps_torch.h"
#define PS_JNI_HAVE_TORCH 1
#endif

void ps_jni_log_cb(ps_log_level level, const char *msg, void *user);

JNIEXPORT void JNICALL Java_pneumoscope_PsNative_nativeInit(JNIEnv *env, jclass cls) {
  (void)env;
  (void)cls;
  ps_log_set(ps_jni_log_cb, NULL);
}

JNIEXPORT jbyteArray JNICALL Java_pneumoscope_PsNative_nativeVersion(JNIEnv *env, jclass cls) {
  (void)cls;
  return ps_jni_bytes(env, ps_version());
}

JNIEXPORT jbyteArray JNICALL Java_pneumoscope_PsNative_nativeFeatures(JNIEnv *env, jclass cls) {
  (void)cls;
  return ps_jni_bytes(env, ps_build_features());
}

JNIEXPORT jbyteArray JNICALL Java_pneumoscope_PsNative_nativeStrerror(JNIEnv *env, jclass cls, jint status) {
  (void)cls;
  return ps_jni_bytes(env, ps_strerror(status));
}

JNIEXPORT jint JNICALL Java_pneumoscope_PsNative_nativeDefaultThreads(JNIEnv *env, jclass cls) {
  (void)env;
  (void)cls;
  return ps_default_threads();
}

/* The viridis colour map of the Grad-CAM renderers as an ImageJ LUT: byte[768] = reds, greens, blues. */
JNIEXPORT jbyteArray JNICALL Java_pneumoscope_PsNative_nativeViridis(JNIEnv *env, jclass cls) {
  (void)cls;
  jbyte lut[768];
  for (int i = 0; i < 256; i++) {
    uint8_t rgb[3] = {(uint8_t)i, (uint8_t)i, (uint8_t)i};
#ifdef PS_JNI_HAVE_COLORMAP
    ps_colormap_viridis((float)i / 255.0f, rgb);
#endif
    lut[i] = (jbyte)rgb[0];
    lut[256 + i] = (jbyte)rgb[1];
    lut[512 + i] = (jbyte)rgb[2];
  }
  jbyteArray a = (*env)->NewByteArray(env, 768);
  if (a) (*env)->SetByteArrayRegion(env, a, 0, 768, lut);
  return a;
}

/* The libtorch location for the next load ("" = the usual search): ps_torch_set_backend. */
JNIEXPORT void JNICALL Java_pneumoscope_PsNative_nativeSetTorchBackend(JNIEnv *env, jclass cls, jbyteArray jlocation) {
  (void)cls;
#ifdef PS_JNI_HAVE_TORCH
  char *location = ps_jni_cstr(env, jlocation, "libtorch location");
  if (!location) return;
  int st = ps_torch_set_backend(location);
  free(location);
  if (st != PS_OK) ps_jni_throw(env, st);
#else
  (void)jlocation;
  ps_jni_throwf(env, PS_EUNSUPPORTED, "this PneumoScope library was built without libtorch");
#endif
}
