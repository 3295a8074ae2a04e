/* Data-parallel training over libtorch's c10d (issue 14), on real Kermany films, two CPU ranks on
 * 127.0.0.1 launched the way torchrun launches them (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT):
 *  - 2 ranks x --batch 16 give the parameters of 1 process x --batch 16 --accumulate 2 (within
 *    1e-4 after 2 epochs, no augmentation, no balancing, same seed); plain --batch 16 differs;
 *  - a rank killed mid-run (SIGKILL, either rank) ends its peer within --dist-timeout with a
 *    message naming the rank that is gone; the best model on disk still loads, no temporary files;
 *  - a peer that never arrives ends the run within --dist-timeout;
 *  - --resume with the same world size continues exactly (1 epoch + resume = 2 epochs straight);
 *    with another world size it is refused; the launcher's environment is checked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_model.h"
#include "ps_torch.h"
#include "ps_train.h"
#include "test_util.h"

static char g_dir[4096];
static int g_port;

/* The common options: 40 films per split at 64 px, 1 thread per rank. */
#define COMMON "--manifest split/manifest.csv --size 64 --batch 16 --limit 40 --patience -1 --seed 1 --threads 1"

static int setup(void **state) {
  (void)state;
  if (!ps_dist_available()) {
    print_message("SKIP dist: this build has no c10d Gloo (libgloo-dev missing at configure time)\n");
    exit(77);
  }
  snprintf(g_dir, sizeof g_dir, "%s", ps_test_tmpdir());
  g_port = 20000 + (int)(getpid() % 20000);
  int st = ps_test_system("cd '%s' && '%s' split '%s' -o split --seed 1 >/dev/null 2>&1", g_dir, PS_CLI,
                          ps_test_data("kaggle"));
  return st == 0 ? 0 : -1;
}

/* Two ranks of `pneumoscope train ARGS -o OUT`, on their own port; logs OUT.r0.log, OUT.r1.log. */
static int two_ranks(const char *out, const char *args) {
  int port = g_port++;
  return ps_test_system("cd '%s' && export MASTER_ADDR=127.0.0.1 MASTER_PORT=%d WORLD_SIZE=2; "
                        "(RANK=1 '%s' train %s -o %s > %s.r1.log 2>&1; echo $? > %s.r1.rc) & "
                        "RANK=0 '%s' train %s -o %s > %s.r0.log 2>&1; echo $? > %s.r0.rc; wait; "
                        "[ \"$(cat %s.r0.rc) $(cat %s.r1.rc)\" = '0 0' ] || { tail -5 %s.r0.log %s.r1.log; exit 1; }",
                        g_dir, port, PS_CLI, args, out, out, out, PS_CLI, args, out, out, out, out, out, out, out);
}

static ps_model *load_ckpt(const char *run) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s/last.ckpt", g_dir, run);
  ps_model *m = NULL;
  if (ps_train_checkpoint_load(path, PS_TRAIN_DEVICE_CPU, &m) != PS_OK) fail_msg("%s: %s", path, ps_last_error());
  return m;
}

/* Largest |a - b| over every trained parameter. */
static double max_param_diff(ps_model *a, ps_model *b) {
  double worst = 0;
  assert_int_equal(ps_model_num_params(a), ps_model_num_params(b));
  for (int i = 0; i < ps_model_num_params(a); i++) {
    ps_tensor *ta = ps_model_param(a, i, NULL), *tb = ps_model_param(b, i, NULL);
    int64_t n = ps_tensor_numel(ta);
    assert_int_equal(n, ps_tensor_numel(tb));
    float *va = malloc(sizeof(float) * n), *vb = malloc(sizeof(float) * n);
    assert_non_null(va);
    assert_non_null(vb);
    assert_int_equal(ps_tensor_to_f32(ta, va, n), PS_OK);
    assert_int_equal(ps_tensor_to_f32(tb, vb, n), PS_OK);
    for (int64_t k = 0; k < n; k++) worst = fmax(worst, fabs((double)va[k] - vb[k]));
    free(va), free(vb);
  }
  return worst;
}

static void test_two_ranks_equal_accumulate(void **state) {
  (void)state;
  assert_int_equal(ps_test_system("cd '%s' && '%s' train " COMMON " --epochs 2 --no-augment --no-balance -o acc "
                                  "--accumulate 2 > acc.log 2>&1 || { tail acc.log; exit 1; }",
                                  g_dir, PS_CLI),
                   0);
  assert_int_equal(ps_test_system("cd '%s' && '%s' train " COMMON " --epochs 2 --no-augment --no-balance -o plain "
                                  "> plain.log 2>&1 || { tail plain.log; exit 1; }",
                                  g_dir, PS_CLI),
                   0);
  assert_int_equal(two_ranks("ddp", COMMON " --epochs 2 --no-augment --no-balance"), 0);
  ps_model *acc = load_ckpt("acc"), *plain = load_ckpt("plain"), *ddp = load_ckpt("ddp");
  double d_acc = max_param_diff(acc, ddp), d_plain = max_param_diff(plain, ddp);
  print_message("max |param| difference after 2 epochs: 2 ranks vs --accumulate 2: %.3g; vs plain --batch 16: %.3g\n",
                d_acc, d_plain);
  assert_true(d_acc <= 1e-4);
  assert_true(d_plain > 1e-3); /* the comparison can tell different training apart */
  ps_model_free(acc), ps_model_free(plain), ps_model_free(ddp);
  ddp = NULL;
  /* only rank 0 wrote the run's files, and rank 1 said it followed */
  ps_test_expect(0, "rank 1 of 2 done after epoch 2", "cat '%s/ddp.r1.log'", g_dir);
  ps_test_expect(0, "best epoch", "cat '%s/ddp.r0.log'", g_dir);
  /* the same world size resumes: 1 epoch, then --resume to 2, ends where 2 epochs straight end */
  assert_int_equal(two_ranks("half", COMMON " --epochs 1 --no-augment --no-balance"), 0);
  assert_int_equal(two_ranks("half", COMMON " --epochs 2 --no-augment --no-balance --resume"), 0);
  ps_test_expect(0, "resumed from", "cat '%s/half.r0.log'", g_dir);
  ps_model *half = load_ckpt("half");
  ddp = load_ckpt("ddp");
  double d_resume = max_param_diff(half, ddp);
  print_message("2 ranks, 1 epoch + --resume to 2 vs 2 epochs straight: max |param| difference %.3g\n", d_resume);
  assert_true(d_resume <= 1e-6);
  ps_model_free(half), ps_model_free(ddp);
  /* another world size does not resume */
  ps_test_expect(1, "written by a run of 2 ranks",
                 "cd '%s' && '%s' train " COMMON " --epochs 3 --no-augment --no-balance -o ddp --resume 2>&1", g_dir,
                 PS_CLI);
}

