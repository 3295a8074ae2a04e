import ij.IJ;
import ij.gui.GenericDialog;
import ij.io.DirectoryChooser;
import ij.plugin.PlugIn;
import java.io.File;
import pneumoscope.Engine;
import pneumoscope.Keys;
import pneumoscope.ModelChoice;

/**
 * Plugins > PneumoScope > Batch Classify Folder...: every film under a folder (recursive,
 * DICOM without extension included) -> "PneumoScope Batch" table + CSV. Files that cannot be read
 * are rows with their error and listed in the Log; Esc cancels.
 * Columns: Title, Label, P_<class>..., in_distribution (true / false / empty when unknown), ood_score,
 * ood_reason, PatientID, SOPInstanceUID, ViewPosition, Model, Source, File, Error.
 * Macro: run("Batch Classify Folder...", "folder=[/data/dicom] recursive csv=[/tmp/out.csv] model=binary threshold=-1");
 * (model=3class, model=file model_file=[/runs/a/best.safetensors], or model=[] for the default model.)
 */
public class Batch_Classify_Folder implements PlugIn {
  @Override
  public void run(String arg) {
    String folder = Keys.lastFolder;
    if (ij.Macro.getOptions() == null && !Engine.isMacro()) {
      DirectoryChooser dc = new DirectoryChooser("Folder of chest films");
      if (dc.getDirectory() == null) return;
      folder = dc.getDirectory();
    }
    GenericDialog gd = new GenericDialog(Keys.CMD_BATCH);
    gd.addStringField(Keys.FOLDER, folder, 40);
    gd.addCheckbox(Keys.RECURSIVE, Keys.lastRecursive);
    gd.addStringField(Keys.CSV, Keys.lastCsv, 40);
    ModelChoice.add(gd);
    gd.addNumericField(Keys.THRESHOLD, Keys.lastThreshold, 3);
    gd.addMessage(ModelChoice.help() + "\ncsv: results file to write (empty: table only; an existing file is only\n"
        + "replaced when PneumoScope wrote it). Esc cancels.");
    gd.showDialog();
    if (gd.wasCanceled()) return;
    Keys.lastFolder = gd.getNextString().trim();
    Keys.lastRecursive = gd.getNextBoolean();
    Keys.lastCsv = gd.getNextString().trim();
    String model = ModelChoice.read(gd);
    Keys.lastThreshold = gd.getNextNumber();
    IJ.resetEscape();
    try {
      Engine.BatchResult r = Engine.batch(new File(Keys.lastFolder), Keys.lastRecursive, model,
          Keys.lastThreshold, Keys.lastCsv, new Engine.Progress() {
            @Override
            public boolean progress(double fraction, String what) {
              IJ.showProgress(fraction);
              IJ.showStatus("PneumoScope: " + what);
              return IJ.escapePressed();
            }
          });
      IJ.showProgress(1.0);
      IJ.log("PneumoScope batch: " + r.classified + " classified with model " + r.model + ", " + r.flagged
          + " flagged out of distribution, " + r.failed + " could not be read"
          + (r.cancelled ? " (cancelled with Esc)" : "") + (Keys.lastCsv.isEmpty() ? "" : "; CSV " + Keys.lastCsv));
      for (String f : r.flaggedFilms) IJ.log("  flagged out of distribution (label still given): " + f);
      for (String e : r.errors) IJ.log("  " + e);
    } catch (Exception | OutOfMemoryError e) {
      IJ.showProgress(1.0);
      Engine.fail(Keys.CMD_BATCH, e);
    }
  }
}
