# Training batches built on the device (issue 8), exercised on CPU (same code, device = CPU):
# equal to the host path, the resampling op against ps_resize_box_f32 / ps_rotate, and a short
# `pneumoscope train` with PS_TRAIN_DEVICE_BATCHES=1 against the same run on the host path.
ps_add_test(train_gpu_batch SOURCES test_train_gpu_batch.c NEEDS torch TIMEOUT 300)
