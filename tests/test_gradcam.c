/* Grad-CAM: our maps against torch.autograd on torchvision's resnet18 with the same weights
 * (tests/ref/gradcam_reference.py), the CAM fast path against our own Grad-CAM at layer4, lung_focus
 * on synthetic maps, the .npy against numpy.load, the colour map against matplotlib, the overlay
 * definition, the gradcam/audit CLI and refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_gradcam.h"
#include "ps_image_io.h"
#include "ps_model.h"
#include "test_util.h"

static const char *films[] = {
    "sample_data/films/kaggle/NORMAL/NORMAL2-IM-0746-0001.jpeg",
    "sample_data/films/kaggle/PNEUMONIA/person388_virus_777.jpeg",
    "sample_data/films/png/nih_00000001_000.png",
};
#define NFILMS ((int)(sizeof films / sizeof films[0]))

static char *model_path;
static ps_model *model;

static int setup(void **state) {
  (void)state;
  if (!ps_test_have_python("torch,torchvision,numpy,PIL")) return 0;
  model_path = ps_test_join(ps_test_tmpdir(), "ref.safetensors");
  int rc = ps_test_system("'%s' '%s' make '%s' 7 2", PS_PYTHON, ps_test_src("tests/ref/gradcam_reference.py"),
                          model_path);
  if (rc != 0) return -1;
  if (ps_model_load(model_path, PS_DEVICE_CPU, &model) != PS_OK) {
    fprintf(stderr, "load %s: %s\n", model_path, ps_last_error());
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  ps_model_free(model);
  free(model_path);
  return 0;
}

static ps_image *read_film(const char *rel) {
  ps_image *img = NULL;
  if (ps_image_read(ps_test_src(rel), NULL, &img) != PS_OK) fail_msg("read %s: %s", rel, ps_last_error());
  return img;
}

static void compare(const float *a, const double *b, size_t n, double *corr, double *maxdiff) {
  double sa = 0, sb = 0;
  for (size_t i = 0; i < n; i++) sa += a[i], sb += b[i];
  double ma = sa / n, mb = sb / n, sab = 0, saa = 0, sbb = 0, md = 0;
  for (size_t i = 0; i < n; i++) {
    double da = a[i] - ma, db = b[i] - mb;
    sab += da * db, saa += da * da, sbb += db * db;
    md = fmax(md, fabs(a[i] - b[i]));
  }
  *corr = sab / sqrt(saa * sbb);
  *maxdiff = md;
}

static ps_gradcam_result *run(const ps_image *img, int layer, ps_cam_method method, int cls) {
  ps_gradcam_opts o = ps_gradcam_opts_default();
  o.layer = layer;
  o.method = method;
  o.no_lung = 1;
  if (cls >= 0) o.use_class = 1, o.class_index = cls;
  ps_gradcam_result *r = NULL;
  if (ps_gradcam_compute(model, img, &o, &r) != PS_OK) fail_msg("gradcam: %s", ps_last_error());
  return r;
}

static void test_matches_torch_autograd(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(model, "python3 with torch, torchvision, numpy, PIL not available");
  const char *dir = ps_test_tmpdir();
  char *jobs = ps_test_join(dir, "jobs.txt");
  FILE *f = fopen(jobs, "w");
  assert_non_null(f);
  /* layer4 and layer2 Grad-CAM of the predicted class on every film; layer3 of the other class
   * and Grad-CAM++ at layer4 on the first film */
  for (int i = 0; i < NFILMS; i++) {
    fprintf(f, "%s 4 gradcam -1 f%d_l4\n", ps_test_src(films[i]), i);
    fprintf(f, "%s 2 gradcam -1 f%d_l2\n", ps_test_src(films[i]), i);
  }
  fprintf(f, "%s 3 gradcam 0 f0_l3_c0\n", ps_test_src(films[0]));
  fprintf(f, "%s 3 gradcam 1 f0_l3_c1\n", ps_test_src(films[0]));
  fprintf(f, "%s 4 gradcampp -1 f0_l4_pp\n", ps_test_src(films[0]));
  fclose(f);
  int rc = -1;
  char *out = ps_test_capture(&rc, "'%s' '%s' cam '%s' '%s' '%s'", PS_PYTHON,
                              ps_test_src("tests/ref/gradcam_reference.py"), model_path, jobs, dir);
  assert_int_equal(rc, 0);
  struct {
    const char *name;
    int film, layer, cls;
    ps_cam_method method;
  } cases[] = {
      {"f0_l4", 0, 4, -1, PS_CAM_GRADCAM}, {"f0_l2", 0, 2, -1, PS_CAM_GRADCAM}, {"f1_l4", 1, 4, -1, PS_CAM_GRADCAM},
      {"f1_l2", 1, 2, -1, PS_CAM_GRADCAM}, {"f2_l4", 2, 4, -1, PS_CAM_GRADCAM}, {"f2_l2", 2, 2, -1, PS_CAM_GRADCAM},
      {"f0_l3_c0", 0, 3, 0, PS_CAM_GRADCAM}, {"f0_l3_c1", 0, 3, 1, PS_CAM_GRADCAM},
      {"f0_l4_pp", 0, 4, -1, PS_CAM_GRADCAMPP},
      /* the CAM fast path against torch's Grad-CAM at layer4 */
      {"f0_l4", 0, 4, -1, PS_CAM_CAM}, {"f1_l4", 1, 4, -1, PS_CAM_CAM}, {"f2_l4", 2, 4, -1, PS_CAM_CAM},
  };
  ps_image *imgs[NFILMS];
  for (int i = 0; i < NFILMS; i++) imgs[i] = read_film(films[i]);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    ps_gradcam_result *r = run(imgs[cases[k].film], cases[k].layer, cases[k].method, cases[k].cls);
    char name[64];
    snprintf(name, sizeof name, "%s.npy", cases[k].name);
    char *p = ps_test_join(dir, name);
    size_t shape[4];
    int nd = 0;
    double *ref = ps_test_read_npy(p, shape, &nd);
    assert_non_null(ref);
    assert_int_equal(nd, 2);
    assert_int_equal(shape[0], r->height);
    assert_int_equal(shape[1], r->width);
    double corr, md;
    size_t n = (size_t)r->width * r->height;
    compare(r->cam, ref, n, &corr, &md);
    /* the reference's raw_max and probabilities, from its JSON line */
    const char *line = strstr(out, cases[k].name);
    assert_non_null(line);
    double p0 = 0, p1 = 0, rmax = 0;
    int cls = -1;
    assert_int_equal(sscanf(strstr(line, "\"probs\": [") + 10, "%lf, %lf", &p0, &p1), 2);
    assert_int_equal(sscanf(strstr(line, "\"class\": ") + 9, "%d", &cls), 1);
    assert_int_equal(sscanf(strstr(line, "\"raw_max\": ") + 11, "%lf", &rmax), 1);
    double scale = r->method == PS_CAM_CAM ? (double)r->map_w * r->map_h : 1.0; /* CAM = hw x Grad-CAM */
    double rel = fabs(r->raw_max / scale - rmax) / fmax(rmax, 1e-12);
    print_message("%-9s %-9s layer%d class %d: corr %.6f  max|diff| %.2e  raw_max %.5g vs %.5g (rel %.1e)  "
                  "P %.5f vs %.5f\n",
                  cases[k].name, ps_cam_method_name(r->method), r->layer, r->target_class, corr, md, r->raw_max / scale,
                  rmax, rel, r->probs[1], p1);
    assert_int_equal(r->target_class, cls);
    assert_true(fabs(r->probs[0] - p0) < 1e-4 && fabs(r->probs[1] - p1) < 1e-4);
    assert_true(corr >= 0.999);
    assert_true(md <= 0.02);
    assert_true(rel <= 0.01);
    free(ref);
    free(p);
    ps_gradcam_result_free(r);
  }
  for (int i = 0; i < NFILMS; i++) ps_image_free(imgs[i]);
  free(out);
  free(jobs);
}

