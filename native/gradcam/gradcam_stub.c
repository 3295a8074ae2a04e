/* Built without libtorch: CAM needs the model. */
#include "ps_gradcam.h"

int ps_gradcam_compute(ps_model *m, const ps_image *img, const ps_gradcam_opts *opts, ps_gradcam_result **out) {
  (void)m, (void)img, (void)opts;
  if (out) *out = NULL;
  return ps_error(PS_EUNSUPPORTED, "gradcam: built without libtorch (PS_WITH_TORCH=OFF)");
}

int ps_gradcam_audit(ps_model *m, const char *manifest, const char *outdir, const ps_audit_opts *opts,
                     ps_audit_summary *summary) {
  (void)m, (void)manifest, (void)outdir, (void)opts, (void)summary;
  return ps_error(PS_EUNSUPPORTED, "gradcam: built without libtorch (PS_WITH_TORCH=OFF)");
}

int ps_gradcam_audit_merge(const char *const *shard_dirs, int ndirs, const char *outdir, ps_audit_summary *summary) {
  (void)shard_dirs, (void)ndirs, (void)outdir, (void)summary;
  return ps_error(PS_EUNSUPPORTED, "gradcam: built without libtorch (PS_WITH_TORCH=OFF)");
}
