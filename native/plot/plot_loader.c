/* plot_loader.c — ps_plot.h inside libpneumoscope without linking cairo: the first plot loads the
 * module libpneumoscope_plot.so from the folder of this library (as built and installed), else by
 * name through the loader's path. Without it (the self-contained Fiji archive leaves it out) every
 * plot is PS_EUNSUPPORTED with the reason, and ps_plot_available() is 0. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "plot_backend.h"
#include "ps_internal.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static const ps_plot_backend *g_plot;
static char g_why[1200];

static void load(void) {
  char dir[1024], path[1100];
  ps__lib_folder(dir, sizeof dir);
  snprintf(path, sizeof path, "%s%s", dir, PS_PLOT_BACKEND_FILE);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h && strchr(path, '/')) h = dlopen(PS_PLOT_BACKEND_FILE, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(g_why, sizeof g_why, "plot: the plotting module %s (cairo) cannot be loaded: %s", PS_PLOT_BACKEND_FILE,
             dlerror());
    return;
  }
  const ps_plot_backend *(*get)(void) = (const ps_plot_backend *(*)(void))dlsym(h, PS_PLOT_BACKEND_SYMBOL);
  const ps_plot_backend *b = get ? get() : NULL;
  if (!b || b->size != sizeof(ps_plot_backend)) {
    snprintf(g_why, sizeof g_why, "plot: %s is not this version's plotting module", path);
    return;
  }
  g_plot = b;
}

static const ps_plot_backend *plot(const char *what) {
  pthread_once(&g_once, load);
  if (!g_plot) ps_error(PS_EUNSUPPORTED, "%s (cannot write %s)", g_why, what ? what : "the plot");
  return g_plot;
}

int ps_plot_available(void) {
  pthread_once(&g_once, load);
  return g_plot != NULL;
}

int ps_plot_confusion(const int64_t *cm, int k, const char *const *names, const ps_plot_opts *o, const char *path) {
  const ps_plot_backend *b = plot(path);
  return b ? b->confusion(cm, k, names, o, path) : PS_EUNSUPPORTED;
}

int ps_plot_roc(const ps_plot_curve *c, int n, const ps_plot_opts *o, const char *path) {
  const ps_plot_backend *b = plot(path);
  return b ? b->roc(c, n, o, path) : PS_EUNSUPPORTED;
}

int ps_plot_pr(const ps_plot_curve *c, int n, double prev, const ps_plot_opts *o, const char *path) {
  const ps_plot_backend *b = plot(path);
  return b ? b->pr(c, n, prev, o, path) : PS_EUNSUPPORTED;
}

int ps_plot_reliability(const int64_t *count, const double *conf, const double *acc, int bins, double ece,
                        const ps_plot_opts *o, const char *path) {
  const ps_plot_backend *b = plot(path);
  return b ? b->reliability(count, conf, acc, bins, ece, o, path) : PS_EUNSUPPORTED;
}

int ps_plot_training(const ps_plot_history *h, const ps_plot_opts *o, const char *path) {
  const ps_plot_backend *b = plot(path);
  return b ? b->training(h, o, path) : PS_EUNSUPPORTED;
}
