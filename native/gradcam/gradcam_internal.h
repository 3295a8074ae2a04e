/* gradcam_internal.h — not installed: what audit.c needs from the model without including
 * ps_model.h next to ps_dataset.h (both define ps_task; see /work/notes/requests-gradcam.md). */
#ifndef PS_GRADCAM_INTERNAL_H
#define PS_GRADCAM_INTERNAL_H

#include "ps_gradcam.h"

/* task: 0 binary, 1 multiclass; names[k] borrowed from the model's metadata. Returns K or < 0. */
int ps_gradcam_model_classes(ps_model *m, int *task, const char *names[PS_GRADCAM_MAX_CLASSES]);
/* The model's roi (PS_ROI_FILM / PS_ROI_LUNGS). */
int ps_gradcam_model_roi(ps_model *m);

#endif