static void test_cam_equals_gradcam_at_layer4(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(model, "python3 with torch, torchvision, numpy, PIL not available");
  for (int i = 0; i < NFILMS; i++) {
    ps_image *img = read_film(films[i]);
    for (int cls = 0; cls < 2; cls++) {
      ps_gradcam_result *a = run(img, 4, PS_CAM_CAM, cls), *b = run(img, 4, PS_CAM_GRADCAM, cls);
      ps_gradcam_result *c = run(img, 4, PS_CAM_AUTO, cls);
      size_t n = (size_t)img->width * img->height;
      double *bd = malloc(n * sizeof(double)), corr, md;
      for (size_t j = 0; j < n; j++) bd[j] = b->cam[j];
      compare(a->cam, bd, n, &corr, &md);
      double hw = (double)a->map_w * a->map_h;
      print_message("%s class %d: CAM vs Grad-CAM corr %.8f max|diff| %.2e raw_max ratio %.6f (h*w = %.0f)\n",
                    strrchr(films[i], '/') + 1, cls, corr, md, a->raw_max / b->raw_max, hw);
      assert_int_equal(a->method, PS_CAM_CAM);
      assert_int_equal(b->method, PS_CAM_GRADCAM);
      assert_int_equal(c->method, PS_CAM_CAM); /* AUTO at layer4 takes the fast path */
      assert_true(corr >= 0.99999);
      assert_true(md <= 1e-4);
      assert_true(fabs(a->raw_max / b->raw_max / hw - 1) < 1e-3);
      assert_memory_equal(a->cam, c->cam, n * sizeof(float));
      free(bd);
      ps_gradcam_result_free(a);
      ps_gradcam_result_free(b);
      ps_gradcam_result_free(c);
    }
    ps_image_free(img);
  }
}

