# The lung region of interest (native/lung/roi.c) and models that see only it (metadata roi "lungs",
# "lungmask" = the box gray outside the dilated lung mask, checked against Pillow + scipy):
# box coverage/area on real films, classify against Pillow crop + torchvision (PS_PYTHON), Grad-CAM
# pasted back into the film's grid, `train --roi lungs` and its cache. About 70 s on 2 cores.
ps_add_test(roi SOURCES test_roi.c NEEDS torch TIMEOUT 600 LABELS gradcam model)
