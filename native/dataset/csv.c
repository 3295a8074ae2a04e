/* csv.c — RFC 4180 CSV reading (quotes, doubled quotes, CRLF, embedded newlines) with line numbers,
 * and atomic file writing. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset_internal.h"

#define PS_CSV_MAX_BYTES ((long)512 << 20)

int ps__strcasecmp(const char *a, const char *b) {
  for (;; a++, b++) {
    int x = tolower((unsigned char)*a), y = tolower((unsigned char)*b);
    if (x != y || !x) return x - y;
  }
}

void ps__csv_free(ps__csv *c) {
  if (!c) return;
  for (size_t r = 0; r < c->rows; r++) {
    for (size_t j = 0; j < c->ncols[r]; j++) free(c->field[r][j]);
    free(c->field[r]);
  }
  free(c->field);
  free(c->ncols);
  free(c->line);
  memset(c, 0, sizeof *c);
}

typedef struct {
  char *s;
  size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, char ch) {
  if (b->n + 2 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    char *s = realloc(b->s, cap);
    if (!s) return -1;
    b->s = s, b->cap = cap;
  }
  b->s[b->n++] = ch;
  b->s[b->n] = '\0';
  return 0;
}

int ps__csv_read(const char *path, ps__csv *out) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return ps_error(errno == ENOENT ? PS_ENOTFOUND : PS_EIO, "csv: cannot open %s: %s", path, strerror(errno));
  char *text = NULL;
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
  if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return ps_error(PS_EIO, "csv: cannot read %s", path);
  }
  if (size > PS_CSV_MAX_BYTES) {
    fclose(f);
    return ps_error(PS_ELIMIT, "csv: %s is %ld bytes (limit %ld)", path, size, PS_CSV_MAX_BYTES);
  }
  text = malloc((size_t)size + 1);
  if (!text) {
    fclose(f);
    return ps_error(PS_ENOMEM, "csv: out of memory reading %s", path);
  }
  size_t got = fread(text, 1, (size_t)size, f);
  fclose(f);
  if (got != (size_t)size) {
    free(text);
    return ps_error(PS_EIO, "csv: short read in %s", path);
  }
  text[size] = '\0';
  if (memchr(text, '\0', (size_t)size)) {
    free(text);
    return ps_error(PS_EFORMAT, "csv: %s holds NUL bytes (not a text CSV)", path);
  }
  int st = PS_OK;
  size_t line = 1, row_line = 1, caprows = 0, capf = 0;
  char **fields = NULL;
  size_t nf = 0;
  sbuf cur = {0};
  const char *p = text;
  if ((unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF) p += 3; /* BOM */
  int in_quotes = 0, field_started = 0, was_quoted = 0;
  for (;; p++) {
    char ch = *p;
    if (in_quotes) {
      if (ch == '\0') {
        st = ps_error(PS_EFORMAT, "csv: %s line %zu: unterminated quoted field", path, row_line);
        goto fail;
      }
      if (ch == '"') {
        if (p[1] == '"') {
          if (sb_put(&cur, '"')) goto nomem;
          p++;
        } else {
          in_quotes = 0;
        }
        continue;
      }
      if (ch == '\n') line++;
      if (sb_put(&cur, ch)) goto nomem;
      continue;
    }
    if (ch == '"') {
      if (field_started && !was_quoted && cur.n > 0) {
        st = ps_error(PS_EFORMAT, "csv: %s line %zu: stray quote inside an unquoted field", path, line);
        goto fail;
      }
      if (was_quoted) {
        st = ps_error(PS_EFORMAT, "csv: %s line %zu: text after a closing quote", path, line);
        goto fail;
      }
      in_quotes = 1, field_started = 1, was_quoted = 1;
      continue;
    }
    if (ch == ',' || ch == '\n' || ch == '\0' || (ch == '\r' && (p[1] == '\n' || p[1] == '\0'))) {
      int end_row = ch != ',';
      int blank = end_row && nf == 0 && !field_started && cur.n == 0;
      if (!blank) {
        if (nf + 1 > capf) {
          capf = capf ? capf * 2 : 8;
          char **nfld = realloc(fields, capf * sizeof *nfld);
          if (!nfld) goto nomem;
          fields = nfld;
        }
        fields[nf++] = cur.s ? cur.s : strdup("");
        if (!fields[nf - 1]) goto nomem;
        cur.s = NULL, cur.n = cur.cap = 0;
      }
      field_started = 0, was_quoted = 0;
      if (end_row) {
        if (nf > 0) {
          if (out->rows + 1 > caprows) {
            caprows = caprows ? caprows * 2 : 64;
            char ***r = realloc(out->field, caprows * sizeof *r);
            size_t *nc = realloc(out->ncols, caprows * sizeof *nc);
            if (r) out->field = r;
            if (nc) out->ncols = nc;
            size_t *ln = realloc(out->line, caprows * sizeof *ln);
            if (ln) out->line = ln;
            if (!r || !nc || !ln) goto nomem;
          }
          out->field[out->rows] = fields;
          out->ncols[out->rows] = nf;
          out->line[out->rows] = row_line;
          if (nf > out->cols_max) out->cols_max = nf;
          out->rows++;
          fields = NULL, nf = 0, capf = 0;
        }
        if (ch == '\0') break;
        if (ch == '\r' && *++p == '\0') break;
        line++;
        row_line = line;
      }
      continue;
    }
    if (was_quoted) {
      st = ps_error(PS_EFORMAT, "csv: %s line %zu: text after a closing quote", path, line);
      goto fail;
    }
    field_started = 1;
    if (sb_put(&cur, ch)) goto nomem;
  }
  free(text);
  free(cur.s);
  return PS_OK;
nomem:
  st = ps_error(PS_ENOMEM, "csv: out of memory reading %s", path);
fail:
  for (size_t j = 0; j < nf; j++) free(fields[j]);
  free(fields);
  free(cur.s);
  free(text);
  ps__csv_free(out);
  return st;
}

int ps__csv_col(const ps__csv *c, const char *const *names) {
  if (c->rows == 0) return -1;
  for (const char *const *n = names; *n; n++)
    for (size_t j = 0; j < c->ncols[0]; j++) {
      const char *h = c->field[0][j];
      while (*h == ' ') h++;
      if (!ps__strcasecmp(h, *n)) return (int)j;
    }
  return -1;
}

