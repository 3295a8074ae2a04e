import ij.IJ;
import ij.ImagePlus;
import ij.gui.GenericDialog;
import ij.plugin.PlugIn;
import pneumoscope.Engine;
import pneumoscope.Keys;
import pneumoscope.Model;

/**
 * Plugins > PneumoScope > Classify Chest Film: the current image (the file behind it when
 * there is one, else its pixels through the display range) -> a row in "PneumoScope Results".
 * Macro: run("Classify Chest Film", "model=[/models/binary.safetensors] threshold=-1 use_file");
 * (model empty = the default model; threshold -1 = the model's own.)
 */
public class Classify_Chest_Film implements PlugIn {
  @Override
  public void run(String arg) {
    ImagePlus imp = IJ.getImage();
    if (imp == null) return;
    GenericDialog gd = new GenericDialog(Keys.CMD_CLASSIFY);
    gd.addStringField(Keys.MODEL, Keys.lastModel, 40);
    gd.addNumericField(Keys.THRESHOLD, Keys.lastThreshold, 3);
    gd.addCheckbox(Keys.USE_FILE, Keys.lastUseFile);
    gd.addMessage("model: .safetensors file (empty: the default model)\n"
        + "threshold: decision threshold on P(PNEUMONIA) for binary models (-1: the model's own)\n"
        + "use_file: classify the file behind the image when it has one (else its pixels)");
    gd.showDialog();
    if (gd.wasCanceled()) return;
    Keys.lastModel = gd.getNextString().trim();
    Keys.lastThreshold = gd.getNextNumber();
    Keys.lastUseFile = gd.getNextBoolean();
    try {
      IJ.showStatus("PneumoScope: classifying " + imp.getTitle());
      Model.Prediction p = Engine.classifyImage(imp, Keys.lastModel, Keys.lastThreshold, Keys.lastUseFile);
      IJ.showStatus(imp.getTitle() + ": " + p.labelName());
    } catch (Exception | OutOfMemoryError e) {
      Engine.fail(Keys.CMD_CLASSIFY, e);
    }
  }
}
