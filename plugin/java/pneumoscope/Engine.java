package pneumoscope;

import ij.IJ;
import ij.ImagePlus;
import ij.Prefs;
import ij.WindowManager;
import ij.gui.ImageRoi;
import ij.gui.Overlay;
import ij.gui.Roi;
import ij.io.FileInfo;
import ij.measure.Calibration;
import ij.measure.ResultsTable;
import ij.plugin.filter.ThresholdToSelection;
import ij.process.ByteProcessor;
import ij.process.ColorProcessor;
import ij.process.FloatProcessor;
import ij.process.ImageProcessor;
import ij.text.TextWindow;
import java.awt.Color;
import java.awt.Frame;
import java.awt.image.IndexColorModel;
import java.io.BufferedReader;
import java.io.File;
import java.io.FileReader;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The work behind every PneumoScope menu command (the plugin classes only ask and show).
 * Everything here calls the native library through Film / Model / GradCam / Trainer.
 */
public final class Engine {
  private Engine() {}

  private static boolean logInstalled;

  /** Load the library and route its log to IJ.log (once). */
  public static synchronized void init() throws PneumoScopeException {
    PsNative.load();
    if (!logInstalled) {
      PsNative.setLogSink(new PsNative.LogSink() {
        @Override
        public void log(int level, String message) {
          String tag = level >= PsNative.LOG_ERROR ? "error: " : level == PsNative.LOG_WARN ? "warning: " : "";
          IJ.log("PneumoScope: " + tag + message);
        }
      }, PsNative.LOG_INFO);
      logInstalled = true;
    }
  }

  /**
   * Report a failed command: a dialog when a person is at the screen; when a macro runs the
   * command, the message goes to the Log and the macro is aborted (a dialog would block a batch
   * run, e.g. ImageJ -batch under Xvfb).
   */
  public static void fail(String command, Throwable e) {
    if (command.endsWith("...")) command = command.substring(0, command.length() - 3); // the menu's dialog mark
    String msg = e instanceof PneumoScopeException ? e.getMessage() : String.valueOf(e);
    if (e instanceof OutOfMemoryError) msg = "out of Java memory (" + e.getMessage() + "); Edit > Options > Memory";
    if (isMacro()) {
      IJ.log(command + ": " + msg);
      System.err.println("PneumoScope " + command + ": " + msg);
      ij.macro.Interpreter.abort();
    } else {
      IJ.error(command, msg);
    }
  }

  /** True when a macro (or -batch) runs the command, so no dialog may wait for a click. */
  public static boolean isMacro() {
    return ij.Macro.getOptions() != null || ij.macro.Interpreter.isBatchMode()
        || Thread.currentThread().getName().startsWith("Run$_");
  }

  // ---- films -------------------------------------------------------------------------------

  /**
   * A film as a calibrated 32-bit ImagePlus: display-ready [0, 1] pixels, or modality values
   * with raw (display range = the file's VOI window when it has one); pixel spacing as the
   * calibration (mm); the header summary as the "Info" property; the file as its FileInfo.
   */
  public static ImagePlus openFilm(String path, boolean raw) throws PneumoScopeException {
    init();
    try (Film f = Film.read(path, raw, 0, 0)) {
      return toImagePlus(f, new File(path).getName());
    }
  }

  public static ImagePlus toImagePlus(Film f, String title) throws PneumoScopeException {
    float[] px = f.pixels();
    FloatProcessor fp = new FloatProcessor(f.width(), f.height(), px, null);
    ImagePlus imp = new ImagePlus(title, fp);
    if (f.isRaw()) {
      if (f.windowWidth() > 0) {
        fp.setMinAndMax(f.windowCenter() - f.windowWidth() / 2, f.windowCenter() + f.windowWidth() / 2);
      } else {
        fp.resetMinAndMax();
      }
      // MONOCHROME1 raw values are bright for air: show them with an inverting LUT like ImageJ does
      if ("MONOCHROME1".equals(f.photometric())) fp.invertLut();
    } else {
      fp.setMinAndMax(0, 1);
    }
    Calibration cal = imp.getCalibration();
    double[] sp = f.pixelSpacing();
    if (sp[0] > 0 && sp[1] > 0) {
      cal.pixelHeight = sp[0];
      cal.pixelWidth = sp[1];
      cal.setUnit("mm");
    }
    imp.setProperty("Info", f.summary());
    if (f.path() != null) {
      File file = new File(f.path()).getAbsoluteFile();
      FileInfo fi = new FileInfo();
      fi.fileName = file.getName();
      fi.directory = file.getParent() + File.separator;
      fi.width = f.width();
      fi.height = f.height();
      fi.fileType = FileInfo.GRAY32_FLOAT;
      imp.setFileInfo(fi);
      imp.setProperty("PneumoScope.path", file.getPath());
    }
    return imp;
  }

