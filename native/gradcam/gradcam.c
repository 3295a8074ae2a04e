/* Grad-CAM / CAM / Grad-CAM++ over the libtorch wrapper and the C ResNet18 (see ps_gradcam.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcam_internal.h"
#include "ps_lung.h"
#include "ps_model.h"
#include "ps_preprocess.h"
#include "ps_torch.h"

/* Bilinear resize with half-pixel centres (F.interpolate bilinear, align_corners=False, no
 * antialias): src (sh, sw) -> dst (dh, dw). */
static void upsample_bilinear(const float *src, int sw, int sh, float *dst, int dw, int dh) {
  double sx = (double)sw / dw, sy = (double)sh / dh;
  for (int y = 0; y < dh; y++) {
    double fy = (y + 0.5) * sy - 0.5;
    if (fy < 0) fy = 0;
    int y0 = (int)fy;
    if (y0 > sh - 1) y0 = sh - 1;
    int y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
    double ly = fy - y0;
    for (int x = 0; x < dw; x++) {
      double fx = (x + 0.5) * sx - 0.5;
      if (fx < 0) fx = 0;
      int x0 = (int)fx;
      if (x0 > sw - 1) x0 = sw - 1;
      int x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
      double lx = fx - x0;
      double v = (1 - ly) * ((1 - lx) * src[y0 * sw + x0] + lx * src[y0 * sw + x1]) +
                 ly * ((1 - lx) * src[y1 * sw + x0] + lx * src[y1 * sw + x1]);
      dst[(size_t)y * dw + x] = (float)v;
    }
  }
}

/* r->logits -> r->probs (softmax in double: torch's up to rounding), the label, the class to map. */
static int take_logits(ps_model *m, const ps_gradcam_opts *o, int K, ps_gradcam_result *r) {
  double mx = r->logits[0], s = 0;
  for (int k = 1; k < K; k++) mx = fmax(mx, r->logits[k]);
  for (int k = 0; k < K; k++) s += exp(r->logits[k] - mx);
  for (int k = 0; k < K; k++) r->probs[k] = (float)(exp(r->logits[k] - mx) / s);
  int st = ps_model_label(m, r->probs, &r->predicted);
  r->target_class = o->use_class ? o->class_index : r->predicted;
  return st;
}

