/* ps_model.h — ResNet18 (torchvision's exact layout and state_dict names) in C over ps_torch,
 * with .safetensors weights and the metadata a chest-film classifier needs.
 *
 *   ps_model *m = NULL;
 *   float probs[2 * PS_MODEL_MAX_CLASSES];
 *   if (ps_model_load("pneumoscope-binary.safetensors", PS_DEVICE_AUTO, &m) == PS_OK &&
 *       ps_model_predict(m, input, 2, 224, 224, NULL, probs) == PS_OK) {   // input (2,3,224,224)
 *     int label; ps_model_label(m, probs, &label);          // index into ps_model_meta(m)->classes
 *   }
 *   ps_model_free(m);
 *
 * Architecture (torchvision.models.resnet18(num_classes=K)): conv1 7x7/2 pad 3 no bias, bn1,
 * relu, maxpool 3/2 pad 1, layer1..layer4 of two BasicBlocks each (64,128,256,512 channels;
 * stride 2 and a downsample conv1x1+bn in block 0 of layer2..4), adaptive avgpool 1x1, fc 512->K.
 * Input: (N,3,H,W) float32, ImageNet-normalised (gray films replicated to 3 channels), H,W >= 32.
 *
 * State dict: 122 named tensors exactly as torchvision's resnet18().state_dict() (conv1.weight,
 * bn1.weight, bn1.bias, bn1.running_mean, bn1.running_var, bn1.num_batches_tracked (int64),
 * layer1.0.conv1.weight, ..., layer2.0.downsample.0.weight, layer2.0.downsample.1.*, ...,
 * fc.weight, fc.bias). 62 of them are trainable parameters (conv/fc weights, bn weight/bias,
 * fc bias); the rest are BN buffers.
 *
 * File format: safetensors (8-byte little-endian header length, JSON header naming dtype, shape
 * and data_offsets of every tensor, raw little-endian data). Loads F32/F16/BF16 (I64 for
 * num_batches_tracked); saves F32 (optionally F16/BF16). The "__metadata__" string map holds:
 *   task        "binary" | "multiclass"
 *   classes     comma list, e.g. "NORMAL,PNEUMONIA" or "NORMAL,BACTERIA,VIRUS"
 *   input_size  e.g. "224"
 *   mean, std   comma lists of 3 numbers (ImageNet by default)
 *   threshold   binary decision threshold on P(classes[1]) (default 0.5)
 *   provenance  free text / JSON (data, epochs, metrics ...)
 *   roi         "lungs": the model sees the padded lung bounding box of ps_lung_roi (ps_lung.h),
 *               cropped before the resize; "lungmask": that box with everything outside the
 *               dilated lung mask set to gray (ps_lung_mask_input); absent (or "film"): the whole film. Any other value is
 *               refused with PS_EFORMAT. Film models are saved without the key (files unchanged).
 *   temperature   softmax temperature (absent: 1); ood_threshold, ood_method, ood_layers: below
 *   patient_ages  "FROM-TO" years of the training patients, e.g. "1-5" (absent: unknown, no age check)
 * A file that lies about itself (bad JSON, offsets out of range or overlapping, byte size not
 * dtype x shape, unknown dtype, wrong shape for a name, missing tensor, unknown tensor, header
 * length beyond the file or above 100 MB) is refused with PS_EFORMAT and a message naming it.
 *
 * Threads: ps_model_predict (and ps_infer_file / ps_infer_run over it) only reads the model
 * (eval-mode BN, no autograd), so several threads may classify through one model at once, with
 * the same answers as one thread (tests/test_concurrency.c). Everything else — training-mode or
 * autograd forwards, Grad-CAM, changing mode, device, channels_last or metadata, saving — needs the
 * model to itself. Separate models may run concurrently. ps_model_create seeds libtorch's global
 * generator.
 */
#ifndef PS_MODEL_H
#define PS_MODEL_H

#include "ps_common.h"
#include "ps_torch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ps_model ps_model;

#define PS_MODEL_MAX_CLASSES 8
#define PS_MODEL_CLASS_NAME_MAX 32
#define PS_MODEL_PROVENANCE_MAX 4096

/* ps_task (PS_TASK_BINARY, PS_TASK_MULTICLASS) is defined once, in ps_common.h. */

