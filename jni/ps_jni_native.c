/* Native methods of pneumoscope.PsNative: version, features, status text, log routing. */
#include "pneumoscope_PsNative.h"
#include "ps_jni.h"

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
