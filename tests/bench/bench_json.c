/* bench_json.c — which JSON library reads a safetensors header fastest (issue 17's choice).
 * Parses the header of a model file N times with one library (-DLIB_JANSSON, -DLIB_JSONC or
 * -DLIB_CJSON: jansson and json-c export clashing symbols, so one program each), walking every
 * tensor entry (dtype, shape, data_offsets) as native/model/safetensors.c does; prints the best of
 * 3 rounds in microseconds per header and the walk's checksum. tests/bench/bench_json.sh builds the
 * three and prints the ratios (libjson-c-dev, libcjson-dev: not PneumoScope dependencies). */
#if defined(LIB_JANSSON)
#include <jansson.h>
#define LIB_NAME "jansson " JANSSON_VERSION
#elif defined(LIB_JSONC)
#include <json-c/json.h>
#define LIB_NAME "json-c " JSON_C_VERSION
#else
#include <cjson/cJSON.h>
#define LIB_NAME "cJSON"
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

#if defined(LIB_JANSSON)
static long walk(const char *h, size_t n) {
  json_t *root = json_loadb(h, n, JSON_REJECT_DUPLICATES, NULL);
  long sum = 0;
  const char *k;
  json_t *v;
  json_object_foreach(root, k, v) {
    json_t *off = json_object_get(v, "data_offsets"), *sh = json_object_get(v, "shape");
    sum += (long)json_integer_value(json_array_get(off, 1)) + (long)json_array_size(sh);
    sum += json_string_length(json_object_get(v, "dtype"));
  }
  json_decref(root);
  return sum;
}

#elif defined(LIB_JSONC)
static long walk(const char *h, size_t n) {
  json_tokener *tok = json_tokener_new();
  json_object *root = json_tokener_parse_ex(tok, h, (int)n);
  long sum = 0;
  json_object_object_foreach(root, k, v) {
    (void)k;
    json_object *off, *sh, *dt;
    if (json_object_object_get_ex(v, "data_offsets", &off))
      sum += (long)json_object_get_int64(json_object_array_get_idx(off, 1));
    if (json_object_object_get_ex(v, "shape", &sh)) sum += (long)json_object_array_length(sh);
    if (json_object_object_get_ex(v, "dtype", &dt)) sum += json_object_get_string_len(dt);
  }
  json_object_put(root);
  json_tokener_free(tok);
  return sum;
}

#else
static long walk(const char *h, size_t n) {
  cJSON *root = cJSON_ParseWithLength(h, n), *v;
  long sum = 0;
  cJSON_ArrayForEach(v, root) {
    cJSON *off = cJSON_GetObjectItemCaseSensitive(v, "data_offsets"), *sh = cJSON_GetObjectItemCaseSensitive(v, "shape"),
          *dt = cJSON_GetObjectItemCaseSensitive(v, "dtype");
    if (off) sum += (long)cJSON_GetArrayItem(off, 1)->valuedouble;
    if (sh) sum += cJSON_GetArraySize(sh);
    if (cJSON_IsString(dt)) sum += (long)strlen(dt->valuestring);
  }
  cJSON_Delete(root);
  return sum;
}

#endif

int main(int argc, char **argv) {
  if (argc < 2) return fprintf(stderr, "usage: bench_json MODEL.safetensors [N]\n"), 2;
  int reps = argc > 2 ? atoi(argv[2]) : 2000;
  FILE *f = fopen(argv[1], "rb");
  uint8_t l8[8];
  if (!f || fread(l8, 1, 8, f) != 8) return fprintf(stderr, "cannot read %s\n", argv[1]), 1;
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | l8[i];
  char *h = malloc(n);
  if (!h || fread(h, 1, n, f) != n) return fprintf(stderr, "short header in %s\n", argv[1]), 1;
  fclose(f);
  long sum = walk(h, n);
  double best = 1e9;
  for (int round = 0; round < 3; round++) {
    double t0 = now();
    for (int i = 0; i < reps; i++) walk(h, n);
    double t = (now() - t0) / reps;
    if (t < best) best = t;
  }
  printf("%s\t%.2f\t%ld\t%llu\n", LIB_NAME, 1e6 * best, sum, (unsigned long long)n);
  free(h);
  return 0;
}
