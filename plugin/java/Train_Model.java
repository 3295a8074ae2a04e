import ij.IJ;
import ij.Prefs;
import ij.gui.GenericDialog;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;
import java.io.File;
import pneumoscope.Engine;
import pneumoscope.Keys;
import pneumoscope.PsNative;
import pneumoscope.Trainer;

/**
 * Plugins > PneumoScope > Train Model...: ps_train_run on a split manifest (`pneumoscope split`
 * writes one). Progress bar per batch, per-epoch lines in the Log, Esc cancels (best.safetensors
 * stays loadable, last.ckpt resumable). The history goes to "PneumoScope Training"; with set_default
 * the finished best.safetensors becomes the default model of every PneumoScope command.
 * Macro: run("Train Model...", "manifest=[/data/split/manifest.csv] outdir=[/runs/a] task=binary epochs=2
 *        lr=0 batch=0 patience=0 size=128 seed=1 threads=0 device=auto init=[] limit=0 patient_ages=1-5 augment
 *        balance=default set_default
 *        libtorch=[]");
 * (0 = the task's default for every number.) init: weights to start from (a .safetensors file, or
 * binary / 3class for the bundled models); with finetune their classifier is kept too (a trained
 * model of the task's classes, fine-tuned on one's own films; a lower lr such as 0.0001 suits it).
 * libtorch: where libtorch is (ps_torch_set_backend): a libtorch lib folder (PyTorch's torch/lib,
 * Debian's /usr/lib/x86_64-linux-gnu), a folder holding libpneumoscope_torch.so, or that file; empty
 * = the usual search ($PNEUMOSCOPE_TORCH_BACKEND, then beside libpneumoscope). A location that
 * works is remembered in IJ Prefs.
 */
public class Train_Model implements PlugIn {
  /** Said after any failure to load libtorch (the library's message, above it, says what was wrong). */
  static final String HOW_TO_GET_LIBTORCH = "Training needs libtorch. Name where it is in the libtorch field of"
      + " Train Model (or in the environment variable PNEUMOSCOPE_TORCH_BACKEND before starting Fiji):"
      + " on Debian 12, apt-get install libtorch1.13 (then it is found by itself, or name"
      + " /usr/lib/x86_64-linux-gnu; the PneumoScope archive brings the backend for it); or a PyTorch"
      + " install's torch/lib folder (python3 -c \"import torch, os; print(os.path.dirname(torch.__file__))\""
      + " prints the torch folder) with a backend built for its version as the message above says; or the"
      + " backend file libpneumoscope_torch.so itself. A different libtorch than one already loaded needs a"
      + " restart of Fiji. Or train with the pneumoscope command line on a machine that has libtorch.";