static void test_lung_focus_synthetic(void **state) {
  (void)state;
  ps_image *img = read_film("sample_data/films/png/nih_00000001_000.png");
  uint8_t *mask = NULL;
  ps_lung_info in;
  assert_int_equal(ps_lung_segment(img, NULL, &mask, &in), PS_OK);
  assert_int_equal(in.lungs, 2);
  int w = img->width, h = img->height;
  size_t n = (size_t)w * h;
  float *cam = malloc(n * sizeof(float));
  double f;
  /* all mass inside the mask -> 1, all outside -> 0 */
  for (size_t i = 0; i < n; i++) cam[i] = mask[i] ? 0.3f + 0.7f * (float)(i % 13) / 12 : 0;
  assert_int_equal(ps_gradcam_lung_focus(cam, mask, w, h, &f), PS_OK);
  assert_true(fabs(f - 1) < 1e-12);
  for (size_t i = 0; i < n; i++) cam[i] = mask[i] ? 0 : 1;
  assert_int_equal(ps_gradcam_lung_focus(cam, mask, w, h, &f), PS_OK);
  assert_true(f == 0);
  /* uniform map -> the mask's area fraction */
  for (size_t i = 0; i < n; i++) cam[i] = 0.5f;
  assert_int_equal(ps_gradcam_lung_focus(cam, mask, w, h, &f), PS_OK);
  assert_true(fabs(f - in.area_fraction) < 1e-6);
  /* a Gaussian blob on a lung centroid -> ~1; one in the corner (outside the body) -> ~0 */
  double sig = 0.04 * w;
  for (int pass = 0; pass < 2; pass++) {
    double cx = pass ? 0.04 * w : in.centroid_x[0] * w, cy = pass ? 0.04 * h : in.centroid_y[0] * h;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        cam[(size_t)y * w + x] = (float)exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * sig * sig));
    assert_int_equal(ps_gradcam_lung_focus(cam, mask, w, h, &f), PS_OK);
    print_message("blob %s: lung_focus %.4f\n", pass ? "in the corner" : "on the left lung", f);
    assert_true(pass ? f < 0.01 : f > 0.95);
  }
  /* negative values and NaN carry no mass; an empty map is undefined (NaN) */
  for (size_t i = 0; i < n; i++) cam[i] = mask[i] ? 1.0f : (i % 2 ? -5.0f : NAN);
  assert_int_equal(ps_gradcam_lung_focus(cam, mask, w, h, &f), PS_OK);
  assert_true(f == 1);
  memset(cam, 0, n * sizeof(float));
  assert_int_equal(ps_gradcam_lung_focus(cam, mask, w, h, &f), PS_OK);
  assert_true(isnan(f));
  assert_int_equal(ps_gradcam_lung_focus(NULL, mask, w, h, &f), PS_EINVAL);
  free(cam);
  free(mask);
  ps_image_free(img);
}

