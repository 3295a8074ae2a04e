# native/image: decoding vs Pillow, DICOM dispatch, PNG writing, malformed files.
ps_add_test(image SOURCES test_image.c TIMEOUT 300 LABELS image)
