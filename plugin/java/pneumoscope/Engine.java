package pneumoscope;

import ij.IJ;
import ij.ImagePlus;
import ij.io.FileInfo;
import ij.measure.Calibration;
import ij.process.ColorProcessor;
import ij.process.FloatProcessor;
import ij.process.ImageProcessor;
import java.io.File;

/**
 * The work behind every PneumoScope menu command (the plugin classes only ask and show).
 * Everything here calls the native library through Film / Model / GradCam / Trainer.
 */
public final class Engine {
  private Engine() {}

  private static boolean logInstalled;

  /** Load the library and route its log to IJ.log (once). */
  public static synchronized void init() throws PneumoScopeException {
    PsNative.load();
    if (!logInstalled) {
      PsNative.setLogSink(new PsNative.LogSink() {
        @Override
        public void log(int level, String message) {
          String tag = level >= PsNative.LOG_ERROR ? "error: " : level == PsNative.LOG_WARN ? "warning: " : "";
          IJ.log("PneumoScope: " + tag + message);
        }
      }, PsNative.LOG_INFO);
      logInstalled = true;
    }
  }

  /**
   * Report a failed command: a dialog when a person is at the screen; when a macro runs the
   * command, the message goes to the Log and the macro is aborted (a dialog would block a batch
   * run, e.g. ImageJ -batch under Xvfb).
   */
  public static void fail(String command, Throwable e) {
    String msg = e instanceof PneumoScopeException ? e.getMessage() : String.valueOf(e);
    if (e instanceof OutOfMemoryError) msg = "out of Java memory (" + e.getMessage() + "); Edit > Options > Memory";
    if (isMacro()) {
      IJ.log(command + ": " + msg);
      System.err.println("PneumoScope " + command + ": " + msg);
      ij.macro.Interpreter.abort();
    } else {
      IJ.error(command, msg);
    }
  }

  /** True when a macro (or -batch) runs the command, so no dialog may wait for a click. */
  public static boolean isMacro() {
    return ij.Macro.getOptions() != null || ij.macro.Interpreter.isBatchMode()
        || Thread.currentThread().getName().startsWith("Run$_");
  }

  // ---- films -------------------------------------------------------------------------------

  /**
   * A film as a calibrated 32-bit ImagePlus: display-ready [0, 1] pixels, or modality values
   * with raw (display range = the file's VOI window when it has one); pixel spacing as the
   * calibration (mm); the header summary as the "Info" property; the file as its FileInfo.
   */
  public static ImagePlus openFilm(String path, boolean raw) throws PneumoScopeException {
    init();
    try (Film f = Film.read(path, raw, 0, 0)) {
      return toImagePlus(f, new File(path).getName());
    }
  }

  public static ImagePlus toImagePlus(Film f, String title) throws PneumoScopeException {
    float[] px = f.pixels();
    FloatProcessor fp = new FloatProcessor(f.width(), f.height(), px, null);
    ImagePlus imp = new ImagePlus(title, fp);
    if (f.isRaw()) {
      if (f.windowWidth() > 0) {
        fp.setMinAndMax(f.windowCenter() - f.windowWidth() / 2, f.windowCenter() + f.windowWidth() / 2);
      } else {
        fp.resetMinAndMax();
      }
      // MONOCHROME1 raw values are bright for air: show them with an inverting LUT like ImageJ does
      if ("MONOCHROME1".equals(f.photometric())) fp.invertLut();
    } else {
      fp.setMinAndMax(0, 1);
    }
    Calibration cal = imp.getCalibration();
    double[] sp = f.pixelSpacing();
    if (sp[0] > 0 && sp[1] > 0) {
      cal.pixelHeight = sp[0];
      cal.pixelWidth = sp[1];
      cal.setUnit("mm");
    }
    imp.setProperty("Info", f.summary());
    if (f.path() != null) {
      File file = new File(f.path()).getAbsoluteFile();
      FileInfo fi = new FileInfo();
      fi.fileName = file.getName();
      fi.directory = file.getParent() + File.separator;
      fi.width = f.width();
      fi.height = f.height();
      fi.fileType = FileInfo.GRAY32_FLOAT;
      imp.setFileInfo(fi);
      imp.setProperty("PneumoScope.path", file.getPath());
    }
    return imp;
  }

  /** The file behind an image ImageJ opened (FileInfo directory + fileName), or null. */
  public static String fileBehind(ImagePlus imp) {
    Object p = imp.getProperty("PneumoScope.path");
    if (p instanceof String && new File((String) p).isFile()) return (String) p;
    FileInfo fi = imp.getOriginalFileInfo();
    if (fi == null || fi.fileName == null || fi.fileName.isEmpty() || fi.directory == null
        || fi.directory.isEmpty())
      return null;
    if (fi.url != null && !fi.url.isEmpty()) return null;
    File f = new File(fi.directory, fi.fileName);
    return f.isFile() ? f.getPath() : null;
  }

  /**
   * The film for an open image. With useFile and a readable file behind the image whose size
   * matches the image (not cropped or scaled since), the native reader reads that file (so the
   * DICOM window, photometric and header are honoured). Otherwise the current slice's pixels with
   * ImageJ's display range (and inverting LUT) become the [0, 1] film.
   */
  public static Film filmFor(ImagePlus imp, boolean useFile) throws PneumoScopeException {
    init();
    if (useFile) {
      String path = fileBehind(imp);
      if (path != null) {
        Film f = null;
        try {
          f = Film.read(path);
        } catch (PneumoScopeException e) {
          IJ.log("PneumoScope: " + path + " could not be read (" + e.getMessage() + "); using the image's pixels");
        }
        if (f != null) {
          if (f.width() == imp.getWidth() && f.height() == imp.getHeight()) return f;
          IJ.log("PneumoScope: " + imp.getTitle() + " is " + imp.getWidth() + "x" + imp.getHeight()
              + " but its file " + path + " is " + f.width() + "x" + f.height() + "; using the image's pixels");
          f.close();
        }
      }
    }
    return filmFromPixels(imp);
  }

  /** The current slice's pixels through ImageJ's display range, as a [0, 1] film. */
  public static Film filmFromPixels(ImagePlus imp) throws PneumoScopeException {
    ImageProcessor ip = imp.getProcessor();
    if (ip == null) throw new PneumoScopeException("PS_EINVAL", imp.getTitle() + " has no pixels", null);
    if (ip instanceof ColorProcessor) {
      ImageProcessor gray = ip.convertToByte(false); // ImageJ's RGB -> 8-bit (its weighting setting)
      return Film.fromPixels(gray.getPixels(), gray.getWidth(), gray.getHeight(), 0, 255, false);
    }
    double min = ip.getMin(), max = ip.getMax();
    return Film.fromPixels(ip.getPixels(), ip.getWidth(), ip.getHeight(), min, max, ip.isInvertedLut());
  }
}
