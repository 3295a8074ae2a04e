# Dataset (scan, split, manifest, audit, materialize), metrics (vs scikit-learn) and plots (read back with Pillow).
ps_add_test(metrics SOURCES test_metrics.c NEEDS python TIMEOUT 120)
