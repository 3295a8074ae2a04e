# evaluate --shard/--merge and audit --shard/--merge on real films with the bundled models: three
# shards merged equal one run, and the merge's refusals (about a minute on 2 cores).
ps_add_test(shard SOURCES test_shard.c NEEDS torch TIMEOUT 600 LABELS train gradcam)