static void test_npy_numpy_and_refusals(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("numpy"), "python3 with numpy not available");
  int w = 37, h = 23;
  float *v = malloc((size_t)w * h * sizeof(float));
  double sum = 0, wsum = 0;
  for (int i = 0; i < w * h; i++) v[i] = (float)sin(i * 0.37) * 3.5f, sum += v[i], wsum += v[i] * (i % w);
  char *p = ps_test_join(ps_test_tmpdir(), "cam.npy");
  assert_int_equal(ps_gradcam_write_npy(p, v, w, h), PS_OK);
  int rc;
  char *out = ps_test_capture(&rc,
                              "'%s' -c \"import numpy as np; a=np.load('%s'); "
                              "print(a.dtype, a.shape[0], a.shape[1], float(a.astype('f8').sum()), "
                              "float((a.astype('f8')*np.arange(a.shape[1])[None,:]).sum()))\"",
                              PS_PYTHON, p);
  assert_int_equal(rc, 0);
  char dt[16];
  int ph = 0, pw = 0;
  double ps = 0, pws = 0;
  assert_int_equal(sscanf(out, "%15s %d %d %lf %lf", dt, &ph, &pw, &ps, &pws), 5);
  assert_string_equal(dt, "float32");
  assert_int_equal(ph, h);
  assert_int_equal(pw, w);
  assert_true(fabs(ps - sum) < 1e-3 && fabs(pws - wsum) < 1e-2);
  free(out);
  /* replacing our own .npy is fine; a film (or any non-.npy file) is never overwritten */
  assert_int_equal(ps_gradcam_write_npy(p, v, w, h), PS_OK);
  char *film = ps_test_join(ps_test_tmpdir(), "film.jpeg");
  assert_int_equal(ps_test_system("cp '%s' '%s'", ps_test_src(films[0]), film), 0);
  long before = ps_test_file_size(film);
  assert_int_equal(ps_gradcam_write_npy(film, v, w, h), PS_EIO);
  assert_non_null(strstr(ps_last_error(), "film.jpeg"));
  assert_int_equal(ps_test_file_size(film), before);
  assert_int_equal(ps_test_system("cmp -s '%s' '%s'", ps_test_src(films[0]), film), 0);
  assert_int_equal(ps_gradcam_write_npy("/nonexistent-dir/x.npy", v, w, h), PS_EIO);
  assert_int_equal(ps_gradcam_write_npy(p, v, 0, h), PS_EINVAL);
  /* no temporary files left behind */
  assert_int_equal(ps_test_system("ls '%s' | grep -q tmp-", ps_test_tmpdir()), 1);
  free(film);
  free(p);
  free(v);
}

static void test_colormap_is_matplotlib_viridis(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(ps_test_have_python("matplotlib,numpy"), "python3 with matplotlib not available");
  /* 1001 float32 values from -0.1 to 1.1 through matplotlib's cm.viridis(x, bytes=True) */
  int rc;
  char *out = ps_test_capture(&rc,
                              "'%s' -c \"import numpy as np, matplotlib; matplotlib.use('Agg'); "
                              "from matplotlib import cm; x=np.linspace(-0.1,1.1,1001).astype(np.float32); "
                              "c=cm.viridis(x, bytes=True); f=cm.viridis(np.arange(256)); "
                              "print(' '.join('%%d %%d %%d' %% tuple(r[:3]) for r in c)); "
                              "print(' '.join('%%.17g' %% v for v in f[:, :3].ravel()))\"",
                              PS_PYTHON);
  assert_int_equal(rc, 0);
  const char *s = out;
  int mism = 0;
  for (int i = 0; i < 1001; i++) {
    float x = (float)(-0.1 + 1.2 * i / 1000.0);
    /* numpy's linspace in float64 then float32: recompute the same way */
    x = (float)(-0.1 + i * ((1.1 - (-0.1)) / 1000));
    int r, g, b, k;
    assert_int_equal(sscanf(s, "%d %d %d%n", &r, &g, &b, &k), 3);
    s += k;
    uint8_t c[3];
    ps_colormap_viridis(x, c);
    if (c[0] != r || c[1] != g || c[2] != b) mism++;
  }
  for (int i = 0; i < 256; i++) {
    double e[3];
    ps_colormap_viridis_entry(i, e);
    for (int c = 0; c < 3; c++) {
      double v;
      int k;
      assert_int_equal(sscanf(s, "%lf%n", &v, &k), 1);
      s += k;
      assert_true(v == e[c]);
    }
  }
  print_message("viridis: %d of 1001 byte triples differ from matplotlib; 768 table floats identical\n", mism);
  assert_int_equal(mism, 0);
  free(out);
}