/* Plain data, copied in and out (ps_model_meta / ps_model_set_meta). */
typedef struct ps_model_meta {
  ps_task task;
  int num_classes;                                          /* K (= fc outputs) */
  char classes[PS_MODEL_MAX_CLASSES][PS_MODEL_CLASS_NAME_MAX]; /* class names, index = logit */
  int input_size;                                           /* square side the model was trained at */
  float mean[3], std[3];                                    /* normalisation per channel */
  double threshold;            /* binary: label = classes[1] when P(classes[1]) >= threshold */
  char provenance[PS_MODEL_PROVENANCE_MAX];                 /* free text / JSON, "" if none */
  int roi;                     /* ps_roi: PS_ROI_FILM (0, default) = the whole film is resized to
                                  the input; PS_ROI_LUNGS = the padded lung box (ps_lung_roi) is;
                                  PS_ROI_LUNGMASK = that box, gray outside the dilated lung mask */
  double temperature;          /* probabilities are softmax(logits / temperature) (calibration fitted
                                  on validation films); 1 = none (and 0 is read as 1) */
  double patient_ages[2];      /* the training patients' ages in years, from-to, as declared to train
                                  or calibrate (metadata "patient_ages", e.g. "1-5"); to = 0: unknown.
                                  A DICOM whose header age is more than a year outside is flagged
                                  out of distribution (ps_infer_ood_verdict) */
} ps_model_meta;

/* Defaults for K classes: K=2 binary NORMAL,PNEUMONIA; K=3 multiclass NORMAL,BACTERIA,VIRUS;
 * other K "class0".. (multiclass); input 224, ImageNet mean/std, threshold 0.5. */
PS_API int ps_model_meta_default(int num_classes, ps_model_meta *out);

/* ---- life cycle ------------------------------------------------------------------------------ */

/* New ResNet18 with K outputs (2 <= K <= PS_MODEL_MAX_CLASSES) on device, torchvision-style
 * init from seed: conv kaiming_normal(fan_out, relu), BN weight 1 / bias 0, fc uniform
 * +-1/sqrt(512) (nn.Linear default). Training mode is OFF (eval) after create. */
PS_API int ps_model_create(int num_classes, ps_device device, uint64_t seed, ps_model **out);
/* Load a .safetensors written by ps_model_save or from torchvision's state_dict (K taken from
 * fc.weight; metadata defaults when absent). Eval mode. */
PS_API int ps_model_load(const char *path, ps_device device, ps_model **out);
/* Initialise all tensors except fc.* from a torchvision-named ResNet18 file (e.g. ImageNet
 * weights, any K; fc ignored). Shapes are checked. */
PS_API int ps_model_init_from(ps_model *m, const char *path);
/* Fine-tuning: every tensor, fc included, from a trained model file whose classes are these
 * classes (K names, in logit order; the file's "classes" metadata, or with none its fc.weight rows,
 * must agree). PS_EINVAL naming both class lists when they differ. */
PS_API int ps_model_init_from_finetune(ps_model *m, const char *path, const char *const *classes, int K);
PS_API void ps_model_free(ps_model *m);

/* Options for ps_model_save; zero-initialised is valid (F32 storage). */
typedef struct ps_model_save_opts {
  ps_dtype storage; /* PS_DTYPE_F32 (default), PS_DTYPE_F16 or PS_DTYPE_BF16 for float tensors */
} ps_model_save_opts;
/* Atomic write: temp file in the same folder, fsync, rename over path. opts may be NULL. */
PS_API int ps_model_save(const ps_model *m, const char *path, const ps_model_save_opts *opts);

/* ---- metadata -------------------------------------------------------------------------------- */

/* Borrowed; valid until ps_model_set_meta or free. */
PS_API const ps_model_meta *ps_model_meta_get(const ps_model *m);
/* PS_OK when ages (years) is a range a model can store (0 <= from <= to <= 150, to > 0) or unknown
 * (to == 0); PS_EINVAL otherwise, its message starting with who (e.g. "train"). */
PS_API int ps_model_check_ages(const double ages[2], const char *who);
/* "FROM-TO" years (e.g. "1-5", "0.5-12"; 0 <= FROM <= TO <= 150, TO > 0) into ages; PS_EINVAL otherwise. */
PS_API int ps_model_parse_ages(const char *s, double ages[2]);
/* Replace metadata (num_classes must equal the model's K; threshold in [0,1]; names non-empty). */
PS_API int ps_model_set_meta(ps_model *m, const ps_model_meta *meta);
PS_API int ps_model_num_classes(const ps_model *m);
/* Index of a class name (case-sensitive), or PS_ENOTFOUND. */
PS_API int ps_model_class_index(const ps_model *m, const char *name);
/* Decision from probabilities (K): binary -> 1 when probs[1] >= threshold else 0;
 * multiclass -> argmax. */
PS_API int ps_model_label(const ps_model *m, const float *probs /* (K) */, int *label);

/* ---- mode, device, tensors ------------------------------------------------------------------- */

/* training=1: BN uses batch statistics and updates running stats (momentum 0.1) and
 * num_batches_tracked; 0: eval. */
