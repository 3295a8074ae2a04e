package pneumoscope;

/**
 * Grad-CAM of one film for one model (ps_gradcam_compute): the class-activation map at film
 * resolution in [0, 1], the probabilities, and the share of attention inside the lung fields.
 *
 * <pre>
 * try (GradCam g = GradCam.compute(model, film, 4, -1, "auto")) {
 *   float[] cam = g.cam();            // width() * height(), [0, 1]
 *   double focus = g.lungFocus();     // NaN when undefined
 * }
 * </pre>
 */
public final class GradCam implements AutoCloseable {
  public static final String[] METHODS = {"auto", "cam", "gradcam", "gradcam++"};

  private long handle;
  private final double[] n; // width, height, K, predicted, target, layer, method, lung_focus, lungs, raw_max, mirrored
  private final float[] probs;

  private GradCam(long handle) {
    this.handle = handle;
    this.n = nativeNumbers(handle);
    this.probs = nativeProbs(handle);
  }

  /**
   * layer 1..4 (0: 4); classIndex -1 explains the predicted class; method one of {@link #METHODS}.
   * The model's lock is held for the computation (shared models are safe).
   */
  public static GradCam compute(Model model, Film film, int layer, int classIndex, String method)
      throws PneumoScopeException {
    int m = -1;
    for (int i = 0; i < METHODS.length; i++) if (METHODS[i].equals(method == null ? "auto" : method)) m = i;
    if (m < 0) throw new PneumoScopeException("PS_EINVAL", "Grad-CAM method must be auto, cam, gradcam or gradcam++, not " + method, null);
    if (layer < 0 || layer > 4) throw new PneumoScopeException("PS_EINVAL", "Grad-CAM layer must be 1..4, not " + layer, null);
    if (classIndex >= model.numClasses())
      throw new PneumoScopeException("PS_EINVAL", "class " + classIndex + " is not one of the model's " + model.numClasses() + " classes", null);
    synchronized (model) {
      long mh = model.lockedHandle();
      synchronized (film) {
        return new GradCam(nativeCompute(mh, film.handle(), layer, classIndex, m));
      }
    }
  }

  private synchronized long handle() throws PneumoScopeException {
    if (handle == 0) throw new PneumoScopeException("PS_ESTATE", "Grad-CAM result is closed", null);
    return handle;
  }

  public int width() { return (int) n[0]; }
  public int height() { return (int) n[1]; }
  public int numClasses() { return (int) n[2]; }
  public int predicted() { return (int) n[3]; }
  public int targetClass() { return (int) n[4]; }
  public int layer() { return (int) n[5]; }
  public String method() { return METHODS[(int) n[6]]; }
  /** Share of the CAM mass inside the lung mask; NaN when undefined. */
  public double lungFocus() { return n[7]; }
  public int lungs() { return (int) n[8]; }
  public double rawMax() { return n[9]; }
  public boolean lungMirrored() { return n[10] != 0; }
  /** The box of the film the model saw, {x0, y0, x1, y1} as fractions: {0, 0, 1, 1} for a
   * whole-film model, the padded lung box for a lungs / lungmask model. */
  public double[] roi() { return new double[] {n[11], n[12], n[13], n[14]}; }
  public float[] probs() { return probs.clone(); }

  /** (H, W) map in [0, 1], a copy. */
  public synchronized float[] cam() throws PneumoScopeException { return nativeCam(handle()); }
  /** (H, W) 0/1 lung mask, a copy (null when the lung mask was not computed). */
  public synchronized byte[] lungMask() throws PneumoScopeException { return nativeLungMask(handle()); }

  @Override
  public synchronized void close() {
    if (handle != 0) {
      nativeFree(handle);
      handle = 0;
    }
  }

  private static native long nativeCompute(long model, long film, int layer, int classIndex, int method)
      throws PneumoScopeException;
  private static native double[] nativeNumbers(long handle);
  private static native float[] nativeProbs(long handle);
  private static native float[] nativeCam(long handle) throws PneumoScopeException;
  private static native byte[] nativeLungMask(long handle) throws PneumoScopeException;
  private static native void nativeFree(long handle);
}