  /** The file behind an image ImageJ opened (FileInfo directory + fileName), or null. */
  public static String fileBehind(ImagePlus imp) {
    Object p = imp.getProperty("PneumoScope.path");
    if (p instanceof String && new File((String) p).isFile()) return (String) p;
    FileInfo fi = imp.getOriginalFileInfo();
    if (fi == null || fi.fileName == null || fi.fileName.isEmpty() || fi.directory == null
        || fi.directory.isEmpty())
      return null;
    if (fi.url != null && !fi.url.isEmpty()) return null;
    File f = new File(fi.directory, fi.fileName);
    return f.isFile() ? f.getPath() : null;
  }

  /**
   * The film for an open image. With useFile and a readable file behind the image whose size
   * matches the image (not cropped or scaled since), the native reader reads that file (so the
   * DICOM window, photometric and header are honoured). Otherwise the current slice's pixels with
   * ImageJ's display range (and inverting LUT) become the [0, 1] film.
   */
  public static Film filmFor(ImagePlus imp, boolean useFile) throws PneumoScopeException {
    init();
    if (useFile) {
      String path = fileBehind(imp);
      if (path != null) {
        Film f = null;
        try {
          f = Film.read(path);
        } catch (PneumoScopeException e) {
          IJ.log("PneumoScope: " + path + " could not be read (" + e.getMessage() + "); using the image's pixels");
        }
        if (f != null) {
          if (f.width() == imp.getWidth() && f.height() == imp.getHeight()) return f;
          IJ.log("PneumoScope: " + imp.getTitle() + " is " + imp.getWidth() + "x" + imp.getHeight()
              + " but its file " + path + " is " + f.width() + "x" + f.height() + "; using the image's pixels");
          f.close();
        }
      }
    }
    return filmFromPixels(imp);
  }

  /** The current slice's pixels through ImageJ's display range, as a [0, 1] film. */
  public static Film filmFromPixels(ImagePlus imp) throws PneumoScopeException {
    ImageProcessor ip = imp.getProcessor();
    if (ip == null) throw new PneumoScopeException("PS_EINVAL", imp.getTitle() + " has no pixels", null);
    if (ip instanceof ColorProcessor) {
      ImageProcessor gray = ip.convertToByte(false); // ImageJ's RGB -> 8-bit (its weighting setting)
      return Film.fromPixels(gray.getPixels(), gray.getWidth(), gray.getHeight(), 0, 255, false);
    }
    double min = ip.getMin(), max = ip.getMax();
    return Film.fromPixels(ip.getPixels(), ip.getWidth(), ip.getHeight(), min, max, ip.isInvertedLut());
  }

  // ---- models ------------------------------------------------------------------------------

  private static final Map<String, Model> models = new HashMap<String, Model>();

