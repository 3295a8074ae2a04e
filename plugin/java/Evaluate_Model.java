import ij.IJ;
import ij.ImagePlus;
import ij.gui.GenericDialog;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;
import java.io.File;
import pneumoscope.Engine;
import pneumoscope.Keys;
import pneumoscope.ModelChoice;
import pneumoscope.Trainer;

/**
 * Plugins > PneumoScope > Evaluate Model...: ps_evaluate_run of a model on one split of a manifest:
 * a row of metrics in "PneumoScope Evaluation", the confusion matrix and ROC curve as images, and
 * metrics.json / predictions.csv / *.png in outdir. Without the plot module (the release archive)
 * the metrics come all the same and the Log says that plots are not available.
 * Macro: run("Evaluate Model...", "model=file model_file=[/runs/a/best.safetensors]
 *        manifest=[/data/split/manifest.csv] split=test outdir=[/runs/a/eval] threshold=-1 device=auto limit=0");
 */
public class Evaluate_Model implements PlugIn {
  @Override
  public void run(String arg) {
    GenericDialog gd = new GenericDialog(Keys.CMD_EVALUATE);
    ModelChoice.add(gd);
    gd.addStringField(Keys.MANIFEST, Keys.lastManifest, 40);
    gd.addChoice(Keys.SPLIT, Keys.SPLITS, Keys.lastSplit);
    gd.addStringField(Keys.OUTDIR, Keys.lastOutdir, 40);
    gd.addNumericField(Keys.THRESHOLD, Keys.lastThreshold, 3);
    gd.addChoice(Keys.DEVICE, Keys.DEVICES, Keys.lastDevice);
    gd.addNumericField(Keys.LIMIT, Keys.lastLimit, 0);
    gd.addMessage(ModelChoice.help() + "\nthreshold -1: the model's own; limit 0: all films");
    gd.showDialog();
    if (gd.wasCanceled()) return;
    String model = ModelChoice.read(gd);
    Keys.lastManifest = gd.getNextString().trim();
    Keys.lastSplit = gd.getNextChoice();
    Keys.lastOutdir = gd.getNextString().trim();
    Keys.lastThreshold = gd.getNextNumber();
    Keys.lastDevice = gd.getNextChoice();
    Keys.lastLimit = (int) gd.getNextNumber();
    IJ.resetEscape();
    try {
      Engine.init();
      String modelPath = Engine.resolveModelPath(model);
      Trainer.Evaluation e = Trainer.evaluate(modelPath, Keys.lastManifest, Keys.lastSplit, Keys.lastOutdir,
          Keys.lastThreshold, Keys.lastDevice, Keys.lastLimit, new Trainer.ProgressListener() {
            @Override
            public boolean progress(double fraction, String what) {
              IJ.showProgress(fraction);
              IJ.showStatus("PneumoScope evaluate: " + what);
              return IJ.escapePressed();
            }
          });
      IJ.showProgress(1.0);
      ResultsTable rt = Engine.table(Keys.EVAL_TABLE);
      rt.incrementCounter();
      rt.addValue("Model", modelPath);
      rt.addValue("Split", Keys.lastSplit);
      rt.addValue("N", e.n);
      rt.addValue("Accuracy", e.accuracy);
      rt.addValue("AUC", e.auc);
      rt.addValue("AP", e.ap);
      rt.addValue("F1_macro", e.f1Macro);
      rt.addValue("Threshold", e.threshold);
      rt.addValue("Sensitivity", e.sensitivity);
      rt.addValue("Specificity", e.specificity);
      rt.addValue("Outdir", Keys.lastOutdir);
      rt.show(Keys.EVAL_TABLE);
      int shown = 0;
      for (String png : new String[] {"confusion.png", "roc.png"}) {
        File f = new File(Keys.lastOutdir, png);
        if (!f.isFile()) continue;
        shown++;
        ImagePlus imp = IJ.openImage(f.getPath());
        if (imp != null) {
          imp.setTitle((png.startsWith("roc") ? "ROC " : "Confusion matrix ") + new File(modelPath).getName());
          imp.show();
        }
      }
      if (shown == 0) // the release archive leaves out the plot module (cairo and its 17 libraries)
        IJ.log("PneumoScope: Evaluate Model: plots are not available in this install (no libpneumoscope_plot.so, which"
            + " draws them with cairo, beside libpneumoscope); the metrics are in the table and in metrics.json and"
            + " predictions.csv in " + Keys.lastOutdir);
    } catch (Exception | OutOfMemoryError e) {
      IJ.showProgress(1.0);
      Engine.fail(Keys.CMD_EVALUATE, e);
    }
  }
}
