package pneumoscope;

import ij.Macro;
import ij.Prefs;
import ij.gui.GenericDialog;
import java.io.File;

/**
 * The model fields of every PneumoScope dialog that takes a model (Classify Chest Film, Grad-CAM
 * Overlay, Batch Classify Folder..., Evaluate Model..., About): a Choice {@link Keys#MODEL} =
 * binary (the bundled NORMAL/PNEUMONIA model, the default) | 3class (the bundled
 * NORMAL/BACTERIA/VIRUS model) | file, and {@link Keys#MODEL_FILE}, the .safetensors used with
 * model=file. Macros may also give model= what it took before: empty (the default model: Train
 * Model...'s set_default, $PNEUMOSCOPE_MODEL, else binary) or a path, which then wins over model_file:
 *
 * <pre>
 * run("Classify Chest Film...", "model=binary threshold=-1 use_file");
 * run("Classify Chest Film...", "model=file model_file=[/runs/a/best.safetensors] threshold=-1 use_file");
 * run("Classify Chest Film...", "model=[/runs/a/best.safetensors] threshold=-1 use_file");  // as before
 * </pre>
 *
 * {@link #read} gives the value {@link Engine#model} and {@link Engine#resolveModelPath} take.
 */
public final class ModelChoice {
  private ModelChoice() {}

  /** The model=file choice: the model is model_file. */
  public static final String FILE = Keys.MODELS[2];

  /** Add the two fields (where the dialog's old `model` string field was). */
  public static void add(GenericDialog gd) {
    String last = Keys.lastModel.trim();
    String choice, file = Keys.lastModelFile;
    if (last.equals(Model.BINARY) || last.equals(Model.THREE_CLASS)) {
      choice = last;
    } else if (!last.isEmpty()) {
      choice = FILE;
      file = last;
    } else {
      // the default model: the one Train Model... made the default, else the bundled binary one
      String pref = Prefs.get(Keys.PREF_MODEL, "");
      boolean trained = !pref.isEmpty() && new File(pref).isFile();
      choice = trained ? FILE : Model.BINARY;
      if (trained) file = pref;
    }
    gd.addChoice(Keys.MODEL, Keys.MODELS, choice);
    try {
      gd.addFileField(Keys.MODEL_FILE, file, 40); // with a Browse... button (ImageJ 1.53d and later)
    } catch (NoSuchMethodError e) {
      gd.addStringField(Keys.MODEL_FILE, file, 40);
    }
  }

  /** The line to put in the dialog's help message. */
  public static String help() {
    return "model: binary (bundled NORMAL/PNEUMONIA), 3class (bundled NORMAL/BACTERIA/VIRUS) or file\n"
        + "model file: the .safetensors used when model is file";
  }

  /**
   * Read the two fields (in the order {@link #add} added them among the dialog's choices and
   * strings) and remember them. Returns "binary", "3class", a path, "" (a macro's model=[]: the
   * default model), or "file" when model=file came without a model_file (Engine refuses it).
   */
  public static String read(GenericDialog gd) {
    String choice = gd.getNextChoice().trim();
    String file = gd.getNextString().trim();
    String options = Macro.getOptions();
    if (options != null && Macro.getValue(options, Keys.MODEL, null) == null) {
      // a macro without model=: model_file= alone names the file, else the last value as before
      String spec = file.isEmpty() || Macro.getValue(options, Keys.MODEL_FILE, null) == null ? Keys.lastModel : file;
      return remember(spec, file);
    }
    String spec = choice.equals(FILE) ? (file.isEmpty() ? FILE : file) : choice;
    return remember(spec, file);
  }

  private static String remember(String spec, String file) {
    Keys.lastModel = spec.equals(FILE) ? "" : spec;
    if (!file.isEmpty()) Keys.lastModelFile = file;
    return spec;
  }
}