  /**
   * The model file to use for a dialog's model value (see {@link ModelChoice}): "binary" / "3class"
   * -> the bundled model installed with the plugin (Fiji.app/models/pneumoscope/), else where
   * ps_model_resolve finds it (beside the source tree, the install prefix); a path as given; empty ->
   * the default chosen in Train Model... (IJ Prefs), else $PNEUMOSCOPE_MODEL, else the bundled binary
   * model. A bundled model that is not installed is a PS_ENOTFOUND naming the places tried.
   */
  public static String resolveModelPath(String given) throws PneumoScopeException {
    String g = given == null ? "" : given.trim();
    if (g.equals(ModelChoice.FILE))
      throw new PneumoScopeException("PS_EINVAL", Keys.MODEL + "=" + ModelChoice.FILE + " needs " + Keys.MODEL_FILE
          + "=[a .safetensors file]", null);
    if (g.equals(Model.BINARY) || g.equals(Model.THREE_CLASS)) {
      String name = bundledFileName(g);
      File inFiji = bundledModel(name);
      if (inFiji != null) return inFiji.getPath();
      init();
      try {
        return Model.resolve(g);
      } catch (PneumoScopeException e) {
        File jar = PsNative.jarDir();
        if (jar == null || jar.getParentFile() == null) throw e;
        throw new PneumoScopeException("PS_ENOTFOUND", "the " + g + " model is not installed: no "
            + new File(jar.getParentFile(), "models/pneumoscope/" + name) + "; " + e.detail(), e);
      }
    }
    if (!g.isEmpty()) {
      init();
      return Model.resolve(g);
    }
    String pref = Prefs.get(Keys.PREF_MODEL, "");
    if (!pref.isEmpty() && new File(pref).isFile()) return pref;
    String env = System.getenv("PNEUMOSCOPE_MODEL");
    if (env != null && !env.isEmpty()) return env;
    File bundled = bundledModel(BUNDLED_MODEL);
    if (bundled != null) return bundled.getPath();
    init();
    return Model.defaultPath();
  }

  /** "binary" -> pneumoscope-binary.safetensors, "3class" -> pneumoscope-3class.safetensors. */
  static String bundledFileName(String name) { return "pneumoscope-" + name + ".safetensors"; }

  /** A bundled model installed with the plugin: Fiji.app/models/pneumoscope/NAME (null when absent). */
  public static File bundledModel(String fileName) {
    File jar = PsNative.jarDir();
    if (jar == null) return null;
    File[] candidates = {new File(jar.getParentFile(), "models/pneumoscope/" + fileName),
        new File(jar, "models/pneumoscope/" + fileName)};
    for (File f : candidates) if (f.isFile()) return f;
    return null;
  }

  public static final String BUNDLED_MODEL = "pneumoscope-binary.safetensors";

  /** A loaded model, cached per file and device for the ImageJ session (shared by threads). */
  public static Model model(String given, String device) throws PneumoScopeException {
    init();
    String path = resolveModelPath(given);
    String key = new File(path).getAbsolutePath() + "|" + (device == null ? "auto" : device);
    synchronized (models) {
      Model m = models.get(key);
      File f = new File(path);
      if (m != null && modelStamp.containsKey(key) && modelStamp.get(key) == f.lastModified()) return m;
      if (m != null) m.close(); // the file changed (e.g. retrained): reload
      m = Model.load(path, device);
      models.put(key, m);
      modelStamp.put(key, f.lastModified());
      return m;
    }
  }

  private static final Map<String, Long> modelStamp = new HashMap<String, Long>();

  /** Forget cached models (after training wrote a new file, or to free memory). */
  public static void releaseModels() {
    synchronized (models) {
      for (Model m : models.values()) m.close();
      models.clear();
      modelStamp.clear();
    }
  }

  // ---- results table -----------------------------------------------------------------------

  /** The named table, shown or (in batch mode) kept by ImageJ; created when absent. */
  public static ResultsTable table(String title) {
    ResultsTable rt = null;
    try {
      rt = ResultsTable.getResultsTable(title); // ImageJ 1.52+
    } catch (NoSuchMethodError e) {
      Frame f = WindowManager.getFrame(title);
      if (f instanceof TextWindow) rt = ((TextWindow) f).getTextPanel().getResultsTable();
    }
    if (rt == null) rt = new ResultsTable();
    rt.setPrecision(6); // probabilities and lung focus to 1e-6, as the CLI's CSV
    return rt;
  }

  /** in_distribution as tables and CSVs show it: "true", "false", or "" when unknown (-1). */
  public static String inDistributionText(int inDistribution) {
    return inDistribution == 1 ? "true" : inDistribution == 0 ? "false" : "";
  }

  /**
   * The out-of-distribution columns of a row, as `pneumoscope classify --csv` writes them:
   * in_distribution, ood_score (empty when unknown), ood_reason ("" unless flagged).
   */
  static void addOod(ResultsTable rt, int inDistribution, float score, String reason) {
    rt.addValue(COL_IN_DISTRIBUTION, inDistributionText(inDistribution));
    if (Float.isNaN(score)) rt.addValue(COL_OOD_SCORE, "");
    else rt.addValue(COL_OOD_SCORE, score);
    rt.addValue(COL_OOD_REASON, reason == null ? "" : reason);
  }

