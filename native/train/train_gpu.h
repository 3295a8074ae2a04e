/* train_gpu.h — private to native/train (exported only so tests can reach it): training batches
 * built on the device the model runs on (issue 8).
 *
 *   ps_devbatch *db = NULL;
 *   ps_devbatch_create(&db, pix, n_films, S, PS_DEVICE_CUDA);   // the uint8 cache, uploaded once
 *   uint64_t seeds[B]; for (k...) seeds[k] = ps_rng_next(&rng);  // what ps_augment would get
 *   ps_tensor *x = NULL;
 *   ps_devbatch_fill(db, idx, nb, &aug, seeds, &x);              // (nb, 3, S, S) on the device
 *   ps_model_forward(model, x, &logits); ... ps_tensor_free(x);
 *   ps_devbatch_free(db);
 *
 * Per batch: index_select of the films, u8 -> float / 255, ONE bilinear affine resampling for the
 * whole batch (crop + flip + rotation folded into a per-film 2x3 theta drawn on the host from the
 * same seed and in the same order as ps_augment), brightness/contrast as two per-film
 * "v -> clamp(m v + k mean(v))" stages (the random order of ColorJitter folded into which stage
 * does what), ImageNet normalisation into 3 channels by broadcasting.
 *
 * Equal to the host path (ps_augment + ps_preprocess_normalize):
 *   - no augmentation: exactly (same float arithmetic);
 *   - crop + jitter (what `pneumoscope train` uses: no rotation): to float rounding. PIL's bilinear
 *     resize of a box no larger than the output (upscaling: support 1, truncated taps renormalised)
 *     is bilinear interpolation with edge replication, i.e. grid_sample(align_corners=False,
 *     padding_mode="border") with theta = the box; the jitter means are float reductions on the
 *     device instead of a double sum.
 * Differs (documented, not used by the training recipe):
 *   - rotation: ps_augment rotates the resized crop and fills what comes from outside the CROP with
 *     `fill` (blended by torchvision's bilinear validity mask); here the rotation is folded into the
 *     same resampling, so pixels outside the crop box but inside the film are real film, and only
 *     outside the FILM reads 0 (padding "zeros", no mask blending; opts.fill is ignored).
 *   - with rotation on, the film edges use zero padding instead of edge replication.
 * Square films only (S x S cache to S x S batches, as the training cache is).
 */
#ifndef PS_TRAIN_GPU_H
#define PS_TRAIN_GPU_H

#include <stdint.h>

#include "ps_common.h"
#include "ps_preprocess.h"
#include "ps_torch.h"

typedef struct ps_devbatch ps_devbatch;

/* Upload the cache pix (n, S, S) uint8 to dev as a (n, 1, S, S) uint8 tensor. */
PS_API int ps_devbatch_create(ps_devbatch **out, const uint8_t *pix /* (n, S, S) */, int n, int S, ps_device dev);
PS_API void ps_devbatch_free(ps_devbatch *b);

/* *x = new (nb, 3, S, S) float32 tensor on the cache's device: films idx[0..nb) (cache indices),
 * augmented when aug != NULL with film k drawn from seeds[k] as ps_augment(aug, seeds[k]) draws,
 * then (v - mean[c]) / std[c] with the ImageNet mean/std. Not recorded by autograd. */
PS_API int ps_devbatch_fill(ps_devbatch *b, const int *idx, int nb, const ps_augment_opts *aug, const uint64_t *seeds,
                            ps_tensor **x);

/* The per-film parameters ps_devbatch_fill uses for (aug, seed) on an S x S film. */
typedef struct ps_devbatch_draw {
  int crop_x, crop_y, crop_w, crop_h; /* the RandomResizedCrop box (whole film without crop) */
  int flip;                           /* applied (opts.hflip and the coin) */
  double angle;                       /* degrees, counter-clockwise (0 without rotation) */
  float theta[6];                     /* (2, 3) output -> input, normalised coordinates */
  /* jitter stages: v1 = clamp(a_mul v + a_mean mean(v)), v2 = clamp(b_mul v1 + b_mean mean(v1)) */
  float a_mul, a_mean, b_mul, b_mean;
} ps_devbatch_draw;
PS_API int ps_devbatch_draw_params(const ps_augment_opts *aug, uint64_t seed, int S, ps_devbatch_draw *d);

/* 1 when the training loop should build its batches on the device: the environment variable
 * PS_TRAIN_DEVICE_BATCHES=1 (any device, e.g. to test this path on CPU) or =0 (never); unset: on CUDA. */
PS_API int ps_devbatch_wanted(ps_device dev);

#endif
