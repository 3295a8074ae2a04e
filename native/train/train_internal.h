/* Private to native/train: the films of one split manifest as plain arrays (so the files that
 * use ps_model.h need not include ps_dataset.h), RNG, small file helpers. */
#ifndef PS_TRAIN_INTERNAL_H
#define PS_TRAIN_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "ps_common.h"
#include "ps_preprocess.h"

typedef struct ps_train_films {
  int n;
  char **paths;   /* (n) resolved paths */
  char **sha256;  /* (n) hex or "" */
  char **patient; /* (n) */
  int *cls;       /* (n) class index for the task */
  int *split;     /* (n) 0 train, 1 val, 2 test */
  int count[3];   /* films per split */
} ps_train_films;

/* Read the manifest, keep films with a class for task (0 binary, 1 multiclass) and a split;
 * limit > 0 keeps `limit` evenly spaced films of each split (ranks floor(j * count / limit)). check_leak: refuse leaky splits. */
int ps_train_films_read(const char *manifest, int task, int limit, int check_leak, ps_train_films *out);
void ps_train_films_free(ps_train_films *f);
/* "NORMAL", "PNEUMONIA" / "NORMAL", "BACTERIA", "VIRUS" */
const char *ps_train_class_name(int task, int cls);

int ps_train_sha256_file(const char *path, char hex[65]);
/* Decode, crop to the model's roi (PS_ROI_FILM: the whole film, PS_ROI_LUNGS: ps_lung_roi's box,
 * PS_ROI_LUNGMASK: that box, gray outside the dilated lung mask: ps_lung_roi_input_u8),
 * quantise to 8 bits (round(v*255)) and resize to (size, size) with PIL's 8-bit bilinear: exactly
 * the pixels classify (ps_lung_roi_input) and torchvision's Resize on a PIL image use. */
int ps_train_film_to_u8(const char *path, int size, int roi, uint8_t *out);

/* RNG: ps_rng (xoshiro256**) from ps_preprocess.h */

/* One cached film (S*S bytes of pix) as the normalised (3, S, S) model input, augmented with seed
 * when aug is not NULL (scratch: src and, with aug, dst of S*S floats): what training, validation
 * and calibration feed the model. */
int ps_train_cached_input(const uint8_t *pix, int S, const float mean[3], const float std[3],
                          const ps_augment_opts *aug, uint64_t seed, float *src, float *dst, float *out);
/* Remove dir/<base>.tmp<pid> files (the temporaries of ps__write_atomic, ps_model_save and the cache) whose process no longer
 * runs: what a killed run leaves behind. Only the given base names; returns how many went. */
int ps_train_sweep_tmp(const char *dir, const char *const *bases, int nbases);
/* The default cache file name of a (size, roi): cache-S.pscache, cache-S-lungs, cache-S-lungmask. */
void ps_train_cache_name(int size, int roi, char *buf, size_t cap);

#endif
