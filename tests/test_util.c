#define _GNU_SOURCE
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static _Thread_local char path_bufs[8][4096];
static _Thread_local int path_slot;

static const char *path_in(const char *root, const char *rel) {
  char *b = path_bufs[path_slot++ & 7];
  snprintf(b, 4096, "%s/%s", root, rel);
  return b;
}

const char *ps_test_data(const char *rel) {
  const char *env = getenv("PS_SHARED_DATA");
  return path_in(env && *env ? env : PS_SHARED_DATA, rel);
}

const char *ps_test_src(const char *rel) { return path_in(PS_SOURCE_DIR, rel); }

static char tmpdir[256];

static void remove_tmpdir(void) {
  if (tmpdir[0] && !getenv("PS_TEST_KEEP")) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  }
}

const char *ps_test_tmpdir(void) {
  if (!tmpdir[0]) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/pneumoscope-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
      fprintf(stderr, "mkdtemp failed\n");
      abort();
    }
    atexit(remove_tmpdir);
  }
  return tmpdir;
}

char *ps_test_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *s = malloc(n);
  snprintf(s, n, "%s/%s", dir, name);
  return s;
}

int ps_test_system(const char *fmt, ...) {
  char *cmd = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&cmd, fmt, ap) < 0) cmd = NULL;
  va_end(ap);
  if (!cmd) return -1;
  fflush(stdout);
  int st = system(cmd);
  free(cmd);
  if (st == -1) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *vcapture(int *exit_status, const char *fmt, va_list ap) {
  char *cmd = NULL;
  if (vasprintf(&cmd, fmt, ap) < 0) cmd = NULL;
  if (!cmd) return NULL;
  fflush(stdout);
  FILE *p = popen(cmd, "r");
  free(cmd);
  if (!p) {
    if (exit_status) *exit_status = -1;
    return NULL;
  }
  size_t cap = 4096, len = 0;
  char *out = malloc(cap);
  size_t got;
  while ((got = fread(out + len, 1, cap - len - 1, p)) > 0) {
    len += got;
    if (cap - len < 2) out = realloc(out, cap *= 2);
  }
  out[len] = '\0';
  int st = pclose(p);
  if (exit_status) *exit_status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
  return out;
}

char *ps_test_capture(int *exit_status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *out = vcapture(exit_status, fmt, ap);
  va_end(ap);
  return out;
}

void ps_test_expect(int want_status, const char *needle, const char *fmt, ...) {
  int es = -1;
  va_list ap;
  va_start(ap, fmt);
  char *out = vcapture(&es, fmt, ap);
  va_end(ap);
  if (!out) fail_msg("could not run the command");
  print_message("%s", out);
  if (es != want_status) fail_msg("exit status %d, expected %d", es, want_status);
  if (needle && !strstr(out, needle)) fail_msg("output lacks \"%s\"", needle);
  free(out);
}

int ps_test_have_python(const char *modules) {
  if (access(PS_PYTHON, X_OK) != 0) return 0;
  char mods[512];
  snprintf(mods, sizeof mods, "%s", modules);
  return ps_test_system("'%s' -c 'import %s' >/dev/null 2>&1", PS_PYTHON, mods) == 0;
}

long ps_test_file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

char *ps_test_read_file(const char *path, size_t *len) {
  long n = ps_test_file_size(path);
  FILE *f = n >= 0 ? fopen(path, "rb") : NULL;
  char *b = f ? malloc((size_t)n + 1) : NULL;
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) free(b), b = NULL;
  if (f) fclose(f);
  if (b) b[n] = 0, *len = (size_t)n;
  return b;
}