static void test_overlay_definition(void **state) {
  (void)state;
  ps_image *film = NULL;
  int w = 64, h = 48;
  assert_int_equal(ps_image_create(w, h, &film), PS_OK);
  float *cam = malloc((size_t)w * h * sizeof(float));
  for (int i = 0; i < w * h; i++) film->data[i] = (float)(i % w) / (w - 1), cam[i] = (float)(i / w) / (h - 1);
  uint8_t *rgb = malloc((size_t)3 * w * h), *hm = malloc((size_t)3 * w * h);
  assert_int_equal(ps_gradcam_overlay_rgb(film, cam, NULL, rgb), PS_OK);
  assert_int_equal(ps_gradcam_heatmap_rgb(cam, w, h, hm), PS_OK);
  for (int x = 0; x < w; x++) {
    /* row 0: cam 0 -> the film untouched (proportional alpha) */
    uint8_t g = (uint8_t)lrintf(film->data[x] * 255);
    for (int c = 0; c < 3; c++) assert_int_equal(rgb[3 * x + c], g);
    /* last row: cam 1 -> 0.4 film + 0.6 viridis(1) = (0.4 g + 0.6 * (253, 231, 36)) */
    size_t i = (size_t)(h - 1) * w + x;
    static const int yellow[3] = {253, 231, 36};
    for (int c = 0; c < 3; c++) {
      assert_int_equal(hm[3 * i + c], yellow[c]);
      assert_true(abs(rgb[3 * i + c] - (int)lrint(0.4 * g + 0.6 * yellow[c])) <= 1);
    }
  }
  /* viridis(0) is (68, 1, 84) */
  assert_int_equal(hm[0], 68);
  assert_int_equal(hm[1], 1);
  assert_int_equal(hm[2], 84);
  ps_overlay_opts oo = {PS_OVERLAY_CONSTANT, 0.5};
  assert_int_equal(ps_gradcam_overlay_rgb(film, cam, &oo, rgb), PS_OK);
  assert_true(abs(rgb[0] - (int)lrint(0.5 * 0 + 0.5 * 68)) <= 1); /* constant alpha also at cam 0 */
  oo.alpha = 1.5;
  assert_int_equal(ps_gradcam_overlay_rgb(film, cam, &oo, rgb), PS_EINVAL);
  free(rgb);
  free(hm);
  free(cam);
  ps_image_free(film);
}

static void test_refusals(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(model, "python3 with torch, torchvision, numpy, PIL not available");
  ps_image *img = read_film(films[1]);
  ps_gradcam_result *r = (ps_gradcam_result *)1;
  ps_gradcam_opts o = ps_gradcam_opts_default();
  o.layer = 5;
  assert_int_equal(ps_gradcam_compute(model, img, &o, &r), PS_EINVAL);
  assert_null(r);
  o.layer = 2, o.method = PS_CAM_CAM;
  assert_int_equal(ps_gradcam_compute(model, img, &o, &r), PS_EINVAL);
  assert_non_null(strstr(ps_last_error(), "layer4"));
  o = ps_gradcam_opts_default();
  o.use_class = 1, o.class_index = 2;
  assert_int_equal(ps_gradcam_compute(model, img, &o, &r), PS_EINVAL);
  assert_int_equal(ps_gradcam_compute(NULL, img, NULL, &r), PS_EINVAL);
  img->is_raw = 1;
  assert_int_equal(ps_gradcam_compute(model, img, NULL, &r), PS_EINVAL);
  img->is_raw = 0;
  /* the model's grad mode and train mode are left as they were */
  int prev = 0;
  ps_torch_set_grad_enabled(0, &prev);
  ps_model_set_train(model, 1);
  o = ps_gradcam_opts_default();
  o.method = PS_CAM_GRADCAM;
  assert_int_equal(ps_gradcam_compute(model, img, &o, &r), PS_OK);
  assert_int_equal(ps_torch_grad_enabled(), 0);
  assert_int_equal(ps_model_is_train(model), 1);
  ps_model_set_train(model, 0);
  ps_torch_set_grad_enabled(prev, NULL);
  /* full result: lung mask present, focus in [0, 1] */
  assert_non_null(r->lung_mask);
  assert_true(r->lung_focus >= 0 && r->lung_focus <= 1);
  ps_gradcam_result_free(r);
  ps_image_free(img);
  ps_cam_method m;
  assert_int_equal(ps_cam_method_parse("gradcam++", &m), PS_OK);
  assert_int_equal(m, PS_CAM_GRADCAMPP);
  assert_int_equal(ps_cam_method_parse("score-cam", &m), PS_EINVAL);
}