/* Kill rank `victim` with SIGKILL once rank 0 has finished epoch 2 of 400; the survivor must stop
 * within the timeout (20 s), non-zero, naming the dead rank; best.safetensors loads. */
static void killed_rank(int victim) {
  const int survivor = 1 - victim, port = g_port++;
  char out[32];
  snprintf(out, sizeof out, "kill%d", victim);
  char *log = ps_test_capture(
      NULL,
      "cd '%s' && export MASTER_ADDR=127.0.0.1 MASTER_PORT=%d WORLD_SIZE=2; "
      "RANK=0 '%s' train " COMMON " --epochs 400 --dist-timeout 20 -o %s > %s.r0.log 2>&1 & p0=$!; "
      "RANK=1 '%s' train " COMMON " --epochs 400 --dist-timeout 20 -o %s > %s.r1.log 2>&1 & p1=$!; "
      "for i in $(seq 600); do grep -q 'epoch 2/400' %s.r0.log && break; sleep 0.1; done; "
      "sleep 0.3; kill -9 $p%d; t0=$(date +%%s.%%N); wait $p%d; rc=$?; t1=$(date +%%s.%%N); "
      "echo \"survivor_rc=$rc seconds=$(awk \"BEGIN{print $t1 - $t0}\")\"; cat %s.r%d.log | tail -3",
      g_dir, port, PS_CLI, out, out, PS_CLI, out, out, out, victim, survivor, out, survivor);
  assert_non_null(log);
  print_message("%s\n", log);
  assert_non_null(strstr(log, "survivor_rc=1 "));
  double secs = atof(strstr(log, "seconds=") + 8);
  assert_true(secs < 20 + 10); /* within the timeout (plus the peer check) */
  char who[32];
  snprintf(who, sizeof who, victim == 0 ? "rank 0 is gone" : "rank 1 did not answer");
  if (!strstr(log, who)) fail_msg("the survivor's message does not name rank %d (\"%s\")", victim, who);
  free(log);
  /* the best model on disk is whole, and no temporary file is left */
  char path[4200];
  snprintf(path, sizeof path, "%s/%s/best.safetensors", g_dir, out);
  ps_model *m = NULL;
  assert_int_equal(ps_model_load(path, PS_DEVICE_CPU, &m), PS_OK);
  ps_model_free(m);
  ps_test_expect(0, "tmp_files=0", "cd '%s/%s' && echo tmp_files=$(ls | grep -c '\\.tmp')", g_dir, out);
}

static void test_killed_rank1(void **state) {
  (void)state;
  killed_rank(1);
}

static void test_killed_rank0(void **state) {
  (void)state;
  killed_rank(0);
}

static void test_missing_peer(void **state) {
  (void)state;
  ps_test_expect(1, "not all 2 ranks arrived within 5 s",
                 "cd '%s' && t0=$(date +%%s); MASTER_ADDR=127.0.0.1 MASTER_PORT=%d WORLD_SIZE=2 RANK=0 '%s' train " COMMON
                 " --epochs 1 --dist-timeout 5 -o alone 2>&1; rc=$?; echo elapsed=$(( $(date +%%s) - t0 )); exit $rc",
                 g_dir, g_port++, PS_CLI);
}

static void test_environment_checked(void **state) {
  (void)state;
  ps_test_expect(2, "RANK and WORLD_SIZE must be set together",
                 "cd '%s' && RANK=0 '%s' train " COMMON " -o env 2>&1", g_dir, PS_CLI);
  ps_test_expect(2, "rank 2 in a world of 2", "cd '%s' && RANK=2 WORLD_SIZE=2 '%s' train " COMMON " -o env 2>&1",
                 g_dir, PS_CLI);
  ps_test_expect(2, "no MASTER_ADDR", "cd '%s' && env -u MASTER_ADDR RANK=0 WORLD_SIZE=2 '%s' train " COMMON " -o env 2>&1",
                 g_dir, PS_CLI);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_environment_checked), cmocka_unit_test(test_missing_peer),
      cmocka_unit_test(test_two_ranks_equal_accumulate), cmocka_unit_test(test_killed_rank1),
      cmocka_unit_test(test_killed_rank0),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