  public static final String COL_IN_DISTRIBUTION = "in_distribution", COL_OOD_SCORE = "ood_score",
      COL_OOD_REASON = "ood_reason";

  /**
   * One line per classified film in the Log: the label and probabilities, the model file, and, when
   * the film is flagged out of distribution, that and why (the label is still given).
   */
  static void logPrediction(String title, Model model, String label, float[] probs, int inDistribution,
      float score, String reason) {
    StringBuilder b = new StringBuilder("PneumoScope: ").append(title).append(": ").append(label).append(" (");
    String[] classes = model.classes();
    for (int i = 0; i < classes.length && i < probs.length; i++)
      b.append(i > 0 ? ", " : "").append("P_").append(classes[i]).append(' ').append(IJ.d2s(probs[i], 4));
    b.append("), model ").append(model.path());
    if (inDistribution == 0)
      b.append("; flagged OUT OF DISTRIBUTION").append(reason == null || reason.isEmpty() ? "" : ": " + reason)
          .append(" (label and probabilities shown, but the film is unlike the model's training films)");
    else if (inDistribution == 1)
      b.append("; in distribution").append(Float.isNaN(score) ? "" : " (OOD score " + IJ.d2s(score, 4) + ")");
    IJ.log(b.toString());
  }

  /**
   * The row of a film in rt: the one an earlier command started for the same film (same file, or
   * the same title when the pixels have no file) and the same model, else a new row. So Classify
   * and Grad-CAM of one film fill in one row, as Fiji's measurements do.
   */
  static int rowFor(ResultsTable rt, String title, Film film, Model model) {
    String file = film.path() == null ? "" : film.path(), name = new File(model.path()).getName();
    if (rt.getColumnIndex("File") != ResultsTable.COLUMN_NOT_FOUND
        && rt.getColumnIndex("Model") != ResultsTable.COLUMN_NOT_FOUND) {
      for (int i = rt.size() - 1; i >= 0; i--) {
        if (!name.equals(rt.getStringValue("Model", i))) continue;
        if (file.isEmpty() ? rt.getStringValue("File", i).isEmpty() && title.equals(rt.getStringValue("Title", i))
                           : file.equals(rt.getStringValue("File", i)))
          return i;
      }
    }
    rt.incrementCounter();
    return rt.size() - 1;
  }

  /** One classification in the film's row: title, label, probabilities, OOD verdict, DICOM ids, model, source. */
  public static int addRow(ResultsTable rt, String title, Film film, Model model, String label, float[] probs,
      int inDistribution, float oodScore, String oodReason, String source) {
    int row = rowFor(rt, title, film, model);
    rt.setValue("Title", row, title);
    rt.setValue("Label", row, label);
    String[] classes = model.classes();
    for (int i = 0; i < classes.length; i++) rt.setValue("P_" + classes[i], row, probs[i]);
    rt.setValue(COL_IN_DISTRIBUTION, row, inDistributionText(inDistribution));
    if (Float.isNaN(oodScore)) rt.setValue(COL_OOD_SCORE, row, "");
    else rt.setValue(COL_OOD_SCORE, row, oodScore);
    rt.setValue(COL_OOD_REASON, row, oodReason == null ? "" : oodReason);
    rt.setValue("PatientID", row, film.patientId());
    rt.setValue("SOPInstanceUID", row, film.sopInstanceUid());
    rt.setValue("ViewPosition", row, film.viewPosition());
    rt.setValue("Model", row, new File(model.path()).getName());
    rt.setValue("Source", row, source);
    rt.setValue("File", row, film.path() == null ? "" : film.path());
    return row;
  }

  /** Classify the current image of imp; one row in "PneumoScope Results". */
  public static Model.Prediction classifyImage(ImagePlus imp, String modelPath, double threshold, boolean useFile)
      throws PneumoScopeException {
    Model model = model(modelPath, "auto");
    try (Film film = filmFor(imp, useFile)) {
      Model.Prediction p = model.classify(film, threshold);
      ResultsTable rt = table(Keys.RESULTS_TABLE);
      addRow(rt, imp.getTitle(), film, model, p.labelName(), p.probs(), p.inDistribution(), p.oodScore(), p.oodReason(),
          film.path() != null ? "file" : "pixels");
      rt.show(Keys.RESULTS_TABLE);
      logPrediction(imp.getTitle(), model, p.labelName(), p.probs(), p.inDistribution(), p.oodScore(), p.oodReason());
      return p;
    }
  }

