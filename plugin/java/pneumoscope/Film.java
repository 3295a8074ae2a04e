package pneumoscope;

/**
 * One film read by the native reader (ps_image_read: PNG, JPEG, DICOM incl. JPEG/JPEG-LS/RLE
 * compressed) or built from ImageJ pixels. Pixels are float (H, W): display-ready [0, 1]
 * (1 = bright bone), or modality values when read with raw = true.
 *
 * <pre>
 * try (Film f = Film.read("chest.dcm")) {
 *   float[] px = f.pixels();        // width() * height()
 *   String id = f.patientId();
 * }
 * </pre>
 */
public final class Film implements AutoCloseable {
  // Order of nativeMetaStrings (jni/ps_jni_film.c)
  static final int S_FORMAT = 0, S_PATIENT = 1, S_STUDY = 2, S_SERIES = 3, S_SOP = 4, S_MODALITY = 5,
      S_VIEW = 6, S_BODY = 7, S_PHOTOMETRIC = 8, S_TSYNTAX = 9, S_COUNT = 10;
  // Order of nativeMetaNumbers
  static final int N_ROWS = 0, N_COLS = 1, N_COMPONENTS = 2, N_BITS = 3, N_SPACING_ROW = 4,
      N_SPACING_COL = 5, N_SPACING_IMAGER = 6, N_WCENTER = 7, N_WWIDTH = 8, N_SLOPE = 9,
      N_INTERCEPT = 10, N_FRAMES = 11, N_RAW = 12, N_WIDTH = 13, N_HEIGHT = 14, N_COUNT = 15;

  private long handle;
  private final String path;
  private final String[] s;
  private final double[] n;

  private Film(long handle, String path) {
    this.handle = handle;
    this.path = path;
    this.s = nativeMetaStrings(handle);
    this.n = nativeMetaNumbers(handle);
  }

  /** Read a film (display-ready [0, 1]). */
  public static Film read(String path) throws PneumoScopeException {
    return read(path, false, 0, 0);
  }

  /**
   * Read a film. raw: keep modality values (no VOI window, no MONOCHROME1 inversion).
   * maxPixels / maxBytes: limits for untrusted files, 0 for the library defaults.
   */
  public static Film read(String path, boolean raw, long maxPixels, long maxBytes) throws PneumoScopeException {
    if (path == null) throw new PneumoScopeException("PS_EINVAL", "film path is null", null);
    PsNative.load();
    return new Film(nativeRead(PsNative.cstr(path), raw, maxPixels, maxBytes), path);
  }

  /**
   * A film from ImageJ pixels (byte[] or short[] as unsigned, float[]): value v maps to
   * (v - min) / (max - min) clipped to [0, 1] (ImageJ's display range), inverted when invert.
   */
  public static Film fromPixels(Object pixels, int width, int height, double min, double max, boolean invert)
      throws PneumoScopeException {
    int type;
    if (pixels instanceof byte[]) type = 0;
    else if (pixels instanceof short[]) type = 1;
    else if (pixels instanceof float[]) type = 2;
    else throw new PneumoScopeException("PS_EINVAL", "pixels must be byte[], short[] or float[], not "
        + (pixels == null ? "null" : pixels.getClass().getSimpleName()), null);
    PsNative.load();
    return new Film(nativeFromPixels(pixels, type, width, height, min, max, invert), null);
  }

  /** Native handle (ps_image *) for other bindings in this package. */
  synchronized long handle() throws PneumoScopeException {
    if (handle == 0) throw new PneumoScopeException("PS_ESTATE", "film is closed", null);
    return handle;
  }

  /** Copy of the pixels, (H, W) row-major. */
  public synchronized float[] pixels() throws PneumoScopeException {
    return nativePixels(handle());
  }

