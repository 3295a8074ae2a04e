/* dataset_internal.h — shared between the dataset sources; not installed. */
#ifndef PS_DATASET_INTERNAL_H
#define PS_DATASET_INTERNAL_H

#include <stdio.h>

#include "ps_dataset.h"
#include "ps_internal.h"

struct ps_dataset {
  char *root;              /* absolute */
  ps_dataset_item *items;  /* (n); strings malloc'd per item */
  size_t n, cap;
};

int ps__ds_new(const char *root, ps_dataset **out);
/* Append an item, copying its strings. */
int ps__ds_push(ps_dataset *ds, const ps_dataset_item *it);

/* A parsed CSV: rows of fields, each row remembers its first line number. */
typedef struct {
  size_t rows, cols_max;
  char ***field;  /* (rows)(ncols[r]) */
  size_t *ncols;  /* (rows) */
  size_t *line;   /* (rows) 1-based line where the row starts */
} ps__csv;
int ps__csv_read(const char *path, ps__csv *out);
void ps__csv_free(ps__csv *c);
/* Column index of the first header name (case-insensitive) that matches one of names, or -1. */
int ps__csv_col(const ps__csv *c, const char *const *names);

int ps__strcasecmp(const char *a, const char *b);
/* Union-find helpers. */
size_t ps__uf_find(size_t *parent, size_t i);
void ps__uf_union(size_t *parent, size_t a, size_t b);
/* Compute groups (patient ∪ sha256) into it->group, numbered by first item. Returns group count. */
int ps__ds_groups(ps_dataset *ds, size_t *ngroups);

#endif