int ps_gradcam_compute(ps_model *m, const ps_image *img, const ps_gradcam_opts *opts, ps_gradcam_result **out) {
  if (!out) return ps_error(PS_EINVAL, "gradcam: NULL out pointer");
  *out = NULL;
  if (!m || !img || !img->data) return ps_error(PS_EINVAL, "gradcam: NULL model or film");
  if (img->is_raw) return ps_error(PS_EINVAL, "gradcam: the film holds raw modality values; read it display-ready");
  ps_gradcam_opts o = opts ? *opts : ps_gradcam_opts_default();
  int layer = o.layer ? o.layer : 4;
  if (layer < 1 || layer > 4) return ps_error(PS_EINVAL, "gradcam: layer %d outside layer1..layer4", layer);
  ps_cam_method method = o.method;
  if (method == PS_CAM_AUTO) method = layer == 4 ? PS_CAM_CAM : PS_CAM_GRADCAM;
  if (method == PS_CAM_CAM && layer != 4)
    return ps_error(PS_EINVAL, "gradcam: method cam needs layer4 (GAP + fc follow it); use gradcam for layer%d", layer);
  if (method < PS_CAM_CAM || method > PS_CAM_GRADCAMPP) return ps_error(PS_EINVAL, "gradcam: unknown method %d", method);
  const ps_model_meta *meta = ps_model_meta_get(m);
  int K = ps_model_num_classes(m);
  if (!meta || K < 1 || K > PS_GRADCAM_MAX_CLASSES) return ps_error(PS_EINVAL, "gradcam: model has %d classes", K);
  if (o.use_class && (o.class_index < 0 || o.class_index >= K))
    return ps_error(PS_EINVAL, "gradcam: class %d outside 0..%d", o.class_index, K - 1);
  int S = o.input_size ? o.input_size : meta->input_size;
  if (S < 32 || S > 4096) return ps_error(PS_EINVAL, "gradcam: input size %d outside 32..4096", S);

  int st = PS_OK, prev_grad = 1, grad_set = 0, was_train = ps_model_is_train(m), train_set = 0;
  float *x = NULL, *act = NULL, *grad = NULL, *fcw = NULL;
  double *wk = NULL;
  uint8_t *own_mask = NULL;        /* a lungmask model's mask when Grad-CAM's own lung options differ */
  const uint8_t *input_mask = NULL; /* the mask of a lungmask model's input (NULL: unmasked) */
  ps_tensor *xt = NULL, *logits = NULL, *probs_t = NULL, *score = NULL, *score_sum = NULL, *g = NULL;
  ps_tensor *acts[4] = {NULL, NULL, NULL, NULL};
  ps_gradcam_result *r = calloc(1, sizeof *r);
  if (!r) return ps_error(PS_ENOMEM, "gradcam: out of memory");
  r->width = img->width, r->height = img->height, r->layer = layer, r->method = method, r->num_classes = K;
  r->lung_focus = NAN;
  r->lung_focus_uniform = NAN;

  x = malloc((size_t)3 * S * S * sizeof(float));
  if (!x) {
    st = ps_error(PS_ENOMEM, "gradcam: out of memory");
    goto fail;
  }
  /* The lung mask first: a lungs model's box comes from the same segmentation when the options
   * agree with ps_lung_roi's (the default), so the film is segmented once. */
  if (!o.no_lung && (st = ps_lung_segment(img, &o.lung, &r->lung_mask, &r->lung))) goto fail;
  r->roi[0] = r->roi[1] = 0, r->roi[2] = r->roi[3] = 1;
  if (meta->roi == PS_ROI_LUNGS || meta->roi == PS_ROI_LUNGMASK) {
    ps_lung_opts d = ps_lung_opts_default();
    int ws = o.lung.work_size ? o.lung.work_size : d.work_size;
    if (!o.no_lung && ws == d.work_size && o.lung.no_hull == d.no_hull && o.lung.no_mirror == d.no_mirror) {
      if ((st = ps_lung_roi_from_info(&r->lung, img->width, img->height, NULL, r->roi, &r->roi_fallback))) goto fail;
      r->lung.roi_fallback = r->roi_fallback;
      if (meta->roi == PS_ROI_LUNGMASK && !r->roi_fallback) input_mask = r->lung_mask; /* ps_lung_roi_mask's mask */
    } else if (meta->roi == PS_ROI_LUNGMASK) {
      if ((st = ps_lung_roi_mask(img, r->roi, &r->roi_fallback, &own_mask))) goto fail;
      input_mask = own_mask;
    } else if ((st = ps_lung_roi_for(img, PS_ROI_LUNGS, r->roi, &r->roi_fallback))) {
      goto fail;
    }
  }
  /* the network input classify uses: the whole film, the crop of a lungs model, or the masked crop
   * of a lungmask model (ps_lung_roi_input's pixels) */
  if ((st = ps_lung_mask_input(img, meta->roi != PS_ROI_FILM ? r->roi : NULL, input_mask, S, meta->mean, meta->std, x)))
    goto fail;
  /* CAM and Grad-CAM at layer4 need only layer4's maps and the fc weights, since
   * d(score_c)/dA_k = fc_w[c,k] / (h w) everywhere: ps_model_layer4 gives both, from the C engine for
   * a CPU model loaded from a file (no libtorch) or else from libtorch. Other layers and Grad-CAM++
   * take the gradients from libtorch's autograd. */
  const int direct = layer == 4 && method != PS_CAM_GRADCAMPP;
  int C = 0, h = 0, w = 0, hw = 0, c = 0;
  if (direct) {
    C = PS_MODEL_FEATURES;
    if ((st = ps_model_layer4_size(S, S, &h, &w))) goto fail;
    hw = h * w;
    act = malloc((size_t)C * hw * sizeof(float));
    fcw = malloc((size_t)K * C * sizeof(float));
    wk = calloc((size_t)C, sizeof(double));
    if (!act || !fcw || !wk) {
      st = ps_error(PS_ENOMEM, "gradcam: out of memory");
      goto fail;
    }
    if ((st = ps_model_layer4(m, x, S, S, r->logits, act, fcw))) goto fail;
    if ((st = take_logits(m, &o, K, r))) goto fail;
    c = r->target_class;
    for (int k = 0; k < C; k++) wk[k] = fcw[(size_t)c * C + k] / (method == PS_CAM_GRADCAM ? hw : 1);
  } else {
    if (!ps_torch_loaded() && (st = ps_torch_set_grad_enabled(1, NULL)) != PS_OK) {
      char why[1200];
      snprintf(why, sizeof why, "%s", ps_last_error());
      st = ps_error(st, "gradcam: %s needs the libtorch backend (layer4 CAM and Grad-CAM do not): %s",
                    method == PS_CAM_GRADCAMPP ? "Grad-CAM++" : "a layer before layer4", why);
      goto fail;
    }
    int64_t shape[4] = {1, 3, S, S};
    if ((st = ps_tensor_from_f32(&xt, x, shape, 4, ps_model_device(m)))) goto fail;
    if (was_train) {
      if ((st = ps_model_set_train(m, 0))) goto fail;
      train_set = 1;
    }
    if ((st = ps_torch_set_grad_enabled(1, &prev_grad))) goto fail; /* the gradients below */
    grad_set = 1;
    if ((st = ps_model_forward_features(m, xt, &logits, acts))) goto fail;
    if ((st = ps_tensor_to_f32(logits, r->logits, (size_t)K))) goto fail;
    if ((st = take_logits(m, &o, K, r))) goto fail;
    c = r->target_class;
    ps_tensor *A = acts[layer - 1];
    int64_t as[PS_TENSOR_MAX_DIMS];
    if (!A || ps_tensor_shape(A, as) != 4 || as[0] != 1) {
      st = ps_error(PS_ESTATE, "gradcam: model returned no layer%d activation", layer);
      goto fail;
    }
    C = (int)as[1], h = (int)as[2], w = (int)as[3], hw = h * w;
    act = malloc((size_t)C * hw * sizeof(float));
    wk = calloc((size_t)C, sizeof(double));
    if (!act || !wk) {
      st = ps_error(PS_ENOMEM, "gradcam: out of memory");
      goto fail;
    }
    if ((st = ps_tensor_to_f32(A, act, (size_t)C * hw))) goto fail;
    if ((st = ps_op_select(&score, logits, 1, c))) goto fail;
    if ((st = ps_op_sum(&score_sum, score, NULL, 0, 0))) goto fail;
    ps_tensor *inputs[1] = {A};
    if ((st = ps_torch_grad(&g, score_sum, NULL, inputs, 1, 0))) goto fail;
    if (!g) {
      st = ps_error(PS_ESTATE, "gradcam: the class score does not depend on layer%d", layer);
      goto fail;
    }
    grad = malloc((size_t)C * hw * sizeof(float));
    if (!grad) {
      st = ps_error(PS_ENOMEM, "gradcam: out of memory");
      goto fail;
    }
    if ((st = ps_tensor_to_f32(g, grad, (size_t)C * hw))) goto fail;
    for (int k = 0; k < C; k++) {
      const float *gk = grad + (size_t)k * hw, *ak = act + (size_t)k * hw;
      if (method == PS_CAM_GRADCAM) {
        double s = 0;
        for (int i = 0; i < hw; i++) s += gk[i];
        wk[k] = s / hw;
      } else { /* Grad-CAM++ (pytorch-grad-cam's closed form) */
        double asum = 0, s = 0;
        for (int i = 0; i < hw; i++) asum += ak[i];
        for (int i = 0; i < hw; i++) {
          double g1 = gk[i], g2 = g1 * g1, g3 = g2 * g1;
          if (g1 == 0) continue;
          double a = g2 / (2 * g2 + asum * g3 + 1e-7);
          s += a * (g1 > 0 ? g1 : 0);
        }
        wk[k] = s;
      }
    }
  }

  r->map_w = w, r->map_h = h;
  r->map = malloc((size_t)hw * sizeof(float));
  r->cam = malloc((size_t)img->width * img->height * sizeof(float));
  if (!r->map || !r->cam) {
    st = ps_error(PS_ENOMEM, "gradcam: out of memory for a %dx%d map", img->width, img->height);
    goto fail;
  }
  double mx = 0;
  for (int i = 0; i < hw; i++) {
    double s = 0;
    for (int k = 0; k < C; k++) s += wk[k] * act[(size_t)k * hw + i];
    r->map[i] = (float)(s > 0 ? s : 0);
    if (r->map[i] > mx) mx = r->map[i];
  }
  r->raw_max = mx;
  size_t n = (size_t)img->width * img->height;
  int px[4] = {0, 0, img->width, img->height};
  if (meta->roi != PS_ROI_FILM && (st = ps_lung_box_pixels(r->roi, img->width, img->height, px))) goto fail;
  if (px[0] == 0 && px[1] == 0 && px[2] == img->width && px[3] == img->height) {
    upsample_bilinear(r->map, w, h, r->cam, img->width, img->height);
  } else {
    /* the map covers the crop the model saw: upsample to the crop, paste it into film coordinates,
     * zero outside (the model never saw those pixels) */
    int cw = px[2] - px[0], ch = px[3] - px[1];
    float *crop = malloc((size_t)cw * ch * sizeof(float));
    if (!crop) {
      st = ps_error(PS_ENOMEM, "gradcam: out of memory for a %dx%d map", cw, ch);
      goto fail;
    }
    upsample_bilinear(r->map, w, h, crop, cw, ch);
    memset(r->cam, 0, n * sizeof(float));
    for (int y = 0; y < ch; y++)
      memcpy(r->cam + (size_t)(px[1] + y) * img->width + px[0], crop + (size_t)y * cw, (size_t)cw * sizeof(float));
    free(crop);
  }
  if (mx > 0) {
    float inv = (float)(1.0 / mx);
    for (size_t i = 0; i < n; i++) {
      float v = r->cam[i] * inv;
      r->cam[i] = v < 0 ? 0 : (v > 1 ? 1 : v);
    }
  } else {
    memset(r->cam, 0, n * sizeof(float));
  }

  if (!o.no_lung) {
    if ((st = ps_gradcam_lung_focus(r->cam, r->lung_mask, img->width, img->height, &r->lung_focus))) goto fail;
    size_t in = 0;
    for (int y = px[1]; y < px[3]; y++)
      for (int x = px[0]; x < px[2]; x++) in += r->lung_mask[(size_t)y * img->width + x] != 0;
    r->lung_focus_uniform = (double)in / ((double)(px[2] - px[0]) * (px[3] - px[1]));
  }
  *out = r;
  r = NULL;
  st = PS_OK;
fail:
  if (grad_set) ps_torch_set_grad_enabled(prev_grad, NULL);
  if (train_set) ps_model_set_train(m, was_train);
  for (int i = 0; i < 4; i++) ps_tensor_free(acts[i]);
  ps_tensor_free(xt);
  ps_tensor_free(logits);
  ps_tensor_free(probs_t);
  ps_tensor_free(score);
  ps_tensor_free(score_sum);
  ps_tensor_free(g);
  free(x);
  free(own_mask);
  free(act);
  free(grad);
  free(fcw);
  free(wk);
  ps_gradcam_result_free(r);
  return st;
}

int ps_gradcam_model_classes(ps_model *m, int *task, const char *names[PS_GRADCAM_MAX_CLASSES]) {
  const ps_model_meta *meta = m ? ps_model_meta_get(m) : NULL;
  if (!meta) return ps_error(PS_EINVAL, "gradcam: NULL model");
  int K = meta->num_classes;
  if (K < 1 || K > PS_GRADCAM_MAX_CLASSES) return ps_error(PS_EINVAL, "gradcam: model has %d classes", K);
  *task = meta->task == PS_TASK_MULTICLASS ? 1 : 0;
  for (int k = 0; k < K; k++) names[k] = meta->classes[k];
  return K;
}

int ps_gradcam_model_roi(ps_model *m) {
  const ps_model_meta *meta = m ? ps_model_meta_get(m) : NULL;
  return meta ? meta->roi : PS_ROI_FILM;
}
