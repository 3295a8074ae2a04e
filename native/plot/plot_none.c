/* plot_none.c — ps_plot.h when the library is built without cairo. */
#include "ps_plot.h"

static int none(const char *path) {
  return ps_error(PS_EUNSUPPORTED, "plot: built without cairo (cannot write %s)", path ? path : "the plot");
}
int ps_plot_confusion(const int64_t *cm, int k, const char *const *names, const ps_plot_opts *o, const char *path) {
  (void)cm, (void)k, (void)names, (void)o;
  return none(path);
}
int ps_plot_roc(const ps_plot_curve *c, int n, const ps_plot_opts *o, const char *path) {
  (void)c, (void)n, (void)o;
  return none(path);
}
int ps_plot_pr(const ps_plot_curve *c, int n, double prev, const ps_plot_opts *o, const char *path) {
  (void)c, (void)n, (void)prev, (void)o;
  return none(path);
}
int ps_plot_reliability(const int64_t *count, const double *conf, const double *acc, int bins, double ece,
                        const ps_plot_opts *o, const char *path) {
  (void)count, (void)conf, (void)acc, (void)bins, (void)ece, (void)o;
  return none(path);
}
int ps_plot_training(const ps_plot_history *h, const ps_plot_opts *o, const char *path) {
  (void)h, (void)o;
  return none(path);
}
int ps_plot_available(void) { return 0; }