  // ---- Grad-CAM ----------------------------------------------------------------------------

  /** A named ImageJ LUT as a colour model ("Fire", "Jet", ...), through ImageJ's own LUT command. */
  public static IndexColorModel lut(String name) {
    if ("viridis".equals(name)) {
      try {
        byte[] v = PsNative.viridis();
        return new IndexColorModel(8, 256, Arrays.copyOfRange(v, 0, 256), Arrays.copyOfRange(v, 256, 512),
            Arrays.copyOfRange(v, 512, 768));
      } catch (PneumoScopeException e) {
        return null;
      }
    }
    ImagePlus tmp = new ImagePlus("lut", new ByteProcessor(256, 1));
    try {
      IJ.run(tmp, name, "");
    } catch (RuntimeException e) {
      // unknown LUT name: keep gray
    }
    java.awt.image.ColorModel cm = tmp.getProcessor().getColorModel();
    return cm instanceof IndexColorModel ? (IndexColorModel) cm : null;
  }

  /** What Grad-CAM Overlay shows: the heatmap image (or null) and the overlay added to imp. */
  public static final class CamDisplay {
    public ImagePlus heatmap;
    public GradCamSummary summary;
  }

  /** Numbers of one Grad-CAM (also a row of the results table). */
  public static final class GradCamSummary {
    public String target, predicted, method;
    public int layer, lungs;
    public double lungFocus;
    public float[] probs;
    /** The film's OOD verdict (ps_infer_image_ood, as Classify Chest Film reports it). */
    public int inDistribution;
    public float oodScore;
    public String oodReason;
  }

