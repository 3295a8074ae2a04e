package pneumoscope;

/**
 * GenericDialog labels of every PneumoScope command. A label's first word, lower-cased, is the
 * macro key the recorder writes (run("Classify Chest Film...", "model=[...] threshold=0.5")), so
 * these strings are an interface: never rename them. Last-used values live in statics here.
 */
public final class Keys {
  private Keys() {}

  // ---- menu command names (plugins.config) ---------------------------------------------------
  public static final String CMD_CLASSIFY = "Classify Chest Film...";
  public static final String CMD_GRADCAM = "Grad-CAM Overlay...";
  public static final String CMD_BATCH = "Batch Classify Folder...";
  public static final String CMD_TRAIN = "Train Model...";
  public static final String CMD_EVALUATE = "Evaluate Model...";
  public static final String CMD_OPEN = "Open DICOM (PneumoScope)...";
  public static final String CMD_ABOUT = "About PneumoScope / Model Info";

  public static final String RESULTS_TABLE = "PneumoScope Results";
  public static final String BATCH_TABLE = "PneumoScope Batch";
  public static final String EVAL_TABLE = "PneumoScope Evaluation";
  public static final String TRAIN_TABLE = "PneumoScope Training";

  // ---- dialog labels = macro keys ------------------------------------------------------------
  public static final String MODEL = "model";            // binary | 3class | file (older macros: "" or a path)
  public static final String MODEL_FILE = "model_file";  // the .safetensors when model=file
  public static final String THRESHOLD = "threshold";    // binary decision threshold, <0 = model's
  public static final String USE_FILE = "use_file";      // classify the file behind the image
  public static final String RAW = "raw";                // Open DICOM: modality values
  public static final String PATH = "path";              // Open DICOM: file
  public static final String CLASS = "class";            // Grad-CAM target class ("auto" = predicted)
  public static final String LAYER = "layer";            // Grad-CAM layer
  public static final String OPACITY = "opacity";        // overlay opacity, percent
  public static final String LUT = "lut";                // heatmap LUT name
  public static final String HEATMAP = "heatmap";        // also show the heatmap image
  public static final String LUNG_OUTLINE = "lung_outline"; // also outline the lung fields
  public static final String FOLDER = "folder";          // batch input folder
  public static final String RECURSIVE = "recursive";
  public static final String CSV = "csv";                // CSV output file ("" = none)
  public static final String MANIFEST = "manifest";      // train/evaluate split manifest
  public static final String OUTDIR = "outdir";          // train/evaluate output folder
  public static final String TASK = "task";              // binary | multiclass
  public static final String EPOCHS = "epochs";
  public static final String LR = "lr";
  public static final String BATCH = "batch";
  public static final String PATIENCE = "patience";
  public static final String SIZE = "size";
  public static final String SEED = "seed";
  public static final String THREADS = "threads";
  public static final String DEVICE = "device";          // auto | cpu | cuda
  public static final String INIT = "init";              // initial weights ("" = none; binary, 3class: the bundled)
  public static final String FINETUNE = "finetune";      // keep init's classifier (same classes): fine-tuning
  public static final String LIMIT = "limit";
  public static final String PATIENT_AGES = "patient_ages"; // the training patients' ages, "1-5" years ("" = not stored)
  public static final String AUGMENT = "augment";
  public static final String BALANCE = "balance";        // default | on | off
  public static final String RESUME = "resume";
  public static final String SET_DEFAULT = "set_default"; // make the trained model the default
  public static final String SPLIT = "split";            // evaluate: test | val | train | all
  public static final String LIBTORCH = "libtorch";      // train: libtorch folder or backend ("" = usual search)

  public static final String[] MODELS = {Model.BINARY, Model.THREE_CLASS, "file"}; // ModelChoice: model=
  public static final String[] TASKS = {"binary", "multiclass"};
  public static final String[] DEVICES = {"auto", "cpu", "cuda"};
  public static final String[] BALANCES = {"default", "on", "off"};
  public static final String[] SPLITS = {"test", "val", "train", "all"};
  public static final String[] LAYERS = {"layer4", "layer3", "layer2", "layer1"};
  /** viridis = the colours of `pneumoscope gradcam` overlays; the others are ImageJ's own LUTs. */
  public static final String[] LUTS = {"viridis", "Fire", "Ice", "Spectrum", "Grays"};

  // ---- last-used values (per ImageJ session) -------------------------------------------------
  public static String lastModel = "";      // what ModelChoice.read gave: binary, 3class, "" or a path
  public static String lastModelFile = "";  // the last model_file, kept while a bundled model is chosen
  public static double lastThreshold = -1;
  public static boolean lastUseFile = true;
  public static boolean lastRaw = false;
  public static String lastPath = "";
  public static String lastClass = "auto";
  public static String lastLayer = "layer4";
  public static double lastOpacity = 40;
  public static String lastLut = "viridis";
  public static boolean lastHeatmap = true;
  public static boolean lastLungOutline = false;
  public static String lastFolder = "";
  public static boolean lastRecursive = true;
  public static String lastCsv = "";
  public static String lastManifest = "";
  public static String lastOutdir = "";
  public static String lastTask = "binary";
  public static int lastEpochs = 0;
  public static double lastLr = 0;
  public static int lastBatch = 0;
  public static int lastPatience = 0;
  public static int lastSize = 0;
  public static int lastSeed = 0;
  public static int lastThreads = 0;
  public static String lastDevice = "auto";
  public static String lastInit = "";
  public static boolean lastFinetune = false;
  public static int lastLimit = 0;
  public static String lastPatientAges = "";
  public static boolean lastAugment = true;
  public static String lastBalance = "default";
  public static boolean lastResume = false;
  public static boolean lastSetDefault = true;
  public static String lastSplit = "test";
  public static String lastLibtorch = null;  // null: not asked yet this session (Prefs has the last one)

  /** IJ Prefs key of the default model file (set by Train Model... when asked). */
  public static final String PREF_MODEL = "pneumoscope.model";
  /** IJ Prefs key of Train Model's libtorch field (a location that worked; "" = the usual search). */
  public static final String PREF_LIBTORCH = "pneumoscope.libtorch";
}