static void test_cli_gradcam(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(model, "python3 with torch, torchvision, numpy, PIL not available");
  const char *d = ps_test_tmpdir();
  char *film = ps_test_join(d, "cli_film.jpeg");
  assert_int_equal(ps_test_system("cp '%s' '%s'", ps_test_src(films[1]), film), 0);
  int rc;
  char *out = ps_test_capture(&rc,
                              "'%s' gradcam --model '%s' --json --layer layer3 --class PNEUMONIA '%s' -o '%s/ov.png' "
                              "--heatmap '%s/hm.png' --npy '%s/cli.npy' --mask '%s/mask.png' --mask-overlay '%s/mo.png'",
                              PS_CLI, model_path, film, d, d, d, d, d);
  print_message("%s", out);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "\"explained_class\": \"PNEUMONIA\""));
  assert_non_null(strstr(out, "\"layer\": \"layer3\""));
  assert_non_null(strstr(out, "\"method\": \"gradcam\""));
  double focus = -1;
  assert_int_equal(sscanf(strstr(out, "\"lung_focus\": ") + 14, "%lf", &focus), 1);
  /* the CLI's npy and lung_focus equal the library call's */
  ps_image *img = NULL;
  assert_int_equal(ps_image_read(film, NULL, &img), PS_OK);
  ps_gradcam_opts o = ps_gradcam_opts_default();
  o.layer = 3, o.use_class = 1, o.class_index = 1;
  ps_gradcam_result *r = NULL;
  assert_int_equal(ps_gradcam_compute(model, img, &o, &r), PS_OK);
  assert_true(fabs(focus - r->lung_focus) < 1e-4);
  char *npy = ps_test_join(d, "cli.npy");
  size_t shape[4];
  int nd;
  double *v = ps_test_read_npy(npy, shape, &nd);
  assert_non_null(v);
  assert_int_equal(shape[0], img->height);
  assert_int_equal(shape[1], img->width);
  for (size_t i = 0; i < (size_t)img->width * img->height; i++) assert_true(v[i] == r->cam[i]);
  free(v);
  /* PNG outputs at film resolution; the mask PNG is the lung mask */
  const char *pngs[] = {"ov.png", "hm.png", "mask.png", "mo.png"};
  for (int i = 0; i < 4; i++) {
    char *p = ps_test_join(d, pngs[i]);
    ps_image *o2 = NULL;
    assert_int_equal(ps_image_read(p, NULL, &o2), PS_OK);
    assert_int_equal(o2->width, img->width);
    assert_int_equal(o2->height, img->height);
    if (i == 2)
      for (size_t j = 0; j < (size_t)img->width * img->height; j++) assert_true((o2->data[j] > 0.5f) == (r->lung_mask[j] != 0));
    ps_image_free(o2);
    free(p);
  }
  free(out);
  /* text mode, default class */
  out = ps_test_capture(&rc, "'%s' gradcam --model '%s' '%s'", PS_CLI, model_path, film);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "lung_focus: "));
  assert_non_null(strstr(out, "prediction: "));
  free(out);
  /* refusals: the input as output, an unknown class, a bad layer, a broken film */
  long before = ps_test_file_size(film);
  out = ps_test_capture(&rc, "'%s' gradcam --model '%s' '%s' -o '%s' 2>&1", PS_CLI, model_path, film, film);
  assert_int_not_equal(rc, 0);
  assert_int_equal(ps_test_file_size(film), before);
  assert_int_equal(ps_test_system("cmp -s '%s' '%s'", ps_test_src(films[1]), film), 0);
  free(out);
  out = ps_test_capture(&rc, "'%s' gradcam --model '%s' --class VIRUS '%s' 2>&1", PS_CLI, model_path, film);
  assert_int_equal(rc, 2);
  assert_non_null(strstr(out, "VIRUS"));
  free(out);
  out = ps_test_capture(&rc, "'%s' gradcam --model '%s' --layer layer7 '%s' 2>&1", PS_CLI, model_path, film);
  assert_int_equal(rc, 2);
  free(out);
  char *bad = ps_test_join(d, "broken.jpeg");
  assert_int_equal(ps_test_system("head -c 3000 '%s' > '%s'", film, bad), 0);
  out = ps_test_capture(&rc, "'%s' gradcam --model '%s' '%s' 2>&1", PS_CLI, model_path, bad);
  assert_int_equal(rc, 1);
  assert_non_null(strstr(out, "broken.jpeg"));
  free(out);
  free(bad);
  free(npy);
  ps_gradcam_result_free(r);
  ps_image_free(img);
  free(film);
}

