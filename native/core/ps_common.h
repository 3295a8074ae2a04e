/* ps_common.h — status codes, error text, logging and progress for every PneumoScope module.
 *
 *   ps_image *img = NULL;
 *   int st = ps_image_read("film.dcm", NULL, &img);
 *   if (st != PS_OK) fprintf(stderr, "%s: %s\n", ps_strerror(st), ps_last_error());
 *   ps_image_free(img);
 *
 * Every fallible function returns an int status (PS_OK = 0, negative on failure) and puts its
 * results through out-pointers. The detail of the last failure on this thread is in
 * ps_last_error(). The library never prints, exits or aborts: log lines go to ps_log_set().
 */
#ifndef PS_COMMON_H
#define PS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define PS_API __declspec(dllexport)
#else
#define PS_API __attribute__((visibility("default")))
#endif

#if defined(__GNUC__)
#define PS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PS_PRINTF(a, b)
#endif

enum {
  PS_OK = 0,
  PS_EINVAL = -1,        /* bad argument or option */
  PS_ENOMEM = -2,        /* allocation failed */
  PS_EIO = -3,           /* file could not be opened, read or written */
  PS_EFORMAT = -4,       /* file is malformed, truncated or lies about itself */
  PS_EUNSUPPORTED = -5,  /* valid but not supported (transfer syntax, bit depth, ...) */
  PS_ELIMIT = -6,        /* exceeds a limit from the options (pixels, bytes) */
  PS_ETORCH = -7,        /* libtorch raised an error */
  PS_ECANCELLED = -8,    /* a progress callback asked to stop */
  PS_ENOTFOUND = -9,     /* a named thing (file, tensor, class) does not exist */
  PS_ESTATE = -10        /* call not valid in the object's current state */
};

/* Short fixed text for a status ("malformed file"). Never NULL. */
PS_API const char *ps_strerror(int status);
/* Detail of the last failure on this thread ("dicom: ... in film.dcm"); "" when none. */
PS_API const char *ps_last_error(void);
PS_API void ps_clear_error(void);
/* Set this thread's error detail and return status (for use in `return ps_error(...)`). */
PS_API int ps_error(int status, const char *fmt, ...) PS_PRINTF(2, 3);

typedef enum { PS_LOG_DEBUG = 0, PS_LOG_INFO = 1, PS_LOG_WARN = 2, PS_LOG_ERROR = 3 } ps_log_level;
typedef void (*ps_log_fn)(ps_log_level level, const char *msg, void *user);
/* Route library log lines (CLI: stderr, JNI: IJ.log). NULL silences. Process-wide. */
PS_API void ps_log_set(ps_log_fn fn, void *user);
PS_API void ps_log(ps_log_level level, const char *fmt, ...) PS_PRINTF(2, 3);

/* The two screening tasks: NORMAL/PNEUMONIA, and NORMAL/BACTERIA/VIRUS. Shared by dataset,
 * model, training and evaluation, so it lives here once. */
typedef enum { PS_TASK_BINARY = 0, PS_TASK_MULTICLASS = 1 } ps_task;

/* What part of the film a model sees: the whole film, the padded lung bounding box of
 * ps_lung_roi (ps_lung.h), or that box with everything outside the dilated lung fields set to a
 * neutral gray (PS_ROI_LUNGMASK, ps_lung_mask_input). Stored in the model's metadata; shared by
 * model, inference, training and Grad-CAM, so it lives here once. */
typedef enum { PS_ROI_FILM = 0, PS_ROI_LUNGS = 1, PS_ROI_LUNGMASK = 2 } ps_roi;

/* Long work reports progress in [0, 1]; return non-zero to cancel (PS_ECANCELLED). */
typedef int (*ps_progress_fn)(double fraction, const char *what, void *user);

/* Number of worker threads to use when the caller says 0: the CPUs this process may use. */
PS_API int ps_default_threads(void);
/* Make the folder path and its missing parents (mkdir -p), for every command's output folder.
 * Errors name who ("evaluate: cannot create runs/a: Permission denied"); a file in the way is one. */
PS_API int ps_mkdir_p(const char *who, const char *path);

PS_API const char *ps_version(void);
/* Optional parts compiled in, e.g. "dicom torch cuda java". */
PS_API const char *ps_build_features(void);

#ifdef __cplusplus
}
#endif
#endif
