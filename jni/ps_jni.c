/* Shared JNI helpers: throw helper, UTF-8 strings, log + progress bridges, JNI_OnLoad. */
#include "ps_jni.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static JavaVM *g_vm;
static jclass g_exception_class;   /* pneumoscope.PneumoScopeException */
static jmethodID g_exception_ctor;
static jclass g_string_class;
static jmethodID g_string_ctor;    /* String(byte[], String charsetName) */
static jstring g_utf8_name;
static jclass g_native_class;      /* pneumoscope.PsNative */
static jmethodID g_log_method;     /* static void logFromNative(int, byte[]) */

JavaVM *ps_jni_vm(void) { return g_vm; }

static jclass global_class(JNIEnv *env, const char *name) {
  jclass local = (*env)->FindClass(env, name);
  if (!local) return NULL;
  jclass global = (jclass)(*env)->NewGlobalRef(env, local);
  (*env)->DeleteLocalRef(env, local);
  return global;
}

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved) {
  (void)reserved;
  JNIEnv *env = NULL;
  if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_8) != JNI_OK) return JNI_ERR;
  g_vm = vm;
  g_exception_class = global_class(env, "pneumoscope/PneumoScopeException");
  if (!g_exception_class) return JNI_ERR;
  g_exception_ctor = (*env)->GetMethodID(env, g_exception_class, "<init>",
                                         "(ILjava/lang/String;Ljava/lang/String;Ljava/lang/String;)V");
  g_string_class = global_class(env, "java/lang/String");
  if (!g_exception_ctor || !g_string_class) return JNI_ERR;
  g_string_ctor = (*env)->GetMethodID(env, g_string_class, "<init>", "([BLjava/lang/String;)V");
  jstring name = (*env)->NewStringUTF(env, "UTF-8");
  if (!g_string_ctor || !name) return JNI_ERR;
  g_utf8_name = (jstring)(*env)->NewGlobalRef(env, name);
  g_native_class = global_class(env, "pneumoscope/PsNative");
  if (!g_native_class) return JNI_ERR;
  g_log_method = (*env)->GetStaticMethodID(env, g_native_class, "logFromNative", "(I[B)V");
  if (!g_log_method) return JNI_ERR;
  return JNI_VERSION_1_8;
}

const char *ps_jni_status_name(int status) {
  switch (status) {
    case PS_OK: return "PS_OK";
    case PS_EINVAL: return "PS_EINVAL";
    case PS_ENOMEM: return "PS_ENOMEM";
    case PS_EIO: return "PS_EIO";
    case PS_EFORMAT: return "PS_EFORMAT";
    case PS_EUNSUPPORTED: return "PS_EUNSUPPORTED";
    case PS_ELIMIT: return "PS_ELIMIT";
    case PS_ETORCH: return "PS_ETORCH";
    case PS_ECANCELLED: return "PS_ECANCELLED";
    case PS_ENOTFOUND: return "PS_ENOTFOUND";
    case PS_ESTATE: return "PS_ESTATE";
    default: return "PS_EUNKNOWN";
  }
}

static int too_long(JNIEnv *env, int64_t n, const char *what) {
  if (n >= 0 && n <= INT32_MAX) return 0;
  ps_jni_throwf(env, PS_ELIMIT, "%s: %lld elements, too many for a Java array", what, (long long)n);
  return 1;
}

jdoubleArray ps_jni_doubles(JNIEnv *env, const jdouble *v, int64_t n) {
  if (too_long(env, n, "numbers")) return NULL;
  jdoubleArray a = (*env)->NewDoubleArray(env, (jsize)n);
  if (a) (*env)->SetDoubleArrayRegion(env, a, 0, (jsize)n, v);
  return a;
}

jfloatArray ps_jni_floats(JNIEnv *env, const float *v, int64_t n, const char *what) {
  if (too_long(env, n, what)) return NULL;
  jfloatArray a = (*env)->NewFloatArray(env, (jsize)n);
  if (a) (*env)->SetFloatArrayRegion(env, a, 0, (jsize)n, v);
  return a;
}

jbyteArray ps_jni_byte_array(JNIEnv *env, const void *v, int64_t n, const char *what) {
  if (too_long(env, n, what)) return NULL;
  jbyteArray a = (*env)->NewByteArray(env, (jsize)n);
  if (a) (*env)->SetByteArrayRegion(env, a, 0, (jsize)n, (const jbyte *)v);
  return a;
}

jbyteArray ps_jni_bytes(JNIEnv *env, const char *s) { return ps_jni_byte_array(env, s ? s : "", s ? (int64_t)strlen(s) : 0, "text"); }

jstring ps_jni_string(JNIEnv *env, const char *utf8) {
  jbyteArray a = ps_jni_bytes(env, utf8);
  if (!a) return NULL;
  jstring s = (jstring)(*env)->NewObject(env, g_string_class, g_string_ctor, a, g_utf8_name);
  (*env)->DeleteLocalRef(env, a);
  return s;
}

