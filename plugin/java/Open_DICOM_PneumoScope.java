import ij.IJ;
import ij.ImagePlus;
import ij.Macro;
import ij.gui.GenericDialog;
import ij.io.OpenDialog;
import ij.plugin.PlugIn;
import pneumoscope.Engine;
import pneumoscope.Keys;
import pneumoscope.PneumoScopeException;

/**
 * Plugins > PneumoScope > Open DICOM (PneumoScope)...: any film the native reader decodes
 * (JPEG / JPEG-LS / RLE compressed DICOM too, PNG, JPEG) as a calibrated 32-bit image.
 * Macro: run("Open DICOM (PneumoScope)...", "path=[/data/film.dcm] raw");
 */
public class Open_DICOM_PneumoScope implements PlugIn {
  @Override
  public void run(String arg) {
    String path = arg != null && !arg.isEmpty() ? arg : null;
    boolean raw = Keys.lastRaw;
    if (path == null) {
      boolean macro = Macro.getOptions() != null;
      String initial = Keys.lastPath;
      if (!macro) {
        OpenDialog od = new OpenDialog("Open film (PneumoScope)", null);
        if (od.getFileName() == null) return;
        initial = od.getPath();
      }
      GenericDialog gd = new GenericDialog("Open DICOM (PneumoScope)");
      gd.addStringField(Keys.PATH, initial, 40);
      gd.addCheckbox(Keys.RAW, raw);
      gd.addMessage("raw: keep modality values (no VOI window, no MONOCHROME1 inversion);\n"
          + "the file's window becomes the display range.");
      gd.showDialog();
      if (gd.wasCanceled()) return;
      path = gd.getNextString().trim();
      raw = gd.getNextBoolean();
      Keys.lastPath = path;
      Keys.lastRaw = raw;
    }
    try {
      ImagePlus imp = Engine.openFilm(path, raw);
      imp.show();
    } catch (PneumoScopeException e) {
      Engine.fail(Keys.CMD_OPEN, e);
    }
  }
}
