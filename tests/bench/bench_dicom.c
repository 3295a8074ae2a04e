/* bench_dicom.c — CPU ms per ps_dicom_read of each file (best of N after one warm-up). Run through
 * tests/bench/bench_dicom.sh, which makes the films and times pydicom in the same run. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ps_dicom.h"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); /* CPU time: the machine is shared */
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_dicom REPEATS FILE...\n");
    return 2;
  }
  int reps = atoi(argv[1]);
  for (int a = 2; a < argc; a++) {
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
      ps_image *img = NULL;
      double t0 = now_ms();
      int st = ps_dicom_read(argv[a], NULL, &img);
      double t = now_ms() - t0;
      if (st != PS_OK) {
        fprintf(stderr, "%s: %s\n", ps_strerror(st), ps_last_error());
        return 1;
      }
      ps_image_free(img);
      if (r > 0 && t < best) best = t;
    }
    printf("%s\t%.2f\n", argv[a], best);
  }
  return 0;
}