static void test_cli_audit(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(model, "python3 with torch, torchvision, numpy, PIL not available");
  const char *d = ps_test_tmpdir();
  char *man = ps_test_join(d, "manifest.csv");
  FILE *f = fopen(man, "w");
  assert_non_null(f);
  fprintf(f, "path,label,subtype,patient_id,split,sha256\n");
  fprintf(f, "%s,NORMAL,NORMAL,NORMAL2-IM-0746,test,\n", ps_test_src(films[0]));
  fprintf(f, "%s,PNEUMONIA,VIRUS,person388,test,\n", ps_test_src(films[1]));
  fprintf(f, "%s,PNEUMONIA,BACTERIA,person449,test,\n",
          ps_test_src("sample_data/films/kaggle/PNEUMONIA/person449_bacteria_1938.jpeg"));
  fprintf(f, "%s,NORMAL,NORMAL,NORMAL2-IM-1241,train,\n",
          ps_test_src("sample_data/films/kaggle/NORMAL/NORMAL2-IM-1241-0001.jpeg"));
  fprintf(f, "%s/missing.jpeg,NORMAL,NORMAL,ghost,test,\n", d);
  fclose(f);
  int rc;
  char *out = ps_test_capture(&rc, "'%s' audit -q --model '%s' --manifest '%s' --split test --threshold 0.5 -o '%s/audit'",
                              PS_CLI, model_path, man, d);
  print_message("%s", out);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "\"films\": 4"));
  assert_non_null(strstr(out, "\"scored\": 3"));
  assert_non_null(strstr(out, "\"failed\": 1"));
  assert_non_null(strstr(out, "\"NORMAL\": {\"films\": 1"));
  assert_non_null(strstr(out, "\"PNEUMONIA\": {\"films\": 2"));
  free(out);
  /* the CSV: header + 4 rows; each scored row's lung_focus equals the library's */
  char *csv = ps_test_join(d, "audit/lung_focus.csv");
  f = fopen(csv, "r");
  assert_non_null(f);
  char line[4096];
  int rows = 0, flagged = 0;
  assert_non_null(fgets(line, sizeof line, f));
  assert_non_null(strstr(line, "path,truth,predicted,prob,target_class,lung_focus,flagged"));
  while (fgets(line, sizeof line, f)) {
    rows++;
    if (strstr(line, "missing.jpeg")) {
      assert_non_null(strstr(line, "missing.jpeg,NORMAL,,"));
      continue;
    }
    char path[2048];
    double focus;
    int fl;
    char *c = strchr(line, ',');
    assert_non_null(c);
    memcpy(path, line, (size_t)(c - line));
    path[c - line] = 0;
    char *fields[10];
    int nf = 0;
    for (char *p = line; p && nf < 10; p = strchr(p, ',')) {
      if (*p == ',') p++;
      fields[nf++] = p;
    }
    assert_true(nf >= 8);
    focus = atof(fields[5]);
    fl = atoi(fields[6]);
    ps_image *img = NULL;
    assert_int_equal(ps_image_read(path, NULL, &img), PS_OK);
    ps_gradcam_result *r = NULL;
    assert_int_equal(ps_gradcam_compute(model, img, NULL, &r), PS_OK);
    assert_true(fabs(focus - r->lung_focus) < 1e-5);
    assert_int_equal(fl, r->lung_focus < 0.5);
    flagged += fl;
    ps_gradcam_result_free(r);
    ps_image_free(img);
  }
  fclose(f);
  assert_int_equal(rows, 4);
  char *js = ps_test_join(d, "audit/summary.json");
  assert_true(ps_test_file_size(js) > 0);
  char *o2 = ps_test_capture(&rc, "'%s' -c \"import json; s=json.load(open('%s')); print(s['films'], s['flagged'], "
                             "s['classes']['PNEUMONIA']['films'])\"", PS_PYTHON, js);
  assert_int_equal(rc, 0);
  int jf = 0, jfl = 0, jp = 0;
  assert_int_equal(sscanf(o2, "%d %d %d", &jf, &jfl, &jp), 3);
  assert_int_equal(jf, 4);
  assert_int_equal(jfl, flagged); /* an unreadable film is "failed", not flagged */
  assert_int_equal(jp, 2);
  free(o2);
  /* a second run replaces its own outputs; a foreign file in the way is refused */
  out = ps_test_capture(&rc, "'%s' audit -q --model '%s' --manifest '%s' --split test --limit 1 -o '%s/audit' 2>&1",
                        PS_CLI, model_path, man, d);
  assert_int_equal(rc, 0);
  free(out);
  assert_int_equal(ps_test_system("mkdir -p '%s/other' && echo keep > '%s/other/summary.json'", d, d), 0);
  out = ps_test_capture(&rc, "'%s' audit -q --model '%s' --manifest '%s' -o '%s/other' 2>&1", PS_CLI, model_path, man, d);
  assert_int_equal(rc, 1);
  assert_int_equal(ps_test_system("grep -qx keep '%s/other/summary.json'", d), 0);
  free(out);
  free(js);
  free(csv);
  free(man);
}

/* Layer4 CAM and Grad-CAM of a model loaded for the CPU run on the C engine (no libtorch): equal
 * to the same model handed to libtorch, on real films, both classes. */
