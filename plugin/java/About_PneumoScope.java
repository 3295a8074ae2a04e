import ij.IJ;
import ij.gui.GenericDialog;
import ij.plugin.PlugIn;
import pneumoscope.Engine;
import pneumoscope.Keys;
import pneumoscope.Model;
import pneumoscope.PsNative;

/**
 * Plugins > PneumoScope > About PneumoScope / Model Info: library version and features, and the
 * model's metadata (task, classes, input size, threshold, provenance) in the Log.
 * Macro: run("About PneumoScope / Model Info", "model=[/models/binary.safetensors]");
 */
public class About_PneumoScope implements PlugIn {
  @Override
  public void run(String arg) {
    GenericDialog gd = new GenericDialog(Keys.CMD_ABOUT);
    gd.addMessage("PneumoScope: chest-film pneumonia screening (research use, not a diagnosis).");
    gd.addStringField(Keys.MODEL, Keys.lastModel, 40);
    gd.showDialog();
    if (gd.wasCanceled()) return;
    Keys.lastModel = gd.getNextString().trim();
    try {
      Engine.init();
      IJ.log("PneumoScope " + PsNative.version() + " (" + PsNative.features() + "), native library from "
          + PsNative.searchDirsText());
      Model m = Engine.model(Keys.lastModel, "auto");
      IJ.log(m.describe());
    } catch (Exception | OutOfMemoryError e) {
      Engine.fail(Keys.CMD_ABOUT, e);
    }
  }
}