double *ps_test_read_npy(const char *path, size_t shape[4], int *ndim) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char magic[10];
  double *out = NULL;
  char *hdr = NULL;
  void *raw = NULL;
  if (fread(magic, 1, 10, f) != 10 || memcmp(magic, "\x93NUMPY", 6) != 0) goto done;
  size_t hlen;
  if (magic[6] == 1) {
    hlen = magic[8] | (magic[9] << 8);
  } else {
    unsigned char b[2];
    if (fread(b, 1, 2, f) != 2) goto done;
    hlen = magic[8] | (magic[9] << 8) | ((size_t)b[0] << 16) | ((size_t)b[1] << 24);
  }
  hdr = calloc(1, hlen + 1);
  if (fread(hdr, 1, hlen, f) != hlen) goto done;
  if (strstr(hdr, "'fortran_order': True")) goto done;
  const char *d = strstr(hdr, "'descr': '");
  const char *s = strstr(hdr, "'shape': (");
  if (!d || !s) goto done;
  d += 10;
  int esize = 0, kind = 0; /* kind: f float, u unsigned, i signed */
  if (!strncmp(d, "<f4", 3)) esize = 4, kind = 'f';
  else if (!strncmp(d, "<f8", 3)) esize = 8, kind = 'f';
  else if (!strncmp(d, "|u1", 3)) esize = 1, kind = 'u';
  else if (!strncmp(d, "<u2", 3)) esize = 2, kind = 'u';
  else if (!strncmp(d, "<i4", 3)) esize = 4, kind = 'i';
  else if (!strncmp(d, "<i8", 3)) esize = 8, kind = 'i';
  else goto done;
  s += 10;
  int nd = 0;
  size_t count = 1;
  while (*s && *s != ')' && nd < 4) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s) break;
    shape[nd++] = v;
    count *= v;
    s = end;
    while (*s == ',' || *s == ' ') s++;
  }
  *ndim = nd;
  raw = malloc(count * esize + 1);
  if (fread(raw, esize, count, f) != count) goto done;
  out = malloc((count + 1) * sizeof(double));
  for (size_t i = 0; i < count; i++) {
    switch (esize * 256 + kind) {
      case 4 * 256 + 'f': out[i] = ((float *)raw)[i]; break;
      case 8 * 256 + 'f': out[i] = ((double *)raw)[i]; break;
      case 1 * 256 + 'u': out[i] = ((uint8_t *)raw)[i]; break;
      case 2 * 256 + 'u': out[i] = ((uint16_t *)raw)[i]; break;
      case 4 * 256 + 'i': out[i] = ((int32_t *)raw)[i]; break;
      default: out[i] = (double)((int64_t *)raw)[i]; break;
    }
  }
done:
  free(hdr);
  free(raw);
  fclose(f);
  return out;
}

int ps_test_write_npy_f32(const char *path, const float *data, const size_t *shape, int ndim) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  char dict[256], dims[128] = "";
  size_t count = 1;
  for (int i = 0; i < ndim; i++) {
    char d[32];
    snprintf(d, sizeof d, "%zu%s", shape[i], (ndim == 1 || i < ndim - 1) ? "," : "");
    strcat(dims, d);
    count *= shape[i];
  }
  int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
  int total = 10 + n + 1;
  int pad = (64 - total % 64) % 64;
  unsigned short hl = (unsigned short)(n + pad + 1);
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  fputc(hl & 0xff, f);
  fputc(hl >> 8, f);
  fwrite(dict, 1, n, f);
  for (int i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
  size_t w = fwrite(data, sizeof(float), count, f);
  return (fclose(f) == 0 && w == count) ? 0 : -1;
}

const char *const ps_test_sample_films[PS_TEST_N_SAMPLE] = {
    "sample_data/films/kaggle/NORMAL/NORMAL2-IM-0746-0001.jpeg",
    "sample_data/films/kaggle/NORMAL/NORMAL2-IM-1241-0001.jpeg",
    "sample_data/films/kaggle/NORMAL/NORMAL2-IM-1360-0001.jpeg",
    "sample_data/films/kaggle/PNEUMONIA/person388_virus_777.jpeg",
    "sample_data/films/kaggle/PNEUMONIA/person449_bacteria_1938.jpeg",
    "sample_data/films/kaggle/PNEUMONIA/person563_bacteria_2340.jpeg",
    "sample_data/films/kaggle/PNEUMONIA/person677_virus_1268.jpeg",
    "sample_data/films/kaggle/PNEUMONIA/person826_bacteria_2737.jpeg",
    "sample_data/films/kaggle/PNEUMONIA/person976_virus_1651.jpeg",
    "sample_data/films/png/nih_00000001_000.png",
    "sample_data/films/dicom/CR-MONO1-10-chest.dcm",
    "sample_data/films/dicom/gcp_dicom_00000001_000.dcm",
    "sample_data/films/dicom/nccid_1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm",
    "sample_data/films/dicom/siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
    "sample_data/films/dicom/torchxrayvision_Fake_MONOHR1.dcm",
};

int ps_test_count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

char *ps_test_kaggle_manifest(void) {
  char *split = ps_test_join(ps_test_tmpdir(), "split");
  char *manifest = NULL;
  if (!ps_test_system("'%s' split '%s' -o '%s' --seed 11 --task multiclass >/dev/null", PS_CLI, ps_test_data("kaggle"),
                      split))
    manifest = ps_test_join(split, "manifest.csv");
  free(split);
  return manifest;
}
