# native/preprocess: resize vs Pillow, tensors and augmentation blocks vs torchvision.
ps_add_test(preprocess SOURCES test_preprocess.c TIMEOUT 300 LABELS preprocess)
