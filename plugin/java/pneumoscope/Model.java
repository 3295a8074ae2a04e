package pneumoscope;

/**
 * A ResNet18 chest-film classifier loaded from .safetensors (ps_model_load) with its metadata.
 * One model may be shared by several ImageJ threads: calls on one model are serialised here
 * (the C model is not documented as safe for concurrent use), different models run in parallel.
 *
 * <pre>
 * try (Model m = Model.load("pneumoscope-binary.safetensors", "auto");
 *      Film f = Film.read("chest.dcm")) {
 *   Model.Prediction p = m.classify(f);   // p.labelName(), p.probs()
 * }
 * </pre>
 */
public final class Model implements AutoCloseable {
  /** One film's classification and its out-of-distribution verdict (ps_infer_result's fields). */
  public static final class Prediction {
    private final float[] probs;
    private final int label;
    private final String labelName;
    private final int inDistribution;
    private final float oodScore;
    private final String oodReason;

    Prediction(float[] probs, int label, String labelName, int inDistribution, float oodScore, String oodReason) {
      this.probs = probs;
      this.label = label;
      this.labelName = labelName;
      this.inDistribution = inDistribution;
      this.oodScore = oodScore;
      this.oodReason = oodReason == null ? "" : oodReason;
    }

    /** Softmax probabilities (K), index = class. */
    public float[] probs() { return probs.clone(); }
    public int label() { return label; }
    public String labelName() { return labelName; }
    /**
     * 1: like the films the model was trained on; 0: flagged out of distribution (label and
     * probabilities are still given, {@link #oodReason()} says why); -1: unknown (a model without a
     * detector and nothing in the film's header to flag).
     */
    public int inDistribution() { return inDistribution; }
    /** The model's OOD score; NaN when unknown. */
    public float oodScore() { return oodScore; }
    /** Why the film was flagged ("" when it was not). */
    public String oodReason() { return oodReason; }
  }

  private long handle;
  private final String path;
  private final String[] classes;
  private final double[] numbers; // task, K, input_size, threshold
  private final String provenance;

  private Model(long handle, String path) {
    this.handle = handle;
    this.path = path;
    this.classes = nativeClasses(handle);
    this.numbers = nativeMetaNumbers(handle);
    this.provenance = PsNative.str(nativeProvenance(handle));
  }

  /** device: "auto" (CUDA when available), "cpu" or "cuda". */
  public static Model load(String path, String device) throws PneumoScopeException {
    if (path == null || path.isEmpty())
      throw new PneumoScopeException("PS_EINVAL", "no model file given", null);
    PsNative.load();
    return new Model(nativeLoad(PsNative.cstr(path), deviceCode(device)), path);
  }

  /** The bundled default model (ps_model_default_path: $PNEUMOSCOPE_MODEL, then the install). */
  public static String defaultPath() throws PneumoScopeException {
    PsNative.load();
    return PsNative.str(nativeDefaultPath());
  }

  /** Bundled model names {@link #resolve} knows, as `pneumoscope --model` does. */
  public static final String BINARY = "binary", THREE_CLASS = "3class";

  /**
   * A model named by the user (ps_model_resolve): "binary" / "3class" -> the bundled
   * pneumoscope-binary / pneumoscope-3class.safetensors (PS_ENOTFOUND naming the places tried when
   * absent), "" or null -> {@link #defaultPath()}, anything else is a path, returned as given.
   */
  public static String resolve(String nameOrPath) throws PneumoScopeException {
    PsNative.load();
    return PsNative.str(nativeResolve(PsNative.cstr(nameOrPath == null ? "" : nameOrPath)));
  }

  static int deviceCode(String device) throws PneumoScopeException {
    if (device == null || device.isEmpty() || device.equals("auto")) return 2;
    if (device.equals("cpu")) return 0;
    if (device.equals("cuda")) return 1;
    throw new PneumoScopeException("PS_EINVAL", "device must be auto, cpu or cuda, not " + device, null);
  }

  synchronized long handle() throws PneumoScopeException {
    if (handle == 0) throw new PneumoScopeException("PS_ESTATE", "model is closed", null);
    return handle;
  }

