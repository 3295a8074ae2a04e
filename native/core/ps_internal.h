/* ps_internal.h — library-internal helpers shared by the modules (not installed, not exported):
 * the CSV and JSON files the library writes, written atomically. JSON goes through jansson. */
#ifndef PS_INTERNAL_H
#define PS_INTERNAL_H

#include <stdio.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The folder of libpneumoscope itself, with the trailing '/' ("" when unknown): where its modules
 * (libpneumoscope_torch.so, libpneumoscope_plot.so) and data files (DCMTK dictionaries in dcmtk/) sit beside it. */
void ps__lib_folder(char *dir, size_t cap);

/* Large zeroed buffers (weights, activations) made once and kept, in anonymous memory, started on a
 * 2 MB boundary that the kernel may back with huge pages (MADV_HUGEPAGE: Linux's default
 * "madvise" mode) and faulted in at once (MADV_POPULATE_WRITE): a page fault traps to the
 * hypervisor on a virtual machine, and page-by-page faults dominated a one-film process. Only for
 * buffers the caller fills. 64-byte aligned; NULL when out of memory. ps__big_free takes the size
 * given to ps__big_alloc (NULL is fine). */
/* "dir/name", malloc'd (NULL when out of memory). */
char *ps__path_join(const char *dir, const char *name);

void *ps__big_alloc(size_t bytes);
void ps__big_free(void *p, size_t bytes);

/* One CSV field: quoted (with "" for ") when it holds a comma, quote or line break; NULL writes nothing. */
void ps__csv_write_field(FILE *f, const char *s);

/* Write a file atomically: fill(f, user) writes the content into a temp file next to path
 * (<path>.tmp<pid>.XXXXXX, flushed and synced), which then replaces path (force) or is linked into
 * place only when path does not exist (no clobber): after a crash the old file or the whole new one. */
int ps__write_atomic(const char *path, int force, int (*fill)(FILE *f, void *user), void *user);

/* New references for json_object_set_new / json_array_append_new: */
json_t *ps__json_num(double v);     /* a real; null when v is NaN or infinite (JSON has neither) */
json_t *ps__json_str(const char *s); /* a string (bytes that are not UTF-8 become '?'); NULL -> null */
/* Dump j (indented by 2, reals to 10 significant digits) and a newline to f, then release j.
 * PS_OK, PS_ENOMEM when j is NULL (a failed build), PS_EIO on a write error. */
int ps__json_dump(FILE *f, json_t *j);
/* ps__write_atomic with j as the whole content (force: replace); releases j. */
int ps__json_write_atomic(const char *path, int force, json_t *j);

#ifdef __cplusplus
}
#endif
#endif