static void test_engine_layer4_equals_libtorch(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(model, "python3 with torch, torchvision, numpy, PIL not available");
  ps_model *host = NULL, *torch = NULL;
  assert_int_equal(ps_model_load(model_path, PS_DEVICE_CPU, &host), PS_OK);
  assert_int_equal(ps_model_load(model_path, PS_DEVICE_CPU, &torch), PS_OK);
  assert_int_equal(ps_model_use_torch(torch), PS_OK);
  for (int i = 0; i < NFILMS; i++) {
    ps_image *img = read_film(films[i]);
    for (int k = 0; k < 4; k++) {
      ps_gradcam_opts o = ps_gradcam_opts_default();
      o.layer = 4, o.no_lung = 1, o.use_class = 1, o.class_index = k & 1;
      o.method = k < 2 ? PS_CAM_CAM : PS_CAM_GRADCAM;
      ps_gradcam_result *a = NULL, *b = NULL;
      assert_int_equal(ps_gradcam_compute(host, img, &o, &a), PS_OK);
      assert_int_equal(ps_gradcam_compute(torch, img, &o, &b), PS_OK);
      assert_int_equal(ps_model_uses_torch(host), 0); /* the engine did it: libtorch never took the model */
      size_t n = (size_t)img->width * img->height;
      double *bd = malloc(n * sizeof(double)), corr, md;
      for (size_t j = 0; j < n; j++) bd[j] = b->cam[j];
      compare(a->cam, bd, n, &corr, &md);
      print_message("%s %s class %d: engine vs libtorch corr %.8f max|diff| %.2e raw_max %.6g vs %.6g\n",
                    strrchr(films[i], '/') + 1, ps_cam_method_name(a->method), k & 1, corr, md, a->raw_max, b->raw_max);
      assert_int_equal(a->map_w, b->map_w);
      assert_int_equal(a->map_h, b->map_h);
      assert_true(corr >= 0.99999);
      assert_true(md <= 1e-4);
      assert_true(fabs(a->raw_max / b->raw_max - 1) < 1e-4);
      assert_true(fabs(a->logits[0] - b->logits[0]) < 1e-4 && fabs(a->logits[1] - b->logits[1]) < 1e-4);
      free(bd);
      ps_gradcam_result_free(a);
      ps_gradcam_result_free(b);
    }
    ps_image_free(img);
  }
  ps_model_free(host);
  ps_model_free(torch);
}

/* Without the libtorch backend (PNEUMOSCOPE_TORCH_BACKEND names nothing, as in a Fiji without
 * libtorch): layer4 CAM still works and equals the normal run; layer3 and Grad-CAM++ say in one
 * line that they need the backend. */
static void test_cli_without_backend(void **state) {
  (void)state;
  PS_TEST_SKIP_UNLESS(model, "python3 with torch, torchvision, numpy, PIL not available");
  const char *d = ps_test_tmpdir();
  const char *film = ps_test_src(films[1]);
  ps_test_expect(0, "\"method\": \"cam\"",
                 "PNEUMOSCOPE_TORCH_BACKEND=/nonexistent/libpneumoscope_torch.so '%s' gradcam --model '%s' --json "
                 "'%s' --npy '%s/nb.npy' 2>&1",
                 PS_CLI, model_path, film, d);
  ps_test_expect(0, "\"method\": \"gradcam\"",
                 "PNEUMOSCOPE_TORCH_BACKEND=/nonexistent/libpneumoscope_torch.so '%s' gradcam --model '%s' --json "
                 "--method gradcam '%s' 2>&1",
                 PS_CLI, model_path, film);
  assert_int_equal(ps_test_system("'%s' gradcam --model '%s' '%s' --npy '%s/wb.npy' >/dev/null 2>&1", PS_CLI, model_path,
                                  film, d),
                   0);
  assert_int_equal(ps_test_system("cmp -s '%s/nb.npy' '%s/wb.npy'", d, d), 0);
  ps_test_expect(1, "layer before layer4 needs the libtorch backend",
                 "PNEUMOSCOPE_TORCH_BACKEND=/nonexistent/libpneumoscope_torch.so '%s' gradcam --model '%s' --layer layer3 "
                 "'%s' 2>&1",
                 PS_CLI, model_path, film);
  ps_test_expect(1, "Grad-CAM++ needs the libtorch backend",
                 "PNEUMOSCOPE_TORCH_BACKEND=/nonexistent/libpneumoscope_torch.so '%s' gradcam --model '%s' --method "
                 "gradcampp '%s' 2>&1",
                 PS_CLI, model_path, film);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matches_torch_autograd),
      cmocka_unit_test(test_cam_equals_gradcam_at_layer4),
      cmocka_unit_test(test_engine_layer4_equals_libtorch),
      cmocka_unit_test(test_cli_without_backend),
      cmocka_unit_test(test_lung_focus_synthetic),
      cmocka_unit_test(test_npy_numpy_and_refusals),
      cmocka_unit_test(test_colormap_is_matplotlib_viridis),
      cmocka_unit_test(test_overlay_definition),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_cli_gradcam),
      cmocka_unit_test(test_cli_audit),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
