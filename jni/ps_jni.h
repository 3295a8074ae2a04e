/* ps_jni.h — helpers shared by the JNI files (one C file per Java class with native methods).
 *
 *   JNIEXPORT jlong JNICALL Java_pneumoscope_Film_nativeRead(JNIEnv *env, jclass c, ...) {
 *     ps_image *img = NULL;
 *     int st = ps_image_read(path, &opts, &img);
 *     if (st != PS_OK) return ps_jni_throw(env, st), 0;   // return at once after throwing
 *     return ps_jni_handle(img);
 *   }
 *
 * ps_jni_throw turns a status into pneumoscope.PneumoScopeException carrying the status name,
 * ps_strerror() and ps_last_error(). Strings cross as UTF-8 byte[] (never modified UTF-8).
 */
#ifndef PS_JNI_H
#define PS_JNI_H

#include <jni.h>
#include <stdint.h>

#include "ps_common.h"

#if defined(__GNUC__)
#define PS_JNI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PS_JNI_PRINTF(a, b)
#endif

/* Throw PneumoScopeException(status, name, strerror, ps_last_error()). Returns status. */
int ps_jni_throw(JNIEnv *env, int status);
/* Set the thread's error detail from fmt, then throw as above (for checks done in JNI). */
int ps_jni_throwf(JNIEnv *env, int status, const char *fmt, ...) PS_JNI_PRINTF(3, 4);
/* "PS_EFORMAT" for PS_EFORMAT ... */
const char *ps_jni_status_name(int status);

/* java.lang.String from UTF-8 (invalid bytes replaced); NULL -> "". NULL on OOM (exception set). */
jstring ps_jni_string(JNIEnv *env, const char *utf8);
/* byte[] holding the UTF-8 bytes of s (no NUL); NULL on OOM (exception set). */
jbyteArray ps_jni_bytes(JNIEnv *env, const char *s);
/* Java arrays copied from C buffers of n elements; NULL with an exception pending on OOM, or
 * (PS_ELIMIT, naming what) when n does not fit a Java array. */
jdoubleArray ps_jni_doubles(JNIEnv *env, const jdouble *v, int64_t n);
jfloatArray ps_jni_floats(JNIEnv *env, const float *v, int64_t n, const char *what);
jbyteArray ps_jni_byte_array(JNIEnv *env, const void *v, int64_t n, const char *what);
/* Copy a NUL-terminated byte[] (from PsNative.cstr) into a malloc'd C string; throws + NULL on error. */
char *ps_jni_cstr(JNIEnv *env, jbyteArray utf8z, const char *what);

static inline jlong ps_jni_handle(const void *p) { return (jlong)(intptr_t)p; }
#define PS_JNI_PTR(type, h) ((type *)(intptr_t)(h))

/* The JavaVM (set in JNI_OnLoad) for callbacks from library threads. */
JavaVM *ps_jni_vm(void);

/* Progress bridge: calls `boolean progress(double fraction, String what)` on obj (returns true to
 * cancel) from whichever thread the library reports on. */
typedef struct ps_jni_progress {
  jobject listener;    /* global ref or NULL */
  jmethodID method;
} ps_jni_progress;
int ps_jni_progress_init(JNIEnv *env, ps_jni_progress *p, jobject listener);
void ps_jni_progress_release(JNIEnv *env, ps_jni_progress *p);
int ps_jni_progress_cb(double fraction, const char *what, void *user); /* a ps_progress_fn */

#endif
