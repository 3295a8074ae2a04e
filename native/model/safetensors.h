/* safetensors.h — internal (not installed): parse and write the safetensors format in C.
 * Format: u64 little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
 * then the data block; offsets are relative to the start of the data block. */
#ifndef PS_SAFETENSORS_H
#define PS_SAFETENSORS_H

#include "ps_common.h"
#include "ps_torch.h"

#define PS_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef struct ps_st_tensor {
  char *name;
  ps_dtype dtype;
  int ndim;
  int64_t shape[PS_TENSOR_MAX_DIMS];
  uint64_t begin, end;      /* byte range in the data block */
} ps_st_tensor;

/* An open file: the header is parsed and validated; tensor data is read on demand
 * (ps_st_read_tensor), so loading never holds a second copy of the weights. */
typedef struct ps_st_file {
  char *path;
  int fd;
  uint64_t size;            /* file size */
  uint64_t data_start;      /* 8 + header length */
  ps_st_tensor *tensors;
  int n;
  char **meta_keys, **meta_vals;
  int nmeta;
} ps_st_file;

/* Open, read and validate the header; PS_EFORMAT with a message naming path for any lie. */
int ps_st_open(const char *path, ps_st_file **out);
/* Read tensor t's bytes (t->end - t->begin) into dst. */
int ps_st_read_tensor(const ps_st_file *f, const ps_st_tensor *t, void *dst);
void ps_st_free(ps_st_file *f);
/* Convert n little-endian elements of dtype (F32, F16 or BF16) at src to float32 (exactly, as
 * torch's .float() does). PS_EFORMAT for any other dtype. */
int ps_st_to_f32(const void *src, ps_dtype dtype, size_t n, float *dst);
const ps_st_tensor *ps_st_find(const ps_st_file *f, const char *name);
/* Metadata value or NULL. */
const char *ps_st_meta(const ps_st_file *f, const char *key);

typedef struct ps_st_out_tensor {
  const char *name;
  ps_dtype dtype;           /* storage dtype written */
  int ndim;
  const int64_t *shape;
  const void *data;         /* numel * dtype size bytes, little-endian */
} ps_st_out_tensor;

/* Atomic write (temp in the same folder + fsync + rename). */
int ps_st_write(const char *path, const ps_st_out_tensor *ts, int n, const char *const *meta_keys,
                const char *const *meta_vals, int nmeta);

#endif