PS_API int ps_model_set_train(ps_model *m, int training);
PS_API int ps_model_is_train(const ps_model *m);
/* Move every tensor to device (AUTO resolved; handles stay valid, parameters stay leaves). */
PS_API int ps_model_to(ps_model *m, ps_device device);
PS_API ps_device ps_model_device(const ps_model *m);
/* channels_last memory format for the conv weights and the forward input (a CUDA speed-up). */
PS_API int ps_model_set_channels_last(ps_model *m, int on);

/* Trainable parameters (62), in state_dict order: borrowed handles (requires_grad on), e.g. for
 * ps_adam_create. name (nullable) gets the state_dict key. NULL when i is out of range. */
PS_API int ps_model_num_params(const ps_model *m);
PS_API ps_tensor *ps_model_param(const ps_model *m, int i, const char **name);
/* All state_dict entries (122: parameters and BN buffers), borrowed, in state_dict order. */
PS_API int ps_model_num_tensors(const ps_model *m);
PS_API ps_tensor *ps_model_tensor(const ps_model *m, int i, const char **name);
/* Borrowed handle by state_dict key, NULL when absent. */
PS_API ps_tensor *ps_model_find(const ps_model *m, const char *name);
/* fc weight (K,512) and bias (K), borrowed: Grad-CAM's CAM fast path. */
PS_API ps_tensor *ps_model_fc_weight(const ps_model *m);
PS_API ps_tensor *ps_model_fc_bias(const ps_model *m);

/* ---- forward --------------------------------------------------------------------------------- */

/* logits (N,K) for x (N,3,H,W) on the model's device (x is moved if needed), in the model's
 * mode, recorded by autograd when grad mode is on (training: backward from a loss). */
PS_API int ps_model_forward(ps_model *m, const ps_tensor *x, ps_tensor **logits);
/* Same, also returning the outputs of layer1..layer4 (acts[0..3]: (N,64,H/4,W/4) ...
 * (N,512,H/32,W/32)) as new handles that stay in the graph: backward a class score (e.g.
 * ps_op_select(logits,1,c) summed) and read d(score)/d(act) with ps_torch_grad, or call
 * ps_tensor_retain_grad before backward. acts entries you do not want may be NULL pointers
 * in the array: pass acts = NULL for none. */
PS_API int ps_model_forward_features(ps_model *m, const ps_tensor *x, ps_tensor **logits,
                                     ps_tensor *acts[4]);
/* Inference from a float buffer: x (N,3,H,W) contiguous normalised input; writes logits and/or
 * softmax probabilities (N,K) (either may be NULL). Always eval-mode BN and no autograd,
 * whatever the model's mode; does not change the model. A model loaded for the CPU runs this in
 * PneumoScope's own C engine (im2col + BLAS, same float32 arithmetic as torchvision to ~1e-6)
 * without loading libtorch, until something needs its libtorch tensors (see ps_model_use_torch). */
PS_API int ps_model_predict(ps_model *m, const float *x, int n, int h, int w, float *logits,
                            float *probs);

/* ps_model_load for the CPU keeps the weights in plain C arrays and classifies through the C
 * engine: libtorch (0.7 s and 160 MB to load here) is not touched. Whatever needs libtorch
 * tensors — ps_model_forward*, ps_model_param/tensor/find/fc_*, ps_model_to(CUDA), channels_last,
 * init_from, save — moves the weights into libtorch first (exactly the same values), and from
 * then on predict runs through libtorch too. ps_model_use_torch does that move now (e.g. to
 * compare both paths); ps_model_uses_torch tells which path predict takes. */
PS_API int ps_model_use_torch(ps_model *m);
PS_API int ps_model_uses_torch(const ps_model *m);
/* What CPU predictions of loaded models run on: "C engine, oneDNN 2.6.3, kernels for avx512_core
 * (from the CPU's features); CPU: ..." (oneDNN's kernels, chosen from cpuid), "C engine, OpenBLAS
 * 0.3.21 ..." (the fallback kernels: a build without oneDNN, or $PNEUMOSCOPE_ENGINE=blas), or
 * "libtorch" in a build without the engine. Never NULL. */
PS_API const char *ps_model_cpu_engine(void);
/* Arithmetic of m's CPU predictions in the C engine: PS_PRECISION_FP32 (default; logits within 1e-4
 * of torchvision) or PS_PRECISION_BF16 (bfloat16 weights and activations, float32 accumulation;
 * needs oneDNN and a CPU with AVX512_BF16 or AMX, else PS_EUNSUPPORTED and m is unchanged). A
 * model whose predictions run through libtorch takes only FP32. */
typedef enum ps_precision { PS_PRECISION_FP32 = 0, PS_PRECISION_BF16 = 1 } ps_precision;
PS_API int ps_model_set_precision(ps_model *m, ps_precision precision);

/* ---- pooled features and the out-of-distribution detector ---------------------------------- */