  public String path() { return path; }
  public int width() { return (int) n[N_WIDTH]; }
  public int height() { return (int) n[N_HEIGHT]; }
  public boolean isRaw() { return n[N_RAW] != 0; }
  public String format() { return s[S_FORMAT]; }
  public String patientId() { return s[S_PATIENT]; }
  public String studyInstanceUid() { return s[S_STUDY]; }
  public String seriesInstanceUid() { return s[S_SERIES]; }
  public String sopInstanceUid() { return s[S_SOP]; }
  public String modality() { return s[S_MODALITY]; }
  public String viewPosition() { return s[S_VIEW]; }
  public String bodyPart() { return s[S_BODY]; }
  public String photometric() { return s[S_PHOTOMETRIC]; }
  public String transferSyntax() { return s[S_TSYNTAX]; }
  public int rows() { return (int) n[N_ROWS]; }
  public int columns() { return (int) n[N_COLS]; }
  public int components() { return (int) n[N_COMPONENTS]; }
  public int bitsStored() { return (int) n[N_BITS]; }
  /** mm, {row spacing, column spacing}; 0 when the file does not say. */
  public double[] pixelSpacing() { return new double[] {n[N_SPACING_ROW], n[N_SPACING_COL]}; }
  public boolean pixelSpacingIsImager() { return n[N_SPACING_IMAGER] != 0; }
  public double windowCenter() { return n[N_WCENTER]; }
  /** 0 when the file has no VOI window. */
  public double windowWidth() { return n[N_WWIDTH]; }
  public double rescaleSlope() { return n[N_SLOPE]; }
  public double rescaleIntercept() { return n[N_INTERCEPT]; }
  public int frames() { return (int) n[N_FRAMES]; }

  /** Header summary, one "Key: value" per line (the ImagePlus "Info" property). */
  public String summary() {
    StringBuilder b = new StringBuilder();
    line(b, "File", path);
    line(b, "Format", format());
    line(b, "PatientID", patientId());
    line(b, "StudyInstanceUID", studyInstanceUid());
    line(b, "SeriesInstanceUID", seriesInstanceUid());
    line(b, "SOPInstanceUID", sopInstanceUid());
    line(b, "Modality", modality());
    line(b, "ViewPosition", viewPosition());
    line(b, "BodyPartExamined", bodyPart());
    line(b, "PhotometricInterpretation", photometric());
    line(b, "TransferSyntaxUID", transferSyntax());
    b.append("Rows: ").append(rows()).append('\n');
    b.append("Columns: ").append(columns()).append('\n');
    b.append("SamplesPerPixel: ").append(components()).append('\n');
    b.append("BitsStored: ").append(bitsStored()).append('\n');
    b.append("Frames: ").append(frames()).append('\n');
    if (n[N_SPACING_ROW] > 0)
      b.append(pixelSpacingIsImager() ? "ImagerPixelSpacing: " : "PixelSpacing: ")
          .append(n[N_SPACING_ROW]).append('\\').append(n[N_SPACING_COL]).append('\n');
    if (n[N_WWIDTH] > 0)
      b.append("Window: center ").append(n[N_WCENTER]).append(" width ").append(n[N_WWIDTH]).append('\n');
    b.append("Rescale: slope ").append(n[N_SLOPE]).append(" intercept ").append(n[N_INTERCEPT]).append('\n');
    b.append("Pixels: ").append(isRaw() ? "modality values (raw)" : "display-ready [0, 1]").append('\n');
    return b.toString();
  }

  private static void line(StringBuilder b, String k, String v) {
    if (v != null && !v.isEmpty()) b.append(k).append(": ").append(v).append('\n');
  }

  @Override
  public synchronized void close() {
    if (handle != 0) {
      nativeFree(handle);
      handle = 0;
    }
  }

  private static native long nativeRead(byte[] path, boolean raw, long maxPixels, long maxBytes)
      throws PneumoScopeException;
  private static native long nativeFromPixels(Object pixels, int type, int width, int height, double min,
      double max, boolean invert) throws PneumoScopeException;
  private static native String[] nativeMetaStrings(long handle);
  private static native double[] nativeMetaNumbers(long handle);
  private static native float[] nativePixels(long handle) throws PneumoScopeException;
  private static native void nativeFree(long handle);
}
