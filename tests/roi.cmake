# The lung region of interest (native/lung/roi.c) and models that see only it (metadata roi "lungs"):
# box coverage/area on real films, classify against Pillow crop + torchvision (PS_PYTHON), Grad-CAM
# pasted back into the film's grid, `train --roi lungs` and its cache. About a minute on 2 cores.
ps_add_test(roi SOURCES test_roi.c NEEDS torch TIMEOUT 600 LABELS gradcam model)
