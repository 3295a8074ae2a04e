# native/lung + native/gradcam + the gradcam/audit CLI. Lung segmentation is pure C (always built);
# Grad-CAM is checked against torchvision + torch.autograd (PS_PYTHON), the colour map against
# matplotlib's own table.
ps_add_test(lung SOURCES test_lung.c TIMEOUT 300 LABELS gradcam)
ps_add_test(gradcam SOURCES test_gradcam.c NEEDS torch python TIMEOUT 300 LABELS gradcam)
