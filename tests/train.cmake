# Training and evaluation on real films (size 64, tens of films: well under 2 minutes each on 2 cores).
ps_add_test(train SOURCES test_train.c NEEDS torch TIMEOUT 900)
ps_add_test(evaluate SOURCES test_evaluate.c NEEDS torch python TIMEOUT 900)
# Data-parallel training: 2 CPU ranks over c10d Gloo on 127.0.0.1 (equality with --accumulate,
# killed ranks, a missing peer). Skips (77) in a build without Gloo's headers.
ps_add_test(dist SOURCES test_dist.c NEEDS torch TIMEOUT 600 LABELS train)
