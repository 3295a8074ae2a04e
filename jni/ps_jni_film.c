/* Native methods of pneumoscope.Film: read a film (ps_image_read), build one from ImageJ pixels,
 * metadata and pixel copies. The handle is a ps_image *. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pneumoscope_Film.h"
#include "ps_image.h"
#include "ps_jni.h"

#if __has_include("ps_image_io.h")
#include "ps_image_io.h"
#define PS_JNI_HAVE_IMAGE_IO 1
#endif

JNIEXPORT jlong JNICALL Java_pneumoscope_Film_nativeRead(JNIEnv *env, jclass cls, jbyteArray jpath, jboolean raw,
                                                       jlong max_pixels, jlong max_bytes) {
  (void)cls;
  char *path = ps_jni_cstr(env, jpath, "film path");
  if (!path) return 0;
  ps_read_opts opts = ps_read_opts_default();
  opts.raw = raw ? 1 : 0;
  if (max_pixels > 0) opts.max_pixels = max_pixels;
  if (max_bytes > 0) opts.max_bytes = max_bytes;
  ps_image *img = NULL;
#ifdef PS_JNI_HAVE_IMAGE_IO
  int st = ps_image_read(path, &opts, &img);
#else
  int st = ps_error(PS_EUNSUPPORTED, "film reading (native/image) is not part of this build; cannot read %s", path);
#endif
  free(path);
  if (st != PS_OK) {
    ps_image_free(img);
    ps_jni_throw(env, st);
    return 0;
  }
  return ps_jni_handle(img);
}

JNIEXPORT jlong JNICALL Java_pneumoscope_Film_nativeFromPixels(JNIEnv *env, jclass cls, jobject pixels, jint type,
                                                             jint width, jint height, jdouble min, jdouble max,
                                                             jboolean invert) {
  (void)cls;
  if (!pixels) return ps_jni_throwf(env, PS_EINVAL, "film from pixels: pixel array is null"), 0;
  if (width <= 0 || height <= 0)
    return ps_jni_throwf(env, PS_EINVAL, "film from pixels: invalid size %dx%d", (int)width, (int)height), 0;
  jsize len = (*env)->GetArrayLength(env, (jarray)pixels);
  if ((int64_t)width * height != (int64_t)len)
    return ps_jni_throwf(env, PS_EINVAL, "film from pixels: %dx%d does not match %d pixels", (int)width,
                         (int)height, (int)len), 0;
  if (!(max > min)) max = min + 1.0; /* flat display range: everything maps to 0 */
  ps_image *img = NULL;
  int st = ps_image_create(width, height, &img);
  if (st != PS_OK) return ps_jni_throw(env, st), 0;
  /* The critical section only converts: no JNI or library call (which could log) inside. */
  void *src = (*env)->GetPrimitiveArrayCritical(env, (jarray)pixels, NULL);
  if (!src) {
    ps_image_free(img);
    return ps_jni_throwf(env, PS_ENOMEM, "film from pixels: cannot access the pixel array"), 0;
  }
  const double scale = 1.0 / (max - min);
  float *dst = img->data;
  for (jsize i = 0; i < len; i++) {
    double v;
    if (type == 0) v = ((const uint8_t *)src)[i];
    else if (type == 1) v = ((const uint16_t *)src)[i];
    else v = ((const float *)src)[i];
    v = (v - min) * scale;
    if (!(v > 0.0)) v = 0.0; /* also NaN */
    if (v > 1.0) v = 1.0;
    dst[i] = (float)(invert ? 1.0 - v : v);
  }
  (*env)->ReleasePrimitiveArrayCritical(env, (jarray)pixels, src, JNI_ABORT);
  img->meta.format = PS_FORMAT_UNKNOWN;
  img->meta.rows = height;
  img->meta.columns = width;
  img->meta.components = 1;
  img->meta.bits_stored = type == 0 ? 8 : type == 1 ? 16 : 32;
  return ps_jni_handle(img);
}

JNIEXPORT jobjectArray JNICALL Java_pneumoscope_Film_nativeMetaStrings(JNIEnv *env, jclass cls, jlong handle) {
  (void)cls;
  const ps_image *img = PS_JNI_PTR(const ps_image, handle);
  const ps_film_meta *m = &img->meta;
  const char *v[10] = {ps_format_name(m->format), m->patient_id, m->study_uid, m->series_uid, m->sop_uid,
                       m->modality, m->view_position, m->body_part, m->photometric, m->transfer_syntax};
  jclass sc = (*env)->FindClass(env, "java/lang/String");
  if (!sc) return NULL;
  jobjectArray a = (*env)->NewObjectArray(env, 10, sc, NULL);
  if (!a) return NULL;
  for (int i = 0; i < 10; i++) {
    char buf[72]; /* fields are NUL-terminated by contract; bound them anyway */
    snprintf(buf, sizeof buf, "%s", v[i] ? v[i] : "");
    jstring s = ps_jni_string(env, buf);
    if (!s) return NULL;
    (*env)->SetObjectArrayElement(env, a, i, s);
    (*env)->DeleteLocalRef(env, s);
  }
  return a;
}

JNIEXPORT jdoubleArray JNICALL Java_pneumoscope_Film_nativeMetaNumbers(JNIEnv *env, jclass cls, jlong handle) {
  (void)cls;
  const ps_image *img = PS_JNI_PTR(const ps_image, handle);
  const ps_film_meta *m = &img->meta;
  const jdouble v[15] = {m->rows, m->columns, m->components, m->bits_stored, m->pixel_spacing[0],
                         m->pixel_spacing[1], m->pixel_spacing_is_imager, m->window_center, m->window_width,
                         m->rescale_slope, m->rescale_intercept, m->frames, img->is_raw, img->width,
                         img->height};
  return ps_jni_doubles(env, v, 15);
}

JNIEXPORT jfloatArray JNICALL Java_pneumoscope_Film_nativePixels(JNIEnv *env, jclass cls, jlong handle) {
  (void)cls;
  const ps_image *img = PS_JNI_PTR(const ps_image, handle);
  return ps_jni_floats(env, img->data, (int64_t)img->width * img->height, "film pixels");
}

JNIEXPORT void JNICALL Java_pneumoscope_Film_nativeFree(JNIEnv *env, jclass cls, jlong handle) {
  (void)env;
  (void)cls;
  ps_image_free(PS_JNI_PTR(ps_image, handle));
}
