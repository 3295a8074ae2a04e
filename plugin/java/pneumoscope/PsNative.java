package pneumoscope;

import java.io.File;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.security.CodeSource;
import java.util.ArrayList;
import java.util.List;

/**
 * Loads libpneumoscope.so + libpneumoscope_jni.so once per JVM and routes the library's log
 * (ps_log_set) to a sink (IJ.log inside ImageJ, stderr otherwise).
 *
 * <p>Search order: the system property {@value #LIB_DIR_PROPERTY}, the environment variable
 * {@value #LIB_DIR_ENV} (both may hold several folders separated by ':'), then the Fiji layout
 * next to the jar (Fiji.app/plugins/PneumoScope_.jar -> Fiji.app/lib/linux64/), then the jar's folder.
 */
public final class PsNative {
  public static final String LIB_DIR_PROPERTY = "pneumoscope.lib.dir";
  public static final String LIB_DIR_ENV = "PNEUMOSCOPE_LIB_DIR";
  public static final String CORE_LIB = "libpneumoscope.so";
  public static final String JNI_LIB = "libpneumoscope_jni.so";

  public static final int LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3;

  /** Receives the library's log lines (any thread). */
  public interface LogSink {
    void log(int level, String message);
  }

  private static boolean loaded;
  private static PneumoScopeException loadError;
  private static volatile LogSink sink = new LogSink() {
    @Override
    public void log(int level, String message) {
      if (level >= LOG_INFO) System.err.println("pneumoscope: " + message);
    }
  };
  private static volatile int minLevel = LOG_INFO;

  private PsNative() {}

  /** Load the native libraries (idempotent); a clear exception when they are missing. */
  public static synchronized void load() throws PneumoScopeException {
    if (loaded) return;
    if (loadError != null) throw loadError;
    List<File> dirs = searchDirs();
    StringBuilder tried = new StringBuilder();
    for (File dir : dirs) {
      File jni = new File(dir, JNI_LIB);
      tried.append("\n  ").append(jni.getPath()).append(jni.isFile() ? " (found)" : " (missing)");
      if (!jni.isFile()) continue;
      File core = findCore(dirs, dir);
      try {
        if (core != null) System.load(core.getAbsolutePath());
        System.load(jni.getAbsolutePath());
        nativeInit();
        loaded = true;
        loadedFrom = dir.getAbsolutePath();
        return;
      } catch (UnsatisfiedLinkError e) {
        loadError = new PneumoScopeException("PS_ENOTFOUND",
            "could not load " + jni.getPath() + (core != null ? " (with " + core.getPath() + ")" : "")
                + ": " + e.getMessage()
                + "\nThe PneumoScope library needs libtorch and DCMTK installed (see the README).", e);
        throw loadError;
      }
    }
    loadError = new PneumoScopeException("PS_ENOTFOUND",
        "PneumoScope native library not found. Looked for:" + tried
            + "\nInstall libpneumoscope.so and " + JNI_LIB + " into Fiji.app/lib/linux64/,"
            + " or point -D" + LIB_DIR_PROPERTY + "=DIR or " + LIB_DIR_ENV + "=DIR at them.", null);
    throw loadError;
  }

  public static synchronized boolean isLoaded() { return loaded; }

  private static String loadedFrom = "";

  /** The folder the JNI library was loaded from (for About). */
  public static synchronized String searchDirsText() { return loadedFrom; }

  private static File findCore(List<File> dirs, File jniDir) {
    String[] names = {CORE_LIB, CORE_LIB + ".0"};
    for (String n : names) {
      File f = new File(jniDir, n);
      if (f.isFile()) return f;
    }
    for (File d : dirs) {
      for (String n : names) {
        File f = new File(d, n);
        if (f.isFile()) return f;
      }
    }
    return null; // rely on the JNI library's RPATH / LD_LIBRARY_PATH
  }