/* Pooled layer4 features (N,512) (the input of fc) and logits (N,K) (either nullable), eval mode,
 * no autograd, on the C engine for a host-only CPU model, else through libtorch. */
PS_API int ps_model_features(ps_model *m, const float *x, int n, int h, int w, float *feats, float *logits);
/* The same for any layers: the channel means of the outputs of layer1..layer4 chosen by `layers`
 * (bit l = layer l+1, 1..15), concatenated in layer order: feats (N, ps_model_layers_dim(layers)). */
PS_API int ps_model_features_layers(ps_model *m, const float *x, int n, int h, int w, unsigned layers, float *feats,
                                    float *logits);
PS_API int ps_model_layers_dim(unsigned layers); /* 64, 128, 256, 512 per chosen layer, summed */

/* What CAM needs for one film x (1,3,h,w): logits (K), layer4's output act (512, ah, aw) with
 * (ah, aw) from ps_model_layer4_size, and fc's weights fc_w (K, 512). On the C engine for a
 * host-only CPU model (no libtorch), else through libtorch; eval mode, no autograd. */
PS_API int ps_model_layer4_size(int h, int w, int *ah, int *aw);
PS_API int ps_model_layer4(ps_model *m, const float *x, int h, int w, float *logits, float *act, float *fc_w);

#define PS_MODEL_FEATURES 512
#define PS_MODEL_OOD_MAX_DIM 960 /* all four layers */
/* Out-of-distribution (OOD) detector stored in the model file with the weights: a class-conditional
 * Gaussian with one shared covariance (Lee et al. 2018) on a film's feature row f, the channel
 * means of the chosen layers' outputs (ps_model_features_layers; metadata "ood_layers", e.g.
 * "layer1,layer2,layer3,layer4", layer4 alone when absent). The score of a film is its smallest
 * squared Mahalanobis distance to a class mean,
 *   score = min_k (f - mu_k)^T P (f - mu_k),   P = shared precision (inverse covariance),
 * and a film is out of distribution when score > threshold (chosen on validation films).
 * Stored as tensors "ood.class_means" (K,D) and "ood.precision" (D,D) float32 and metadata
 * "ood_threshold", "ood_method", "ood_layers". Models written before the detector have none:
 * ps_model_has_ood is 0 and ps_model_ood_score fails with PS_ENOTFOUND. */
PS_API int ps_model_has_ood(const ps_model *m);
/* Copied in; threshold > 0. Replaces any detector the model had. D = ps_model_layers_dim(layers). */
PS_API int ps_model_set_ood(ps_model *m, unsigned layers, const float *class_means /* (K,D) */,
                            const float *precision /* (D,D) */, double threshold);
PS_API double ps_model_ood_threshold(const ps_model *m); /* NAN when none */
PS_API unsigned ps_model_ood_layers(const ps_model *m);  /* 0 when none */
/* Scores (N) of feature rows feats (N,D) of the detector's layers. */
PS_API int ps_model_ood_score(const ps_model *m, const float *feats, int n, float *score);
/* Optional: gets ready for a ps_model_predict of n films of h x w without running one (the CPU
 * engine's kernels and weight layouts, about 0.1 s for ResNet18 on first use), e.g. while the
 * films are being decoded. The predictions are the same with or without it. */
PS_API int ps_model_prepare(ps_model *m, int n, int h, int w);
/* ps_model_predict plus the OOD score per film (score nullable; NAN for every film when the
 * model has no detector). */
PS_API int ps_model_predict_ood(ps_model *m, const float *x, int n, int h, int w, float *logits, float *probs,
                                float *score);

/* Probabilities from logits (n, K) at temperature T (1: plain softmax), exactly as classification
 * computes them (max-shifted, float32 exp): calibration measures the probabilities users see. */
PS_API void ps_model_softmax(const float *logits, int n, int K, double T, float *probs);

/* ---- default model --------------------------------------------------------------------------- */

/* The bundled default binary model file: $PNEUMOSCOPE_MODEL when set, else
 * <source tree>/sample_data/models/pneumoscope-binary.safetensors, else
 * <install prefix>/share/pneumoscope/models/pneumoscope-binary.safetensors (first that exists).
 * PS_ENOTFOUND with the places tried when none exists. */
PS_API int ps_model_default_path(char *buf, size_t cap);

/* A model named by the user: NULL or "" -> ps_model_default_path; "binary" / "3class" -> the bundled
 * pneumoscope-binary / pneumoscope-3class.safetensors (looked up like the default: beside the
 * source tree, the install prefix, or the executable); anything else is a path, returned as given.
 * PS_ENOTFOUND naming the places tried when a short name's file is missing. */
PS_API int ps_model_resolve(const char *name_or_path, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