  /**
   * Classify one display-ready film: the model's preprocessing (resize to input_size, its
   * mean/std), softmax, decision (binary: P(classes[1]) >= threshold; threshold < 0 or NaN: the
   * model's own; multiclass: argmax).
   */
  public synchronized Prediction classify(Film film, double threshold) throws PneumoScopeException {
    long h = handle();
    float[] probs;
    double[] ood = new double[2];
    String[] reason = new String[1];
    synchronized (film) {
      probs = nativeClassify(h, film.handle(), ood, reason);
    }
    int label;
    if (numClasses() == 2 && threshold >= 0 && threshold <= 1) {
      label = probs[1] >= threshold ? 1 : 0;
    } else {
      label = nativeLabel(h, probs);
    }
    return new Prediction(probs, label, classes[label], (int) ood[0], (float) ood[1], reason[0]);
  }

  public Prediction classify(Film film) throws PneumoScopeException { return classify(film, -1); }

  /** Receives ps_infer_run results in input order, on the calling thread. */
  public interface InferListener {
    /**
     * status 0 = classified (label, probs, meta = {PatientID, StudyInstanceUID, SOPInstanceUID,
     * ViewPosition, format}, and the OOD verdict as in {@link Prediction}: inDistribution 1/0/-1,
     * oodScore NaN when unknown, oodReason "" unless flagged); otherwise error says why the file
     * failed (label -1). Return true to cancel the run.
     */
    boolean result(int index, String file, int status, String error, int label, float[] probs, String[] meta,
        int inDistribution, float oodScore, String oodReason);
  }

  /**
   * Classify every film under paths (files and folders, recursively, sorted; clearly non-film
   * names skipped) through ps_infer_run, exactly as `pneumoscope classify`. batch/threads 0 =
   * library defaults. Returns the number of films that failed; PS_ECANCELLED when the listener
   * cancelled.
   */
  public synchronized int infer(String[] paths, int batch, int threads, InferListener listener)
      throws PneumoScopeException {
    if (paths == null || paths.length == 0) throw new PneumoScopeException("PS_EINVAL", "no films given", null);
    if (listener == null) throw new PneumoScopeException("PS_EINVAL", "no result listener", null);
    byte[][] c = new byte[paths.length][];
    for (int i = 0; i < paths.length; i++) c[i] = PsNative.cstr(paths[i]);
    return nativeInfer(handle(), c, batch, threads, listener);
  }

  /** True when ps_infer skips this file name as clearly not a film (.txt, .csv, hidden ...). */
  public static boolean skipName(String path) throws PneumoScopeException {
    PsNative.load();
    return nativeSkipName(PsNative.cstr(path));
  }

  /** Native handle for GradCam (used under this model's lock). */
  long lockedHandle() throws PneumoScopeException { return handle(); }

  public String path() { return path; }
  /** "binary" or "multiclass". */
  public String task() { return numbers[0] == 0 ? "binary" : "multiclass"; }
  public int numClasses() { return (int) numbers[1]; }
  public String[] classes() { return classes.clone(); }
  public int inputSize() { return (int) numbers[2]; }
  public double threshold() { return numbers[3]; }
  public String provenance() { return provenance; }

  /** Multi-line description for About / Model Info. */
  public String describe() {
    StringBuilder b = new StringBuilder();
    b.append("Model: ").append(path).append('\n');
    b.append("Task: ").append(task()).append('\n');
    b.append("Classes: ").append(String.join(", ", classes)).append('\n');
    b.append("Input size: ").append(inputSize()).append('\n');
    if (numClasses() == 2) b.append("Threshold on P(").append(classes[1]).append("): ").append(threshold()).append('\n');
    if (!provenance.isEmpty()) b.append("Provenance: ").append(provenance).append('\n');
    return b.toString();
  }

  @Override
  public synchronized void close() {
    if (handle != 0) {
      nativeFree(handle);
      handle = 0;
    }
  }

  private static native long nativeLoad(byte[] path, int device) throws PneumoScopeException;
  private static native byte[] nativeDefaultPath() throws PneumoScopeException;
  private static native byte[] nativeResolve(byte[] nameOrPath) throws PneumoScopeException;
  private static native String[] nativeClasses(long handle);
  private static native double[] nativeMetaNumbers(long handle);
  private static native byte[] nativeProvenance(long handle);
  /** ood (2) receives {in_distribution, ood_score}, reason (1) the ood_reason. */
  private static native float[] nativeClassify(long handle, long film, double[] ood, String[] reason)
      throws PneumoScopeException;
  private static native int nativeLabel(long handle, float[] probs) throws PneumoScopeException;
  private static native void nativeFree(long handle);
  private static native int nativeInfer(long handle, byte[][] paths, int batch, int threads, InferListener l)
      throws PneumoScopeException;
  private static native boolean nativeSkipName(byte[] path) throws PneumoScopeException;
}
