import ij.IJ;
import ij.gui.GenericDialog;
import ij.plugin.PlugIn;
import pneumoscope.Engine;
import pneumoscope.Keys;
import pneumoscope.Model;
import pneumoscope.ModelChoice;
import pneumoscope.PsNative;

/**
 * Plugins > PneumoScope > About PneumoScope / Model Info: library version and features, and the
 * model's metadata (task, classes, input size, threshold, provenance) in the Log.
 * Macro: run("About PneumoScope / Model Info", "model=3class");
 * (or model=binary, model=file model_file=[/models/a.safetensors]; model=[path] as before)
 */
public class About_PneumoScope implements PlugIn {
  @Override
  public void run(String arg) {
    GenericDialog gd = new GenericDialog(Keys.CMD_ABOUT);
    gd.addMessage("PneumoScope: chest-film pneumonia screening (research use, not a diagnosis).");
    ModelChoice.add(gd);
    gd.addMessage(ModelChoice.help());
    gd.showDialog();
    if (gd.wasCanceled()) return;
    String model = ModelChoice.read(gd);
    try {
      Engine.init();
      IJ.log("PneumoScope " + PsNative.version() + " (" + PsNative.features() + "), native library from "
          + PsNative.searchDirsText());
      Model m = Engine.model(model, "auto");
      IJ.log(m.describe());
    } catch (Exception | OutOfMemoryError e) {
      Engine.fail(Keys.CMD_ABOUT, e);
    }
  }
}
