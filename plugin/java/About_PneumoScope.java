import ij.IJ;
import ij.plugin.PlugIn;
import pneumoscope.PneumoScopeException;
import pneumoscope.PsNative;

/** Plugins > PneumoScope > About PneumoScope / Model Info. */
public class About_PneumoScope implements PlugIn {
  @Override
  public void run(String arg) {
    try {
      IJ.log("PneumoScope " + PsNative.version() + " (" + PsNative.features() + ")");
    } catch (PneumoScopeException e) {
      IJ.error("PneumoScope", e.getMessage());
    }
  }
}
