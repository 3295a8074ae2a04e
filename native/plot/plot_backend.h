/* plot_backend.h — internal: the table libpneumoscope_plot.so (plot.c + cairo) hands to the loader
 * in libpneumoscope (plot_loader.c). Plots are the only part that needs cairo (and its 17
 * libraries: X11, fontconfig, freetype ...), so they live in a module loaded when the first plot is
 * drawn: classifying never maps cairo, and the Fiji archive can leave it out. */
#ifndef PS_PLOT_BACKEND_H
#define PS_PLOT_BACKEND_H

#include <stdint.h>

#include "ps_plot.h"

#define PS_PLOT_BACKEND_FILE "libpneumoscope_plot.so"
#define PS_PLOT_BACKEND_SYMBOL "ps_plot_backend_v1"

typedef struct ps_plot_backend {
  uint32_t size; /* sizeof(ps_plot_backend) in the module: checked by the loader */
  int (*confusion)(const int64_t *cm, int k, const char *const *class_names, const ps_plot_opts *opts,
                   const char *path);
  int (*roc)(const ps_plot_curve *curves, int n_curves, const ps_plot_opts *opts, const char *path);
  int (*pr)(const ps_plot_curve *curves, int n_curves, double prevalence, const ps_plot_opts *opts, const char *path);
  int (*reliability)(const int64_t *count, const double *confidence, const double *accuracy, int bins, double ece,
                     const ps_plot_opts *opts, const char *path);
  int (*training)(const ps_plot_history *h, const ps_plot_opts *opts, const char *path);
} ps_plot_backend;

PS_API const ps_plot_backend *ps_plot_backend_v1(void);

#endif
