# Dataset (scan, split, manifest, audit, materialize) on the real films, metrics against scikit-learn.
ps_add_test(dataset SOURCES test_dataset.c NEEDS python TIMEOUT 300)
ps_add_test(metrics SOURCES test_metrics.c NEEDS python TIMEOUT 120)