  /**
   * Grad-CAM for the current image: overlay (ImageRoi, opacity in percent) on imp, optionally a
   * separate 32-bit heatmap image with the LUT; lung focus etc. in the film's row of "PneumoScope
   * Results". The overlay also draws the box the model saw when it is a lung-ROI model ("Lung
   * box"), and with lungOutline the outline of the lung fields the lung focus counts ("Lung
   * outline"). className: "auto" (the predicted class), a class name, or its index.
   */
  public static CamDisplay gradCam(ImagePlus imp, String modelPath, String className, int layer, double opacity,
      String lutName, boolean showHeatmap, boolean lungOutline, boolean useFile) throws PneumoScopeException {
    Model model = model(modelPath, "auto");
    int cls = classIndex(model, className);
    CamDisplay out = new CamDisplay();
    try (Film film = filmFor(imp, useFile); GradCam g = GradCam.compute(model, film, layer, cls, "auto")) {
      float[] cam = g.cam();
      FloatProcessor heat = new FloatProcessor(g.width(), g.height(), cam, null);
      heat.setMinAndMax(0, 1);
      IndexColorModel cm = lut(lutName);
      if (cm != null) heat.setColorModel(cm);
      ImageProcessor rgb = heat.convertToRGB();
      ImageRoi roi = new ImageRoi(0, 0, rgb);
      roi.setOpacity(Math.max(0, Math.min(100, opacity)) / 100.0);
      roi.setName("Grad-CAM " + model.classes()[g.targetClass()]);
      Overlay ov = imp.getOverlay();
      if (ov == null) ov = new Overlay();
      for (int i = ov.size() - 1; i >= 0; i--) {
        String n = ov.get(i).getName();
        if (n != null && (n.startsWith("Grad-CAM") || n.equals("Lung box") || n.equals("Lung outline"))) ov.remove(i);
      }
      ov.add(roi);
      double[] box = g.roi();
      if (box[0] > 0 || box[1] > 0 || box[2] < 1 || box[3] < 1) { // a lung-ROI model: what it saw
        int x0 = (int) Math.round(box[0] * g.width()), y0 = (int) Math.round(box[1] * g.height());
        Roi b = new Roi(x0, y0, (int) Math.round(box[2] * g.width()) - x0, (int) Math.round(box[3] * g.height()) - y0);
        b.setName("Lung box");
        b.setStrokeColor(Color.YELLOW);
        ov.add(b);
      }
      if (lungOutline) {
        byte[] mask = g.lungMask();
        if (mask != null) {
          ByteProcessor bp = new ByteProcessor(g.width(), g.height(), mask);
          bp.setThreshold(1, 255, ImageProcessor.NO_LUT_UPDATE);
          Roi outline = new ThresholdToSelection().convert(bp);
          if (outline != null) {
            outline.setName("Lung outline");
            outline.setStrokeColor(Color.CYAN);
            ov.add(outline);
          }
        }
      }
      imp.setOverlay(ov);
      if (showHeatmap) {
        ImagePlus h = new ImagePlus("Grad-CAM of " + imp.getTitle(), heat.duplicate());
        h.getProcessor().setMinAndMax(0, 1);
        if (cm != null) h.getProcessor().setColorModel(cm);
        h.setCalibration(imp.getCalibration().copy());
        out.heatmap = h;
      }
      GradCamSummary s = new GradCamSummary();
      s.target = model.classes()[g.targetClass()];
      s.predicted = model.classes()[g.predicted()];
      s.method = g.method();
      s.layer = g.layer();
      s.lungs = g.lungs();
      s.lungFocus = g.lungFocus();
      s.probs = g.probs();
      Model.Prediction p = model.classify(film); // the OOD verdict: the same call as Classify Chest Film
      s.inDistribution = p.inDistribution();
      s.oodScore = p.oodScore();
      s.oodReason = p.oodReason();
      out.summary = s;
      ResultsTable rt = table(Keys.RESULTS_TABLE);
      int row = addRow(rt, imp.getTitle(), film, model, s.predicted, s.probs, s.inDistribution, s.oodScore,
          s.oodReason, film.path() != null ? "file" : "pixels");
      rt.setValue("CAM_Class", row, s.target);
      rt.setValue("CAM_Layer", row, "layer" + s.layer);
      rt.setValue("CAM_Method", row, s.method);
      rt.setValue("LungFocus", row, s.lungFocus);
      rt.setValue("Lungs", row, s.lungs);
      rt.show(Keys.RESULTS_TABLE);
      logPrediction(imp.getTitle() + " (Grad-CAM)", model, s.predicted, s.probs, s.inDistribution, s.oodScore,
          s.oodReason);
    }
    return out;
  }

  static int classIndex(Model model, String name) throws PneumoScopeException {
    if (name == null || name.trim().isEmpty() || name.trim().equalsIgnoreCase("auto")) return -1;
    String[] classes = model.classes();
    for (int i = 0; i < classes.length; i++) if (classes[i].equalsIgnoreCase(name.trim())) return i;
    try {
      int i = Integer.parseInt(name.trim());
      if (i >= 0 && i < classes.length) return i;
    } catch (NumberFormatException e) {
      // fall through
    }
    throw new PneumoScopeException("PS_EINVAL", "class \"" + name + "\" is not one of " + Arrays.toString(classes)
        + " (or auto)", null);
  }

  // ---- batch -------------------------------------------------------------------------------

  /**
   * Batch outcome: rows in the table; files that failed (path + message); films flagged out of
   * distribution (path + reason; they are classified too).
   */
  public static final class BatchResult {
    public int classified, failed, flagged;
    public boolean cancelled;
    public String model;
    public final List<String> errors = new ArrayList<String>();
    public final List<String> flaggedFilms = new ArrayList<String>();
  }

  /** Progress/cancel hook for long work (ImageJ's progress bar + Esc in the plugin). */
  public interface Progress {
    /** Returns true to cancel. */
    boolean progress(double fraction, String what);
  }

