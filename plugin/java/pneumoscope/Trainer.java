package pneumoscope;

/**
 * Training (ps_train_run) and evaluation (ps_evaluate_run) of a ResNet18 on a split manifest
 * (path,label,subtype,patient_id,split,sha256; `pneumoscope split` writes one). Both are single
 * long native calls: progress comes back through {@link ProgressListener}, which may cancel.
 * The per-epoch lines arrive through the library log (PsNative's sink: IJ.log in ImageJ).
 */
public final class Trainer {
  private Trainer() {}

  /** Called per batch; return true to cancel (PS_ECANCELLED: best model stays loadable). */
  public interface ProgressListener {
    boolean progress(double fraction, String what);
  }

  /** ps_train_opts; every 0 / empty field takes the task's default. */
  public static final class Options {
    public String manifest = "", outdir = "";
    public String task = "binary";     // binary | multiclass
    public int epochs, batch, patience, size, threads, limit;
    public double lr;
    public long seed;
    public String device = "auto";     // auto | cpu | cuda
    public String init = "";           // weights to start from: a path, or binary / 3class (bundled)
    public boolean finetune;           // keep init's fc (a trained model of the same classes)
    public boolean resume, augment = true, saveHalf;
    public String balance = "default"; // default | on | off
    public String command = "";        // recorded in the model's provenance
    public String patientAges = "";    // "FROM-TO" years stored in the model (ps_model_parse_ages); "" = none
  }

  /** ps_train_result. */
  public static final class Result {
    public int epochsRun, bestEpoch, nTrain, nVal, nTest;
    public double bestScore, threshold;
    public boolean stoppedEarly, cacheBuilt;
    public String bestModel;
  }

  public static Result train(Options o, ProgressListener p) throws PneumoScopeException {
    PsNative.load();
    if (o.manifest.isEmpty() || o.outdir.isEmpty())
      throw new PneumoScopeException("PS_EINVAL", "training needs a manifest and an output folder", null);
    int task = o.task.equals("multiclass") ? 1 : o.task.equals("binary") ? 0 : -1;
    if (task < 0) throw new PneumoScopeException("PS_EINVAL", "task must be binary or multiclass, not " + o.task, null);
    int bal = o.balance.equals("on") ? 1 : o.balance.equals("off") ? 2 : 0;
    int dev = o.device.equals("cpu") ? 1 : o.device.equals("cuda") ? 2 : 0; // ps_train_device
    double[] r = nativeTrain(PsNative.cstr(o.manifest), PsNative.cstr(o.outdir), task, o.epochs, o.lr, o.batch,
        o.patience, o.size, o.seed, o.threads, dev, PsNative.cstr(o.init), o.finetune, o.resume, bal, o.augment, o.limit,
        o.saveHalf, PsNative.cstr(o.command), PsNative.cstr(o.patientAges), p);
    Result res = new Result();
    res.epochsRun = (int) r[0];
    res.bestEpoch = (int) r[1];
    res.bestScore = r[2];
    res.threshold = r[3];
    res.stoppedEarly = r[4] != 0;
    res.cacheBuilt = r[5] != 0;
    res.nTrain = (int) r[6];
    res.nVal = (int) r[7];
    res.nTest = (int) r[8];
    res.bestModel = new java.io.File(o.outdir, "best.safetensors").getPath();
    return res;
  }

  /** ps_eval_result. */
  public static final class Evaluation {
    public int n;
    public double accuracy, auc, ap, f1Macro, threshold, sensitivity, specificity;
  }

  /**
   * Evaluate model on one split ("test", "val", "train", "all") of manifest: metrics.json,
   * predictions.csv, confusion.png, roc.png, pr.png (and curves.png with a history) in outdir.
   * threshold in [0, 1] overrides the model's own; &lt; 0 keeps it.
   */
  public static Evaluation evaluate(String model, String manifest, String split, String outdir, double threshold,
      String device, int limit, ProgressListener p) throws PneumoScopeException {
    PsNative.load();
    int dev = "cpu".equals(device) ? 1 : "cuda".equals(device) ? 2 : 0;
    double[] r = nativeEvaluate(PsNative.cstr(model), PsNative.cstr(manifest), PsNative.cstr(split),
        PsNative.cstr(outdir), threshold, dev, limit, p);
    Evaluation e = new Evaluation();
    e.n = (int) r[0];
    e.accuracy = r[1];
    e.auc = r[2];
    e.ap = r[3];
    e.f1Macro = r[4];
    e.threshold = r[5];
    e.sensitivity = r[6];
    e.specificity = r[7];
    return e;
  }

  private static native double[] nativeTrain(byte[] manifest, byte[] outdir, int task, int epochs, double lr,
      int batch, int patience, int size, long seed, int threads, int device, byte[] init, boolean finetune, boolean resume,
      int balance, boolean augment, int limit, boolean saveHalf, byte[] command, byte[] patientAges, ProgressListener p)
      throws PneumoScopeException;
  private static native double[] nativeEvaluate(byte[] model, byte[] manifest, byte[] split, byte[] outdir,
      double threshold, int device, int limit, ProgressListener p) throws PneumoScopeException;
}