  static List<File> searchDirs() {
    List<File> dirs = new ArrayList<File>();
    addAll(dirs, System.getProperty(LIB_DIR_PROPERTY));
    addAll(dirs, System.getenv(LIB_DIR_ENV));
    File jarDir = jarDir();
    if (jarDir != null) {
      File app = jarDir.getParentFile(); // Fiji.app/plugins -> Fiji.app (also plugins/PneumoScope/..)
      if (app != null) {
        dirs.add(new File(app, "lib/linux64"));
        if (app.getParentFile() != null) dirs.add(new File(app.getParentFile(), "lib/linux64"));
      }
      dirs.add(new File(jarDir, "lib/linux64"));
      dirs.add(jarDir);
    }
    String ij = System.getProperty("ij.dir"); // ImageJ/Fiji sets this to Fiji.app
    if (ij != null) dirs.add(new File(ij, "lib/linux64"));
    return dirs;
  }

  private static void addAll(List<File> dirs, String list) {
    if (list == null || list.isEmpty()) return;
    for (String s : list.split(File.pathSeparator)) if (!s.isEmpty()) dirs.add(new File(s));
  }

  /** Folder holding the jar (or class folder) this class came from. */
  public static File jarDir() {
    try {
      CodeSource cs = PsNative.class.getProtectionDomain().getCodeSource();
      if (cs == null || cs.getLocation() == null) return null;
      File f = new File(cs.getLocation().toURI());
      return f.isFile() ? f.getParentFile() : f;
    } catch (URISyntaxException | SecurityException | IllegalArgumentException e) {
      return null;
    }
  }

  public static void setLogSink(LogSink s, int minimumLevel) {
    sink = s;
    minLevel = minimumLevel;
  }

  /** Called by the library (through jni/ps_jni.c) on any thread. Never throws. */
  static void logFromNative(int level, byte[] utf8) {
    try {
      LogSink s = sink;
      if (s != null && level >= minLevel) s.log(level, new String(utf8, StandardCharsets.UTF_8));
    } catch (Throwable t) {
      // a failing sink must not unwind into C
    }
  }

  /** NUL-terminated UTF-8 bytes for a C string argument. */
  static byte[] cstr(String s) {
    if (s == null) return null;
    byte[] b = s.getBytes(StandardCharsets.UTF_8);
    byte[] z = new byte[b.length + 1];
    System.arraycopy(b, 0, z, 0, b.length);
    return z;
  }

  static String str(byte[] utf8) { return utf8 == null ? null : new String(utf8, StandardCharsets.UTF_8); }

  public static String version() throws PneumoScopeException { load(); return str(nativeVersion()); }
  public static String features() throws PneumoScopeException { load(); return str(nativeFeatures()); }
  public static String strerror(int status) throws PneumoScopeException { load(); return str(nativeStrerror(status)); }
  /** Worker threads the library uses when told 0. */
  public static int defaultThreads() throws PneumoScopeException { load(); return nativeDefaultThreads(); }

  /** The Grad-CAM renderers' viridis map as LUT bytes: 256 reds, 256 greens, 256 blues. */
  public static byte[] viridis() throws PneumoScopeException { load(); return nativeViridis(); }

  /**
   * Where libtorch is, for the next time the library loads it (ps_torch_set_backend): the backend
   * file, a folder holding libpneumoscope_torch.so, or a libtorch lib folder (PyTorch's torch/lib,
   * Debian's /usr/lib/x86_64-linux-gnu); "" = the usual search ($PNEUMOSCOPE_TORCH_BACKEND, beside
   * libpneumoscope). Loads nothing; throws when the location cannot serve (why, and how to build a
   * matching backend) or when another libtorch is already loaded in this JVM.
   */
  public static void setTorchBackend(String location) throws PneumoScopeException {
    load();
    nativeSetTorchBackend(cstr(location == null ? "" : location));
  }

  private static native void nativeInit();
  private static native void nativeSetTorchBackend(byte[] location) throws PneumoScopeException;
  private static native byte[] nativeViridis();
  private static native byte[] nativeVersion();
  private static native byte[] nativeFeatures();
  private static native byte[] nativeStrerror(int status);
  private static native int nativeDefaultThreads();
}