  /**
   * Classify every film under folder through ps_infer_run (what `pneumoscope classify` runs): a
   * row per film in "PneumoScope Batch" (films that cannot be read too, with their error), CSV
   * written when csv is not empty. recursive = false takes only the folder's own files.
   */
  public static BatchResult batch(File folder, boolean recursive, String modelPath, double threshold, String csv,
      final Progress progress) throws PneumoScopeException {
    if (!folder.isDirectory()) throw new PneumoScopeException("PS_EIO", folder + " is not a folder", null);
    final File csvFile = csv == null || csv.isEmpty() ? null : new File(csv);
    if (csvFile != null) checkWritable(csvFile);
    final Model model = model(modelPath, "auto");
    String[] paths;
    if (recursive) {
      paths = new String[] {folder.getPath()};
    } else {
      List<String> top = new ArrayList<String>();
      File[] fs = folder.listFiles();
      if (fs != null) {
        Arrays.sort(fs);
        for (File f : fs) if (f.isFile() && !Model.skipName(f.getPath())) top.add(f.getPath());
      }
      if (top.isEmpty()) throw new PneumoScopeException("PS_ENOTFOUND", "no files in " + folder, null);
      paths = top.toArray(new String[0]);
    }
    final ResultsTable rt = new ResultsTable();
    rt.showRowNumbers(false);
    final BatchResult r = new BatchResult();
    r.model = model.path();
    final String[] classes = model.classes();
    final double thr = threshold;
    // the number of films is known only as they come: show progress per film, Esc cancels
    final int[] seen = {0};
    try {
      model.infer(paths, 0, 0, new Model.InferListener() {
        @Override
        public boolean result(int index, String file, int status, String error, int label, float[] probs,
            String[] meta, int inDistribution, float oodScore, String oodReason) {
          rt.incrementCounter();
          rt.addValue("Title", new File(file).getName());
          if (status == 0) {
            int lab = label;
            if (classes.length == 2 && thr >= 0 && thr <= 1) lab = probs[1] >= thr ? 1 : 0;
            rt.addValue("Label", classes[lab]);
            for (int i = 0; i < classes.length; i++) rt.addValue("P_" + classes[i], probs[i]);
            addOod(rt, inDistribution, oodScore, oodReason);
            r.classified++;
            if (inDistribution == 0) {
              r.flagged++;
              r.flaggedFilms.add(file + (oodReason.isEmpty() ? "" : ": " + oodReason));
            }
          } else {
            rt.addValue("Label", "");
            for (String c : classes) rt.addValue("P_" + c, Double.NaN);
            addOod(rt, -1, Float.NaN, "");
            r.failed++;
            r.errors.add(error);
          }
          rt.addValue("PatientID", meta[0]);
          rt.addValue("SOPInstanceUID", meta[2]);
          rt.addValue("ViewPosition", meta[3]);
          rt.addValue("Model", new File(model.path()).getName());
          rt.addValue("Source", "file");
          rt.addValue("File", file);
          rt.addValue("Error", status == 0 ? "" : error);
          seen[0]++;
          return progress != null && progress.progress(Math.min(0.99, 1 - 1.0 / (1 + seen[0] / 20.0)), file);
        }
      });
    } catch (PneumoScopeException e) {
      if (!"PS_ECANCELLED".equals(e.statusName())) throw e;
      r.cancelled = true;
    }
    if (progress != null) progress.progress(1.0, "done");
    rt.show(Keys.BATCH_TABLE);
    if (csvFile != null) {
      rt.setPrecision(6);
      if (!rt.save(csvFile.getPath())) throw new PneumoScopeException("PS_EIO", "could not write " + csvFile, null);
    }
    return r;
  }

  /** Refuse to replace a file PneumoScope did not write (a CSV we wrote starts with our header). */
  static void checkWritable(File f) throws PneumoScopeException {
    if (!f.exists()) {
      File parent = f.getAbsoluteFile().getParentFile();
      if (parent == null || !parent.isDirectory())
        throw new PneumoScopeException("PS_EIO", "folder of " + f + " does not exist", null);
      return;
    }
    if (f.isDirectory()) throw new PneumoScopeException("PS_EIO", f + " is a folder", null);
    String first = "";
    try (BufferedReader r = new BufferedReader(new FileReader(f))) {
      first = r.readLine();
    } catch (IOException e) {
      throw new PneumoScopeException("PS_EIO", "cannot read " + f + ": " + e.getMessage(), e);
    }
    if (first == null || !(first.startsWith(" ,Title,Label,") || first.startsWith("Title,Label,")))
      throw new PneumoScopeException("PS_EIO", f + " exists and was not written by PneumoScope; not overwriting it", null);
  }
}
