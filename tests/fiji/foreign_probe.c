/* foreign_probe: what Fiji's commands do through the JNI layer, without Java: load a model from the
 * unzipped release archive's lib/linux64 (linked with RUNPATH there), classify films and draw a
 * layer4 CAM, printing every number. foreign_userland.sh runs it on this machine and inside a
 * chroot of another Linux release; the outputs must be equal.
 *   foreign_probe MODEL FILM...   */
#include <stdio.h>

#include "ps_gradcam.h"
#include "ps_image_io.h"
#include "ps_infer.h"
#include "ps_model.h"

int main(int argc, char **argv) {
  if (argc < 3) return fprintf(stderr, "usage: foreign_probe MODEL FILM...\n"), 2;
  ps_model *m = NULL;
  if (ps_model_load(argv[1], PS_DEVICE_CPU, &m) != PS_OK) return fprintf(stderr, "%s\n", ps_last_error()), 1;
  int rc = 0;
  for (int i = 2; i < argc; i++) {
    float p[PS_MODEL_MAX_CLASSES];
    int label = -1;
    ps_image *img = NULL;
    ps_gradcam_result *r = NULL;
    ps_gradcam_opts o = ps_gradcam_opts_default();
    if (ps_infer_file(m, argv[i], NULL, p, &label) != PS_OK || ps_image_read(argv[i], NULL, &img) != PS_OK ||
        ps_gradcam_compute(m, img, &o, &r) != PS_OK) {
      printf("%s: error: %s\n", argv[i], ps_last_error());
      rc = 1;
    } else {
      printf("%s: label %d P %.6f %.6f; layer4 CAM %dx%d raw_max %.6f lung_focus %.6f\n", argv[i], label, p[0], p[1],
             r->map_w, r->map_h, r->raw_max, r->lung_focus);
    }
    ps_gradcam_result_free(r);
    ps_image_free(img);
  }
  printf("libtorch loaded: %s\n", ps_torch_loaded() ? "yes" : "no");
  ps_model_free(m);
  return rc;
}