  @Override
  public void run(String arg) {
    GenericDialog gd = new GenericDialog(Keys.CMD_TRAIN);
    gd.addStringField(Keys.MANIFEST, Keys.lastManifest, 40);
    gd.addStringField(Keys.OUTDIR, Keys.lastOutdir, 40);
    gd.addChoice(Keys.TASK, Keys.TASKS, Keys.lastTask);
    gd.addNumericField(Keys.EPOCHS, Keys.lastEpochs, 0);
    gd.addNumericField(Keys.LR, Keys.lastLr, 6);
    gd.addNumericField(Keys.BATCH, Keys.lastBatch, 0);
    gd.addNumericField(Keys.PATIENCE, Keys.lastPatience, 0);
    gd.addNumericField(Keys.SIZE, Keys.lastSize, 0);
    gd.addNumericField(Keys.SEED, Keys.lastSeed, 0);
    gd.addNumericField(Keys.THREADS, Keys.lastThreads, 0);
    gd.addChoice(Keys.DEVICE, Keys.DEVICES, Keys.lastDevice);
    gd.addStringField(Keys.INIT, Keys.lastInit, 40);
    gd.addCheckbox(Keys.FINETUNE, Keys.lastFinetune);
    gd.addNumericField(Keys.LIMIT, Keys.lastLimit, 0);
    gd.addStringField(Keys.PATIENT_AGES, Keys.lastPatientAges, 10);
    gd.addCheckbox(Keys.AUGMENT, Keys.lastAugment);
    gd.addChoice(Keys.BALANCE, Keys.BALANCES, Keys.lastBalance);
    gd.addCheckbox(Keys.RESUME, Keys.lastResume);
    gd.addCheckbox(Keys.SET_DEFAULT, Keys.lastSetDefault);
    if (Keys.lastLibtorch == null) Keys.lastLibtorch = Prefs.get(Keys.PREF_LIBTORCH, "");
    gd.addStringField(Keys.LIBTORCH, Keys.lastLibtorch, 40);
    gd.addMessage("0 = the task's default (binary: 30 epochs, patience 5 on val AUC; multiclass: 50 / 10 on\n"
        + "macro F1; lr 1e-3, batch 32, size 224). limit: films per split (smoke runs). Esc cancels.\n"
        + "init: a .safetensors, or binary / 3class; finetune keeps its classifier (same classes).\n"
        + "patient_ages: the training patients' ages in years (e.g. 1-5), stored in the model: a DICOM\n"
        + "whose PatientAge is more than a year outside is flagged out of distribution (empty: none).\n"
        + "libtorch: PyTorch's torch/lib folder, Debian's /usr/lib/x86_64-linux-gnu, or libpneumoscope_torch.so\n"
        + "(empty: $PNEUMOSCOPE_TORCH_BACKEND, then beside libpneumoscope).");
    gd.showDialog();
    if (gd.wasCanceled()) return;
    Trainer.Options o = new Trainer.Options();
    o.manifest = Keys.lastManifest = gd.getNextString().trim();
    o.outdir = Keys.lastOutdir = gd.getNextString().trim();
    o.task = Keys.lastTask = gd.getNextChoice();
    o.epochs = Keys.lastEpochs = (int) gd.getNextNumber();
    o.lr = Keys.lastLr = gd.getNextNumber();
    o.batch = Keys.lastBatch = (int) gd.getNextNumber();
    o.patience = Keys.lastPatience = (int) gd.getNextNumber();
    o.size = Keys.lastSize = (int) gd.getNextNumber();
    o.seed = Keys.lastSeed = (int) gd.getNextNumber();
    o.threads = Keys.lastThreads = (int) gd.getNextNumber();
    o.device = Keys.lastDevice = gd.getNextChoice();
    o.init = Keys.lastInit = gd.getNextString().trim();
    o.finetune = Keys.lastFinetune = gd.getNextBoolean();
    o.limit = Keys.lastLimit = (int) gd.getNextNumber();
    o.patientAges = Keys.lastPatientAges = gd.getNextString().trim();
    o.augment = Keys.lastAugment = gd.getNextBoolean();
    o.balance = Keys.lastBalance = gd.getNextChoice();
    o.resume = Keys.lastResume = gd.getNextBoolean();
    boolean setDefault = Keys.lastSetDefault = gd.getNextBoolean();
    String libtorch = Keys.lastLibtorch = gd.getNextString().trim();
    o.command = "Fiji: run(\"" + Keys.CMD_TRAIN + "\", \"" + (ij.Macro.getOptions() == null ? "" : ij.Macro.getOptions().trim()) + "\")";
    IJ.resetEscape();
    try {
      Engine.init();
      PsNative.setTorchBackend(libtorch);
      if (!libtorch.equals(Prefs.get(Keys.PREF_LIBTORCH, ""))) { // remembered once it names a usable place
        Prefs.set(Keys.PREF_LIBTORCH, libtorch);
        Prefs.savePreferences();
      }
      IJ.log("PneumoScope: training " + o.task + " on " + o.manifest + " into " + o.outdir);
      Trainer.Result r = Trainer.train(o, new Trainer.ProgressListener() {
        @Override
        public boolean progress(double fraction, String what) {
          IJ.showProgress(fraction);
          IJ.showStatus("PneumoScope train: " + what);
          return IJ.escapePressed();
        }
      });
      IJ.showProgress(1.0);
      IJ.log("PneumoScope: trained " + r.epochsRun + " epochs, best epoch " + r.bestEpoch + " (val "
          + IJ.d2s(r.bestScore, 4) + "), threshold " + IJ.d2s(r.threshold, 4) + (r.stoppedEarly ? ", stopped early" : "")
          + "; " + r.nTrain + " training / " + r.nVal + " validation films; model " + r.bestModel);
      File history = new File(o.outdir, "history.csv");
      if (history.isFile()) {
        ResultsTable h = ResultsTable.open(history.getPath());
        if (h != null) h.show(Keys.TRAIN_TABLE);
      }
      Engine.releaseModels();
      if (setDefault && new File(r.bestModel).isFile()) {
        Prefs.set(Keys.PREF_MODEL, r.bestModel);
        Prefs.savePreferences();
        Keys.lastModel = r.bestModel;
        IJ.log("PneumoScope: " + r.bestModel + " is now the default model (Train Model... set_default)");
      }
    } catch (Exception | OutOfMemoryError e) {
      IJ.showProgress(1.0);
      if (e instanceof pneumoscope.PneumoScopeException
          && "PS_ECANCELLED".equals(((pneumoscope.PneumoScopeException) e).statusName())) {
        IJ.log("PneumoScope: training cancelled; " + new File(o.outdir, "best.safetensors") + " holds the best model so far,"
            + " resume with the resume option");
        return;
      }
      String m = e.getMessage();
      if (m != null
          && (m.contains("cannot load the libtorch backend") || m.contains("is already loaded in this process"))) {
        // classification and layer4 Grad-CAM run without libtorch; training cannot: say how to get it
        String status = "PS_EUNSUPPORTED", detail = m;
        if (e instanceof pneumoscope.PneumoScopeException) {
          status = ((pneumoscope.PneumoScopeException) e).statusName();
          detail = ((pneumoscope.PneumoScopeException) e).detail();
        }
        Engine.fail(Keys.CMD_TRAIN,
            new pneumoscope.PneumoScopeException(status, detail + "\n" + HOW_TO_GET_LIBTORCH, null));
        return;
      }
      Engine.fail(Keys.CMD_TRAIN, e);
    }
  }
}