char *ps_jni_cstr(JNIEnv *env, jbyteArray utf8z, const char *what) {
  if (!utf8z) {
    ps_jni_throwf(env, PS_EINVAL, "%s is null", what);
    return NULL;
  }
  jsize n = (*env)->GetArrayLength(env, utf8z);
  char *s = malloc((size_t)n + 1);
  if (!s) {
    ps_jni_throwf(env, PS_ENOMEM, "out of memory for %s", what);
    return NULL;
  }
  (*env)->GetByteArrayRegion(env, utf8z, 0, n, (jbyte *)s);
  s[n] = '\0';
  return s;
}

int ps_jni_throw(JNIEnv *env, int status) {
  if ((*env)->ExceptionCheck(env)) return status; /* keep the first exception */
  jstring name = (*env)->NewStringUTF(env, ps_jni_status_name(status));
  jstring text = name ? (*env)->NewStringUTF(env, ps_strerror(status)) : NULL;
  jstring detail = text ? ps_jni_string(env, ps_last_error()) : NULL;
  if (!detail) return status; /* OutOfMemoryError is already pending */
  jthrowable ex = (jthrowable)(*env)->NewObject(env, g_exception_class, g_exception_ctor, (jint)status,
                                                name, text, detail);
  if (ex) (*env)->Throw(env, ex);
  return status;
}

int ps_jni_throwf(JNIEnv *env, int status, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  ps_error(status, "%s", buf);
  return ps_jni_throw(env, status);
}

/* Get a JNIEnv for this thread, attaching it when the library calls from its own thread. */
static JNIEnv *env_for_thread(int *attached) {
  JNIEnv *env = NULL;
  *attached = 0;
  if (!g_vm) return NULL;
  jint r = (*g_vm)->GetEnv(g_vm, (void **)&env, JNI_VERSION_1_8);
  if (r == JNI_EDETACHED) {
    if ((*g_vm)->AttachCurrentThreadAsDaemon(g_vm, (void **)&env, NULL) != JNI_OK) return NULL;
    *attached = 1;
  } else if (r != JNI_OK) {
    return NULL;
  }
  return env;
}

/* A ps_log_fn: forwards to PsNative.logFromNative; safe with an exception pending. */
void ps_jni_log_cb(ps_log_level level, const char *msg, void *user) {
  (void)user;
  int attached = 0;
  JNIEnv *env = env_for_thread(&attached);
  if (!env) return;
  jthrowable pending = (*env)->ExceptionOccurred(env);
  if (pending) (*env)->ExceptionClear(env);
  jbyteArray a = ps_jni_bytes(env, msg);
  if (a) {
    (*env)->CallStaticVoidMethod(env, g_native_class, g_log_method, (jint)level, a);
    (*env)->DeleteLocalRef(env, a);
  }
  if ((*env)->ExceptionCheck(env)) (*env)->ExceptionClear(env);
  if (pending) {
    (*env)->Throw(env, pending);
    (*env)->DeleteLocalRef(env, pending);
  }
  if (attached) (*g_vm)->DetachCurrentThread(g_vm);
}

int ps_jni_progress_init(JNIEnv *env, ps_jni_progress *p, jobject listener) {
  memset(p, 0, sizeof *p);
  if (!listener) return PS_OK;
  jclass c = (*env)->GetObjectClass(env, listener);
  p->method = (*env)->GetMethodID(env, c, "progress", "(DLjava/lang/String;)Z");
  (*env)->DeleteLocalRef(env, c);
  if (!p->method) return PS_EINVAL; /* NoSuchMethodError pending */
  p->listener = (*env)->NewGlobalRef(env, listener);
  if (!p->listener) return PS_ENOMEM;
  return PS_OK;
}

void ps_jni_progress_release(JNIEnv *env, ps_jni_progress *p) {
  if (p->listener) (*env)->DeleteGlobalRef(env, p->listener);
  p->listener = NULL;
}

int ps_jni_progress_cb(double fraction, const char *what, void *user) {
  ps_jni_progress *p = (ps_jni_progress *)user;
  if (!p || !p->listener) return 0;
  int attached = 0;
  JNIEnv *env = env_for_thread(&attached);
  if (!env) return 0;
  if ((*env)->ExceptionCheck(env)) { /* the Java side already failed: stop the work */
    if (attached) (*g_vm)->DetachCurrentThread(g_vm);
    return 1;
  }
  int cancel = 0;
  jstring s = ps_jni_string(env, what);
  if (s) {
    cancel = (*env)->CallBooleanMethod(env, p->listener, p->method, fraction, s) ? 1 : 0;
    (*env)->DeleteLocalRef(env, s);
  }
  if ((*env)->ExceptionCheck(env)) {
    if (attached) (*env)->ExceptionClear(env); /* nobody on this thread would see it */
    cancel = 1;
  }
  if (attached) (*g_vm)->DetachCurrentThread(g_vm);
  return cancel;
}
