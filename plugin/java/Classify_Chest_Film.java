import ij.IJ;
import ij.ImagePlus;
import ij.gui.GenericDialog;
import ij.plugin.PlugIn;
import pneumoscope.Engine;
import pneumoscope.Keys;
import pneumoscope.Model;
import pneumoscope.ModelChoice;

/**
 * Plugins > PneumoScope > Classify Chest Film: the current image (the file behind it when
 * there is one, else its pixels through the display range) -> a row in "PneumoScope Results".
 * The row has in_distribution (true / false / empty when unknown), ood_score and ood_reason; the Log
 * names the model file and says when a film is flagged out of distribution.
 * Macro: run("Classify Chest Film...", "model=binary threshold=-1 use_file");
 * (model=3class, model=file model_file=[/runs/a/best.safetensors], or, as before, model=[path] or
 * model=[] for the default model; threshold -1 = the model's own.)
 */
public class Classify_Chest_Film implements PlugIn {
  @Override
  public void run(String arg) {
    ImagePlus imp = IJ.getImage();
    if (imp == null) return;
    GenericDialog gd = new GenericDialog(Keys.CMD_CLASSIFY);
    ModelChoice.add(gd);
    gd.addNumericField(Keys.THRESHOLD, Keys.lastThreshold, 3);
    gd.addCheckbox(Keys.USE_FILE, Keys.lastUseFile);
    gd.addMessage(ModelChoice.help() + "\n"
        + "threshold: decision threshold on P(PNEUMONIA) for binary models (-1: the model's own)\n"
        + "use_file: classify the file behind the image when it has one (else its pixels)");
    gd.showDialog();
    if (gd.wasCanceled()) return;
    String model = ModelChoice.read(gd);
    Keys.lastThreshold = gd.getNextNumber();
    Keys.lastUseFile = gd.getNextBoolean();
    try {
      IJ.showStatus("PneumoScope: classifying " + imp.getTitle());
      Model.Prediction p = Engine.classifyImage(imp, model, Keys.lastThreshold, Keys.lastUseFile);
      IJ.showStatus(imp.getTitle() + ": " + p.labelName() + (p.inDistribution() == 0 ? " (out of distribution)" : ""));
    } catch (Exception | OutOfMemoryError e) {
      Engine.fail(Keys.CMD_CLASSIFY, e);
    }
  }
}
