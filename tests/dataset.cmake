# Dataset (scan, split, manifest, audit, materialize) on the real films, metrics against scikit-learn,
# plots read back with Pillow (needs cairo: native/plot sets the global property PS_WITH_CAIRO).
ps_add_test(dataset SOURCES test_dataset.c NEEDS python TIMEOUT 300)
ps_add_test(metrics SOURCES test_metrics.c NEEDS python TIMEOUT 120)
get_property(PS_WITH_CAIRO GLOBAL PROPERTY PS_WITH_CAIRO)
ps_add_test(plot SOURCES test_plot.c NEEDS cairo python TIMEOUT 120)
